"""The reading: what a sensor said, when, and (once stored) its seq. One type, both sides.

The gateway makes a reading before it has a seq (``seq`` is ``UNASSIGNED``);
the outbox gives it one (a SQLite rowid, 1 and up) and hands it to the uplink,
and the collector decodes the same type from a batch.

A reading's fields are serialised to JSON once, when the outbox stores them
(``dump_fields``). What the outbox hands out carries that text as it was stored
(``StoredFields``), and ``encode_batch`` copies it into the batch unparsed: the
gateway never loads and dumps a reading's fields again. The collector parses
and validates every batch in full (payload.py ``decode_batch``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final

FieldValue = int | float | bool | str

# A reading holding a value outside its sensor's datasheet range (the profile's
# ``valid``) is kept, with this string field naming those fields ("pm1_0_ugm3,
# pm10_ugm3"); the collector then writes the point with the tag
# QUALITY_TAG=OUT_OF_RANGE_FIELD, so queries can keep (quality = '') or pick
# (quality = 'out_of_range') them (README, "InfluxDB schema").
OUT_OF_RANGE_FIELD: Final = "out_of_range"
QUALITY_TAG: Final = "quality"

# The seq of a reading not stored yet (SQLite rowids start at 1; a batch never
# carries 0: decode_batch refuses it).
UNASSIGNED: Final = 0

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_ascii_dumps = json.JSONEncoder(separators=(",", ":")).encode


def dump_fields(fields: Mapping[str, FieldValue]) -> str:
    """The fields' JSON text, as stored and as sent: compact, UTF-8 (not ``\\u`` escapes).

    Text that UTF-8 cannot carry (a lone surrogate) is written as ``\\u`` escapes
    instead: still JSON, so it is stored and sent, and the collector dead-letters
    it with its reason."""
    if isinstance(fields, StoredFields):
        return fields.text
    plain = fields if isinstance(fields, dict) else dict(fields)
    text = _dumps(plain)
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            return _ascii_dumps(plain)
    return text


class StoredFields(Mapping[str, FieldValue]):
    """Fields as the JSON text they were stored as; parsed only if someone reads them."""

    __slots__ = ("_parsed", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._parsed: dict[str, FieldValue] | None = None

    def _map(self) -> dict[str, FieldValue]:
        if self._parsed is None:
            self._parsed = json.loads(self.text)
        return self._parsed

    def __getitem__(self, key: str) -> FieldValue:
        return self._map()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._map())

    def __len__(self) -> int:
        return len(self._map())

    def __repr__(self) -> str:
        return f"StoredFields({self.text!r})"


@dataclass(frozen=True, slots=True)
class Reading:
    """One decoded frame from one sensor, stamped by the gateway.

    ``time_ns`` is the wall clock (possibly wrong before NTP sync); ``boot`` and
    ``mono_ns`` are the gateway's boot id and monotonic clock when the reading
    was taken, so the collector can correct the time later, identically on
    every resend. ``seq`` is the outbox's (``UNASSIGNED`` until stored).
    """

    sensor: str
    measurement: str
    fields: Mapping[str, FieldValue]
    time_ns: int
    boot: str
    mono_ns: int
    # The kernel's NTP state when the reading was taken (filled in by the agent).
    synced: bool = True
    seq: int = UNASSIGNED
