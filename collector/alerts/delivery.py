"""Delivering alert events to one notifier: a bounded queue, retries with backoff, counted drops.

The runner owns this so that every plugin gets the same guarantees: events
reach a notifier in order; Retryable failures back off exponentially with
full jitter (from retry_min to retry_max), Throttled ones wait as told;
DeliveryRejected events and events out of attempts are handed to ``on_give_up``
(the runner dead-letters them to InfluxDB with the reason); a full queue
drops its oldest event, counted, because the newest state matters most.
An event whose fencing token is no longer the lease's (``fence`` says no:
another collector leads now) is never sent, and counted as fenced. Every
other end of an event (sent, rejected, given up, dropped from a full queue)
is reported to ``on_done``: with ``lease: etcd`` it settles the event's
entry in the outbox (write_ahead.py).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from cityedge.backoff import Backoff, Uniform
from cityedge.redact import redact_text
from collector.alerts.config import RouteConfig
from collector.alerts.errors import DeliveryRejected, Retryable, Throttled
from collector.alerts.events import AlertEvent
from collector.notifiers import Notifier

log = logging.getLogger(__name__)

# How often an event waiting to be retried checks that it may still be sent.
FENCE_CHECK_S = 0.5


@dataclass
class DeliveryStats:
    delivered: int = 0
    retries: int = 0
    dropped_full: int = 0
    gave_up: int = 0
    rejected: int = 0
    fenced: int = 0  # not sent: made under a lease token that is no longer ours
    last_error: str = ""


class Delivery:
    def __init__(self, name: str, notifier: Notifier, route: RouteConfig, *, queue_size: int,
                 max_attempts: int, retry_min: float, retry_max: float,
                 on_give_up: Callable[[str, AlertEvent, str, str], None],
                 uniform: Uniform = random.uniform,
                 fence: Callable[[AlertEvent], bool] = lambda _: True,
                 on_done: Callable[[str, AlertEvent], None] = lambda _n, _e: None) -> None:
        self.name, self.notifier, self.route = name, notifier, route
        self.queue: deque[AlertEvent] = deque()  # waiting; the one being sent is not in it
        self.inflight: AlertEvent | None = None
        self.queue_size = queue_size
        self.max_attempts = max_attempts
        self.retry_min, self.retry_max = retry_min, retry_max
        self.on_give_up = on_give_up
        self.fence = fence  # may this event still be sent (its token is the lease's)?
        self.on_done = on_done  # this event's delivery is over (not called when fenced)
        self.uniform = uniform  # the backoff's random source
        self.stats = DeliveryStats()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def offer(self, event: AlertEvent) -> None:
        if len(self.queue) >= self.queue_size:
            dropped = self.queue.popleft()
            self.stats.dropped_full += 1
            log.warning("%s: queue full (%d), dropped %s %s", self.name, self.queue_size,
                        dropped.rule, dropped.event_id)
            self.on_done(self.name, dropped)
        self.queue.append(event)
        self._idle.clear()
        self._wake.set()

    async def run(self) -> None:
        while True:
            if not self.queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            self.inflight = self.queue.popleft()
            try:
                if await self._deliver(self.inflight):
                    self.on_done(self.name, self.inflight)
            finally:
                self.inflight = None

    async def _deliver(self, event: AlertEvent) -> bool:
        """Send with retries; False if fenced (another leader has it), True at any other end."""
        backoff = Backoff(self.retry_min, self.retry_max, "full")
        for attempt in range(1, self.max_attempts + 1):
            if not self.fence(event):
                self.stats.fenced += 1
                log.warning("%s: not sending %s: made under lease token %d, no longer ours",
                            self.name, event.event_id, event.fencing_token)
                return False
            try:
                await self.notifier.send(event)
            except DeliveryRejected as exc:
                self.stats.rejected += 1
                self.stats.last_error = redact_text(str(exc))
                log.error("%s rejected %s: %s", self.name, event.event_id,
                          self.stats.last_error)
                self.on_give_up(self.name, event, "notify_rejected", self.stats.last_error)
                return True
            except Throttled as exc:
                wait = exc.retry_after
                self.stats.last_error = redact_text(str(exc))
            except Retryable as exc:
                wait = backoff.next(self.uniform)
                self.stats.last_error = redact_text(str(exc))
            except Exception as exc:  # a plugin bug must not kill delivery
                log.exception("%s: unexpected error sending %s", self.name, event.event_id)
                wait = backoff.next(self.uniform)
                self.stats.last_error = redact_text(repr(exc))
            else:
                self.stats.delivered += 1
                return True
            if attempt < self.max_attempts:
                self.stats.retries += 1
                await self._wait(wait, event)
        self.stats.gave_up += 1
        reason = f"gave up after {self.max_attempts} attempts: {self.stats.last_error}"
        log.error("%s: %s for %s", self.name, reason, event.event_id)
        self.on_give_up(self.name, event, "notify_gave_up", reason)
        return True

    async def _wait(self, wait: float, event: AlertEvent) -> None:
        """Wait before the next attempt, but stop as soon as the fence says no: a deposed
        leader's event waiting out a long Retry-After must not hold up the queue of the
        term we may lead next."""
        loop = asyncio.get_running_loop()
        until = loop.time() + wait
        await asyncio.sleep(min(max(wait, 0.0), FENCE_CHECK_S))  # yields even when 0
        while (left := until - loop.time()) > 0 and self.fence(event):
            await asyncio.sleep(min(left, FENCE_CHECK_S))

    def health_fields(self) -> dict[str, int]:
        """This route's counters for the collector's health point (cityedge_collector):
        the delivery loop's, then the plugin's own (``Notifier.stats()``), each
        ``notify_<name>_<counter>``."""
        s = self.stats
        out = {f"notify_{self.name}_{key}": value for key, value in self.notifier.stats().items()}
        return out | {f"notify_{self.name}_delivered": s.delivered,
                      f"notify_{self.name}_retries": s.retries,
                      f"notify_{self.name}_dropped": s.dropped_full + s.gave_up + s.rejected,
                      f"notify_{self.name}_queued": len(self.queue),
                      f"notify_{self.name}_fenced": s.fenced}

    async def drain(self, timeout: float) -> bool:
        """Wait until the queue is empty; False if it was not within timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True
