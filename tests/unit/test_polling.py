"""The Poller, sans-IO: steps from a profile's modes, parameters, answers, warm-up, silence."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.codec import make_decoder
from edge_agent.decoding import Decoded, Reply, load_profiles, unseal
from edge_agent.polling import PollConfigError, Poller

ROOT = Path(__file__).resolve().parents[2]
PROFILES = load_profiles(ROOT / "firmware_profiles")


def poller(model: str, **kwargs: object) -> Poller:
    profile = PROFILES[model]
    return Poller(profile, make_decoder(profile), **kwargs)  # type: ignore[arg-type]


def test_active_mode_sets_the_mode_and_never_polls() -> None:
    p = poller("pms5003")
    assert [s.name for s in p.start_steps()] == ["active"]
    assert p.poll_steps() == [] and p.interval is None
    [step] = p.start_steps()
    assert p.payload(step) == bytes.fromhex("42 4D E1 00 01 01 71")
    assert step.awaits == {"reply"}  # the 8-byte answer


def test_passive_mode_queries_every_interval_and_waits_for_a_data_frame() -> None:
    p = poller("pmsa003", interval=0.5)
    assert p.interval == 0.5
    [query] = p.poll_steps()
    assert p.payload(query) == bytes.fromhex("42 4D E2 00 00 01 71")
    assert query.awaits == {"data"}
    data = Decoded("particulate", {}, 0, b"x", "data")
    assert p.answers(query, data)
    assert not p.answers(query, Reply(0, "reply", {}, b"x"))


def test_unknown_mode_and_parameters_are_config_errors() -> None:
    with pytest.raises(PollConfigError, match=r"mode: 'burst' is not a mode of pms5003"):
        poller("pms5003", mode="burst")
    with pytest.raises(PollConfigError, match="has no parameter 'speed'"):
        poller("sds011", params={"speed": 3})
    wanted = r"params.working_period_min: expected an integer 0\.\.30"
    with pytest.raises(PollConfigError, match=wanted):
        poller("sds011", params={"working_period_min": 31})


def test_a_parameter_is_written_into_the_command_with_its_checksum() -> None:
    p = poller("sds011", params={"working_period_min": 5})
    [active, period] = p.start_steps()
    wire = p.payload(period)
    # AA B4 08 01 05 ... FF FF, check-sum = 08+01+05+FF+FF = 0x20C -> 0C
    assert wire == bytes.fromhex("AA B4 08 01 05 00 00 00 00 00 00 00 00 00 00 FF FF 0C AB")
    assert p.payload(active) == PROFILES["sds011"].commands.by_role["active"].send  # type: ignore[union-attr]


def test_a_stuffed_command_keeps_its_wake_up_byte() -> None:
    p = poller("sps30")
    wake = p.command_step("wake")
    wire = p.payload(wake)
    assert wire[:1] == b"\xff"  # the low pulse before the frame
    framing = PROFILES["sps30"].commands.framing  # type: ignore[union-attr]
    assert unseal(framing, wire[1:]) == bytes.fromhex("7E 00 11 00 EE 7E")


def test_modbus_polls_each_read_of_the_map_in_order() -> None:
    p = poller("bus_terminal_modbus", interval=2.0)
    assert p.start_steps() == [] and p.interval == 2.0
    steps = p.poll_steps()
    assert [s.name for s in steps] == ["read0", "read1"]
    assert [p.payload(s) for s in steps] == [bytes.fromhex("01 04 00 00 00 04 F1 C9"),
                                             bytes.fromhex("01 02 00 00 00 02 F9 CB")]
    assert steps[0].awaits == {"read0"} and steps[1].awaits == {"data"}


def test_warm_up_after_an_accepted_start_discards_by_time_and_count() -> None:
    p = poller("sps30", warmup_s=30.0, warmup_readings=3)
    [start] = p.start_steps()
    p.sent(start, now=100.0)
    assert p.answers(start, Reply(0, "reply", {"command": 0, "state": 0}, bytes.fromhex(
        "7E 00 00 00 00 FF 7E")))
    kept = [p.keep(now) for now in (101.0, 110.0, 129.9, 130.0, 131.0)]
    assert kept == [False, False, False, True, True]


def test_warm_up_counts_readings_when_the_time_is_short() -> None:
    p = poller("sps30", warmup_s=0.0, warmup_readings=2)
    [start] = p.start_steps()
    p.sent(start, now=0.0)
    assert [p.keep(float(t)) for t in range(4)] == [False, False, True, True]


def test_a_refused_start_means_no_warm_up() -> None:
    p = poller("sps30", warmup_s=30.0)
    [start] = p.start_steps()
    p.sent(start, now=0.0)
    refused = Reply(0, "reply", {"command": 0, "state": 0x43},
                    bytes.fromhex("7E 00 00 43 00 BC 7E"))
    assert p.answers(start, refused)
    assert p.keep(1.0)  # it was measuring already: nothing to warm up


def test_a_silent_device_is_woken_then_set_again() -> None:
    p = poller("pms5003", mode="passive", interval=2.0)
    assert p.silent_s == 10.0
    assert not p.silent(now=109.9, last_heard=100.0)
    assert p.silent(now=110.0, last_heard=100.0)
    steps = p.recovery_steps()
    assert [s.name for s in steps] == ["wake", "passive"]
    assert steps[0].wakes and not steps[0].awaits  # wake-up has no answer; frames resume


def test_silence_grows_with_the_working_period() -> None:
    p = poller("sds011", params={"working_period_min": 5})
    assert p.silent_s == 2 * 60 * 5 + 10
    assert poller("sds011", mode="passive", interval=6.0).silent_s == 18.0


def test_devices_without_recover_commands_are_left_alone() -> None:
    assert poller("wxt530").recovery_steps() == []
    assert poller("noise_meter_modbus").recovery_steps() == []
