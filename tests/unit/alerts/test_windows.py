"""Bounded statistics: window edges, late values, coverage, dedupe of resends."""

from __future__ import annotations

import random

from collector.alerts.windows import MAX_RANGES, Dedupe, Hits, MeanWindow, SeqSet

STEP = 10  # small integers stand in for nanoseconds here


def test_window_holds_buckets_whose_start_is_within_w_of_now() -> None:
    w = MeanWindow(STEP, 3)  # W = 30: at t=35 it holds buckets 10, 20, 30
    w.add(9, 100.0)  # bucket 0
    w.add(10, 1.0)  # bucket 10
    w.add(35, 3.0)  # bucket 30: bucket 0 starts at 0 <= 35 - 30, so it leaves
    assert w.mean(0.0) == 2.0
    w.add(40, 5.0)  # bucket 40: bucket 10 starts at 10 <= 40 - 30, leaves
    assert w.mean(0.0) == 4.0


def test_late_value_lands_in_its_bucket_or_is_ignored_when_outside() -> None:
    w = MeanWindow(STEP, 3)
    w.add(35, 3.0)
    assert w.add(12, 1.0) is True  # bucket 10: still inside
    assert w.add(25, 2.0) is True  # bucket 20: a gap between two buckets, inserted in order
    assert w.ks == [1, 2, 3]
    assert w.mean(0.0) == 2.0
    assert w.add(5, 100.0) is False  # bucket 0: outside the window at 35
    assert w.mean(0.0) == 2.0


def test_coverage_is_the_share_of_buckets_with_data() -> None:
    w = MeanWindow(STEP, 4)
    w.add(0, 1.0)
    w.add(10, 1.0)
    assert w.mean(0.75) is None  # 2 of 4 buckets
    w.add(20, 1.0)
    assert w.mean(0.75) == 1.0  # 3 of 4: exactly the limit counts


def test_window_mean_matches_a_brute_force_mean() -> None:
    rnd = random.Random(5)
    w = MeanWindow(STEP, 6)
    seen: list[tuple[int, float]] = []
    t = 0
    for _ in range(2000):
        t += rnd.randint(0, 7)
        late = rnd.random() < 0.2
        when = max(0, t - rnd.randint(0, 70)) if late else t
        v = rnd.uniform(0, 100)
        w.add(when, v)
        seen.append((when, v))
        k = max(x for x, _ in seen) // STEP
        inside = [v for x, v in seen if x // STEP > k - 6]
        assert abs(w.mean(0.0) - sum(inside) / len(inside)) < 1e-6  # type: ignore[operator]


def test_hits_count_exceedances_in_the_half_open_window() -> None:
    h = Hits(60)
    for t in (0, 10, 20):
        h.add(t)
    assert h.count(59) == 3
    assert h.count(60) == 2  # t=0 is exactly one window old: out
    h.add(15)  # late, inserted in order
    assert h.count(70) == 2  # 15 and 20


def test_seqset_counts_each_seq_once_in_any_order() -> None:
    s = SeqSet()
    order = list(range(1, 200))
    random.Random(3).shuffle(order)
    assert all(s.add(q) for q in order)
    assert not any(s.add(q) for q in range(1, 200))
    assert (s.los, s.his) == ([1], [199])


def test_seqset_live_stream_ahead_of_backlog_stays_small() -> None:
    s = SeqSet()
    for q in range(1000, 1100):  # live readings first
        s.add(q)
    for q in range(1, 1000):  # the backlog drains behind
        assert s.add(q)
    assert (s.los, s.his) == ([1], [1099])


def test_seqset_forgets_the_oldest_range_beyond_its_bound() -> None:
    s = SeqSet()
    for q in range(0, 2 * (MAX_RANGES + 5), 2):  # every other seq: one range each
        s.add(q)
    assert len(s.los) == MAX_RANGES
    assert s.add(0) is True  # forgotten: a resend this old would count twice
    assert s.add(2 * (MAX_RANGES + 4)) is False


def test_dedupe_is_per_gateway_and_epoch_and_bounded() -> None:
    d = Dedupe(max_sources=2)
    assert d.first_time("gw-1", "aa", 1)
    assert not d.first_time("gw-1", "aa", 1)
    assert d.first_time("gw-1", "bb", 1)  # a new SD card: a new epoch, same seq
    assert d.first_time("gw-2", "aa", 1)
    assert len(d.sources) == 2 and d.duplicates == 1
