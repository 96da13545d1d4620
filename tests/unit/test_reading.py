"""One reading type, one JSON pass: fields serialised once when stored, sent as stored."""

from __future__ import annotations

from pathlib import Path

from cityedge.uplink import (
    UNASSIGNED,
    Batch,
    FieldValue,
    Reading,
    decode_batch,
    dump_fields,
    encode_batch,
)
from cityedge.uplink.reading import StoredFields
from edge_agent.outbox import Outbox

FIELDS: dict[str, FieldValue] = {"pm2_5_ugm3": 12, "ratio": 0.5, "ok": True, "note": '마포 "구" \\'}


def batch(*readings: Reading) -> Batch:
    return Batch("gw-1", "00e100e1", 1, 5, True, "b00t", 9, {"district": "마포구"},
                 {"pm-1": {"model": "pms5003"}}, readings)


def test_a_new_reading_has_no_seq_until_stored(tmp_path: Path) -> None:
    r = Reading("pm-1", "particulate", FIELDS, 1_700, "b00t", 77)
    assert r.seq == UNASSIGNED
    box = Outbox(tmp_path / "o.db")
    box.append([r])
    box.sync()
    (out,) = box.fetch_after(0, box.durable_seq, 10)
    assert out.seq == 1
    assert out == Reading("pm-1", "particulate", FIELDS, 1_700, "b00t", 77, seq=1)
    box.close()


def test_stored_fields_go_into_the_batch_unparsed(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.append([Reading("pm-1", "particulate", FIELDS, 1_700, "b00t", 77, synced=False)])
    box.sync()
    (out,) = box.fetch_after(0, box.durable_seq, 10)
    assert isinstance(out.fields, StoredFields)
    data = encode_batch(batch(out))
    assert out.fields._parsed is None  # copied as text, never loaded on the gateway
    assert out.fields.text.encode() in data
    # The same bytes as a batch built from the fields themselves.
    plain = Reading("pm-1", "particulate", FIELDS, 1_700, "b00t", 77, synced=False, seq=1)
    assert data == encode_batch(batch(plain))
    assert decode_batch(data, "gw-1").readings == (plain,)
    box.close()


def test_stored_text_is_utf8_not_escapes() -> None:
    text = dump_fields(FIELDS)
    assert "마포" in text
    assert StoredFields(text) == FIELDS
    assert dump_fields(StoredFields(text)) is text


def test_text_utf8_cannot_carry_is_stored_and_sent_as_escapes(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.append([Reading("pm-1", "particulate", {"note": "a\udc80"}, 1_700, "b00t", 77)])
    box.sync()
    (out,) = box.fetch_after(0, box.durable_seq, 10)
    assert out.fields == {"note": "a\udc80"}
    decoded = decode_batch(encode_batch(batch(out)), "gw-1")
    assert decoded.readings == ()
    assert decoded.rejected[0].reason.startswith("bad_value")
    box.close()
