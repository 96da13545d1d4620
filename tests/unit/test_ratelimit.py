"""The per-gateway rate limit and the log throttle: sans-IO, time passed in, state bounded."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cityedge.logthrottle import LogThrottle
from collector.ratelimit import BATCH_COST_BYTES, RateLimiter, batch_cost
from collector.sources.intake import Intake


def test_a_burst_passes_then_the_rate() -> None:
    limiter = RateLimiter(rate=2.0, burst=3, max_keys=10)
    assert [limiter.take("gw-1", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("gw-1", 0.0) == pytest.approx(0.5)  # one token every 0.5 s
    assert limiter.take("gw-1", 0.25) == pytest.approx(0.25)  # refused: nothing taken
    assert limiter.take("gw-1", 0.5) == 0.0
    assert limiter.take("gw-1", 0.5) == pytest.approx(0.5)


def test_the_bucket_refills_no_higher_than_the_burst() -> None:
    limiter = RateLimiter(rate=1.0, burst=2, max_keys=10)
    limiter.take("gw-1", 0.0)
    assert limiter.take("gw-1", 3600.0) == 0.0
    assert limiter.take("gw-1", 3600.0) == 0.0
    assert limiter.take("gw-1", 3600.0) == pytest.approx(1.0)


def test_gateways_have_buckets_of_their_own() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, max_keys=10)
    assert limiter.take("gw-1", 0.0) == 0.0
    assert limiter.take("gw-1", 0.0) > 0
    assert limiter.take("gw-2", 0.0) == 0.0


def test_a_clock_step_back_adds_no_tokens() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, max_keys=10)
    limiter.take("gw-1", 100.0)
    assert limiter.take("gw-1", 50.0) == pytest.approx(1.0)
    assert limiter.take("gw-1", 51.0) == 0.0


def test_100k_gateway_ids_keep_the_state_at_its_cap() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, max_keys=1000)
    for i in range(100_000):
        assert limiter.take(f"gw-{i}", i * 1e-4) == 0.0  # a new id has a full bucket
    assert len(limiter) == 1000
    assert limiter.forgotten == 99_000


def test_the_least_recently_seen_is_forgotten_first() -> None:
    limiter = RateLimiter(rate=0.001, burst=1, max_keys=2)
    limiter.take("busy", 0.0)
    limiter.take("idle", 0.0)
    assert limiter.take("busy", 1.0) > 0  # seen again: now the most recent
    limiter.take("new", 2.0)  # forgets "idle", not "busy"
    assert limiter.take("busy", 3.0) > 0  # still limited
    assert limiter.take("idle", 4.0) == 0.0  # forgotten: back with a full bucket


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.floats(0, 1000)), max_size=200))
def test_never_more_than_burst_plus_rate_times_time(events: list[tuple[str, float]]) -> None:
    limiter = RateLimiter(rate=2.0, burst=5, max_keys=10)
    events = sorted(events, key=lambda e: e[1])
    taken: dict[str, int] = {}
    for key, t in events:
        if limiter.take(key, t) == 0.0:
            taken[key] = taken.get(key, 0) + 1
    span = events[-1][1] - events[0][1] if events else 0.0
    for n in taken.values():
        assert n <= 5 + 2.0 * span + 1e-6


@pytest.mark.parametrize(("rate", "burst", "keys"), [(0, 1, 1), (1, 0.5, 1), (1, 1, 0)])
def test_nonsense_settings_are_refused(rate: float, burst: float, keys: int) -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate, burst, keys)


# -- log throttle ----------------------------------------------------------------------------
def test_one_line_per_reason_per_interval_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    throttle = LogThrottle(logging.getLogger("t"), interval=10.0)
    with caplog.at_level(logging.WARNING, "t"):
        for i in range(1000):
            throttle.note("rate_limited", f"refused {i}", i * 0.001)
        throttle.note("bad_json", "refused bad json", 0.5)
        assert [r.getMessage() for r in caplog.records] == ["refused 0", "refused bad json"]
        throttle.note("rate_limited", "refused late", 10.0)
    assert caplog.records[-1].getMessage() == "refused late (and 999 more like it since the" \
                                              " last line)"


def test_flush_sums_up_what_was_held_back(caplog: pytest.LogCaptureFixture) -> None:
    throttle = LogThrottle(logging.getLogger("t"), interval=5.0)
    with caplog.at_level(logging.WARNING, "t"):
        for reason in ("a", "a", "a", "b", "b"):
            throttle.note(reason, reason, 0.0)
        throttle.flush(1.0)  # not due yet
        assert throttle.held == 3
        throttle.flush(6.0)
    assert caplog.records[-1].getMessage() == "held back since the last line: a=2, b=1"
    assert throttle.held == 0


def test_the_throttles_own_state_is_bounded() -> None:
    throttle = LogThrottle(logging.getLogger("t"), interval=10.0, max_keys=8)
    for i in range(10_000):
        throttle.note(f"reason-{i}", "x", 0.0)
    assert throttle.tracked == 8 + 1  # eight reasons, then "other"


def test_a_batch_costs_a_token_per_started_256_kib() -> None:
    assert [batch_cost(n) for n in (0, 1, BATCH_COST_BYTES, BATCH_COST_BYTES + 1)] == [1, 1, 1, 2]
    assert batch_cost(4 * 1024 * 1024) == 16


def test_intake_charges_by_payload_bytes_never_more_than_a_bucket() -> None:
    intake = Intake(logging.getLogger("test"), admission=None, keyring=None,
                    limiter=RateLimiter(rate=1.0, burst=20, max_keys=10), log_interval=10.0)
    big = 4 * 1024 * 1024
    assert intake.over_limit("gw-1", 0.0, big) == 0.0  # 16 of 20 tokens
    assert intake.over_limit("gw-1", 0.0, big) == pytest.approx(12.0)  # 4 left, 16 needed
    assert [intake.over_limit("gw-1", 0.0, 100) for _ in range(4)] == [0.0] * 4
    assert intake.over_limit("gw-1", 0.0, 100) == pytest.approx(1.0)
    # A bucket smaller than a batch's cost still lets it in once full.
    small = Intake(logging.getLogger("test"), admission=None, keyring=None,
                   limiter=RateLimiter(rate=1.0, burst=2, max_keys=10), log_interval=10.0)
    assert small.over_limit("gw-1", 0.0, big) == 0.0
    # Bytes charged before a body was read are not charged again after it.
    assert small.over_limit("gw-2", 0.0, BATCH_COST_BYTES + 1, paid=BATCH_COST_BYTES) == 0.0
    assert small.over_limit("gw-2", 0.0, 10) == 0.0
    assert small.over_limit("gw-2", 0.0, 10) > 0.0
