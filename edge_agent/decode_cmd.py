"""``edge-agent decode``: captured bytes in, one JSON line per reading or rejected frame out.

A technician captures what a port sends (``cat /dev/ttyUSB0 > capture.bin``,
a logic analyser export, a hex dump pasted from a ticket) and runs it through
the same decoder the agent uses, offline:

    edge-agent decode --profile pms5003 --hex "42 4D 00 1C ..."
    edge-agent decode --profile sds011 --file capture.bin

Each line is a JSON object with ``type`` ``reading`` (offset, frame kind and,
per measurement, each field's value and unit), ``reply`` (a device's answer to
a command), ``rejected`` (offset, reason code, detail, the bytes examined) or,
with ``--skipped``, ``skipped`` (offset, count). A summary goes to stderr. The
exit code is 0 when at least one reading decoded, 1 when none did, 2 when the
input or the profile could not be read.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import IO, Any

from edge_agent.codec import make_decoder
from edge_agent.decoding import Decoded, FrameRejected, Profile, Reply, Skipped

__all__ = ["decode_bytes", "parse_hex", "run"]

_HEX_NOISE = re.compile(r"0x|[\s:,;-]", re.IGNORECASE)
_CHUNK = 256  # fed like reads from a port, so a long capture never overflows the buffer


def parse_hex(text: str) -> bytes:
    """Hex digits with any spaces, colons, commas or 0x prefixes between bytes."""
    digits = _HEX_NOISE.sub("", text)
    if len(digits) % 2:
        raise ValueError(f"odd number of hex digits ({len(digits)})")
    return bytes.fromhex(digits)


def _units(profile: Profile) -> dict[str, str]:
    return {spec.name: spec.unit for frame in profile.frames for spec in frame.fields}


def decode_bytes(
    profile: Profile, data: bytes, *, slave: int | None = None, skipped: bool = False
) -> list[dict[str, Any]]:
    """The decoder's verdict on ``data`` as JSON-ready dicts, in stream order."""
    decoder = make_decoder(profile, slave=slave)
    units = _units(profile)
    out: list[dict[str, Any]] = []
    chunks = [data[i : i + _CHUNK] for i in range(0, len(data), _CHUNK)]
    for chunk in [*chunks, b""]:  # b"": the end, which may turn a partial frame into a verdict
        decoder.receive_data(chunk)
        for event in decoder.events():
            if isinstance(event, Decoded):
                reading: dict[str, Any] = {
                    "type": "reading", "offset": event.offset, "frame": event.frame,
                    "readings": [
                        {"measurement": measurement,
                         "fields": {k: {"value": v, "unit": units.get(k, "")}
                                    for k, v in fields.items()}}
                        for measurement, fields in event.readings
                    ],
                }
                if event.flagged:  # outside the datasheet range: kept, flagged
                    reading["out_of_range"] = list(event.flagged)
                if event.absent:  # the device said it has no value
                    reading["not_available"] = list(event.absent)
                out.append(reading)
            elif isinstance(event, Reply):
                out.append({"type": "reply", "offset": event.offset, "frame": event.frame,
                            "fields": event.fields, "bytes": event.raw.hex(" ")})
            elif isinstance(event, FrameRejected):
                out.append({"type": "rejected", "offset": event.offset,
                            "reason": str(event.reason), "detail": event.detail,
                            "bytes": event.raw.hex(" ")})
            elif isinstance(event, Skipped) and skipped:
                out.append({"type": "skipped", "offset": event.offset, "count": event.count})
    return out


def run(
    profile: Profile,
    *,
    hex_text: str | None = None,
    file: str | None = None,
    slave: int | None = None,
    skipped: bool = False,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
) -> int:
    out = out or sys.stdout  # looked up now: a default bound at import outlives a redirect
    err = err or sys.stderr
    try:
        if hex_text is not None:
            data = parse_hex(hex_text)
        elif file == "-":
            data = sys.stdin.buffer.read()
        else:
            assert file is not None
            data = Path(file).read_bytes()
    except (ValueError, OSError) as exc:
        print(f"decode: cannot read the input: {exc}", file=err)
        return 2
    lines = decode_bytes(profile, data, slave=slave, skipped=skipped)
    for line in lines:
        out.write(json.dumps(line, ensure_ascii=False) + "\n")
    count = {kind: sum(1 for line in lines if line["type"] == kind)
             for kind in ("reading", "reply", "rejected")}
    print(
        f"{profile.model}: {len(data)} bytes, {count['reading']} readings, {count['reply']}"
        f" replies, {count['rejected']} rejected frames",
        file=err,
    )
    return 0 if count["reading"] else 1
