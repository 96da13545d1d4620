"""Any bytes give only Decoded/FrameRejected/Skipped: no other exception, no corrupt or lost frame.

The invariant in full, for every profile and however the stream is cut into reads:

1. ``FrameDecoder`` turns any byte stream into ``Decoded``, ``FrameRejected`` and
   ``Skipped`` events and raises nothing else; every byte is accounted for once,
   and the undecided bytes never reach the buffer bound.
2. Never a ``Decoded`` from a corrupted frame: a frame with one byte changed on
   the line is rejected or skipped. (That is what a 16-bit sum or an 8-bit sum
   over a fixed-length frame can promise for single-byte errors; we do not claim
   more than the checksum can.)
3. Every good frame following garbage is recovered, at its offset, with its values.
"""

from __future__ import annotations

import operator
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.decoding import (
    Decoded,
    Profile,
    load_profile,
    parse_profile,
)
from simulators.frames import encode_frame
from tests.fuzz.streams import check_accounting, cut, feed, merged

ROOT = Path(__file__).resolve().parents[2]
PMS5003 = load_profile(ROOT / "firmware_profiles" / "pms5003.yaml")
SDS011 = parse_profile(
    """
model: sds011
vendor: Nova Fitness
datasheet: Laser Dust Sensor Control Protocol V1.3
measurement: particulate
serial: {baudrate: 9600, bytesize: 8, parity: none, stopbits: 1}
framing: {start: "AA C0", length: 10, end: "AB"}
checksum: {algorithm: sum8, start: 2, end: 8, offset: 8, type: u8}
fields:
  - {name: pm2_5_ugm3, offset: 2, type: u16le, scale: 0.1, unit: ug/m3, valid: [0, 999.9]}
  - {name: pm10_ugm3, offset: 4, type: u16le, scale: 0.1, unit: ug/m3, valid: [0, 999.9]}
""",
    "sds011 (inline)",
)
SHDLC = parse_profile(
    """
model: shdlc_demo
vendor: Sensirion
datasheet: SPS30 datasheet, section 5 (SHDLC)
measurement: demo
serial: {baudrate: 115200, bytesize: 8, parity: none, stopbits: 1}
framing:
  start: "7E"
  end: "7E"
  length_field: {offset: 4, type: u8, add: 7}
  min_length: 11
  max_length: 11
  escape: {byte: "7D", xor: "20", escaped: "7E 7D 11 13"}
checksum: {algorithm: shdlc, start: 1, end: -2, offset: -2, type: u8}
fields:
  - {name: state, offset: 3, type: u8, unit: "1"}
  - {name: mass_pm2_5_ugm3, offset: 5, type: float32be, unit: ug/m3, valid: [0, 1000]}
""",
    "shdlc (inline)",
)
PROFILES = [PMS5003, SDS011, SHDLC]
# Profiles whose checksum catches every single-byte error (invariant 2).
SINGLE_ERROR_SAFE = [PMS5003, SDS011]
FUZZ = settings(max_examples=300, deadline=None)


def values_for(profile: Profile) -> st.SearchStrategy[dict[str, float]]:
    """Values a healthy sensor could send: within valid ranges, exact in the field's type."""
    fields: dict[str, st.SearchStrategy[float]] = {}
    for spec in profile.fields:
        low, high = spec.valid if spec.valid else (spec.type.min, spec.type.max)
        if spec.type.is_float or spec.scale == 1:  # whole numbers are exact in every type
            fields[spec.name] = st.integers(int(low), int(high))
        else:  # n / 10 is the double nearest n * 0.1, which is what decoding gives
            per_unit = round(1 / spec.scale)
            raw = st.integers(round(low * per_unit), round(high * per_unit))
            fields[spec.name] = st.builds(operator.truediv, raw, st.just(per_unit))
    return st.fixed_dictionaries(fields)










@st.composite
def noisy_bytes(draw: st.DrawFn, profile: Profile) -> bytes:
    """Random bytes laced with what makes a decoder work: markers, frames, pieces of frames."""
    frame = st.builds(encode_frame, st.just(profile), values_for(profile))
    piece = st.one_of(
        st.binary(max_size=40),
        st.sampled_from(
            [
                part
                for layout in profile.all_layouts
                for part in (
                    layout.framing.start,
                    layout.framing.end or b"",
                    bytes([layout.framing.escape.byte]) if layout.framing.escape else b"",
                )
            ]
        ),
        frame,
        st.tuples(frame, st.integers(0, 40)).map(lambda f: f[0][: f[1]]),  # cut short
        st.tuples(frame, st.integers(0, 40)).map(lambda f: f[0][f[1] :]),  # begun mid-frame
    )
    return b"".join(draw(st.lists(piece, max_size=25)))


@FUZZ
@given(data=st.data(), points=st.lists(st.integers(min_value=0), max_size=20))
def test_any_bytes_give_only_events(data: st.DataObject, points: list[int]) -> None:
    profile = data.draw(st.sampled_from(PROFILES))
    stream = data.draw(st.one_of(st.binary(max_size=600), noisy_bytes(profile)))
    events, decoder = feed(profile, cut(stream, points))
    check_accounting(events, len(stream))
    whole, _ = feed(profile, [stream])
    assert merged(events) == merged(whole)
    assert decoder.stats.frames_ok == sum(isinstance(e, Decoded) for e in events)
    for event in events:
        if isinstance(event, Decoded):  # whatever decodes, decodes alone too
            alone, _ = feed(profile, [event.raw])
            assert alone == [Decoded(event.measurement, event.fields, 0, event.raw)]


@st.composite
def streams(
    draw: st.DrawFn, profile: Profile, garbage: st.SearchStrategy[bytes], corrupt: bool = True
) -> tuple[bytes, list[tuple[int, dict[str, float]]], list[int]]:
    """Good frames with garbage before each, some corrupted by one changed byte.

    Returns the stream, (offset, values) of every intact frame, and the offsets
    of the corrupted ones.
    """
    stream, intact, corrupted = b"", [], []
    for _ in range(draw(st.integers(1, 6))):
        stream += draw(garbage)
        values = draw(values_for(profile))
        frame = bytearray(encode_frame(profile, values))
        if corrupt and draw(st.booleans()):
            index = draw(st.integers(0, len(frame) - 1))
            frame[index] ^= draw(st.integers(1, 255))  # any other value
            corrupted.append(len(stream))
        else:
            intact.append((len(stream), values))
        stream += bytes(frame)
    stream += draw(garbage)
    return stream, intact, corrupted


def check_frames(
    profile: Profile,
    stream: bytes,
    intact: list[tuple[int, dict[str, float]]],
    corrupted: list[int],
    points: list[int],
) -> None:
    events, _ = feed(profile, cut(stream, points))
    check_accounting(events, len(stream))
    decoded = [(e.offset, e.fields) for e in events if isinstance(e, Decoded)]
    assert decoded == intact  # every good frame recovered, and nothing else decoded
    assert not {offset for offset, _ in decoded} & set(corrupted)


@FUZZ
@given(data=st.data(), points=st.lists(st.integers(min_value=0), max_size=20))
def test_good_frames_survive_garbage_and_single_byte_errors(
    data: st.DataObject, points: list[int]
) -> None:
    profile = data.draw(st.sampled_from(SINGLE_ERROR_SAFE))
    stream, intact, corrupted = data.draw(streams(profile, st.binary(max_size=40)))
    check_frames(profile, stream, intact, corrupted, points)


@FUZZ
@given(data=st.data(), points=st.lists(st.integers(min_value=0), max_size=20))
def test_stuffed_frames_survive_garbage(data: st.DataObject, points: list[int]) -> None:
    # An 8-bit checksum with byte stuffing cannot catch every single-byte error
    # (a changed escape byte shifts the frame), so here frames are intact and the
    # garbage holds no frame delimiter: every frame must still be found.
    no_marker = st.binary(max_size=40).map(lambda b: b.replace(b"\x7e", b""))
    stream, intact, _ = data.draw(streams(SHDLC, no_marker, corrupt=False))
    check_frames(SHDLC, stream, intact, [], points)


@FUZZ
@given(data=st.data())
def test_encode_then_decode_gives_the_values_back(data: st.DataObject) -> None:
    profile = data.draw(st.sampled_from(PROFILES))
    values = data.draw(values_for(profile))
    frame = encode_frame(profile, values)
    [event] = feed(profile, [frame])[0]
    assert event == Decoded(profile.measurement, values, 0, frame)
