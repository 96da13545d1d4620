"""Every firmware profile against its table of cases, each case fed four ways.

Layout (one folder per model, like a Telegraf plugin's testcases):

    firmware_profiles/<model>.yaml
    tests/profiles/<model>/<case_named_for_the_quirk>.yaml

A case file holds ``reads`` (what each read() from the port returned, as hex;
a list of hex strings is joined, so frames can be commented word by word, and
``{text: "..."}`` items stand for ASCII) and ``expect`` (the events, in order,
each with its absolute offset ``at``):

    - {skipped: 3, at: 0}
    - {decoded: {field: value, ...every field, every measurement...}, at: 3}
    - {decoded: {...}, flagged: [pm1_0_ugm3], at: 3}   (outside valid: kept, flagged)
    - {decoded: {...}, absent: [temperature_c], at: 3} (its not_available value)
    - {reply: reply, fields: {command: 225, data: 0}, at: 35}
    - {rejected: bad_checksum, at: 43}

Format features get cases before any shipped profile uses them: a case in
``tests/profiles/_format/`` also holds ``profile``, the small profile it runs.

Each case runs as recorded (one receive_data per read), whole (one read), one
byte at a time, and wrapped in garbage. Adjacent ``Skipped`` events are merged
before comparing, since how garbage is split across events depends on the reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_agent.codec import StreamDecoder, make_decoder
from edge_agent.decoding import (
    Decoded,
    Event,
    FrameRejected,
    Profile,
    Reason,
    Reply,
    Skipped,
    load_profile,
    parse_profile,
)

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "firmware_profiles"
CASES = Path(__file__).resolve().parent
WAYS = ("as_read", "whole", "byte_by_byte", "garbage_around")
# Cases for a format feature before a shipped profile uses it: each holds its
# own small profile under the key ``profile`` (tests/profiles/_format/).
FORMAT_CASES = "_format"
GARBAGE_CANDIDATES = bytes.fromhex("00 FF 13 37 A5 5A 99 01 EE 20")


def _case_files() -> list[Path]:
    return sorted(CASES.glob("*/*.yaml"))


def _hex(value: Any, where: str) -> bytes:
    if isinstance(value, list):
        return b"".join(_hex(part, where) for part in value)
    if isinstance(value, dict) and set(value) == {"text"}:
        return str(value["text"]).encode("latin-1")
    if not isinstance(value, str):
        raise TypeError(f"{where}: expected a hex string or a list of them, got {value!r}")
    return bytes.fromhex(value)


def _load_case(path: Path) -> tuple[Profile, list[bytes], list[dict[str, Any]]]:
    case = yaml.safe_load(path.read_text(encoding="utf-8"))
    inline = path.parent.name == FORMAT_CASES  # the profile is in the case itself
    keys = {"profile", "reads", "expect"} if inline else {"reads", "expect"}
    assert isinstance(case, dict) and set(case) == keys, (
        f"{path}: a case has exactly the keys {', '.join(sorted(keys))}"
    )
    reads = [_hex(item, f"{path}: reads[{i}]") for i, item in enumerate(case["reads"])]
    if inline:
        profile = parse_profile(yaml.safe_dump(case["profile"]), f"{path}: profile")
    else:
        profile = load_profile(PROFILES / f"{path.parent.name}.yaml")
    for index, item in enumerate(case["expect"]):
        kinds = set(item) - {"at"}
        kinds -= {"fields", "flagged", "absent"}
        known = {"decoded", "rejected", "skipped", "reply"}
        assert len(kinds) == 1 and kinds <= known and "at" in item, (
            f"{path}: expect[{index}] needs one of decoded/reply/rejected/skipped, and at"
        )
        assert ("fields" in item) == ("reply" in item), f"{path}: expect[{index}]: reply and fields"
        assert "decoded" in item or not {"flagged", "absent"} & set(item), (
            f"{path}: expect[{index}]: flagged and absent belong to a decoded reading"
        )
        if "rejected" in item:
            Reason(item["rejected"])  # a typo in a reason code fails here, not as a mismatch
    return profile, reads, case["expect"]


def _run(profile: Profile, reads: list[bytes]) -> tuple[list[Event], StreamDecoder]:
    decoder = make_decoder(profile)
    events: list[Event] = []
    for data in [*reads, b""]:
        decoder.receive_data(data)
        events.extend(decoder.events())
    return events, decoder


def _normalize(events: list[Event]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for event in events:
        if isinstance(event, Skipped):
            last = out[-1] if out else None
            if last and "skipped" in last and last["at"] + last["skipped"] == event.offset:
                last["skipped"] += event.count
                continue
            out.append({"skipped": event.count, "at": event.offset})
        elif isinstance(event, Decoded):
            decoded: dict[str, Any] = {"decoded": event.all_fields, "at": event.offset}
            if event.flagged:
                decoded["flagged"] = list(event.flagged)
            if event.absent:
                decoded["absent"] = list(event.absent)
            out.append(decoded)
        elif isinstance(event, Reply):
            out.append({"reply": event.frame, "fields": event.fields, "at": event.offset})
        elif isinstance(event, FrameRejected):
            out.append({"rejected": str(event.reason), "at": event.offset})
        else:  # pragma: no cover - the decoder's invariant
            raise AssertionError(f"not an event: {event!r}")
    return out


def _check_accounting(events: list[Event], decoder: StreamDecoder, total: int) -> None:
    """Every byte is in one Decoded.raw or Reply.raw, one Skipped, or starts one FrameRejected."""
    covered = 0
    for event in events:
        assert event.offset == covered, f"{event!r} does not start where the last one ended"
        if isinstance(event, Decoded | Reply):
            covered += len(event.raw)
        elif isinstance(event, Skipped):
            covered += event.count
        else:
            covered += 1
    assert covered == total == decoder.stats.bytes_received
    stats = decoder.stats
    assert stats.frames_ok == sum(isinstance(e, Decoded) for e in events)
    assert stats.replies == sum(isinstance(e, Reply) for e in events)
    assert stats.frames_rejected == sum(isinstance(e, FrameRejected) for e in events)
    assert stats.bytes_skipped == sum(e.count for e in events if isinstance(e, Skipped))


def _garbage(profile: Profile) -> bytes:
    if profile.framing is not None:
        markers = {b for layout in profile.all_layouts
                   for b in layout.framing.start + layout.framing.end}
    else:
        assert profile.modbus is not None
        markers = {profile.modbus.slave}
    garbage = bytes(b for b in GARBAGE_CANDIDATES if b not in markers)
    assert len(garbage) >= 5
    return garbage


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("path", _case_files(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_case(path: Path, way: str) -> None:
    profile, reads, expected = _load_case(path)
    stream = b"".join(reads)
    if way == "as_read":
        fed = reads
    elif way == "whole":
        fed = [stream]
    elif way == "byte_by_byte":
        fed = [stream[i : i + 1] for i in range(len(stream))]
    else:
        garbage = _garbage(profile)
        fed = [garbage, *reads, garbage]
    events, decoder = _run(profile, fed)
    _check_accounting(events, decoder, sum(map(len, fed)))
    if way != "garbage_around":
        assert _normalize(events) == expected
        return
    # Garbage after the stream can complete a truncated frame into a bad one,
    # so only the decoded frames are compared, shifted by the garbage in front.
    shift = len(_garbage(profile))
    decoded = [e for e in _normalize(events) if "decoded" in e or "reply" in e]
    want = [{**e, "at": e["at"] + shift} for e in expected if "decoded" in e or "reply" in e]
    assert decoded == want


def test_every_profile_has_cases() -> None:
    """Adding a profile means adding its cases; a profile without them fails here."""
    models = sorted(p.stem for p in PROFILES.glob("*.yaml"))
    assert models, "no firmware profiles found"
    with_cases = {p.parent.name for p in _case_files()}
    assert [m for m in models if m not in with_cases] == []


def test_every_case_folder_names_a_profile() -> None:
    folders = {p.parent.name for p in _case_files()} - {FORMAT_CASES}
    assert sorted(m for m in folders if not (PROFILES / f"{m}.yaml").exists()) == []


def test_every_profile_opens_with_its_documentation() -> None:
    """The comment block is the profile's manual: sensor, datasheet, layout, fields, quirks."""
    for path in sorted(PROFILES.glob("*.yaml")):
        head = path.read_text(encoding="utf-8").split("\n\n", 1)[0].lower()
        assert all(line.startswith("#") for line in head.splitlines()), path
        for topic in ("datasheet", "frame", "field", "quirk"):
            assert topic in head, f"{path.name}: the opening comment says nothing about {topic}s"
