"""Probe against look-alike sensors, sans pty: a fake port driven by the device's emulator.

A 42 4D frame with a 16-bit sum is a Plantower's, a Winsen ZH06-I's or an
HPMA115's; a 24-byte one a PMS3003's or a ZH03B's. Listening cannot tell
them apart; asking each candidate in its own protocol can. The port here is
``FrameEmulator`` behind pyserial's read/write, on a clock the test advances,
so each case is exact and fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge_agent.decoding import Profile, load_profiles
from edge_agent.probe import Evidence, probe
from simulators.emulator import FrameEmulator
from simulators.values import generator_for

ROOT = Path(__file__).resolve().parents[2]
PROFILES = load_profiles(ROOT / "firmware_profiles")
FRAMES = {m: p for m, p in PROFILES.items() if p.protocol != "modbus_rtu"}
TICK = 0.05  # seconds of device time per read


class FakePort:
    """pyserial's read/write over an emulator; every read advances the shared clock."""

    def __init__(self, profile: Profile) -> None:
        self.now = 0.0
        self.device = FrameEmulator(profile, generator_for(profile, 7), interval=0.2)
        self.pending = b""
        self.written: list[bytes] = []

    def __call__(self, *_: Any, **__: Any) -> FakePort:  # the opener
        return self

    def __enter__(self) -> FakePort:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def clock(self) -> float:
        return self.now

    def write(self, data: bytes) -> int:
        self.written.append(data)
        self.pending += b"".join(e.data for e in self.device.receive(data, self.now))
        return len(data)

    def read(self, size: int) -> bytes:
        self.now += TICK
        self.pending += b"".join(e.data for e in self.device.due(self.now))
        out, self.pending = self.pending[:size], self.pending[size:]
        return out


def run(model: str) -> tuple[list[str], dict[str, Evidence], FakePort]:
    port = FakePort(PROFILES[model])
    result = probe("fake", FRAMES, listen=1.0, reply_timeout=0.5, opener=port, clock=port.clock)
    return result.matched, result.evidence, port


@pytest.mark.parametrize("model", ["hpma115s0", "hpma115c0", "zh06_i", "zh03b", "pms3003"])
def test_a_streaming_look_alike_is_named_alone(model: str) -> None:
    matched, evidence, _ = run(model)
    assert matched == [model]
    assert evidence[model].unanswered == 0


def test_the_plantower_family_is_asked_and_stays_together() -> None:
    matched, evidence, port = run("pms5003")
    assert set(matched) == {"pms5003", "pms7003", "pmsa003", "pms5003t", "pms5003s"}
    for other in ("zh06_i", "hpma115s0", "hpma115c0"):
        assert evidence[other].unanswered >= 1, other  # asked in its protocol, no answer
    # each distinct question went out once, even though five profiles share them
    assert len(port.written) == len(set(port.written))


def test_a_pms3003_leaves_the_zh03b_query_unanswered() -> None:
    _, evidence, port = run("pms3003")
    assert evidence["zh03b"].asked == ["query"]  # the mode change awaits no answer
    assert evidence["zh03b"].unanswered == 1
    assert bytes.fromhex("FF 01 86 00 00 00 00 00 79") in port.written


def test_nothing_is_asked_when_the_bytes_decide() -> None:
    matched, _, port = run("pms5003st")  # the one 40-byte frame
    assert matched == ["pms5003st"]
    assert port.written == []


def test_an_unanswered_question_outweighs_more_readings() -> None:
    asked = Evidence("a", readings=9, unanswered=1)
    quiet = Evidence("b", readings=3)
    assert quiet.key() > asked.key()


def test_a_co2_answer_is_not_taken_for_a_dust_answer() -> None:
    """ZH03B and ZH06-I profiles read an MH-Z19B's answer, flagged out of their range."""
    matched, evidence, _ = run("mhz19b")
    assert matched == ["mhz19b"]
    assert evidence["zh03b"].readings == evidence["zh03b"].flagged >= 1
