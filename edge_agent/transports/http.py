"""HTTP uplink: each batch is one POST; the response to it is the collector's end-to-end ack.

Same semantics as MQTT: the transport hands batches over and acks back, and
the outbox window decides what to send, resend and delete. What the collector
answers is classified once, sans-IO (``classify``), like the writers' errors:

- 200: written; the body is the ack, queued for ``next_ack()``. With the
  gateway's seal ``key`` (cityedge/uplink/seal.py) an ack without a valid
  seal is not used: it counts as ``bad_ack`` (by reason in
  ``bad_ack_reasons``) and the batch is resent after its ack timeout.
- other 4xx (400 bad batch, 401/403 token, 413 too large ...): refused.
  Logged with the collector's reason and counted in ``refused``; the link
  stays up and the window resends the batch after its ack timeout (a fixed
  pace, never a hot loop).
- 408, 429, 5xx, timeouts and connection errors: the collector or the path
  to it is down. ``ready()`` turns False for a backoff period (doubling,
  jittered, at least the response's ``Retry-After``) so the agent stops
  sending until then.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import quote

import aiohttp

from cityedge.redact import redact_text
from cityedge.tls import client_context
from cityedge.uplink import Ack, PayloadError, decode_ack
from edge_agent.config import HttpUplinkConfig

log = logging.getLogger(__name__)

# Backoff while the collector is unreachable: the first retry within a
# second, doubling up to the MQTT reconnect ceiling (cityedge.mqtt).
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0
# A Retry-After beyond this is treated as this (the writers use the same cap).
RETRY_AFTER_MAX_S = 300.0


# -- what an answer means (sans-IO) ----------------------------------------------
@dataclass(frozen=True, slots=True)
class Delivered:
    ack: Ack


@dataclass(frozen=True, slots=True)
class Refused:
    """The collector answered and will not take this batch as it is."""

    status: int
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Unavailable:
    """The collector (or the way to it) is down or overloaded: back off."""

    why: str
    retry_after: float | None = None


Outcome = Delivered | Refused | Unavailable


def parse_retry_after(value: str | None, server_date: str | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date), capped; None if absent.

    An HTTP-date is measured against the response's own Date header: the
    gateway's clock may be wrong (no RTC), the collector's two headers are not.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
            now = parsedate_to_datetime(server_date) if server_date else None
        except (TypeError, ValueError, IndexError):
            return None
        if now is None or when.tzinfo is None or now.tzinfo is None:
            return None
        seconds = (when - now).total_seconds()
    if math.isnan(seconds):
        return None
    return max(0.0, min(seconds, RETRY_AFTER_MAX_S))


def classify(status: int, headers: Mapping[str, str], body: bytes,
             key: bytes | None = None) -> Outcome:
    """What an answer means; a 200's ack must be sealed with ``key`` when one is given."""
    if status == 200:
        try:
            return Delivered(decode_ack(body, key))
        except PayloadError as exc:
            return Refused(status, "bad_ack", f"{exc.reason}: {exc.detail}")
    if status in (408, 429) or status >= 500:
        detail = _reason(body)[1]
        return Unavailable(f"HTTP {status}: {detail}" if detail else f"HTTP {status}",
                           parse_retry_after(headers.get("Retry-After"), headers.get("Date")))
    reason, detail = _reason(body)
    return Refused(status, reason or f"http_{status}", detail)


def _reason(body: bytes) -> tuple[str, str]:
    """The collector's {"reason", "detail"}, or the start of whatever else came back."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("reason"), str):
        return doc["reason"], str(doc.get("detail", ""))[:500]
    return "", body[:200].decode("utf-8", "replace").strip()


# -- the transport ---------------------------------------------------------------
@dataclass
class HttpUplinkStats:
    requests: int = 0
    acks: int = 0
    failures: int = 0  # Unavailable outcomes
    full: int = 0  # send() returned False: max_in_flight requests already running
    last_error: str = ""


class HttpTransport:
    """At most ``max_in_flight`` POSTs at once; each 200 response becomes an ack."""

    def __init__(self, config: HttpUplinkConfig, gateway: str, *, max_in_flight: int,
                 key: bytes | None = None) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be positive")
        self.config = config
        self.gateway = gateway
        self.key = key
        self.max_in_flight = max_in_flight
        self.endpoint = f"{config.url.rstrip('/')}/v1/gateways/{quote(gateway, safe='')}/batches"
        self.stats = HttpUplinkStats()
        self.refused: Counter[str] = Counter()
        self.bad_acks = 0
        self.bad_ack_reasons: Counter[str] = Counter()
        self._acks: asyncio.Queue[Ack] = asyncio.Queue(max_in_flight)
        self._requests: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._not_before = 0.0  # time.monotonic() before which the link counts as down
        # No downlink over HTTP: displays need the MQTT uplink.
        self.downlink: Callable[[bytes], Awaitable[bytes | None]] | None = None
        self._backoff = 0.0

    async def start(self) -> None:
        headers = {"Content-Type": "application/json"}
        if self.config.token is not None:
            headers["Authorization"] = f"Bearer {self.config.token}"
        self._session = aiohttp.ClientSession(
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=self.config.timeout),
            connector=self._connector(),
        )

    def _connector(self) -> aiohttp.TCPConnector:
        """https is verified against tls.ca_file when set (else the system's CAs); never off."""
        tls = self.config.tls
        if tls is None:
            return aiohttp.TCPConnector(limit=self.max_in_flight)
        return aiohttp.TCPConnector(limit=self.max_in_flight, ssl=client_context(tls))

    def ready(self) -> bool:
        return (self._session is not None and not self._closed
                and time.monotonic() >= self._not_before)

    @property
    def in_flight(self) -> int:
        return len(self._requests)

    def send(self, payload: bytes) -> bool:
        if self._session is None or self._closed:
            return False
        if len(self._requests) >= self.max_in_flight:
            self.stats.full += 1
            return False
        task = asyncio.create_task(self._post(payload), name="http-uplink")
        self._requests.add(task)
        task.add_done_callback(self._requests.discard)
        return True

    async def next_ack(self) -> Ack:
        return await self._acks.get()

    async def _post(self, payload: bytes) -> None:
        assert self._session is not None
        self.stats.requests += 1
        try:
            async with self._session.post(self.endpoint, data=payload) as resp:
                body = await resp.read()
                outcome = classify(resp.status, resp.headers, body, self.key)
        except (aiohttp.ClientError, TimeoutError) as exc:
            outcome = Unavailable(redact_text(f"{type(exc).__name__}: {exc}".rstrip(": ")))
        except Exception as exc:
            # Not expected; logged with its traceback, and the link backs off as if down
            # rather than this request vanishing silently (its batch is resent anyway).
            log.exception("uplink request failed")
            outcome = Unavailable(redact_text(f"{type(exc).__name__}: {exc}"))
        if isinstance(outcome, Unavailable):
            self._link_down(outcome)
            return
        self._backoff = 0.0  # the collector answered: the link is fine
        if isinstance(outcome, Refused):
            self.stats.last_error = f"HTTP {outcome.status} {outcome.reason}: {outcome.detail}"
            if outcome.reason == "bad_ack":
                self.bad_acks += 1
                reason = outcome.detail.partition(":")[0]  # classify: "<reason>: <detail>"
                self.bad_ack_reasons[reason] += 1
                if self.bad_ack_reasons[reason] == 1:
                    log.warning("unusable ack (this kind is counted, not logged again): %s",
                                outcome.detail)
            else:
                self.refused[outcome.reason] += 1
                log.warning("collector refused a batch: %s (resent after the ack timeout)",
                            self.stats.last_error)
            return
        self.stats.acks += 1
        # Bounded: a slow ack reader holds this request's slot, so send() says no.
        await self._acks.put(outcome.ack)

    def _link_down(self, outcome: Unavailable) -> None:
        self.stats.failures += 1
        self.stats.last_error = outcome.why
        now = time.monotonic()
        was_up = now >= self._not_before
        if was_up:
            # Requests that were already on their way when the link went down
            # fail together; only the first one doubles the backoff.
            self._backoff = min(max(self._backoff * 2, BACKOFF_MIN_S), BACKOFF_MAX_S)
        delay = random.uniform(self._backoff / 2, self._backoff)
        if outcome.retry_after is not None:
            delay = max(delay, outcome.retry_after * random.uniform(1.0, 1.2))
        self._not_before = max(self._not_before, now + delay)
        if was_up:
            log.warning("collector unavailable: %s; sending again in %.1f s",
                        outcome.why, self._not_before - now)

    async def close(self) -> None:
        """Abandon requests still on their way (their batches stay in the outbox)."""
        self._closed = True
        for task in list(self._requests):
            task.cancel()
        await asyncio.gather(*self._requests, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
