"""Framing rules the decoder and the senders share: unstuffing, allowed lengths, checksum span."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.decoding import (
    FrameDecoder,
    FrameRejected,
    LocalProtocolError,
    Reason,
    load_profiles,
)
from edge_agent.decoding.wire import BadEscapeError, seal, unseal, unstuff

ROOT = Path(__file__).resolve().parents[2]
PROFILES = load_profiles(ROOT / "firmware_profiles")
SPS30 = PROFILES["sps30"]


def test_unstuff_stops_at_the_count_and_reports_the_index_reached() -> None:
    escape = SPS30.framing.escape  # type: ignore[union-attr]
    assert escape is not None
    out = bytearray()
    # 7D 5E is 7E, 7D 5D is 7D: four raw bytes, then one more plain byte
    reached = unstuff(escape, bytes.fromhex("7D 5E 7D 5D 01 02"), 0, 6, out=out, count=3)
    assert bytes(out) == bytes.fromhex("7E 7D 01") and reached == 5


def test_unstuff_waits_at_an_escape_byte_whose_partner_has_not_come() -> None:
    escape = SPS30.framing.escape  # type: ignore[union-attr]
    assert escape is not None
    out = bytearray()
    reached = unstuff(escape, bytes.fromhex("01 7D"), 0, 2, out=out, count=5)
    assert bytes(out) == b"\x01" and reached == 1


def test_unseal_and_the_decoder_refuse_the_same_invalid_escape() -> None:
    framing = SPS30.framing
    assert framing is not None
    wire = bytes.fromhex("7E 00 7D 00 7E")  # 7D 00 unstuffs to 20, which is never escaped
    with pytest.raises(BadEscapeError, match="invalid escape sequence at byte 2") as info:
        unseal(framing, wire)
    assert isinstance(info.value, LocalProtocolError) and info.value.at == 2
    with pytest.raises(LocalProtocolError, match="invalid escape sequence at byte 3"):
        unseal(framing, bytes.fromhex("7E 00 11 7D 7E"))  # the body ends on the escape byte
    decoder = FrameDecoder(SPS30)
    decoder.receive_data(bytes.fromhex("7E 00 7D 00 00 00 00 00 00 00 00"))
    first = next(iter(decoder.events()))
    assert isinstance(first, FrameRejected) and first.reason == Reason.BAD_ESCAPE
    assert first.raw == bytes.fromhex("7E 00 7D 00")  # through the bad pair


def test_seal_then_unseal_gives_the_frame_back() -> None:
    framing = SPS30.framing
    assert framing is not None
    frame = bytes.fromhex("7E 00 03 02 7E 7D 00 7E")
    wire = seal(framing, SPS30.checksum, frame)
    back = unseal(framing, wire)
    assert back[:6] == frame[:6] and len(back) == len(frame)
    assert SPS30.checksum is not None and SPS30.checksum.compute(back) == back[-2]


def test_allowed_lengths_are_the_declared_set_or_min_to_max() -> None:
    for profile in PROFILES.values():
        framing = profile.framing
        if framing is None:
            continue
        allowed = framing.allowed
        expected = (
            framing.lengths
            if framing.lengths is not None
            else set(range(framing.min_length, framing.max_length + 1))
        )
        assert set(allowed) == set(expected)
        assert all(framing.accepts(n) == (n in expected) for n in range(framing.max_length + 2))


def test_the_checksum_span_resolves_offsets_from_the_end() -> None:
    checksum = SPS30.checksum
    assert checksum is not None
    first, stop, stored = checksum.span(10)
    assert 0 <= first < stop <= stored < 10
