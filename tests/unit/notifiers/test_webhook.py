"""Webhook: the signed JSON body, and each HTTP outcome classified, against a real local server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import Any

import pytest
from aiohttp import web

from collector.alerts import AlertEvent, DeliveryRejected, Retryable, Throttled
from collector.notifiers import NotifierContext
from collector.notifiers.webhook import WebhookConfig, WebhookNotifier, body, classify, sign, verify

EVENT = AlertEvent(alert_id="a1b2c3d4e5f60718", seq=2, rule="pm10_advisory", state="firing",
                   previous="pending", severity="advisory", time_ns=1709514000000000000,
                   started_ns=1709506800000000000, value=163.0,
                   message="PM10 advisory (firing) in 강남구: hourly mean 163 ug/m3",
                   scope={"district": "강남구"}, notify=True, members=2,
                   display="강남구 미세먼지 주의보 - 외출을 자제하세요")


def test_body_is_the_event_as_json_with_its_id() -> None:
    doc = json.loads(body(EVENT))
    assert doc["version"] == 1
    assert doc["event_id"] == "a1b2c3d4e5f60718:2"
    assert doc["time"] == "2024-03-04T01:00:00Z"
    assert doc["scope"] == {"district": "강남구"}
    assert doc["display"].startswith("강남구 미세먼지 주의보")
    assert (doc["rule"], doc["state"], doc["value"], doc["members"]) == (
        "pm10_advisory", "firing", 163.0, 2)


def test_signature_round_trip_and_refusals() -> None:
    payload = body(EVENT)
    header = sign("s3cret", payload, 1_700_000_000)
    assert header.startswith("t=1700000000,v1=")
    assert verify("s3cret", header, payload, 1_700_000_100)
    assert not verify("other", header, payload, 1_700_000_100)
    assert not verify("s3cret", header, payload + b" ", 1_700_000_100)
    assert not verify("s3cret", header, payload, 1_700_000_301)  # older than 5 min: replay
    assert not verify("s3cret", "garbage", payload, 1_700_000_000)


@pytest.mark.parametrize(("status", "retry_after", "kind", "wait"), [
    (200, None, None, None), (204, None, None, None),
    (400, None, DeliveryRejected, None), (401, None, DeliveryRejected, None),
    (404, None, DeliveryRejected, None), (422, None, DeliveryRejected, None),
    (408, None, Throttled, 5.0), (429, "2", Throttled, 2.0), (503, "7.5", Throttled, 7.5),
    (429, "Wed, 21 Oct 2015 07:28:00 GMT", Throttled, 5.0), (429, "99999", Throttled, 600.0),
    (500, None, Retryable, None), (502, None, Retryable, None),
])
def test_classification(status: int, retry_after: str | None, kind: type | None,
                        wait: float | None) -> None:
    error = classify(status, "body", retry_after)
    if kind is None:
        assert error is None
        return
    assert type(error) is kind
    if wait is not None:
        assert isinstance(error, Throttled) and error.retry_after == wait


TIMEOUT = 20.0


class Server:
    """A real aiohttp server on a free loopback port; its answer is set per test."""

    def __init__(self, status: int = 204, headers: dict[str, str] | None = None,
                 sleep: float = 0.0) -> None:
        self.status, self.headers, self.sleep = status, headers or {}, sleep
        self.seen: list[tuple[dict[str, str], bytes]] = []
        self.url = ""

    async def hook(self, request: web.Request) -> web.Response:
        self.seen.append((dict(request.headers), await request.read()))
        await asyncio.sleep(self.sleep)
        return web.Response(status=self.status, headers=self.headers, text="nope")

    async def __aenter__(self) -> Server:
        app = web.Application()
        app.router.add_post("/hook", self.hook)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, TIMEOUT))


async def _notifier(url: str, **kw: Any) -> WebhookNotifier:
    n = WebhookNotifier(WebhookConfig(url=url, **kw))
    n.validate()
    await n.start(NotifierContext())
    return n


def test_posts_signed_json() -> None:
    async def scenario() -> None:
        async with Server() as server:
            n = await _notifier(server.url, secret="s3cret",
                                headers={"Authorization": "Bearer t"})
            await n.send(EVENT)
            await n.close()
        [(headers, payload)] = server.seen
        assert payload == body(EVENT)
        assert headers["Content-Type"] == "application/json"
        assert headers["Idempotency-Key"] == headers["X-Cityedge-Event-Id"] == (
            "a1b2c3d4e5f60718:2")
        assert headers["Authorization"] == "Bearer t"
        t = int(headers["X-Cityedge-Signature"].split(",")[0][2:])
        assert verify("s3cret", headers["X-Cityedge-Signature"], payload, t)
        assert n.stats() == {"sent": 1, "failed": 0}

    run(scenario())


@pytest.mark.parametrize(("status", "headers", "kind"), [
    (429, {"Retry-After": "3"}, Throttled), (500, {}, Retryable), (400, {}, DeliveryRejected)])
def test_failures_are_classified(status: int, headers: dict[str, str], kind: type) -> None:
    async def scenario() -> None:
        async with Server(status, headers) as server:
            n = await _notifier(server.url)
            with pytest.raises(kind) as info:
                await n.send(EVENT)
            await n.close()
        if kind is Throttled:
            assert info.value.retry_after == 3.0  # type: ignore[attr-defined]

    run(scenario())


def test_timeout_and_refused_connection_are_retryable() -> None:
    async def scenario() -> None:
        async with Server(sleep=1.0) as server:
            n = await _notifier(server.url, timeout=0.2)
            with pytest.raises(Retryable, match="Timeout"):
                await n.send(EVENT)
            await n.close()
        dead = await _notifier("http://127.0.0.1:9/hook", timeout=2.0)  # nothing listens on 9
        with pytest.raises(Retryable):
            await dead.send(EVENT)
        await dead.close()

    run(scenario())


def test_headers_the_notifier_owns_are_refused() -> None:
    with pytest.raises(ValueError, match="headers: Content-Type"):
        WebhookNotifier(WebhookConfig(url="http://x", headers={"Content-Type": "x"})).validate()
    with pytest.raises(ValueError, match="url: expected http"):
        WebhookConfig(url="ftp://x")
