"""The etcd election (sans-IO) and the gateway's JSON, without etcd.

Invariant of the wire codec, as for every cityedge core: any answer text
parses or raises EtcdWireError (or LeaseNotFound), never anything else. The
election's own: at no moment do two candidates lead, checked against a
simulated etcd (leases expire on etcd's clock, the create-revision
transaction) with candidates paused past their lease and answers delayed.
"""

from __future__ import annotations

import contextlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.alerts import etcd_wire as wire
from collector.alerts.etcd_election import (
    Campaign,
    ElectionError,
    EtcdElection,
    Grant,
    KeepAlive,
    Phase,
    Revoke,
)

TTL = 3


def elected(e: EtcdElection, now: float, token: int = 7) -> None:
    assert e.next_request(now) == Grant(TTL)
    e.on_granted(100, TTL, now)
    assert e.next_request(now) == Campaign(100)
    e.on_campaigned(won=True, create_revision=token, holder=e.holder, sent=now)


def test_grant_campaign_lead_and_keep_alive() -> None:
    e = EtcdElection("a", TTL)
    assert not e.leading(0.0) and e.phase is Phase.NO_LEASE
    elected(e, 0.0)
    assert e.leading(0.0) and e.token == 7
    assert e.next_request(0.5) is None and e.wake_at(0.5) == 1.0
    assert e.next_request(1.0) == KeepAlive(100)
    e.on_kept_alive(TTL, 1.0)
    # The window runs from the send of the latest confirmed keepalive, less the margin.
    assert e.leading(1.0 + TTL - e.margin - 0.01) and not e.leading(1.0 + TTL - e.margin)


def test_a_lost_campaign_stands_by_and_campaigns_again() -> None:
    e = EtcdElection("b", TTL, campaign_every=0.5)
    e.next_request(0.0)
    e.on_granted(100, TTL, 0.0)
    e.next_request(0.0)
    e.on_campaigned(won=False, create_revision=5, holder="a", sent=0.0)
    assert e.phase is Phase.STANDBY and e.leader_seen == "a" and not e.leading(0.1)
    assert e.next_request(0.2) is None
    assert e.next_request(0.5) == Campaign(100)


def test_a_leader_whose_keepalives_get_no_answer_stops_before_its_lease_can_expire() -> None:
    e = EtcdElection("a", TTL)
    elected(e, 0.0)
    for t in (1.0, 2.0):
        assert e.next_request(t) == KeepAlive(100)
        e.on_failed(t)
    assert e.leading(TTL - e.margin - 0.01)
    end = TTL - e.margin
    assert not e.leading(end)
    assert e.next_request(end) == Revoke(100)  # the lapse gives the lease up
    assert e.stats.lapses == 1 and e.token is None
    e.on_failed(end)
    assert e.next_request(end) == Grant(TTL)  # and stands anew: a new lease, a new token


def test_a_paused_leader_wakes_not_leading() -> None:
    """SIGSTOP past the lease: on waking, by its own clock, the window has closed."""
    e = EtcdElection("a", TTL)
    elected(e, 0.0)
    assert not e.leading(60.0)
    assert e.next_request(60.0) == Revoke(100)


def test_a_paused_leader_whose_lease_expired_in_etcd_campaigns_again() -> None:
    """Woken past its lease, it revokes the old one; etcd no longer knows it (expired): that
    revoke is done with, and a new grant and campaign follow (not the revoke forever)."""
    e = EtcdElection("a", TTL)
    elected(e, 0.0)
    assert e.next_request(60.0) == Revoke(100)
    e.on_lease_unknown(60.0)
    assert e.next_request(60.0) == Grant(TTL)
    e.on_granted(101, TTL, 60.0)
    assert e.next_request(60.0) == Campaign(101)


def test_etcd_forgetting_the_lease_ends_the_lead_at_once() -> None:
    e = EtcdElection("a", TTL)
    elected(e, 0.0)
    e.next_request(1.0)
    e.on_kept_alive(0, 1.0)  # etcd: no such lease
    assert not e.leading(1.0) and e.stats.leases_lost == 1
    assert e.next_request(1.0) == Grant(TTL)
    e.on_lease_unknown(1.0)
    assert e.phase is Phase.NO_LEASE


def test_release_revokes_once_and_never_campaigns_again() -> None:
    e = EtcdElection("a", TTL)
    elected(e, 0.0)
    e.release()
    assert not e.leading(0.1)
    assert e.next_request(0.1) == Revoke(100)
    e.on_revoked()
    assert e.next_request(5.0) is None


def test_answers_out_of_turn_are_refused() -> None:
    e = EtcdElection("a", TTL)
    with pytest.raises(ElectionError):
        e.on_granted(1, TTL, 0.0)
    e.next_request(0.0)
    with pytest.raises(ElectionError):
        e.next_request(0.0)
    with pytest.raises(ElectionError):
        e.on_kept_alive(TTL, 0.0)


# -- many candidates against a simulated etcd ---------------------------------------------


class FakeEtcd:
    """Leases that expire TTL after etcd received their last keepalive; one leader key."""

    def __init__(self) -> None:
        self.revision = 1
        self.leases: dict[int, float] = {}  # id -> expires at
        self.key: tuple[int, int] | None = None  # (lease, create revision)
        self.next_id = 100

    def expire(self, now: float) -> None:
        for lease in [x for x, at in self.leases.items() if at <= now]:
            self.drop(lease)

    def drop(self, lease: int) -> None:
        self.leases.pop(lease, None)
        if self.key is not None and self.key[0] == lease:
            self.key = None
            self.revision += 1

    def answer(self, e: EtcdElection, request: object, now: float, sent: float) -> None:
        self.expire(now)
        if isinstance(request, Grant):
            self.next_id += 1
            self.leases[self.next_id] = now + request.ttl
            e.on_granted(self.next_id, request.ttl, sent)
        elif isinstance(request, KeepAlive):
            alive = request.lease in self.leases
            if alive:
                self.leases[request.lease] = now + TTL
            e.on_kept_alive(TTL if alive else 0, sent)
        elif isinstance(request, Revoke):
            self.drop(request.lease)
            e.on_revoked()
        elif isinstance(request, Campaign):
            if request.lease not in self.leases:
                e.on_lease_unknown(sent)
            elif self.key is None:
                self.revision += 1
                self.key = (request.lease, self.revision)
                e.on_campaigned(won=True, create_revision=self.revision, holder="x", sent=sent)
            else:
                e.on_campaigned(won=False, create_revision=self.key[1], holder="x", sent=sent)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 3), seed=st.integers(0, 2**32),
       pauses=st.lists(st.tuples(st.integers(0, 2), st.floats(0, 20), st.floats(0.1, 3 * TTL)),
                       max_size=5))
def test_never_two_leaders_and_the_token_grows(n: int, seed: int,
                                               pauses: list[tuple[int, float, float]]) -> None:
    rnd = random.Random(seed)
    etcd = FakeEtcd()
    nodes = [EtcdElection(f"c{i}", TTL) for i in range(n)]
    asleep = [(nodes[i % n], t, t + d) for i, t, d in pauses]
    inflight: dict[int, tuple[object, float, float]] = {}  # node -> (request, sent, arrives)
    tokens: list[int] = []
    t = 0.0
    while t < 30.0:
        for i, e in enumerate(nodes):
            if any(x is e and start <= t < end for x, start, end in asleep):
                continue  # paused: it neither sends nor hears
            if i in inflight:
                request, sent, arrives = inflight[i]
                if t >= arrives:
                    del inflight[i]
                    etcd.answer(e, request, t - rnd.uniform(0, arrives - sent), sent)
            elif (request := e.next_request(t)) is not None:
                inflight[i] = (request, t, t + rnd.uniform(0.001, 0.3))
        leading = [e for e in nodes if e.leading(t)]
        assert len(leading) <= 1, t
        if leading and leading[0].token is not None and (
                not tokens or tokens[-1] != leading[0].token):
            tokens.append(leading[0].token)
        t += 0.01
    assert tokens == sorted(set(tokens))


# -- the gateway's JSON -------------------------------------------------------------------

KEYS = wire.Keys("p")


def test_the_campaign_reads_the_new_key_the_state_and_the_outbox_or_who_holds_it() -> None:
    body = wire.campaign_body(KEYS, 5, "c-a")
    assert body["compare"][0]["create_revision"] == "0"
    assert body["success"][0]["request_put"]["lease"] == "5"
    won = {"succeeded": True, "responses": [
        {"response_put": {}},
        {"response_range": {"kvs": [{"create_revision": "42", "value": wire.b64("c-a")}]}},
        {"response_range": {"kvs": [{"value": wire.b64(b"state")}]}},
        {"response_range": {"kvs": [{"value": wire.b64(b"outbox")}]}}]}
    assert wire.campaigned(won) == wire.Campaigned(True, 42, "c-a", b"state", b"outbox")
    lost = {"responses": [{"response_range": {"kvs": [{"create_revision": "40",
                                                       "value": wire.b64("c-b")}]}}]}
    assert wire.campaigned(lost) == wire.Campaigned(False, 40, "c-b", None)
    assert wire.fenced_put_body(KEYS, 42, b"x")["compare"][0]["create_revision"] == "42"


def test_the_write_ahead_puts_the_state_and_the_outbox_in_one_fenced_transaction() -> None:
    body = wire.write_ahead_body(KEYS, 42, b"s", b"o")
    assert body["compare"][0]["create_revision"] == "42"
    assert [op["request_put"]["key"] for op in body["success"]] == [wire.b64("p/state"),
                                                                    wire.b64("p/outbox")]
    marks = wire.write_ahead_body(KEYS, 42, None, b"o")  # settling only: the outbox alone
    assert [op["request_put"]["value"] for op in marks["success"]] == [wire.b64(b"o")]


def test_answers_say_what_went_wrong() -> None:
    with pytest.raises(wire.LeaseNotFound):
        wire.parse(404, '{"error":"etcdserver: requested lease not found","code":5}')
    with pytest.raises(wire.EtcdWireError, match="HTTP 503"):
        wire.parse(503, '{"error":"etcdserver: too many requests","code":14}')
    assert wire.kept_alive(wire.parse(200, '{"result":{"ID":"5"}}')) == 0  # unknown lease
    assert wire.granted(wire.parse(200, '{"ID":"5","TTL":"2"}')) == (5, 2)


@given(st.text(max_size=200) | st.builds(lambda n: "[" * n, st.integers(500, 5000)))
def test_any_answer_parses_or_raises_the_wires_own_error(text: str) -> None:
    try:
        doc = wire.parse(200, text)
        for read in (wire.granted, wire.kept_alive, wire.campaigned):
            with contextlib.suppress(wire.EtcdWireError):
                read(doc)
    except (wire.EtcdWireError, wire.LeaseNotFound):
        return
