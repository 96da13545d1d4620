"""The write-ahead shell against a lease stand-in at its seam (what EtcdLease.write_ahead
gets and answers): a transition reaches a notifier's queue only after etcd took the state and
the outbox together; a refused write queues nothing; a takeover queues what was pending."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from collector.alerts.config import RouteConfig
from collector.alerts.delivery import Delivery
from collector.alerts.events import AlertEvent
from collector.alerts.handover import Version, decode_header
from collector.alerts.outbox import POINTS, Entry, decode, encode
from collector.alerts.write_ahead import WriteAhead


@dataclass
class Stats:
    states_too_big: int = 0


@dataclass
class Etcd:
    """The lease's side of the seam: one key pair, fenced by token."""

    token: int | None = 7
    leader: int = 7
    outbox: bytes | None = None
    state: bytes | None = None
    writes: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)
    handed: bytes | None = None

    def handed_over_outbox(self) -> bytes | None:
        return self.handed

    async def write_ahead(self, token: int, state: bytes | None, outbox: bytes) -> bool:
        if token != self.leader:
            return False
        self.writes.append((state, outbox))
        self.outbox = outbox
        self.state = state if state is not None else self.state
        return True


class Quiet:
    async def send(self, event: AlertEvent) -> None: ...


def event(seq: int, token: int = 7) -> AlertEvent:
    return AlertEvent("a1", seq, "pm10_high", "firing", "ok", "warning", 10 + seq, 10, 120.0,
                      "high", {"district": "d"}, True, fencing_token=token)


def setup(etcd: Etcd) -> tuple[WriteAhead, Delivery, list[Any]]:
    dead: list[Any] = []
    hook = Delivery("hook", Quiet(), RouteConfig(), queue_size=10, max_attempts=1,  # type: ignore[arg-type]
                    retry_min=1, retry_max=1, on_give_up=lambda *a: dead.append(a))
    state: tuple[dict[str, Any], Version] = ({"groups": []}, Version(7, "c-a", 1))
    wa = WriteAhead(etcd, {"hook": hook}, state=lambda: state,  # type: ignore[arg-type]
                    dead_letter=lambda *a: dead.append(a))
    return wa, hook, dead


async def written(wa: WriteAhead) -> None:
    task = asyncio.create_task(wa.run())
    assert await wa.flush(2.0)
    task.cancel()


def test_a_transition_is_queued_only_once_etcd_took_it_with_the_state() -> None:
    async def run() -> None:
        etcd = Etcd()
        wa, hook, _ = setup(etcd)
        wa.offer(hook, event(1))
        assert list(hook.queue) == []  # not yet in etcd: not for the notifier
        await written(wa)
        assert [e.event_id for e in hook.queue] == ["a1:1"]
        [(state, outbox)] = etcd.writes
        assert state is not None and decode_header(state).version.rank == 7
        assert [e.key for e in decode(outbox)] == [("a1:1", "hook")]
        wa.settle("hook", event(1))
        await written(wa)
        assert etcd.writes[-1][0] is None and decode(etcd.writes[-1][1]) == ()
    asyncio.run(run())


def test_a_deposed_leaders_write_is_refused_and_nothing_is_queued() -> None:
    async def run() -> None:
        etcd = Etcd(leader=9)  # another leader's key
        wa, hook, _ = setup(etcd)
        wa.offer(hook, event(1))
        await written(wa)
        assert list(hook.queue) == [] and etcd.writes == []
        assert wa.health_fields()["alert_outbox_fenced"] == 1
    asyncio.run(run())


def test_a_takeover_queues_what_was_pending_with_the_same_ids_and_the_new_token() -> None:
    async def run() -> None:
        etcd = Etcd(token=9, leader=9, handed=encode([Entry("hook", event(2, token=7)),
                                                      Entry("gone", event(2, token=7))]))
        wa, hook, _ = setup(etcd)
        wa.taken_over()
        assert [(e.event_id, e.fencing_token) for e in hook.queue] == [("a1:2", 9)]
        assert wa.health_fields()["alert_outbox_restored"] == 2
    asyncio.run(run())


def test_a_full_outbox_dead_letters_the_transition_with_its_reason() -> None:
    async def run() -> None:
        wa, hook, dead = setup(Etcd())
        wa.core.limit = 1
        wa.offer(hook, event(1))
        wa.offer(hook, event(2))
        assert [(a[0], a[1].event_id, a[2]) for a in dead] == [("hook", "a1:2", "outbox_full")]
        assert wa.health_fields()["alert_outbox_refused_full"] == 1
    asyncio.run(run())


def test_a_restored_points_entry_is_settled_once_the_point_is_written_again() -> None:
    async def run() -> None:
        etcd = Etcd(token=9, leader=9, handed=encode([Entry(POINTS, event(2, token=7))]))
        wa, _, _ = setup(etcd)
        rewritten: list[Any] = []
        wa.rewrite = lambda e, done: rewritten.append((e, done))
        wa.taken_over()
        [(point, done)] = rewritten
        assert point.fencing_token == 7  # as the old leader made it
        done()
        await written(wa)
        assert decode(etcd.writes[-1][1]) == ()
    asyncio.run(run())
