"""sensor.community (airrohr) pushes: the firmware's body in, the collector's batch out.

The body is the firmware's own bytes (tests/airrohr_firmware.py); the batch goes
through the collector's ingest as any gateway's does.
"""

from __future__ import annotations

import json

import pytest

from collector.ingest import Accepted, ingest
from collector.sources import airrohr
from tests.airrohr_firmware import BODY, VALUES, body

GW = "esp8266-13597771"
NOW = 1_750_000_000_123_456_789


def test_the_built_body_is_the_firmware_body() -> None:
    assert body() == BODY
    json.loads(BODY)  # and it is JSON


def test_gateway_is_the_x_sensor_header() -> None:
    assert airrohr.gateway_of("esp8266-13597771") == GW
    assert airrohr.gateway_of("esp32-a4cf12") == "esp32-a4cf12"
    for bad in (None, "", "13597771", "esp8266-", "esp8266-1/2", "raspi-1", "esp8266-1 2"):
        assert airrohr.gateway_of(bad) is None


def test_values_map_onto_cityedge_measurements_and_fields() -> None:
    push = airrohr.to_batch(BODY, GW, NOW)
    assert push.metadata == 5 and push.rejected == () and push.software_version == "NRZ-2020-133"
    result = ingest(push.payload, GW, {"district": "강남구", "site": "역삼역", "site_kind":
                                       "dust_zone"})
    assert isinstance(result, Accepted) and result.dead_letters == ()
    got = {(p.measurement, p.tags["sensor"]): dict(p.fields) for p in result.points}
    # The device's sending interval and loop count ride on every reading (gaps show).
    kept = {"fw_interval_ms": 145000, "fw_samples": 5118}
    assert got == {
        ("particulate", "sds011"): {"pm10_ugm3": 12.3, "pm2_5_ugm3": 7.1, **kept},
        ("climate", "bme280"): {"temperature_c": 21.37, "humidity_pct": 48.92,
                                "pressure_hpa": 1007.1234, **kept},
        ("noise", "dnms"): {"laeq_dba": 55.81, "lmin_dba": 48.2, "lmax_dba": 71.44, **kept},
    }
    for p in result.points:
        assert p.time_ns == NOW  # arrival: the firmware sends no time
        assert p.tags["gateway"] == GW and p.tags["site"] == "역삼역"
        assert p.tags["model"] == p.tags["sensor"]
        assert p.identity is not None and p.identity.epoch == airrohr.epoch_of(GW)
    # One identity per reading, the same for the same push at the same arrival.
    assert sorted(p.identity.seq for p in result.points if p.identity) == [NOW, NOW + 1, NOW + 2]
    assert airrohr.to_batch(BODY, GW, NOW) == push


def test_pm1_pm4_and_other_particulate_sensors() -> None:
    push = airrohr.to_batch(body((("SPS30_P0", "1.5"), ("SPS30_P2", "2.5"), ("SPS30_P4", "3"),
                                  ("SPS30_P1", "4"), ("PMS_P0", "7"))), GW, NOW)
    batch = json.loads(push.payload)
    assert {r["sensor"]: r["f"] for r in batch["readings"]} == {
        "sps30": {"pm1_0_ugm3": 1.5, "pm2_5_ugm3": 2.5, "pm4_0_ugm3": 3.0, "pm10_ugm3": 4.0},
        "pms": {"pm1_0_ugm3": 7.0}}


def test_values_that_cannot_be_fields_are_returned_for_dead_letters() -> None:
    push = airrohr.to_batch(body((("SDS_P1", "nan"), ("SDS_P2", "7.10"), ("SDS_P2", "8"),
                                  ("SCD30_co2", "412"), ("SDS_TS", "1"), ("signal", "-70"))),
                            GW, NOW)
    assert [(r.reason, r.sensor) for r in push.rejected] == [
        ("bad_value", "sds011"), ("duplicate_value", "sds011"),
        ("unknown_value_type", None), ("unknown_value_type", "sds011")]
    assert push.metadata == 1
    readings = json.loads(push.payload)["readings"]
    assert [r["f"] for r in readings] == [{"pm2_5_ugm3": 7.1}]
    # Dead letters get seqs of their own, after the readings'.
    assert [r.seq for r in push.rejected] == [NOW + 1, NOW + 2, NOW + 3, NOW + 4]
    assert '"SCD30_co2"' in push.rejected[2].raw


def test_esp32_body_and_header() -> None:
    push = airrohr.to_batch(body(VALUES[:2], chip="a4cf12", kind="esp32"), "esp32-a4cf12", NOW)
    assert len(json.loads(push.payload)["readings"]) == 1


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "bad_json"),
    (b"[1]", "bad_json"),
    (b'{"esp8266id": "1", "sensordatavalues": []}', "sensor_mismatch"),
    (b'{"esp32id": "13597771", "sensordatavalues": []}', "sensor_mismatch"),
    (b'{"esp8266id": "13597771", "sensordatavalues": {}}', "bad_field"),
    (b'{"esp8266id": "13597771", "sensordatavalues": [' + b"1," * 300 + b"1]}", "too_large"),
    (b" " * (airrohr.MAX_BODY_BYTES + 1), "too_large"),
])
def test_pushes_refused_as_a_whole(data: bytes, reason: str) -> None:
    with pytest.raises(airrohr.AirrohrError) as info:
        airrohr.to_batch(data, GW, NOW)
    assert info.value.reason == reason


def test_a_push_of_metadata_only_is_an_empty_batch() -> None:
    push = airrohr.to_batch(body(VALUES[-5:]), GW, NOW)
    result = ingest(push.payload, GW)
    assert isinstance(result, Accepted) and result.points == () and push.metadata == 5
