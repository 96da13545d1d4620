"""HTTP uplink: each batch is one POST; the response to it is the collector's end-to-end ack.

Same semantics as MQTT: the transport hands batches over and acks back, and
the outbox window decides what to send, resend and delete. What the collector
answers is classified once, sans-IO (``classify``), on the table the writers
and the webhook use too (cityedge/http_outcome.py):

- 200 (2xx): written; the body is the ack, queued for ``next_ack()``. With the
  gateway's seal ``key`` (cityedge/uplink/seal.py) an ack without a valid
  seal is not used: it counts as ``bad_ack`` (by reason in
  ``bad_ack_reasons``) and the batch is resent after its ack timeout.
- any other answer (400 bad batch, 401/403 token, 413 too large ...): refused.
  Logged with the collector's reason and counted in ``refused``; the link
  stays up and the window resends the batch after its ack timeout (a fixed
  pace, never a hot loop).
- 408, 425, 429, 5xx, timeouts and connection errors: the collector or the path
  to it is down. ``ready()`` turns False for a backoff period (doubling,
  jittered, at least the response's ``Retry-After``) so the agent stops
  sending until then.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp

from cityedge import http_outcome
from cityedge.backoff import Backoff, Cooldown, Uniform
from cityedge.counters import by_reason
from cityedge.http_outcome import Kind
from cityedge.redact import redact_text
from cityedge.tls import client_context
from cityedge.uplink import Ack, PayloadError, decode_ack
from edge_agent.config import HttpUplinkConfig
from edge_agent.transports.base import note_bad_ack

log = logging.getLogger(__name__)

# Backoff while the collector is unreachable: the first retry within a
# second, doubling up to the MQTT reconnect ceiling (cityedge.mqtt).
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0


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


def classify(status: int, headers: Mapping[str, str], body: bytes,
             key: bytes | None = None) -> Outcome:
    """What an answer means (cityedge/http_outcome.py's kinds); a 2xx's ack must be sealed
    with ``key`` when one is given."""
    answer = http_outcome.classify(status, headers)  # the body is read below, as JSON
    if answer.kind is Kind.OK:
        try:
            return Delivered(decode_ack(body, key))
        except PayloadError as exc:
            return Refused(status, "bad_ack", f"{exc.reason}: {exc.detail}")
    reason, detail = _reason(body)
    if answer.kind in (Kind.THROTTLED, Kind.TRANSIENT):
        return Unavailable(f"HTTP {status}: {detail}" if detail else f"HTTP {status}",
                           answer.retry_after)
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
    acks: int = 0
    failures: int = 0  # Unavailable outcomes
    full: int = 0  # send() returned False: max_in_flight requests already running
    last_error: str = ""


class HttpTransport:
    """At most ``max_in_flight`` POSTs at once; each 200 response becomes an ack."""

    def __init__(self, config: HttpUplinkConfig, gateway: str, *, max_in_flight: int,
                 key: bytes | None = None,
                 backoff: tuple[float, float] = (BACKOFF_MIN_S, BACKOFF_MAX_S),
                 clock: Callable[[], float] = time.monotonic,
                 uniform: Uniform = random.uniform) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be positive")
        self.config = config
        self.gateway = gateway
        self.key = key
        self.max_in_flight = max_in_flight
        self.endpoint = f"{config.url.rstrip('/')}/v1/gateways/{quote(gateway, safe='')}/batches"
        self.stats = HttpUplinkStats()
        self.refused: Counter[str] = Counter()
        self.bad_ack_reasons: Counter[str] = Counter()
        self._acks: asyncio.Queue[Ack] = asyncio.Queue(max_in_flight)
        self._requests: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        # Down until a time on ``clock``: jittered in [b/2, b], b doubling per outage.
        self._cooldown = Cooldown(Backoff(*backoff, jitter="half"))
        self._clock = clock
        self._uniform = uniform
        # No downlink over HTTP: displays need the MQTT uplink.
        self.downlink: Callable[[bytes], Awaitable[bytes | None]] | None = None

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

    @property
    def bad_acks(self) -> int:
        return sum(self.bad_ack_reasons.values())

    def health_fields(self) -> dict[str, int]:
        """Batches the collector refused (by its reason) and requests that found it
        unreachable; no downlink, so no display message is ever dropped here."""
        return {"displays_dropped": 0, "display_acks_dropped": 0,
                "collector_refused": sum(self.refused.values()),
                **by_reason("collector_refused", self.refused),
                "uplink_failures": self.stats.failures}

    def ready(self) -> bool:
        return (self._session is not None and not self._closed
                and self._cooldown.ready(self._clock()))

    def problem(self) -> str:
        return self.stats.last_error

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
        self._cooldown.succeeded()  # the collector answered: the link is fine
        if isinstance(outcome, Refused):
            self.stats.last_error = f"HTTP {outcome.status} {outcome.reason}: {outcome.detail}"
            if outcome.reason == "bad_ack":
                reason = outcome.detail.partition(":")[0]  # classify: "<reason>: <detail>"
                note_bad_ack(self.bad_ack_reasons, reason, outcome.detail)
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
        now = self._clock()
        if self._cooldown.failed(now, self._uniform, outcome.retry_after):
            log.warning("collector unavailable: %s; sending again in %.1f s",
                        outcome.why, self._cooldown.until - now)

    async def close(self) -> None:
        """Abandon requests still on their way (their batches stay in the outbox)."""
        self._closed = True
        for task in list(self._requests):
            task.cancel()
        await asyncio.gather(*self._requests, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
