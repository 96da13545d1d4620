"""The cross-host election (sans-IO) and the state hand-over format, without a broker.

Invariant of the wire codec, as for every cityedge core: any bytes on a lease
topic decode to a lease message or raise LeaseWireError, never anything else.
The election's own invariant, checked on a simulated broker with random
delays, kills, stalls, restarts and skewed clocks (lease_sim.py): at no
moment do two candidates lead, and once the faults stop one leads.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cityedge.mqtt import Message
from cityedge.uplink import Topics
from cityedge.uplink.topics import DEFAULT_PREFIX
from cityedge.yamlconfig import ConfigError
from collector.alerts import UsageError
from collector.alerts.election import (
    Candidacy,
    Election,
    LeaseWireError,
    Phase,
    Probe,
    Withdrawn,
    decode,
    encode,
    leader_of,
)
from collector.alerts.handover import (
    MAX_STATE_BYTES,
    MAX_STATE_JSON_BYTES,
    HandoverError,
    Header,
    Version,
    decode_alerts,
    decode_header,
    encode_state,
    keep,
    remote_is_newer,
)
from collector.alerts.health import RunnerStats, health_fields
from collector.alerts.mqtt_lease import MqttLease, boottime
from collector.alerts.runner import AlertRunner
from collector.alerts.snapshot import dump_alerts
from collector.config import MqttSourceConfig
from tests.alerts_helpers import load_state
from tests.unit.alerts.lease_sim import Sim
from tests.unit.alerts.test_runner import capture, heat, run, setup, until
from tests.unit.alerts.timeline import at

K = 3.0  # keepalive of the scripted elections
WALL = 1_700_000_000 * 10**9

# -- the wire ---------------------------------------------------------------------------


@pytest.mark.parametrize("message", [Candidacy("c-1", 5, 2), Probe("c-1", 3), Withdrawn("c-1")])
def test_every_message_round_trips(message: Any) -> None:
    payload, retain = encode(message)
    assert decode("c-1", payload) == message
    assert retain == (not isinstance(message, Probe))


@pytest.mark.parametrize(("payload", "why"), [
    (b"{", "not JSON"), (b"\xff", "not JSON"), (b"[]", "not a version 1"),
    (b'{"v": 2, "holder": "c-1", "rank": 1, "beat": 0}', "not a version 1"),
    (b'{"v": 1, "holder": "c-2", "rank": 1, "beat": 0}', "holder 'c-2' on 'c-1'"),
    (b'{"v": 1, "holder": "c-1", "rank": -1, "beat": 0}', "rank must be a count"),
    (b'{"v": 1, "holder": "c-1", "rank": true, "beat": 0}', "rank must be a count"),
    (b'{"v": 1, "holder": "c-1", "rank": 1}', "beat must be a count"),
    (b'{"v": 1, "holder": "c-1", "probe": "x"}', "probe must be a count"),
    (b"[" * 100_000, "not JSON"), (b'{"v": ' * 100_000, "not JSON"),  # deeper than the stack
])
def test_bad_messages_say_why(payload: bytes, why: str) -> None:
    with pytest.raises(LeaseWireError, match=why):
        decode("c-1", payload)


# Nested deeper than Python's stack: json raises RecursionError (/tmp/rv/garbage.py).
deep = st.builds(lambda n, opener, tail: opener * n + tail, st.integers(500, 5_000),
                 st.sampled_from([b"[", b'{"v": ', b'{"v": 1, "holder": "c-1", "rank": ']),
                 st.binary(max_size=20))


@given(st.binary(max_size=200) | deep | st.from_regex(rb'\{"v": ?1, "holder": "c-1".{0,40}\}',
                                                     fullmatch=True))
def test_any_bytes_decode_or_raise_lease_wire_error(payload: bytes) -> None:
    try:
        message = decode("c-1", payload)
    except LeaseWireError:
        return
    assert message.holder == "c-1"


# One candidacy per holder, as in every view (a holder's topic keeps its latest).
candidacies = st.lists(st.builds(Candidacy, st.sampled_from(["a", "b", "c", "d"]),
                                 st.integers(0, 5), st.integers(0, 3)),
                       max_size=4, unique_by=lambda c: c.holder)


@given(candidacies, st.randoms())
def test_every_observer_of_the_same_candidacies_picks_the_same_leader(
        seen: list[Candidacy], rnd: random.Random) -> None:
    shuffled = list(seen)
    rnd.shuffle(shuffled)
    assert leader_of(shuffled) == leader_of(seen)
    if seen:
        found = leader_of(seen)
        assert found is not None
        assert all((found.rank, found.holder) <= (c.rank, c.holder) for c in seen)
    else:
        assert leader_of(seen) is None


# -- one election, scripted -------------------------------------------------------------


def stand(e: Election, now: float, wall: int = WALL) -> Candidacy:
    """Connect, get the probe back, get the candidacy back: returns the candidacy."""
    withdraw, probe = e.connected(now)
    assert withdraw == Withdrawn(e.holder) and isinstance(probe, Probe)
    assert e.receive(withdraw, now, wall) == []
    [mine] = e.receive(probe, now, wall)
    assert isinstance(mine, Candidacy)
    assert e.receive(mine, now, wall) == []
    return mine


def test_alone_it_leads_once_settled_and_refreshes() -> None:
    e = Election("a", K, settle=1.0)
    assert not e.leading(0) and e.phase is Phase.OFFLINE
    mine = stand(e, 0.0)
    assert mine == Candidacy("a", WALL, 0)
    assert not e.leading(0.5) and e.leader(0.5) == "a"  # not settled yet
    assert e.leading(1.0)
    assert e.tick(0.9) == []
    [refresh] = e.tick(1.0)  # every keepalive / 3
    assert refresh == Candidacy("a", WALL, 1)
    e.receive(refresh, 1.1, WALL)
    assert e.leading(3.9)  # the refresh sent at 1.0 keeps it until 4.0
    assert not e.leading(4.0)


def test_a_newcomer_ranks_after_the_standing_leader_even_with_a_clock_behind() -> None:
    e = Election("b", K, settle=1.0)
    e.connected(0.0)
    e.receive(Candidacy("a", WALL, 7), 0.0, WALL)  # retained, before our probe comes back
    e.receive(Withdrawn("b"), 0.0, WALL)
    [mine] = e.receive(Probe("b", 1), 0.0, WALL - 10**12)  # our clock is 1000 s behind
    assert isinstance(mine, Candidacy) and mine.rank == WALL + 1
    e.receive(mine, 0.0, WALL)
    assert e.leader(2.0) == "a" and not e.leading(2.0)


def test_the_standby_leads_as_soon_as_the_will_clears_the_leader() -> None:
    e = Election("b", K, settle=1.0)
    e.connected(0.0)
    e.receive(Candidacy("a", 1), 0.0, WALL)
    [mine] = e.receive(Probe("b", 1), 0.0, WALL)
    e.receive(mine, 0.0, WALL)
    assert not e.leading(1.5)
    e.receive(Candidacy("a", 1, 1), 1.5, WALL)
    assert e.receive(Withdrawn("a"), 1.6, WALL) == []
    assert e.leading(1.6)


def test_a_lapsed_window_stops_the_lead_at_once_and_starts_over_with_a_higher_rank() -> None:
    e = Election("a", K, settle=0.0)
    e.receive(Candidacy("x", 9), 0.0, WALL)  # ignored: not connected
    assert e.others == {}
    mine = stand(e, 0.0)
    assert e.leading(0.0)
    for t in (1.0, 2.0):  # refreshes go out, none comes back (the broker is unreachable)
        assert [type(m) for m in e.tick(t)] == [Candidacy]
    assert e.leading(2.99) and not e.leading(3.0)
    assert e.tick(3.0) == [Withdrawn("a"), Probe("a", 2)]
    assert e.phase is Phase.PROBING and e.stats.lapses == 1
    e.receive(mine, 3.1, WALL)  # a late echo of the old candidacy does not revive it
    assert not e.leading(3.1)
    [again] = e.receive(Probe("a", 2), 3.2, WALL)
    assert isinstance(again, Candidacy) and again.rank == mine.rank + 1


def test_cleared_under_it_it_starts_over() -> None:
    e = Election("a", K, settle=0.0)
    stand(e, 0.0)
    assert e.receive(Withdrawn("a"), 0.5, WALL) == [Withdrawn("a"), Probe("a", 2)]
    assert not e.leading(0.5) and e.stats.cleared_under_us == 1


def test_a_probe_that_never_comes_back_is_sent_again() -> None:
    e = Election("a", K)
    e.connected(0.0)
    assert e.tick(0.5) == []
    assert e.tick(1.0) == [Withdrawn("a"), Probe("a", 2)]
    assert e.receive(Probe("a", 1), 1.1, WALL) == []  # only the latest probe counts


def test_a_ghost_is_cleared_only_by_a_candidate_whose_own_view_is_current() -> None:
    e = Election("b", K, settle=0.0)
    e.connected(0.0)
    e.receive(Candidacy("a", 1), 0.0, WALL)  # retained; its holder died with the broker down
    [mine] = e.receive(Probe("b", 1), 0.0, WALL)
    e.receive(mine, 0.0, WALL)
    cleared = []
    for t in range(1, 10):  # b refreshes and hears itself; nobody refreshes a
        for m in e.tick(t):
            cleared += [t] if m == Withdrawn("a") else []
            e.receive(m, t, WALL)
        assert e.leading(t) == (t >= 3 * K)
    assert cleared == [3 * K] and e.others == {} and e.stats.ghosts_cleared == 1

    stale = Election("c", K, settle=0.0)
    stand(stale, 0.0)
    stale.receive(Candidacy("a", 1), 0.0, WALL)
    assert Withdrawn("a") not in stale.tick(3 * K)  # its own refreshes stopped coming back
    assert "a" in stale.others


def test_release_withdraws_once_and_never_leads_again() -> None:
    e = Election("a", K, settle=0.0)
    mine = stand(e, 0.0)
    assert e.release() == [Withdrawn("a")]
    assert e.release() == [] and e.connected(1.0) == []
    assert e.receive(mine, 1.0, WALL) == [] and not e.leading(1.0)


def test_a_lost_connection_stops_the_lead_at_once() -> None:
    e = Election("a", K, settle=0.0)
    stand(e, 0.0)
    e.disconnected()
    assert not e.leading(0.1) and e.leader(0.1) is None and e.tick(0.2) == []


# -- many elections on a simulated broker -------------------------------------------------

SIM_K, SIM_SETTLE, SIM_DELAY = 3.0, 0.5, 0.05
FAULTS = st.lists(st.tuples(st.sampled_from(["kill", "restart", "stall", "stall_up",
                                             "stall_down", "release"]),
                            st.integers(0, 3), st.floats(0, 40), st.floats(0.1, 3 * SIM_K)),
                  max_size=8)


def simulate(n: int, starts: list[float], skews: list[int], faults: list[Any],
             seed: int) -> Sim:
    names = [f"c{i}" for i in range(n)]
    sim = Sim(names, keepalive=SIM_K, settle=SIM_SETTLE, delay=SIM_DELAY, seed=seed,
              skews_ns=skews[:n])
    for name, t in zip(names, starts, strict=False):
        sim.start(name, t)
    for kind, i, t, seconds in faults:
        name = names[i % n]
        if kind == "kill":
            sim.kill(name, t)
        elif kind == "restart":
            sim.restart(name, t)
        elif kind == "release":
            sim.release(name, t)
        else:
            sim.stall(name, t, seconds, up=kind != "stall_down", down=kind != "stall_up")
    return sim


@settings(max_examples=150, deadline=None)
@given(n=st.integers(2, 4), starts=st.lists(st.sampled_from([0.0, 0.0, 0.01, 1.0, 5.0]),
                                             min_size=4, max_size=4),
       skews=st.lists(st.integers(-5 * 10**9, 5 * 10**9), min_size=4, max_size=4),
       faults=FAULTS, seed=st.integers(0, 2**32))
def test_never_two_leaders_and_one_once_the_faults_stop(
        n: int, starts: list[float], skews: list[int], faults: list[Any], seed: int) -> None:
    sim = simulate(n, starts, skews, faults, seed)
    quiet = 40 + 3 * SIM_K + 3 * SIM_K * 3 + 5  # the last fault, its stall, a ghost's wait
    sim.run(quiet)
    assert sim.overlaps == []
    if any(node.alive for node in sim.nodes.values()):
        assert len(sim.leaders()) == 1, {n.name: n.election.phase for n in sim.nodes.values()}


def overlapping_starts(settle: float) -> int:
    """Two candidates starting at the same instant, the second's clock a second behind."""
    bad = 0
    for seed in range(100):
        sim = Sim(["a", "b"], keepalive=SIM_K, settle=settle, delay=SIM_DELAY, seed=seed,
                  skews_ns=[0, -10**9])
        sim.start("a", 0.0)
        sim.start("b", 0.0)
        sim.run(2.0, check_every=0.005)
        bad += bool(sim.overlaps)
    return bad


def test_the_settle_time_is_what_keeps_simultaneous_starts_apart() -> None:
    assert overlapping_starts(SIM_SETTLE) == 0
    # Without it, the one that ranks first can lead before the other has heard of it.
    assert overlapping_starts(0.0) > 0


def takeover_after(fault: str) -> float:
    """Seconds from the fault on the leader to the moment another candidate leads."""
    sim = simulate(2, [0.0, 0.5], [0, 0], [], seed=1)
    sim.run(5.0)
    [first] = sim.leaders()
    if fault == "kill":
        sim.kill(first, 5.0)
    elif fault == "release":
        sim.release(first, 5.0)
    else:
        sim.stall(first, 5.0, 60.0)
    t = 5.0
    while not [x for x in sim.leaders() if x != first]:
        t += 0.01
        sim.run(t, check_every=1.0)
    assert sim.overlaps == []
    return t - 5.0


def test_takeover_times() -> None:
    assert takeover_after("kill") < 0.2  # the socket closes: the will goes out at once
    assert takeover_after("release") < 0.2
    # A silent leader: the broker waits 1.5 keepalives from the last packet it heard.
    assert 1.5 * SIM_K - 1 / 3 * SIM_K <= takeover_after("stall") <= 1.5 * SIM_K + 0.2


# -- the hand-over format -----------------------------------------------------------------

ALERTS = {"version": 1, "now": 5, "groups": [{"rule": "r", "state": "firing"}],
          "members": [], "silences": [], "directory": {"gw-1": {"district": "강남구"}}}


def test_state_round_trips_with_a_readable_header() -> None:
    payload = encode_state(ALERTS, Version(7, "c-1", 3), saved_ns=99)
    head = decode_header(payload)
    assert (head.version, head.saved_ns, head.open_alerts) == (Version(7, "c-1", 3), 99, 1)
    assert payload.split(b"\n", 1)[0].startswith(b'{"format": 1')
    assert decode_alerts(payload) == ALERTS


@pytest.mark.parametrize("payload", [b"", b"{}", b"nonsense", b'{"format": 1}\n',
                                     b'{"format": 1, "holder": "a", "rank": 1, "n": 0,'
                                     b' "saved_ns": 0, "open_alerts": 0}\nnot zlib'])
def test_a_bad_state_message_raises_handover_error(payload: bytes) -> None:
    with pytest.raises(HandoverError):
        decode_alerts(payload)


HEAD = (b'{"format": 1, "holder": "a", "rank": 1, "n": 0, "saved_ns": 0, "open_alerts": 0}'
        b"\n")
# The header deeper than the stack, a body that inflates to JSON deeper than the stack,
# a torn or garbled body after a good header, or any bytes at all.
state_payloads = (
    st.binary(max_size=300)
    | st.builds(lambda n, tail: b"[" * n + tail + b"\n", st.integers(500, 5_000),
                st.binary(max_size=20))
    | st.builds(lambda n, tail: HEAD + zlib.compress(b"[" * n + tail), st.integers(500, 5_000),
                st.binary(max_size=20))
    | st.builds(lambda body, cut, junk: HEAD + zlib.compress(body)[:cut] + junk,
                st.binary(max_size=200), st.integers(0, 300), st.binary(max_size=10)))


@given(state_payloads)
def test_any_bytes_on_the_state_topic_decode_or_raise_handover_error(payload: bytes) -> None:
    for decoder in (decode_header, decode_alerts):
        try:
            decoded = decoder(payload)
        except HandoverError:
            continue
        assert isinstance(decoded, Header | dict)


@pytest.mark.parametrize("payload", [b"[" * 100_000 + b"\n", HEAD + zlib.compress(b"[" * 100_000)])
def test_a_state_nested_deeper_than_the_stack_raises_handover_error(payload: bytes) -> None:
    with pytest.raises(HandoverError):
        decode_alerts(payload)


def test_a_state_that_inflates_past_the_limit_is_refused_unread() -> None:
    body = b'{"version": 1, "pad": "' + b"0" * MAX_STATE_JSON_BYTES + b'"}'
    payload = HEAD + zlib.compress(body, 9)
    assert len(payload) < MAX_STATE_BYTES / 10  # what a small message can inflate to
    with pytest.raises(HandoverError, match=f"inflates past {MAX_STATE_JSON_BYTES} bytes"):
        decode_alerts(payload)
    with pytest.raises(HandoverError, match="over the 16777216-byte limit for a hand-over"):
        encode_state({"version": 1, "pad": "0" * MAX_STATE_JSON_BYTES}, Version(1, "a", 1), 0)


def test_a_torn_body_raises_handover_error() -> None:
    payload = encode_state(ALERTS, Version(7, "c-1", 3), saved_ns=99)
    with pytest.raises(HandoverError, match="truncated"):
        decode_alerts(payload[:-5])


def test_which_state_is_newer() -> None:
    older, newer = Version(5, "a", 9), Version(6, "b", 0)
    assert remote_is_newer(newer, older) and not remote_is_newer(older, newer)
    assert remote_is_newer(older, None) and not remote_is_newer(None, older)
    assert not remote_is_newer(older, older)  # the same save: the local files also have stats
    assert remote_is_newer(Version(5, "a", 10), older)


def test_the_size_limit_leaves_room_under_a_1_mb_broker_limit() -> None:
    assert MAX_STATE_BYTES < 1_000_000


# -- the runner on a scripted lease (the Lease seam) -------------------------------------


class Broker:
    """The alert state messages both scripted leases see, kept as the adapter keeps them."""

    def __init__(self) -> None:
        self.kept: list[tuple[Header, bytes]] = []
        self.retained: tuple[Header, bytes] | None = None

    def publish(self, payload: bytes) -> None:
        self.retained = (decode_header(payload), payload)
        self.kept = keep(self.kept, *self.retained)


class ScriptedLease:
    """A lease the test gives and takes away; hands state over through a shared Broker."""

    def __init__(self, broker: Broker, holder: str, rank: int) -> None:
        self.broker, self.holder, self.rank = broker, holder, rank
        self.on_change: Callable[[], None] | None = None
        self.is_held = False
        self.published: list[Version] = []
        self.noted: list[int] = []

    @property
    def held(self) -> bool:
        return self.is_held

    @property
    def term(self) -> tuple[int, str] | None:
        return (self.rank, self.holder)

    def give(self, held: bool, *, rank: int | None = None) -> None:
        """Give or take the lease; rank: the candidacy stands again at once with this one."""
        self.is_held = held
        self.rank = self.rank if rank is None else rank
        if self.on_change is not None:
            self.on_change()

    def note_rank(self, rank: int) -> None:
        self.noted.append(rank)

    async def start(self) -> None:
        return None

    def poll(self) -> None:
        return None

    def describe(self) -> str:
        return f"scripted lease of {self.holder}"

    def handed_over(self) -> list[tuple[Header, bytes]]:
        return self.broker.kept

    def publish_state(self, payload: bytes, version: Version) -> bool:
        if not self.is_held:
            return False
        self.broker.publish(payload)
        self.published.append(version)
        return True

    async def close(self) -> None:
        self.is_held = False


def scripted(tmp: Path, broker: Broker, who: str, rank: int) -> AlertRunner:
    base = tmp / who
    base.mkdir(exist_ok=True)
    # The clock stays at the scenario's start: only the readings move the engines' time.
    return AlertRunner(setup(base, "  - {type: capture}\n", "lease: mqtt\n"),
                       lease=ScriptedLease(broker, who, rank), clock=lambda: at("03-04 10:00"))


def lease_of(runner: AlertRunner) -> ScriptedLease:
    assert isinstance(runner.lease, ScriptedLease)
    return runner.lease


def test_a_takeover_on_another_host_restores_the_open_alert_and_notifies_only_its_end(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        broker = Broker()
        a, b = scripted(tmp_path, broker, "a", 10), scripted(tmp_path, broker, "b", 20)
        lease_of(a).is_held = True
        await a.start()
        await b.start()
        assert (a.leader, b.leader) == (True, False)
        for r in (a, b):  # both observe every reading; b only counts them
            heat(r, "03-04 10:00", [11, 11, 11])
        await until(lambda: len(capture(a).sent) == 1, "a's firing notification")
        await a.save()
        assert broker.retained is not None and broker.retained[0].open_alerts == 1
        assert lease_of(a).published == [Version(10, "a", 1)]

        lease_of(a).give(False)  # a is cut off: it stops at once...
        heat(a, "03-04 10:03", [12])
        assert a.stats.standby_points == 1
        with caplog.at_level("WARNING"):
            lease_of(b).give(True)  # ...and b takes over from the broker's message
            heat(b, "03-04 10:03", [12])  # while b restores it: counted, not evaluated
            assert not b.leader and b.stats.standby_points == 4
            await until(lambda: b.leader, "b to restore the broker's state")
        assert "restoring state from the broker (a's save 1, 1 open)" in caplog.text
        assert len(b.engine.open) == 1
        heat(b, "03-04 10:03", [12, 9])
        await until(lambda: len(capture(b).sent) == 1, "b's resolved notification")
        [fired], [resolved] = capture(a).sent, capture(b).sent
        assert (resolved.state, resolved.alert_id, resolved.seq) == (
            "resolved", fired.alert_id, fired.seq + 1)
        await b.close()
        assert lease_of(b).published[-1].holder == "b"
        await a.close()
        assert capture(a).sent == [fired]

    run(scenario())


def test_the_local_files_win_when_they_are_as_new_and_a_step_down_saves_them(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        broker = Broker()
        a = scripted(tmp_path, broker, "a", 10)
        lease_of(a).is_held = True
        await a.start()
        heat(a, "03-04 10:00", [11, 11, 11])
        await a.save()
        lease_of(a).give(False)
        a.tick(at("03-04 10:03"))
        await until(lambda: a.stats.saves == 2, "the step-down save")
        # Saved locally as save 2, not handed over: the broker still has save 1.
        assert lease_of(a).published == [Version(10, "a", 1)]
        with caplog.at_level("WARNING"):
            lease_of(a).give(True)
        assert f"restoring state from {a.store.dir}" in caplog.text
        assert len(a.engine.open) == 1
        await a.close()

    run(scenario())


def saved_version(runner: AlertRunner) -> Version | None:
    alerts, _ = load_state(runner.store)
    return Version.from_dict(alerts.get("handover")) if alerts else None


def test_a_step_down_save_keeps_its_term_so_a_newer_hand_over_wins(tmp_path: Path) -> None:
    """The /tmp/rv/stepdown.py scenario: a loses the lease and stands again at once with a
    higher rank than b's; its step-down save must not outrank b's later hand-over."""
    async def scenario() -> None:
        broker = Broker()
        a, b = scripted(tmp_path, broker, "a", 10), scripted(tmp_path, broker, "b", 20)
        lease_of(a).is_held = True
        await a.start()
        await b.start()
        for r in (a, b):
            heat(r, "03-04 10:00", [11, 11, 11])
        await until(lambda: len(capture(a).sent) == 1, "a's firing notification")
        await a.save()
        lease_of(a).give(False, rank=30)  # emptied under it: a stands again behind b
        lease_of(b).give(True)
        await until(lambda: b.leader, "b to take over")
        await until(lambda: a.stats.saves == 2, "a's step-down save")
        assert saved_version(a) == Version(10, "a", 2)  # the term it held, not its new rank
        heat(b, "03-04 10:03", [12, 9])
        await until(lambda: len(capture(b).sent) == 1, "b's resolved notification")
        await b.save()
        assert broker.retained is not None and broker.retained[0].version.holder == "b"
        lease_of(b).give(False, rank=40)
        lease_of(a).give(True)  # b's save is newer than a's files: a restores it
        await until(lambda: a.leader, "a to take over again")
        assert len(a.engine.open) == 0
        heat(a, "03-04 10:05", [9, 8])
        await asyncio.sleep(0.3)
        assert [e.state for e in capture(a).sent + capture(b).sent] == ["firing", "resolved"]
        await a.close()
        await b.close()

    run(scenario())


def test_a_restarted_collector_notes_its_files_rank_before_it_stands(tmp_path: Path) -> None:
    async def scenario() -> None:
        broker = Broker()
        first = scripted(tmp_path, broker, "a", 10**20)
        lease_of(first).is_held = True
        await first.start()
        await first.save()
        await first.close()
        again = scripted(tmp_path, broker, "a", 5)  # its clock went back
        await again.start()
        assert lease_of(again).noted == [10**20]
        await again.close()

    run(scenario())


def forged(body: dict[str, Any] | None = None) -> bytes:
    """A state message whose header claims to be the newest ever (a bug, or forged)."""
    head = json.dumps({"format": 1, "holder": "zz", "rank": 10**30, "n": 1, "saved_ns": 0,
                       "open_alerts": 1}).encode() + b"\n"
    return head + (zlib.compress(json.dumps(body).encode()) if body else b"not zlib")


def test_a_handed_over_state_that_does_not_restore_falls_back_to_the_local_files(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        broker = Broker()
        a = scripted(tmp_path, broker, "a", 10)
        lease_of(a).is_held = True
        await a.start()
        heat(a, "03-04 10:00", [11, 11, 11])
        await until(lambda: len(capture(a).sent) == 1, "a's firing notification")
        await a.save()
        lease_of(a).give(False)
        await until(lambda: a.stats.saves == 2, "the step-down save")
        broker.publish(forged({**ALERTS, "groups": [1]}))  # decodes; restore() refuses it
        with caplog.at_level("WARNING"):
            lease_of(a).give(True)
            await until(lambda: a.leader, "a to take over again")
        assert "the handed-over state (zz's save 1) is unusable" in caplog.text
        assert f"restoring state from {a.store.dir}" in caplog.text
        assert len(a.engine.open) == 1  # not an empty engine
        await a.close()

    run(scenario())


def test_a_takeover_restores_the_newest_state_that_restores(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        broker = Broker()
        a, b = scripted(tmp_path, broker, "a", 10), scripted(tmp_path, broker, "b", 20)
        lease_of(a).is_held = True
        await a.start()
        await b.start()
        heat(a, "03-04 10:00", [11, 11, 11])
        await until(lambda: len(capture(a).sent) == 1, "a's firing notification")
        await a.save()
        broker.publish(forged())  # after a's save, with a higher version, and unreadable
        assert [h.version.holder for h, _ in lease_of(b).handed_over()] == ["zz", "a"]
        lease_of(a).give(False)
        with caplog.at_level("WARNING"):
            lease_of(b).give(True)
            await until(lambda: b.leader, "b to take over")
        assert "restoring state from the broker (a's save 1, 1 open)" in caplog.text
        assert len(b.engine.open) == 1
        await a.close()
        await b.close()

    run(scenario())


# Statistics like a city's after a day (the bench's file is 28.8 MiB): about a second to parse.
BIG_STATS = '{"version": 1, "pad": [' + ",".join(['[1.5,"abc",null]'] * 1_250_000) + "]}"


async def longest_stall(until_done: Callable[[], bool]) -> float:
    """The longest the event loop went without running us, until until_done()."""
    longest = 0.0
    for _ in range(2000):
        if until_done():
            return longest
        t = time.monotonic()
        await asyncio.sleep(0.005)
        longest = max(longest, time.monotonic() - t)
    raise AssertionError("timed out")


def test_a_takeover_from_the_broker_does_not_stall_the_event_loop(tmp_path: Path) -> None:
    """_take_over ran in the lease's callback and parsed the statistics file (tens of MB)
    even when the broker's state won; it now skips that file and decodes off the loop."""
    async def scenario() -> None:
        broker = Broker()
        a, b = scripted(tmp_path, broker, "a", 10), scripted(tmp_path, broker, "b", 20)
        # b's own files: from an earlier term of b's, with a big statistics file.
        b.store.save({**dump_alerts(b.engine), "handover": Version(1, "b", 1).as_dict()},
                     BIG_STATS)
        lease_of(a).is_held = True
        await a.start()
        await b.start()
        heat(a, "03-04 10:00", [11, 11, 11])
        await until(lambda: len(capture(a).sent) == 1, "a's firing notification")
        await a.save()
        lease_of(a).give(False)
        watch = asyncio.create_task(longest_stall(lambda: b.leader))
        await asyncio.sleep(0.05)
        lease_of(b).give(True)  # from the lease's callback, as MqttLease calls it
        stall = await watch
        assert len(b.engine.open) == 1  # the broker's state won
        assert stall < 0.3, f"the event loop stalled {stall:.3f} s"
        await a.close()
        await b.close()

    run(scenario())


def test_losing_the_lease_while_restoring_stands_by_and_saves_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        broker = Broker()
        a = scripted(tmp_path, broker, "a", 10)
        await a.start()
        assert not a.leader
        lease_of(a).give(True)
        lease_of(a).give(False)  # before the restore is in
        await asyncio.sleep(0.3)
        assert not a.leader and a.stats.stepdowns == 0
        await a.close()
        assert a.stats.saves == 0 and not a.store.alerts_path.exists()

    run(scenario())


def test_a_torn_statistics_file_costs_window_history_not_the_open_alerts(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        a = scripted(tmp_path, Broker(), "a", 10)
        lease_of(a).is_held = True
        await a.start()
        heat(a, "03-04 10:00", [11, 11, 11])
        await until(lambda: len(capture(a).sent) == 1, "a's firing notification")
        await a.close()  # saves both files
        a.store.stats_path.write_text('{"torn')
        again = scripted(tmp_path, Broker(), "a", 20)
        lease_of(again).is_held = True
        with caplog.at_level("WARNING"):
            await again.start()
        assert again.leader and "going on without that file" in caplog.text
        assert len(again.engine.open) == 1
        await again.close()

    run(scenario())


def test_the_lease_setting_reads_the_old_booleans_and_mqtt_needs_a_broker(
        tmp_path: Path) -> None:
    for text, kind in (("true", "file"), ("false", "none"), ("file", "file"), ("mqtt", "mqtt")):
        assert setup(tmp_path, "  - {type: log}\n", f"lease: {text}\n").config.lease_kind == kind
    with pytest.raises(ConfigError, match=r"lease: expected one of 'none', 'file', 'mqtt'"):
        setup(tmp_path, "  - {type: log}\n", "lease: etcd\n")
    with pytest.raises(UsageError, match="lease: mqtt needs the collector's mqtt section"):
        AlertRunner(setup(tmp_path, "  - {type: log}\n", "lease: mqtt\n"))


# -- topics and the adapter's bookkeeping (no broker) -------------------------------------


def test_lease_topics_are_never_taken_for_gateway_topics() -> None:
    t = Topics(DEFAULT_PREFIX)
    assert t.alert_lease("c-1") == f"{DEFAULT_PREFIX}/collectors/alerts/lease/c-1"
    assert t.alert_lease_holder(t.alert_lease("c-1")) == "c-1"
    for topic in (t.alert_state(), f"{DEFAULT_PREFIX}/collectors/alerts/lease/",
                  f"{DEFAULT_PREFIX}/collectors/alerts/lease/a/b", t.up("c-1")):
        assert t.alert_lease_holder(topic) is None
    assert t.gateway_of(t.alert_lease("c-1")) is None and t.gateway_of(t.alert_state()) is None
    for bad in ("", "a/b", "c+", "#"):
        with pytest.raises(ValueError, match="cannot be a topic level"):
            t.alert_lease(bad)
    with pytest.raises(UsageError, match="collector id 'c/1' cannot be a topic level"):
        MqttLease(MqttSourceConfig(client_id="c/1"), "c/1")


def message(topic: str, payload: bytes) -> Message:
    return Message(topic, payload, 1, True, 1, 1)


def test_the_adapter_keeps_the_newest_state_and_counts_what_it_cannot_read() -> None:
    lease = MqttLease(MqttSourceConfig(topic_prefix="p"), "c-1")
    state = lease.topics.alert_state()
    newer = encode_state(ALERTS, Version(6, "b", 0), saved_ns=2)
    lease.handle(message(state, newer))
    lease.handle(message(state, encode_state(ALERTS, Version(5, "a", 9), saved_ns=1)))
    older = encode_state(ALERTS, Version(5, "a", 9), saved_ns=1)
    assert lease.handed_over() == [(decode_header(newer), newer), (decode_header(older), older)]
    assert lease.election.floor == 6  # our next candidacy ranks above its writer's
    lease.handle(message(state, b"junk"))
    lease.handle(message(lease.topics.alert_lease("x"), b"{"))
    assert lease.stats.bad_messages == 2 and len(lease.handed_over()) == 2
    lease.handle(message(state, b""))  # emptied by hand: nothing to hand over
    assert lease.handed_over() == []
    assert not lease.held and lease.term is None


def test_a_forged_header_does_not_hide_the_states_that_come_after_it() -> None:
    lease = MqttLease(MqttSourceConfig(topic_prefix="p"), "c-1")
    state = lease.topics.alert_state()
    lease.handle(message(state, forged()))
    good = encode_state(ALERTS, Version(6, "b", 0), saved_ns=2)
    lease.handle(message(state, good))
    assert [h.version for h, _ in lease.handed_over()] == [Version(10**30, "zz", 1),
                                                            Version(6, "b", 0)]
    for n in range(1, 5):  # the few newest are kept, newest first
        lease.handle(message(state, encode_state(ALERTS, Version(6, "b", n), saved_ns=2)))
    assert [h.version.n for h, _ in lease.handed_over()] == [1, 4, 3]


def test_the_leases_counters_reach_the_collectors_health_point() -> None:
    lease = MqttLease(MqttSourceConfig(topic_prefix="p"), "c-1")
    lease.handle(message(lease.topics.alert_state(), b"not a state"))
    lease.election.stats.lapses += 2
    fields = health_fields(RunnerStats(), 0, False, [], lease)
    assert fields["lease_bad_messages"] == 1 and fields["lease_lapses"] == 2
    assert set(lease.health_fields()) <= set(fields)


def test_the_lease_counts_time_the_host_was_suspended() -> None:
    """CLOCK_MONOTONIC stops during a suspend: a leader suspended past its lead window
    would resume leading by its own count while another collector leads."""
    lease = MqttLease(MqttSourceConfig(topic_prefix="p"), "c-1")
    assert lease.monotonic is boottime
    assert abs(boottime() - time.clock_gettime(time.CLOCK_BOOTTIME)) < 1.0


def test_the_adapter_survives_messages_nested_deeper_than_the_stack() -> None:
    lease = MqttLease(MqttSourceConfig(topic_prefix="p"), "c-1")
    good = encode_state(ALERTS, Version(6, "b", 0), saved_ns=2)
    lease.handle(message(lease.topics.alert_state(), good))
    for topic in (lease.topics.alert_state(), lease.topics.alert_lease("x")):
        lease.handle(message(topic, b"[" * 100_000 + b"\n"))
    lease.handle(message(lease.topics.alert_state(), HEAD + zlib.compress(b"[" * 100_000)))
    assert lease.stats.bad_messages == 2  # the two whose header is unreadable
    assert lease.handed_over()[0] == (decode_header(good), good)  # the body: at a takeover
