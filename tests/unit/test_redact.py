"""URLs are redacted before they are logged or stored: the rule, and the places that use it."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys

import pytest

from cityedge.redact import RedactingFormatter, redact_text, redact_url
from collector.alerts.config import RouteConfig
from collector.alerts.delivery import Delivery
from collector.alerts.events import AlertEvent
from collector.notifiers import NotifierContext
from collector.notifiers.webhook import WebhookConfig, WebhookNotifier


@pytest.mark.parametrize(("url", "shown"), [
    ("https://hooks.example/services/T0/B0/XXXX", "https://hooks.example/services/***"),
    ("https://hooks.example/services/T0/B0/XXXX/", "https://hooks.example/services/***"),
    ("https://hooks.example/", "https://hooks.example/"),
    ("https://hooks.example", "https://hooks.example"),
    ("http://127.0.0.1:8086/write", "http://127.0.0.1:8086/write"),
    ("http://127.0.0.1:8086/write?db=x&u=admin&p=s3cret", "http://127.0.0.1:8086/write?***"),
    ("https://user:pw@example.com:8443/a/b?c=d#frag", "https://example.com:8443/a/***?***#***"),
    ("https://example.com/hook?token=abc", "https://example.com/hook?***"),
    ("mqtts://gw:secret@broker:8883", "mqtts://broker:8883"),
    ("https://discord.com/api/webhooks/123/tok-en", "https://discord.com/api/***"),
    ("http://[::1]:8080/v1/gateways/gw-1/batches", "http://[::1]:8080/v1/***"),
])
def test_the_rule(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact_text(f"POST {url}: refused") == f"POST {shown}: refused"


def test_urls_inside_error_texts() -> None:
    text = ("ClientResponseError(RequestInfo(url=URL('https://h.example/services/T/B/XXX?x=1'),"
            " method='POST'), status=404, message='Not Found, url=https://h.example/a/b/c')")
    out = redact_text(text)
    assert "XXX" not in out and "x=1" not in out and "/b/c" not in out
    assert "URL('https://h.example/services/***?***')" in out
    assert "url=https://h.example/a/***'" in out
    assert redact_text("no url here: 127.0.0.1:8086") == "no url here: 127.0.0.1:8086"


def test_the_log_formatter_redacts_tracebacks_too() -> None:
    try:
        raise RuntimeError("POST https://h.example/services/T0/B0/XXXX failed")
    except RuntimeError:
        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "sending to %s",
                                   ("https://u:p@h.example/x/y?z=1",), exc_info=True)
        record.exc_info = sys.exc_info()
    line = RedactingFormatter("%(message)s").format(record)
    assert "XXXX" not in line and "u:p" not in line and "z=1" not in line
    assert "https://h.example/services/***" in line and "RuntimeError" in line


EVENT = AlertEvent(alert_id="a1b2c3d4e5f60718", seq=2, rule="pm10_advisory", state="firing",
                   previous="pending", severity="advisory", time_ns=1709514000000000000,
                   started_ns=1709506800000000000, value=163.0, message="PM10 advisory",
                   scope={"district": "강남구"}, notify=True, members=2, display=None)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_failing_webhook_leaves_its_token_out_of_logs_and_dead_letters(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/services/T0/B0/SECRETTOKEN?sig=QUERYSECRET"
    given_up: list[tuple[str, str]] = []

    async def scenario() -> Delivery:
        notifier = WebhookNotifier(WebhookConfig(url=url, timeout=2.0))
        await notifier.start(NotifierContext())
        delivery = Delivery("ops", notifier, RouteConfig(), queue_size=4, max_attempts=2,
                            retry_min=0.01, retry_max=0.02,
                            on_give_up=lambda n, e, reason, detail: given_up.append((reason,
                                                                                     detail)))
        try:
            await delivery._deliver(EVENT)  # one event, all attempts, give up
        finally:
            await notifier.close()
        return delivery

    with caplog.at_level(logging.DEBUG):
        delivery = asyncio.run(scenario())
    [(reason, detail)] = given_up
    assert reason == "notify_gave_up"
    everything = detail + delivery.stats.last_error + caplog.text
    assert "SECRETTOKEN" not in everything and "QUERYSECRET" not in everything
    assert url.split("/services/", maxsplit=1)[0] + "/services/***?***" in detail
    config = WebhookConfig(url=url, secret="signing-secret")
    assert "SECRETTOKEN" not in repr(config) and "signing-secret" not in repr(config)


def test_a_bad_webhook_url_in_the_config_is_not_echoed() -> None:
    with pytest.raises(ValueError, match=r"ftp://h\.example/services/\*\*\*") as bad:
        WebhookConfig(url="ftp://h.example/services/T0/B0/XXXX")
    assert "XXXX" not in str(bad.value)
