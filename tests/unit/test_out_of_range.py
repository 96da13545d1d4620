"""Extreme readings are data: a value outside its datasheet range is kept, flagged end to end.

Decoder: ``Decoded.flagged`` names the fields and ``readings_out_of_range``
counts the readings. Agent: each stored reading names its flagged fields in
the string field ``out_of_range``. Collector: such a reading is written with
the tag ``quality=out_of_range``, so InfluxQL can keep (``quality = ''``) or
pick (``quality = 'out_of_range'``) them. Only what the frame cannot mean
(NaN, infinity) is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

from cityedge.uplink.payload import MAX_STRING_CHARS
from collector.ingest import Accepted, ingest
from collector.lineprotocol import format_point
from edge_agent.decode_cmd import decode_bytes
from edge_agent.decoding import Decoded, FrameDecoder, FrameRejected, Reason, load_profile
from edge_agent.serial_port import decoder_counters, flag_out_of_range

ROOT = Path(__file__).resolve().parents[2]
PMS5003T = load_profile(ROOT / "firmware_profiles" / "pms5003t.yaml")
SPS30 = load_profile(ROOT / "firmware_profiles" / "sps30.yaml")
# tests/profiles/pms5003t/humidity_above_100_is_kept_flagged.yaml: humidity 105.0 %
WET = bytes.fromhex("42 4D 00 1C 00 08 00 0B 00 0C 00 07 00 0A 00 0C 05 DC 01 A4 00 3C 00 04"
                    " 00 D7 04 1A 97 00 04 39")


def decode(profile_frame: bytes) -> list[object]:
    decoder = FrameDecoder(PMS5003T)
    decoder.receive_data(profile_frame)
    decoder.receive_data(b"")
    events: list[object] = list(decoder.events())
    events.append(decoder_counters(decoder.stats))
    return events


def test_the_reading_is_kept_and_counted() -> None:
    event, counters = decode(WET)
    assert isinstance(event, Decoded) and event.flagged == ("humidity_pct",)
    assert dict(event.readings)["climate"] == {"temperature_c": 21.5, "humidity_pct": 105.0}
    assert counters == {"bytes": 32, "frames_ok": 1, "readings_out_of_range": 1}


def test_the_flag_goes_with_the_measurement_holding_the_field() -> None:
    [event, _] = decode(WET)
    assert isinstance(event, Decoded)
    (particulate, pm), (climate, th) = event.readings
    assert (particulate, climate) == ("particulate", "climate")
    assert flag_out_of_range(pm, event.flagged) is pm  # nothing flagged there: not copied
    assert flag_out_of_range(th, event.flagged) == {
        "temperature_c": 21.5, "humidity_pct": 105.0, "out_of_range": "humidity_pct"}
    assert "out_of_range" not in th  # the decoder's dict is left as it was


def test_nan_is_still_refused() -> None:
    # SPS30 measured values with a NaN typical particle size (7F C0 00 00).
    body = bytearray(bytes.fromhex("00 03 00 28") + bytes(36) + bytes.fromhex("7F C0 00 00"))
    frame = b"\x7e" + bytes(body) + bytes([(sum(body) & 0xFF) ^ 0xFF]) + b"\x7e"
    decoder = FrameDecoder(SPS30)
    decoder.receive_data(frame)
    event = next(iter(decoder.events()))
    assert isinstance(event, FrameRejected) and event.reason == Reason.BAD_VALUE
    assert event.detail == "typical_particle_size_um is nan, not a finite number"


def _batch(fields: dict[str, object]) -> bytes:
    return json.dumps({
        "v": 1, "gateway": "gw-1", "epoch": "feedc0de12345678", "batch": 1,
        "sent_ns": 1_700_000_001_000_000_000,
        "clock": {"synced": True, "boot": "b00t", "mono_ns": 5},
        "site": {"district": "마포구", "site": "망원동", "kind": "dust_zone"},
        "sensors": {"pm-1": {"model": "pms5003"}},
        "readings": [{"seq": 1, "sensor": "pm-1", "m": "particulate",
                      "t": 1_700_000_000_000_000_000, "boot": "b00t", "mono": 1, "f": fields}],
    }).encode()


def test_the_collector_tags_a_flagged_reading() -> None:
    flagged = ingest(_batch({"pm1_0_ugm3": 1245.0, "out_of_range": "pm1_0_ugm3"}), "gw-1")
    plain = ingest(_batch({"pm1_0_ugm3": 12.0}), "gw-1")
    assert isinstance(flagged, Accepted) and isinstance(plain, Accepted)
    [point], [other] = flagged.points, plain.points
    assert point.tags["quality"] == "out_of_range"
    assert point.fields["out_of_range"] == "pm1_0_ugm3"
    assert "quality" not in other.tags
    assert ",quality=out_of_range," in format_point(point)


def test_decode_shows_the_flag() -> None:
    [reading] = decode_bytes(PMS5003T, WET)
    assert reading["out_of_range"] == ["humidity_pct"]
    assert "not_available" not in reading


def test_a_long_list_of_names_stays_within_a_string_field() -> None:
    names = tuple(f"field_number_{i:03d}_with_a_long_name_ugm3" for i in range(64))
    text = flag_out_of_range(dict.fromkeys(names, 1.0), names)["out_of_range"]
    assert isinstance(text, str) and len(text) <= MAX_STRING_CHARS and text.endswith(",...")
    assert text.split(",")[:-1] == list(names[: len(text.split(",")) - 1])
