"""Every shipped profile's decoder, fed random and mutated bytes: only events, no bad readings.

The invariant, for each profile in firmware_profiles/ (frame, text and Modbus):

1. Any bytes, however cut into reads, give only Decoded, Reply, FrameRejected and
   Skipped events; nothing raises; every byte is accounted for once; the
   undecided bytes never reach the buffer bound; cutting the stream differently
   changes nothing but how garbage is split.
2. Never a reading from a damaged frame: a frame with one byte changed is
   rejected, skipped, or (where the checksum leaves a byte uncovered, as the
   SDS011's command byte) at most a reply, never a Decoded. Profiles whose
   check cannot promise that are excluded and say why: the WXT530 has no
   check-sum (a changed digit is another valid number), and SHDLC's stuffing
   lets one changed byte shift a frame.
3. Every intact frame (reading or reply) after garbage is recovered, at its
   offset, with its values.
4. Encoding then decoding gives the values back, for every frame kind.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.decoding import (
    Decoded,
    FieldSpec,
    FrameSpec,
    Profile,
    Reply,
    load_profiles,
)
from simulators.frames import encode_frame, quantize
from simulators.modbus_slave import encode_replies
from tests.fuzz.streams import check_accounting, cut, feed, merged

ROOT = Path(__file__).resolve().parents[2]
PROFILES = load_profiles(ROOT / "firmware_profiles")
MODELS = sorted(PROFILES)
NO_SINGLE_ERROR_PROMISE = {"wxt530": "no check-sum", "sps30": "byte stuffing"}
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _value(spec: FieldSpec) -> st.SearchStrategy[float]:
    if spec.type.is_bool:
        return st.booleans().map(float)
    low, high = spec.valid if spec.valid else (spec.type.min, spec.type.max)
    if not spec.is_text and not spec.type.is_float:
        ends = (spec.from_raw(spec.raw_min), spec.from_raw(spec.raw_max))
        low, high = max(low, min(ends)), min(high, max(ends))
    exact = st.floats(low, high, allow_nan=False).map(lambda v, s=spec: float(quantize(s, v)))
    if spec.not_available:  # a value whose raw number says "no value" is not sent as one
        exact = exact.filter(lambda v, s=spec: s.to_raw(v) not in s.not_available)
    return exact.filter(lambda v, lo=low, hi=high: lo <= v <= hi)


def values_for(frame: FrameSpec) -> st.SearchStrategy[dict[str, float]]:
    return st.fixed_dictionaries({spec.name: _value(spec) for spec in frame.fields})


@st.composite
def good_frame(draw: st.DrawFn, profile: Profile) -> tuple[bytes, dict[str, float]]:
    """One intact frame and the fields it carries (a Modbus poll is its replies, joined)."""
    if profile.protocol == "modbus_rtu":
        values = draw(values_for(profile.frames[0]))
        return b"".join(encode_replies(profile, values)), values
    kinds = [f for f in profile.frames if f.is_reading or f.match is not None]
    kind = draw(st.sampled_from(kinds))
    values = draw(values_for(kind))
    return encode_frame(profile, values, frame=kind.name), values










def markers(profile: Profile) -> set[int]:
    if profile.framing is not None:
        return {b for layout in profile.all_layouts
                for b in layout.framing.start + layout.framing.end}
    assert profile.modbus is not None
    return {profile.modbus.slave}


@FUZZ
@given(data=st.data(), points=st.lists(st.integers(min_value=0), max_size=15))
def test_any_bytes_give_only_events(data: st.DataObject, points: list[int]) -> None:
    profile = PROFILES[data.draw(st.sampled_from(MODELS))]
    frame = good_frame(profile).map(lambda f: f[0])
    piece = st.one_of(
        st.binary(max_size=40),
        st.sampled_from([bytes([m]) for m in markers(profile)]),
        frame,
        st.tuples(frame, st.integers(0, 60)).map(lambda f: f[0][: f[1]]),
        st.tuples(frame, st.integers(0, 60)).map(lambda f: f[0][f[1] :]),
    )
    stream = data.draw(st.one_of(st.binary(max_size=500),
                                 st.lists(piece, max_size=15).map(b"".join)))
    events, decoder = feed(profile, cut(stream, points))
    check_accounting(events, len(stream))
    whole, _ = feed(profile, [stream])
    assert merged(events) == merged(whole)
    assert decoder.stats.frames_ok == sum(isinstance(e, Decoded) for e in events)


@FUZZ
@given(data=st.data())
def test_one_changed_byte_never_gives_a_reading(data: st.DataObject) -> None:
    model = data.draw(st.sampled_from([m for m in MODELS if m not in NO_SINGLE_ERROR_PROMISE]))
    profile = PROFILES[model]
    frame, _ = data.draw(good_frame(profile))
    damaged = bytearray(frame)
    index = data.draw(st.integers(0, len(frame) - 1))
    damaged[index] ^= data.draw(st.integers(1, 255))
    events, _ = feed(profile, [bytes(damaged)])
    assert not [e for e in events if isinstance(e, Decoded)], (model, damaged.hex(" "))


@FUZZ
@given(data=st.data(), points=st.lists(st.integers(min_value=0), max_size=15))
def test_good_frames_after_garbage_are_all_recovered(
    data: st.DataObject, points: list[int]
) -> None:
    profile = PROFILES[data.draw(st.sampled_from(MODELS))]
    avoid = markers(profile)
    garbage = st.binary(max_size=30).map(lambda b: bytes(x for x in b if x not in avoid))
    stream, expected = b"", []
    for _ in range(data.draw(st.integers(1, 4))):
        stream += data.draw(garbage)
        frame, values = data.draw(good_frame(profile))
        expected.append((len(stream), len(frame), values))
        stream += frame
    stream += data.draw(garbage)
    events, _ = feed(profile, cut(stream, points))
    check_accounting(events, len(stream))
    decoded = [e for e in events if isinstance(e, Decoded)]
    # Each intact frame is found where it was put: a reading whose fields are the
    # values sent, or a reply (a reply kind has no values to compare).
    found = {e.offset: e for e in events if isinstance(e, Decoded | Reply)}
    for offset, size, values in expected:
        if profile.protocol == "modbus_rtu":
            last = [e for e in decoded if offset <= e.offset < offset + size]
            assert len(last) == 1 and last[0].all_fields == values
            continue
        event = found.get(offset)
        assert event is not None, (offset, stream.hex(" "))
        if isinstance(event, Decoded):
            assert event.all_fields == values
    assert len(decoded) <= len(expected)  # and nothing else was read out of the garbage


@FUZZ
@given(data=st.data())
def test_encode_then_decode_gives_the_values_back(data: st.DataObject) -> None:
    profile = PROFILES[data.draw(st.sampled_from(MODELS))]
    frame, values = data.draw(good_frame(profile))
    events, _ = feed(profile, [frame])
    decoded = [e for e in events if isinstance(e, Decoded | Reply)]
    assert [type(e) for e in events if not isinstance(e, Decoded | Reply)] == []
    assert decoded and (decoded[-1].all_fields if isinstance(decoded[-1], Decoded)
                        else decoded[-1].fields) == values
