"""The hand-over format and the runner on a scripted lease (the Lease seam), without etcd.

Invariant of the state codec, as for every cityedge core: any bytes in the
state key decode or raise HandoverError, never anything else. The runner's
properties across a takeover: the next leader restores the open alerts and
notifies only what is new (each transition once), a step-down save never
outranks the next leader's, and an event made under a token that is no
longer the lease's is never sent (fencing). The election itself is in
test_etcd_election.py; on a real etcd in tests/integration/test_alerts_etcd.py.
"""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cityedge.yamlconfig import ConfigError
from collector.alerts import UsageError
from collector.alerts.handover import (
    MAX_STATE_BYTES,
    MAX_STATE_JSON_BYTES,
    HandoverError,
    Header,
    Version,
    decode_alerts,
    decode_header,
    encode_state,
    remote_is_newer,
)
from collector.alerts.points import alert_point
from collector.alerts.runner import AlertRunner
from collector.alerts.snapshot import dump_alerts
from tests.alerts_helpers import load_state
from tests.unit.alerts.test_runner import capture, heat, run, setup, until
from tests.unit.alerts.timeline import at

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
    """etcd as the scripted leases see it: who holds the leader key (its token), and the one
    state key, written only under the holder's token (as the fenced transaction is)."""

    def __init__(self) -> None:
        self.leader_token = 0
        self.retained: tuple[Header, bytes] | None = None
        self.fenced = 0

    def publish(self, payload: bytes) -> None:
        """Put the state key unfenced (an operator's etcdctl put, or a bug)."""
        self.retained = (decode_header(payload), payload)

    def put_fenced(self, token: int, payload: bytes) -> bool:
        if token != self.leader_token:
            self.fenced += 1
            return False
        self.publish(payload)
        return True


class ScriptedLease:
    """A lease the test gives and takes away; hands state over through a shared Broker."""

    def __init__(self, broker: Broker, holder: str, rank: int) -> None:
        self.broker, self.holder, self.rank = broker, holder, rank
        self.on_change: Callable[[], None] | None = None
        self.is_held = False
        self.published: list[Version] = []

    @property
    def held(self) -> bool:
        return self.is_held

    @property
    def term(self) -> tuple[int, str] | None:
        return (self.rank, self.holder)

    @property
    def token(self) -> int | None:
        return self.rank if self.is_held else None

    def give(self, held: bool, *, rank: int | None = None) -> None:
        """Give or take the lease; rank: the token of our next term (a new campaign)."""
        self.is_held = held
        self.rank = self.rank if rank is None else rank
        if held:
            self.broker.leader_token = self.rank
        if self.on_change is not None:
            self.on_change()

    async def start(self) -> None:
        if self.is_held:
            self.broker.leader_token = self.rank

    def poll(self) -> None:
        return None

    def describe(self) -> str:
        return f"scripted lease of {self.holder}"

    def handed_over(self) -> list[tuple[Header, bytes]]:
        return [self.broker.retained] if self.broker.retained else []

    def health_fields(self) -> dict[str, int]:
        return {}

    async def publish_state(self, payload: bytes, version: Version) -> bool:
        if not self.is_held or not self.broker.put_fenced(version.rank, payload):
            return False
        self.published.append(version)
        return True

    async def close(self) -> None:
        self.is_held = False


def scripted(tmp: Path, broker: Broker, who: str, rank: int) -> AlertRunner:
    base = tmp / who
    base.mkdir(exist_ok=True)
    # The clock stays at the scenario's start: only the readings move the engines' time.
    return AlertRunner(setup(base, "  - {type: capture}\n", "lease: etcd\n"),
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
        assert "restoring state from etcd (a's save 1, 1 open)" in caplog.text
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
        lease_of(b).give(True)  # from the lease's callback, as EtcdLease calls it
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


def test_the_lease_setting_reads_the_old_booleans_and_etcd_needs_urls(tmp_path: Path) -> None:
    for text, kind in (("true", "file"), ("false", "none"), ("file", "file"), ("etcd", "etcd")):
        assert setup(tmp_path, "  - {type: log}\n", f"lease: {text}\n").config.lease_kind == kind
    with pytest.raises(ConfigError, match=r"lease: expected one of 'none', 'file', 'etcd'"):
        setup(tmp_path, "  - {type: log}\n", "lease: mqtt\n")
    loaded = setup(tmp_path, "  - {type: log}\n",
                   "lease: etcd\netcd: {endpoints: [127.0.0.1:2379], ttl: 3}\n")
    assert loaded.config.etcd.ttl == 3
    with pytest.raises(UsageError, match=r"etcd\.endpoints needs one or more http:// or https://"):
        AlertRunner(loaded)
    with pytest.raises(ConfigError, match="ttl"):
        setup(tmp_path, "  - {type: log}\n", "lease: etcd\netcd: {ttl: 0}\n")


def test_an_event_made_under_a_token_no_longer_ours_is_never_sent(tmp_path: Path) -> None:
    """A leader paused mid-delivery (SIGSTOP) wakes with its event still queued: by then
    another collector leads, the event's token is stale, and it must not go out."""
    async def scenario() -> None:
        broker = Broker()
        a = scripted(tmp_path, broker, "a", 10)
        lease_of(a).is_held = True
        await a.start()
        notifier = capture(a)
        notifier.gate = asyncio.Event()  # the delivery waits: a is "paused" mid-send
        heat(a, "03-04 10:00", [11, 11, 11])
        await until(lambda: a.deliveries[0].inflight is not None, "the firing in flight")
        fired = a.deliveries[0].inflight
        assert fired is not None and fired.fencing_token == 10
        notifier.script = ["retry"]  # the first attempt fails; the retry meets the fence
        lease_of(a).give(False, rank=30)  # meanwhile another collector took the lease
        broker.leader_token = 20
        notifier.gate.set()
        await until(lambda: a.deliveries[0].stats.fenced == 1, "the retry to be fenced")
        assert notifier.sent == []
        assert a.health_fields()["notify_capture_fenced"] == 1
        await a.close()

    run(scenario())


def test_the_token_is_on_the_alert_points_and_the_notifications(tmp_path: Path) -> None:
    async def scenario() -> None:
        a = scripted(tmp_path, Broker(), "a", 10)
        lease_of(a).is_held = True
        await a.start()
        heat(a, "03-04 10:00", [11, 11, 11])
        await until(lambda: len(capture(a).sent) == 1, "a's firing notification")
        [fired] = capture(a).sent
        assert fired.fencing_token == 10 and fired.as_dict()["fencing_token"] == 10
        assert alert_point(fired).fields["fencing_token"] == 10
        await a.close()

    run(scenario())
