"""HttpTransport: POSTs batches, bounded; 200 bodies become acks; refusals are counted;
an unavailable collector takes the link down for a jittered backoff (at least Retry-After).

The collector here is a real aiohttp server on a free loopback port that
answers from a script; the answer classification is also checked as a table.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from cityedge import yamlconfig
from cityedge.uplink import Ack, SeqRanges, encode_ack
from edge_agent.transports.http import (
    Delivered,
    HttpTransport,
    HttpUplinkConfig,
    Refused,
    Unavailable,
    classify,
)

EPOCH = "00112233aabbccdd"
TIMEOUT = 10.0
DATE = "Wed, 25 Nov 2026 13:00:00 GMT"
SLACK = 0.08  # scheduling latency allowed on top of a backoff step
FAST = (0.1, 0.4)  # backoff bounds short enough for a test, passed in


def ack_body(batch_id: int = 1, lo: int = 1, hi: int = 3) -> bytes:
    return encode_ack(Ack("gw-1", EPOCH, batch_id, SeqRanges(((lo, hi),))))


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, TIMEOUT))


# -- classification, sans-IO -------------------------------------------------------
CASES: list[tuple[str, int, dict[str, str], bytes, object]] = [
    ("written", 200, {}, ack_body(7), Delivered(Ack("gw-1", EPOCH, 7, SeqRanges(((1, 3),))))),
    ("200 without an ack", 200, {}, b"<html>ok</html>", Refused(200, "bad_ack", "bad_json: ")),
    ("refused with a reason", 400, {}, b'{"reason":"bad_json","detail":"line 1"}',
     Refused(400, "bad_json", "line 1")),
    ("token", 401, {}, b'{"reason":"unauthorized","detail":"wrong token"}',
     Refused(401, "unauthorized", "wrong token")),
    ("proxy's 404 page", 404, {}, b"<h1>Not Found</h1>",
     Refused(404, "http_404", "<h1>Not Found</h1>")),
    ("too large", 413, {}, b'{"reason":"too_large","detail":"5 MB"}',
     Refused(413, "too_large", "5 MB")),
    ("request timeout", 408, {}, b"", Unavailable("HTTP 408")),
    ("throttled", 429, {"Retry-After": "12"}, b"", Unavailable("HTTP 429", 12.0)),
    ("crashed", 500, {}, b"boom", Unavailable("HTTP 500: boom")),
    ("proxy without upstream", 502, {}, b"", Unavailable("HTTP 502")),
    ("write timeout", 503, {"Retry-After": "5"}, b'{"reason":"write_timeout","detail":"10 s"}',
     Unavailable("HTTP 503: 10 s", 5.0)),
    ("retry at a date", 503, {"Retry-After": "Wed, 25 Nov 2026 13:01:00 GMT", "Date": DATE}, b"",
     Unavailable("HTTP 503", 60.0)),
]


@pytest.mark.parametrize(("case", "status", "headers", "body", "outcome"), CASES,
                         ids=[c[0] for c in CASES])
def test_classify(case: str, status: int, headers: dict[str, str], body: bytes,
                  outcome: object) -> None:
    got = classify(status, headers, body)
    if isinstance(outcome, Refused) and outcome.reason == "bad_ack":
        assert isinstance(got, Refused) and got.reason == "bad_ack" and got.status == 200
        assert got.detail.startswith("bad_json: ")
    else:
        assert got == outcome, case


# -- a scripted collector ------------------------------------------------------------------
@dataclass
class Answer:
    status: int = 200
    body: bytes | None = None  # None: the ack of the batch posted
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class ScriptedCollector:
    def __init__(self) -> None:
        self.script: deque[Answer] = deque()
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.port = 0
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append((request.path, dict(request.headers), body))
        await self.gate.wait()
        answer = self.script.popleft() if self.script else Answer()
        if answer.delay:
            await asyncio.sleep(answer.delay)
        if answer.body is None:
            doc = json.loads(body)
            pairs = [[r["seq"], r["seq"]] for r in doc["readings"]]
            out = encode_ack(Ack(doc["gateway"], doc["epoch"], doc["batch"],
                                 SeqRanges.from_pairs(pairs)))
        else:
            out = answer.body
        return web.Response(status=answer.status, body=out, headers=answer.headers)

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self.runner.addresses[0][1])

    async def close(self) -> None:
        self.gate.set()
        await self.runner.cleanup()


def payload(batch_id: int = 1, first: int = 1, n: int = 3) -> bytes:
    return json.dumps({
        "v": 1, "gateway": "gw-1", "epoch": EPOCH, "batch": batch_id,
        "readings": [{"seq": s} for s in range(first, first + n)],
    }).encode()


@asynccontextmanager
async def link(max_in_flight: int = 2, token: str | None = "t0ken",
               timeout: float = 5.0) -> AsyncIterator[tuple[HttpTransport, ScriptedCollector]]:
    collector = ScriptedCollector()
    await collector.start()
    config = HttpUplinkConfig(url=f"http://127.0.0.1:{collector.port}/cityedge/", token=token,
                              timeout=timeout)
    transport = HttpTransport(config, "gw-1", max_in_flight=max_in_flight, backoff=FAST)
    await transport.start()
    try:
        yield transport, collector
    finally:
        await transport.close()
        await collector.close()


async def settle(transport: HttpTransport) -> None:
    while transport.in_flight:
        await asyncio.sleep(0.01)


# -- sending and acks ------------------------------------------------------------------------
def test_a_200_answer_becomes_the_next_ack() -> None:
    async def main() -> None:
        async with link() as (transport, collector):
            assert transport.ready()
            assert transport.send(payload(4, 10, 3))
            ack = await transport.next_ack()
            assert ack == Ack("gw-1", EPOCH, 4, SeqRanges(((10, 12),)))
            path, headers, body = collector.requests[0]
            assert path == "/cityedge/v1/gateways/gw-1/batches"
            assert headers["Authorization"] == "Bearer t0ken"
            assert headers["Content-Type"] == "application/json"
            assert body == payload(4, 10, 3)
            assert transport.ready()
            assert transport.stats.acks == 1

    run(main())


def test_no_token_no_authorization_header() -> None:
    async def main() -> None:
        async with link(token=None) as (transport, collector):
            transport.send(payload())
            await transport.next_ack()
            assert "Authorization" not in collector.requests[0][1]

    run(main())


def test_at_most_max_in_flight_requests_at_once() -> None:
    async def main() -> None:
        async with link(max_in_flight=2) as (transport, collector):
            collector.gate.clear()
            assert transport.send(payload(1, 1))
            assert transport.send(payload(2, 4))
            assert not transport.send(payload(3, 7))  # full: the window will resend it
            assert transport.stats.full == 1
            while len(collector.requests) < 2:
                await asyncio.sleep(0.01)
            collector.gate.set()
            got = {(await transport.next_ack()).batch_id for _ in range(2)}
            assert got == {1, 2}
            await settle(transport)
            assert transport.send(payload(3, 7))
            assert (await transport.next_ack()).batch_id == 3
            assert len(collector.requests) == 3

    run(main())


def test_unread_acks_hold_their_slots() -> None:
    """The ack queue is bounded: an agent that stops reading acks stops sending too."""

    async def main() -> None:
        async with link(max_in_flight=1) as (transport, _collector):
            assert transport.send(payload(1, 1))
            await asyncio.sleep(0.2)  # answered, but its ack is not read yet...
            assert transport.send(payload(2, 4))  # ...the queue holds one
            await asyncio.sleep(0.2)
            assert not transport.send(payload(3, 7))  # the second waits for room
            assert (await transport.next_ack()).batch_id == 1
            assert (await transport.next_ack()).batch_id == 2
            await settle(transport)
            assert transport.send(payload(3, 7))

    run(main())


# -- refusals --------------------------------------------------------------------------------
def test_a_refusal_is_counted_and_the_link_stays_up() -> None:
    async def main() -> None:
        async with link() as (transport, collector):
            collector.script.append(Answer(400, b'{"reason":"gateway_mismatch","detail":"x"}'))
            collector.script.append(Answer(401, b'{"reason":"unauthorized","detail":"y"}'))
            transport.send(payload(1))
            transport.send(payload(2))
            await settle(transport)
            assert transport.refused == {"gateway_mismatch": 1, "unauthorized": 1}
            assert {k: v for k, v in transport.health_fields().items() if "refused" in k} == {
                "collector_refused": 2, "collector_refused_gateway_mismatch": 1,
                "collector_refused_unauthorized": 1}  # what gateway_health shows
            assert transport.ready()
            assert transport.stats.failures == 0
            assert "unauthorized" in transport.stats.last_error or "gateway_mismatch" in (
                transport.stats.last_error)
            # No ack came of them; the next batch is acked as usual.
            transport.send(payload(3))
            assert (await transport.next_ack()).batch_id == 3

    run(main())


def test_an_unusable_ack_is_counted_not_delivered() -> None:
    async def main() -> None:
        async with link() as (transport, collector):
            collector.script.append(Answer(200, b"OK"))
            collector.script.append(Answer(200, b'{"v":1,"gateway":"gw-1","seqs":[[3,1]]}'))
            transport.send(payload(1))
            transport.send(payload(2))
            await settle(transport)
            assert transport.bad_acks == 2
            assert transport.ready()
            transport.send(payload(3))
            assert (await transport.next_ack()).batch_id == 3

    run(main())


# -- an unavailable collector --------------------------------------------------------------------
def test_retry_after_keeps_the_link_down_at_least_that_long() -> None:
    async def main() -> None:
        async with link() as (transport, collector):
            collector.script.append(Answer(503, b'{"reason":"write_timeout","detail":"10 s"}',
                                           {"Retry-After": "1"}))
            started = time.monotonic()
            transport.send(payload(1))
            await settle(transport)
            assert not transport.ready()
            assert transport.stats.failures == 1
            assert "write_timeout" not in transport.refused
            while not transport.ready():
                await asyncio.sleep(0.01)
            waited = time.monotonic() - started
            assert 1.0 <= waited < 1.6, waited  # Retry-After, plus at most 20 % jitter

    run(main())


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 408])
def test_server_trouble_takes_the_link_down(status: int) -> None:
    async def main() -> None:
        async with link() as (transport, collector):
            collector.script.append(Answer(status, b""))
            transport.send(payload(1))
            await settle(transport)
            assert not transport.ready()
            assert transport.stats.failures == 1
            assert transport.stats.last_error.startswith(f"HTTP {status}")
            while not transport.ready():
                await asyncio.sleep(0.01)
            transport.send(payload(2))
            assert (await transport.next_ack()).batch_id == 2

    run(main())


def test_a_request_timeout_takes_the_link_down() -> None:
    async def main() -> None:
        async with link(timeout=0.5) as (transport, collector):
            collector.script.append(Answer(delay=2.0))
            transport.send(payload(1))
            await settle(transport)
            assert not transport.ready()
            assert "Timeout" in transport.stats.last_error

    run(main())


def test_an_unreachable_collector_backs_off_doubling_up_to_the_cap() -> None:
    async def main() -> None:
        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        transport = HttpTransport(HttpUplinkConfig(url=f"http://127.0.0.1:{port}"), "gw-1",
                                  max_in_flight=4, backoff=FAST)
        await transport.start()
        try:
            downs: list[float] = []
            for _ in range(6):
                while not transport.ready():
                    await asyncio.sleep(0.005)
                t = time.monotonic()
                transport.send(payload(1))
                await settle(transport)
                assert not transport.ready()
                while not transport.ready():
                    await asyncio.sleep(0.005)
                downs.append(time.monotonic() - t)
            assert transport.stats.failures == 6
            cap = FAST[1]
            # Jittered in [b/2, b] with b = 0.1, 0.2, 0.4, 0.4 ...
            assert downs[0] < 0.1 + SLACK
            assert all(d <= cap + SLACK for d in downs), downs
            assert min(downs[3:]) >= cap / 2 - 0.01, downs
            assert "ClientConnectorError" in transport.stats.last_error
        finally:
            await transport.close()

    run(main())


def test_requests_failing_together_double_the_backoff_once() -> None:
    async def main() -> None:
        async with link(max_in_flight=4) as (transport, collector):
            collector.gate.clear()
            for i in range(4):
                collector.script.append(Answer(502, b""))
                transport.send(payload(i + 1, i * 3 + 1))
            while len(collector.requests) < 4:
                await asyncio.sleep(0.01)
            collector.gate.set()
            await settle(transport)
            assert transport.stats.failures == 4
            started = time.monotonic()
            while not transport.ready():
                await asyncio.sleep(0.005)
            # The first step (at most 0.1 s), not the fourth (0.2 to 0.4 s).
            assert time.monotonic() - started < 0.1 + SLACK

    run(main())


def test_an_answer_resets_the_backoff() -> None:
    async def main() -> None:
        async with link() as (transport, collector):
            for _ in range(3):
                collector.script.append(Answer(500, b""))
                transport.send(payload(1))
                await settle(transport)
                while not transport.ready():
                    await asyncio.sleep(0.005)
            transport.send(payload(2))
            assert (await transport.next_ack()).batch_id == 2
            collector.script.append(Answer(500, b""))
            transport.send(payload(3))
            await settle(transport)
            started = time.monotonic()
            while not transport.ready():
                await asyncio.sleep(0.005)
            assert time.monotonic() - started < 0.1 + SLACK

    run(main())


# -- lifecycle -----------------------------------------------------------------------------
def test_nothing_is_sent_before_start_or_after_close() -> None:
    async def main() -> None:
        transport = HttpTransport(HttpUplinkConfig(), "gw-1", max_in_flight=1)
        assert not transport.ready()
        assert not transport.send(payload())
        await transport.start()
        await transport.close()
        assert not transport.ready()
        assert not transport.send(payload())

    run(main())


def test_close_abandons_requests_on_their_way() -> None:
    async def main() -> None:
        async with link() as (transport, collector):
            collector.gate.clear()
            transport.send(payload(1))
            while not collector.requests:
                await asyncio.sleep(0.01)
            await asyncio.wait_for(transport.close(), 2)
            assert transport.in_flight == 0
            assert transport.stats.acks == 0

    run(main())


def test_gateway_ids_are_escaped_in_the_path() -> None:
    t = HttpTransport(HttpUplinkConfig(url="https://c.example/x/"), "gw:1/a", max_in_flight=1)
    assert t.endpoint == "https://c.example/x/v1/gateways/gw%3A1%2Fa/batches"


# -- config ----------------------------------------------------------------------------------
def test_config_from_yaml() -> None:
    doc = yamlconfig.parse("url: https://collector.example/cityedge\ntoken: s3cret\ntimeout: 20\n",
                           "agent.yaml")
    config = yamlconfig.bind(HttpUplinkConfig, doc.data, doc)
    assert config == HttpUplinkConfig("https://collector.example/cityedge", "s3cret", 20.0)
    assert HttpUplinkConfig().timeout == 15.0


@pytest.mark.parametrize(("text", "message"), [
    ("url: collector:8080\n", "agent.yaml:1: url: expected http:// or https://"),
    ("timeout: 0\n", "agent.yaml:1: timeout: expected >= 0.5"),
    ("tokn: x\n", "agent.yaml:1: tokn: unknown key"),
])
def test_config_errors_name_the_key(text: str, message: str) -> None:
    doc = yamlconfig.parse(text, "agent.yaml")
    with pytest.raises(yamlconfig.ConfigError) as info:
        yamlconfig.bind(HttpUplinkConfig, doc.data, doc)
    assert str(info.value).startswith(message), str(info.value)

