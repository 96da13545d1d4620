"""One HTTP answer table and one Retry-After parser (cityedge/http_outcome.py), and how each
delivery client (uplink, InfluxDB writer, webhook) maps the same answer to its own action."""

from __future__ import annotations

import pytest

from cityedge.delivery_errors import DeliveryRejected, Retryable, Throttled, TooLarge
from cityedge.http_outcome import Kind, classify, parse_retry_after
from collector.notifiers.webhook import classify as webhook_classify
from collector.writers.errors import classify as writer_classify
from edge_agent.transports.http import Refused, Unavailable
from edge_agent.transports.http import classify as uplink_classify

DATE = "Wed, 25 Nov 2026 13:00:00 GMT"


@pytest.mark.parametrize(("value", "date", "seconds"), [
    (None, None, None),
    ("", None, None),
    ("5", None, 5.0),
    (" 5 ", None, 5.0),
    ("0", None, 0.0),
    ("1.5", None, 1.5),
    ("-3", None, 0.0),
    ("1e9", None, 300.0),
    ("inf", None, 300.0),
    ("nan", None, None),
    ("soon", None, None),
    ("Wed, 25 Nov 2026 13:00:30 GMT", DATE, 30.0),
    ("Wed, 25 Nov 2026 12:59:00 GMT", DATE, 0.0),  # already past
    # Only the collector's own Date tells how far away a date is: the gateway's clock may be wrong.
    ("Wed, 25 Nov 2026 13:00:30 GMT", None, None),
    ("Wed, 25 Nov 2026 13:00:30 GMT", "garbage", None),
])
def test_parse_retry_after(value: str | None, date: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, date) == seconds


def test_the_cap_is_the_callers() -> None:
    assert parse_retry_after("99999", cap=600.0) == 600.0
    assert classify(429, {"Retry-After": "99999"}, max_retry_after=600.0).retry_after == 600.0


@pytest.mark.parametrize(("status", "kind"), [
    (200, Kind.OK), (204, Kind.OK),
    (408, Kind.THROTTLED), (425, Kind.THROTTLED), (429, Kind.THROTTLED), (503, Kind.THROTTLED),
    (500, Kind.TRANSIENT), (502, Kind.TRANSIENT), (504, Kind.TRANSIENT),
    (413, Kind.TOO_LARGE),
    (400, Kind.REJECTED), (422, Kind.REJECTED),
    (401, Kind.AUTH), (403, Kind.AUTH), (407, Kind.AUTH),
    (301, Kind.REFUSED), (404, Kind.REFUSED), (405, Kind.REFUSED), (100, Kind.REFUSED),
])
def test_kinds(status: int, kind: Kind) -> None:
    outcome = classify(status, {"Retry-After": "3"}, b"  body \n")
    assert outcome.kind is kind
    assert outcome.status == status
    assert outcome.retry_after == 3.0  # parsed whatever the status; the caller decides
    assert outcome.detail == "body"


def test_detail_is_bounded() -> None:
    assert len(classify(500, {}, "x" * 10_000).detail) == 500
    assert classify(500, {}, b"\xff\xfe").detail == "\ufffd\ufffd"


# One answer, three callers: each maps the kind to its own action.
@pytest.mark.parametrize(("status", "uplink", "writer", "webhook"), [
    (408, Unavailable, Throttled, Throttled),
    (425, Unavailable, Throttled, Throttled),
    (429, Unavailable, Throttled, Throttled),
    (503, Unavailable, Throttled, Throttled),
    (500, Unavailable, Retryable, Retryable),
    (413, Refused, TooLarge, DeliveryRejected),
    (400, Refused, DeliveryRejected, DeliveryRejected),
    (401, Refused, Retryable, DeliveryRejected),  # a person fixes the database's password
    (404, Refused, Retryable, DeliveryRejected),  # ... or creates the database
])
def test_each_caller_maps_the_kind(status: int, uplink: type, writer: type,
                                   webhook: type) -> None:
    assert type(uplink_classify(status, {}, b"")) is uplink
    assert type(writer_classify(status, "", {})) is writer
    assert type(webhook_classify(status, "", None)) is webhook


def test_default_waits_when_not_told() -> None:
    w = writer_classify(429, "", {})
    n = webhook_classify(429, "", None)
    assert isinstance(w, Throttled) and w.retry_after == 1.0
    assert isinstance(n, Throttled) and n.retry_after == 5.0
    dated = webhook_classify(503, "", "Wed, 25 Nov 2026 13:00:30 GMT", DATE)
    assert isinstance(dated, Throttled) and dated.retry_after == 30.0
