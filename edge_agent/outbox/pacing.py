"""Uplink pacing, sans-IO: how many batches may be in flight, and how long to wait for an ack.

TCP answers the same two questions, and so do we, the same way:

- the ack timeout follows the round trip the gateway observes, as TCP's
  retransmission timeout does (RFC 6298): ``RTO = SRTT + 4 * RTTVAR``, with
  SRTT and RTTVAR smoothed by 1/8 and 1/4, between ``MIN_RTO_S`` and the larger
  of ``MAX_RTO_S`` and the configured ``ack_timeout``. Only batches sent once
  give a sample (Karn's rule: the ack of a resent batch may answer either send).
  The configured ``ack_timeout`` is the timeout until the first sample;
- the window is additive-increase, multiplicative-decrease (RFC 5681): each ack
  adds 1/window (one batch per round trip) up to the configured ``max_in_flight``;
  a timeout halves it (down to one batch) and doubles the timeout, at most once
  per timeout period, however many batches of that round expire together.

So when a whole fleet drains into a collector at its limit, the queueing delay
the gateways see lengthens their timeouts instead of making them resend, and
their windows shrink until the round trip stops growing: the drain converges.

Time is passed in; nothing here reads a clock.
"""

from __future__ import annotations

# RFC 6298 (2.4): an RTO below 1 s is rounded up to 1 s.
MIN_RTO_S = 1.0
# RFC 6298 (2.5): a maximum of at least 60 s. A configured ack_timeout above it wins.
MAX_RTO_S = 60.0
# RFC 6298 (2.3): alpha 1/8, beta 1/4, K 4.
ALPHA = 0.125
BETA = 0.25
K = 4.0


class PacingError(ValueError):
    """Pacing was set up or fed with values no link can have (a local mistake)."""


class Pacing:
    """The window (``limit``) and the ack timeout (``rto``) for the next batch."""

    def __init__(self, *, max_window: int, initial_rto: float,
                 min_rto: float = MIN_RTO_S, max_rto: float = MAX_RTO_S) -> None:
        if max_window < 1 or initial_rto <= 0 or min_rto <= 0:
            raise PacingError("max_window, initial_rto and min_rto must be positive")
        self.max_window = max_window
        self.min_rto = min(min_rto, initial_rto)
        self.max_rto = max(max_rto, initial_rto)
        self.window = float(max_window)
        self.rto = initial_rto
        self.srtt: float | None = None
        self.rttvar = 0.0
        self._calm_until = float("-inf")  # no second decrease for this round's timeouts
        self.timeouts = 0
        self.decreases = 0

    @property
    def limit(self) -> int:
        """Batches that may be in flight now."""
        return max(1, int(self.window))

    def on_ack(self, rtt: float | None) -> None:
        """An ack for a batch in flight; ``rtt`` its round trip, None after a resend (Karn)."""
        if rtt is not None:
            if rtt < 0:
                raise PacingError(f"a round trip of {rtt} s")
            if self.srtt is None:
                self.srtt, self.rttvar = rtt, rtt / 2
            else:
                self.rttvar = (1 - BETA) * self.rttvar + BETA * abs(self.srtt - rtt)
                self.srtt = (1 - ALPHA) * self.srtt + ALPHA * rtt
        if self.srtt is not None:
            # A new sample (or any ack, after a backoff) brings the timeout back to the estimate.
            self.rto = min(self.max_rto, max(self.min_rto, self.srtt + K * self.rttvar))
        self.window = min(float(self.max_window), self.window + 1.0 / self.window)

    def on_timeout(self, now: float) -> None:
        """A batch went unacked for ``rto``: halve the window and back off, once per round."""
        self.timeouts += 1
        if now < self._calm_until:
            return
        self.decreases += 1
        self.window = max(1.0, self.window / 2)
        self.rto = min(self.max_rto, self.rto * 2)
        self._calm_until = now + self.rto
