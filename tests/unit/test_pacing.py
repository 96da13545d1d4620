"""The uplink's pacing core: RFC 6298's timeout and an AIMD window, fed times, no clock."""

from __future__ import annotations

import pytest

from cityedge.uplink import SeqRanges
from edge_agent.outbox import DeliveryWindow, SendNew
from edge_agent.outbox.pacing import MAX_RTO_S, MIN_RTO_S, Pacing, PacingError


def test_the_first_sample_sets_srtt_and_half_of_it_as_variance() -> None:
    p = Pacing(max_window=4, initial_rto=15.0)
    assert p.rto == 15.0  # until a round trip is known
    p.on_ack(2.0)
    assert (p.srtt, p.rttvar) == (2.0, 1.0)
    assert p.rto == 2.0 + 4 * 1.0


def test_later_samples_are_smoothed_as_rfc_6298_says() -> None:
    p = Pacing(max_window=4, initial_rto=15.0)
    p.on_ack(2.0)
    p.on_ack(4.0)
    assert p.rttvar == pytest.approx(0.75 * 1.0 + 0.25 * 2.0)
    assert p.srtt == pytest.approx(0.875 * 2.0 + 0.125 * 4.0)
    assert p.rto == pytest.approx(p.srtt + 4 * p.rttvar)


def test_the_timeout_stays_between_its_bounds() -> None:
    p = Pacing(max_window=4, initial_rto=15.0)
    for _ in range(50):
        p.on_ack(0.01)
    assert p.rto == MIN_RTO_S
    for _ in range(50):
        p.on_ack(500.0)
    assert p.rto == MAX_RTO_S
    # A configured timeout above the maximum raises the maximum to it.
    assert Pacing(max_window=1, initial_rto=90.0).max_rto == 90.0


def test_a_growing_round_trip_grows_the_timeout_before_a_batch_times_out() -> None:
    """A fleet draining into a busy collector: the queueing delay climbs a second per round
    trip, from 1 s to 30 s. The timeout stays above every round trip, so nothing is resent,
    where a fixed 15 s timeout would resend every batch past 15 s."""
    p = Pacing(max_window=4, initial_rto=15.0)
    for rtt in range(1, 31):
        assert p.rto > rtt
        p.on_ack(float(rtt))


def test_acks_open_the_window_by_one_batch_per_round_trip() -> None:
    p = Pacing(max_window=8, initial_rto=15.0)
    p.window = 2.0
    p.on_ack(1.0)
    p.on_ack(1.0)  # a round trip's worth of acks at a window of 2
    assert p.window == pytest.approx(2.0 + 1 / 2 + 1 / 2.5)
    assert p.limit == 2
    for _ in range(100):
        p.on_ack(1.0)
    assert p.limit == 8  # never past the configured max_in_flight


def test_a_timeout_halves_the_window_and_doubles_the_timeout_once_per_round() -> None:
    p = Pacing(max_window=8, initial_rto=4.0)
    p.on_timeout(100.0)
    assert (p.window, p.rto) == (4.0, 8.0)
    # The rest of that round's batches expire at the same moment: no further decrease.
    for _ in range(3):
        p.on_timeout(100.0)
    assert (p.window, p.rto, p.timeouts, p.decreases) == (4.0, 8.0, 4, 1)
    p.on_timeout(108.0)  # a timeout period later: the next round
    assert (p.window, p.rto) == (2.0, 16.0)
    for t in range(1, 20):
        p.on_timeout(1000.0 * t)
    assert (p.limit, p.rto) == (1, MAX_RTO_S)  # one batch at a time, never none


def test_an_ack_after_a_backoff_brings_the_timeout_back_to_the_estimate() -> None:
    p = Pacing(max_window=4, initial_rto=15.0)
    p.on_ack(1.0)
    p.on_timeout(0.0)
    assert p.rto == 6.0
    p.on_ack(None)  # the resent batch's ack: no sample (Karn), but the estimate holds
    assert p.rto == 3.0


@pytest.mark.parametrize("kwargs", [{"max_window": 0, "initial_rto": 1.0},
                                    {"max_window": 1, "initial_rto": 0.0},
                                    {"max_window": 1, "initial_rto": 1.0, "min_rto": -1.0}])
def test_settings_no_link_can_have_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(PacingError):
        Pacing(**kwargs)  # type: ignore[arg-type]


def test_a_negative_round_trip_is_refused() -> None:
    with pytest.raises(PacingError):
        Pacing(max_window=1, initial_rto=1.0).on_ack(-0.5)


def test_the_delivery_window_samples_first_sends_only_and_times_out_on_the_estimate() -> None:
    w = DeliveryWindow(max_in_flight=2, ack_timeout=15.0, batch_size=5)
    assert w.pacing is not None
    plan = w.plan(10)
    assert isinstance(plan, SendNew)
    w.sent(1, SeqRanges.of(range(1, 6)), 0.0, plan)
    w.acked(1, SeqRanges.of(range(1, 6)), 0.5)
    assert w.pacing.srtt == 0.5
    assert w.timeout == 0.5 + 4 * 0.25  # SRTT + 4 * RTTVAR, not the configured 15 s
    plan = w.plan(10)
    assert isinstance(plan, SendNew)
    w.sent(2, SeqRanges.of(range(6, 11)), 10.0, plan)
    assert w.next_deadline() == 10.0 + w.timeout
    assert w.expire(10.0 + w.timeout) == 1  # due again: the window halves
    assert w.limit == 1
    resend = w.plan(10)
    assert resend is not None
    w.sent(3, SeqRanges.of(range(6, 11)), 20.0, resend)
    srtt = w.pacing.srtt
    w.acked(3, SeqRanges.of(range(6, 11)), 60.0)  # the resend's ack: no sample
    assert w.pacing.srtt == srtt
