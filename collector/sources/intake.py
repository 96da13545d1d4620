"""What every source does with a batch, whichever way it came (MQTT or HTTP).

In order, cheapest first, so that a flood costs as little as possible:
who may send (the registry, collector/admission.py), how fast (ratelimit.py;
ids no gateway can have are not tracked, ingest refuses them before parsing),
then what the batch holds (``ingest``). Each refusal is counted by reason
and logged at most once per reason per ``log_interval`` (logthrottle.py).
After the write, the ack goes back sealed with the gateway's key when the
keyring has one, and carries the collector's clock (gateways without NTP
anchor on it).

The sources keep only what their protocol needs: MQTT PUBACKs every message,
HTTP maps a reason to a status code.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter

from cityedge.logthrottle import LogThrottle
from cityedge.uplink import Ack, encode_ack
from cityedge.uplink.payload import ID_RE
from cityedge.uplink.seal import KeyRing
from collector.admission import Admission, ingest_checked
from collector.ingest import Accepted, Refused
from collector.ratelimit import DEFAULT_LIMITER, RateLimiter, batch_cost


class Intake:
    """Checks, counts and seals for one source; sans-IO (times are passed in)."""

    def __init__(self, log: logging.Logger, *, admission: Admission | None,
                 keyring: KeyRing | None, limiter: RateLimiter | None,
                 log_interval: float) -> None:
        self.admission = admission  # None: no registry (insecure: true)
        self.keyring = keyring
        self.limiter = limiter if limiter is not None else RateLimiter(*DEFAULT_LIMITER)
        self.refused: Counter[str] = Counter()
        self.log = LogThrottle(log, log_interval)

    def refusal(self, gateway: str | None) -> Refused | None:
        """The registry's answer for ``gateway`` (None: it may send, or there is no registry)."""
        return self.admission.refusal(gateway) if self.admission is not None else None

    def over_limit(self, gateway: str | None, now: float, size: int = 0,
                   paid: int = 0) -> float:
        """Seconds until this gateway may send a batch of ``size`` bytes; 0.0 when it may
        now (then its cost is taken). ``paid``: bytes already charged for this batch."""
        if gateway is None or not ID_RE.fullmatch(gateway):
            return 0.0
        # Never more than a full bucket, or a large batch could never be let in.
        cost = min(batch_cost(size), self.limiter.burst) - (
            min(batch_cost(paid), self.limiter.burst) if paid else 0)
        return self.limiter.take(gateway, now, cost) if cost > 0 else 0.0

    def ingest(self, payload: bytes, gateway: str | None) -> Accepted | Refused:
        return ingest_checked(payload, gateway, self.admission)

    def count(self, reason: str, message: str, now: float,
              exc_info: BaseException | None = None) -> None:
        """A refusal: counted by reason, logged once per reason per interval."""
        self.refused[reason] += 1
        self.log.note(reason, message, now, exc_info=exc_info)

    def ack_bytes(self, ack: Ack, now_ns: int) -> bytes:
        """The ack, sealed with its gateway's key if the keyring has one, with our clock."""
        key = None if self.keyring is None else self.keyring.key_for(ack.gateway)
        return encode_ack(dataclasses.replace(ack, time_ns=now_ns), key)
