"""Per-gateway rate limit, sans-IO: one token bucket per gateway, the time passed in.

Each gateway may send ``rate`` batches a second on average and ``burst`` at
once (a gateway back from an outage drains its backlog in a burst). A batch
costs one token per started ``BATCH_COST_BYTES`` of payload, counted before
anything is parsed: an agent's batch (500 readings, about 225 KiB of PMS5003
readings) costs one, a 4 MiB batch sixteen, so what a gateway may ask of the
parser and the database is bounded in bytes, not only in batches. Over the
limit, ``take`` says how long until the next batch would be let in: the MQTT
source refuses the batch (acked to the broker, never to the gateway, whose own
resend brings it back), the HTTP source answers 429 with Retry-After.

The state is bounded: at most ``max_keys`` buckets, the least recently seen
forgotten first. A forgotten gateway comes back with a full bucket, which is
exactly the state of a gateway idle long enough to refill, so forgetting never
refuses anyone wrongly; at worst a flood of invented ids resets its own buckets,
which the gateway registry (unknown ids refused) closes.
"""

from __future__ import annotations

from collections import OrderedDict

# Defaults (collector config ``limits``): a gateway sends about one batch a second,
# and after an outage drains its backlog as fast as acks come back; 50/s with a
# burst of 200 is far above both and still stops one gateway flooding the rest.
# 10,000 tracked gateways is three times the city's fleet (DESIGN, "Scale").
DEFAULT_RATE = 50.0
DEFAULT_BURST = 200
DEFAULT_MAX_KEYS = 10_000
DEFAULT_LIMITER = (DEFAULT_RATE, DEFAULT_BURST, DEFAULT_MAX_KEYS)
# The payload one token buys. Readings cannot be counted before the JSON is parsed
# (a key may be written escaped), bytes can. 256 KiB holds an agent's default batch
# of 500 readings of the widest profile (PMS5003, about 450 bytes each), so honest
# batches still cost one, and a backlog drain (about 5.6 MB/s measured) stays under
# the default 50 tokens/s (12.8 MiB/s).
BATCH_COST_BYTES = 256 * 1024


def batch_cost(size: int) -> int:
    """Tokens a batch of ``size`` bytes costs: one per started ``BATCH_COST_BYTES``."""
    return max(1, -(-size // BATCH_COST_BYTES))


class _Bucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, tokens: float, updated: float) -> None:
        self.tokens = tokens
        self.updated = updated


class RateLimiter:
    def __init__(self, rate: float, burst: float, max_keys: int) -> None:
        if rate <= 0 or burst < 1 or max_keys < 1:
            raise ValueError(f"rate {rate} > 0, burst {burst} >= 1, max_keys {max_keys} >= 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self.forgotten = 0  # buckets dropped to keep the state bounded
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str, now: float, cost: float = 1.0) -> float:
        """Take ``cost`` tokens from ``key``'s bucket at time ``now`` (seconds, monotonic):
        0.0 when they were there, else the seconds until they will be (nothing taken)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._buckets.popitem(last=False)
                self.forgotten += 1
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        else:
            self._buckets.move_to_end(key)
            elapsed = max(0.0, now - bucket.updated)  # a clock step back adds nothing
            bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
            bucket.updated = now
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return 0.0
        return (cost - bucket.tokens) / self.rate
