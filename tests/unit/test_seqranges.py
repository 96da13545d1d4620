"""SeqRanges: a set of seqs stored as sorted, disjoint, non-adjacent inclusive ranges."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cityedge.uplink import SeqRanges

seq_sets = st.sets(st.integers(min_value=-50, max_value=300), max_size=80)
pairs = st.lists(
    st.tuples(st.integers(-50, 300), st.integers(0, 40)).map(lambda p: (p[0], p[0] + p[1])),
    max_size=30,
)


def assert_canonical(r: SeqRanges) -> None:
    """Sorted, each lo <= hi, and a gap of at least one seq between neighbours."""
    for lo, hi in r.ranges:
        assert lo <= hi
    for (_, hi), (lo, _) in zip(r.ranges, r.ranges[1:], strict=False):
        assert lo > hi + 1


@pytest.mark.parametrize(
    ("seqs", "ranges"),
    [
        ([], ()),
        ([5], ((5, 5),)),
        ([1, 2, 3], ((1, 3),)),
        ([3, 1, 2, 2, 1], ((1, 3),)),
        ([1, 3], ((1, 1), (3, 3))),
        ([1, 2, 4, 5, 7], ((1, 2), (4, 5), (7, 7))),
        (range(1, 501), ((1, 500),)),
    ],
)
def test_of_table(seqs: list[int], ranges: tuple[tuple[int, int], ...]) -> None:
    assert SeqRanges.of(seqs).ranges == ranges


@pytest.mark.parametrize(
    ("pairs_in", "ranges"),
    [
        ([], ()),
        ([[1, 5]], ((1, 5),)),
        ([[6, 9], [1, 5]], ((1, 9),)),  # adjacent ranges merge
        ([[1, 5], [3, 8]], ((1, 8),)),  # overlapping ranges merge
        ([[1, 10], [2, 3]], ((1, 10),)),  # contained range disappears
        ([[1, 2], [4, 5]], ((1, 2), (4, 5))),  # a gap keeps them apart
        ([(7, 7), (7, 7)], ((7, 7),)),
    ],
)
def test_from_pairs_table(pairs_in: list[list[int]], ranges: tuple[tuple[int, int], ...]) -> None:
    assert SeqRanges.from_pairs(pairs_in).ranges == ranges


def test_from_pairs_rejects_lo_above_hi() -> None:
    with pytest.raises(ValueError, match=r"\[5, 4\]"):
        SeqRanges.from_pairs([[5, 4]])


@pytest.mark.parametrize("bad", [[[1]], [[1, 2, 3]], [1]])
def test_from_pairs_rejects_malformed_pairs(bad: list[object]) -> None:
    with pytest.raises((TypeError, ValueError)):
        SeqRanges.from_pairs(bad)  # type: ignore[arg-type]


def test_empty_is_falsy_and_has_no_members() -> None:
    empty = SeqRanges()
    assert not empty
    assert len(empty) == 0
    assert list(empty) == []
    assert 1 not in empty
    assert empty.as_pairs() == []


@pytest.mark.parametrize("thing", ["1", 1.0, None, (1,)])
def test_contains_only_ints(thing: object) -> None:
    assert thing not in SeqRanges.of([1])


def test_as_pairs_is_json_shaped() -> None:
    assert SeqRanges.of([1, 2, 3, 9]).as_pairs() == [[1, 3], [9, 9]]


@given(seq_sets)
def test_of_iter_round_trip(seqs: set[int]) -> None:
    r = SeqRanges.of(seqs)
    assert list(r) == sorted(seqs)
    assert_canonical(r)


@given(seq_sets)
def test_len_counts_members(seqs: set[int]) -> None:
    r = SeqRanges.of(seqs)
    assert len(r) == len(seqs)
    assert bool(r) == bool(seqs)


@given(seq_sets, st.integers(-60, 310))
def test_contains_matches_set(seqs: set[int], probe: int) -> None:
    assert (probe in SeqRanges.of(seqs)) == (probe in seqs)


@given(pairs)
def test_from_pairs_normalises(raw: list[tuple[int, int]]) -> None:
    expected = {s for lo, hi in raw for s in range(lo, hi + 1)}
    r = SeqRanges.from_pairs(raw)
    assert set(r) == expected
    assert_canonical(r)
    assert r == SeqRanges.of(expected)


@given(seq_sets)
def test_as_pairs_round_trip(seqs: set[int]) -> None:
    r = SeqRanges.of(seqs)
    assert SeqRanges.from_pairs(r.as_pairs()) == r


@given(pairs, st.randoms())
def test_from_pairs_ignores_order(raw: list[tuple[int, int]], rnd: object) -> None:
    shuffled = list(raw)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert SeqRanges.from_pairs(shuffled) == SeqRanges.from_pairs(raw)


# -- set algebra on the ranges, never on the seqs ------------------------------------------


@given(seq_sets, seq_sets)
def test_intersection_matches_set(a: set[int], b: set[int]) -> None:
    got = SeqRanges.of(a).intersection(SeqRanges.of(b))
    assert got == SeqRanges.of(a & b)
    assert_canonical(got)


@given(seq_sets, seq_sets)
def test_difference_matches_set(a: set[int], b: set[int]) -> None:
    got = SeqRanges.of(a).difference(SeqRanges.of(b))
    assert got == SeqRanges.of(a - b)
    assert_canonical(got)


@given(seq_sets, seq_sets)
def test_union_matches_set(a: set[int], b: set[int]) -> None:
    got = SeqRanges.of(a).union(SeqRanges.of(b))
    assert got == SeqRanges.of(a | b)
    assert_canonical(got)


@given(seq_sets, st.integers(0, 100))
def test_take_is_the_first_n(seqs: set[int], n: int) -> None:
    assert SeqRanges.of(seqs).take(n) == sorted(seqs)[:n]


HUGE = SeqRanges(((1, 2**62),))


@pytest.mark.parametrize(
    ("other", "inter", "diff"),
    [
        (SeqRanges(((5, 9),)), ((5, 9),), ()),
        (SeqRanges(((0, 3), (2**62, 2**62 + 5))), ((1, 3), (2**62, 2**62)),
         ((0, 0), (2**62 + 1, 2**62 + 5))),
        (SeqRanges(((2**62 + 1, 2**63),)), (), ((2**62 + 1, 2**63),)),
    ],
)
def test_a_range_of_4_6e18_seqs_costs_its_two_ends(
        other: SeqRanges, inter: tuple[tuple[int, int], ...],
        diff: tuple[tuple[int, int], ...]) -> None:
    """An ack may claim [[1, 2**62]]: every operation answers at once (a set would not fit)."""
    assert HUGE.intersection(other).ranges == inter
    assert other.intersection(HUGE).ranges == inter
    assert other.difference(HUGE).ranges == diff
    assert len(HUGE) == 2**62
    assert 2**61 in HUGE and 2**62 + 1 not in HUGE and 0 not in HUGE
    assert HUGE.take(3) == [1, 2, 3]
    left = HUGE.difference(SeqRanges(((10, 20),)))
    assert left.ranges == ((1, 9), (21, 2**62))
    assert HUGE.union(other).ranges[0][0] == min(1, other.ranges[0][0])
