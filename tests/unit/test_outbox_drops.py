"""The bounded outbox: what the drop policy removes, and the record it leaves."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from cityedge.uplink import Reading, SeqRanges
from edge_agent.outbox.store import DROPS_MEASUREMENT, DropPolicy, Outbox


def reading(i: int, sensor: str = "pm-1", measurement: str = "particulate") -> Reading:
    return Reading(sensor, measurement, {"pm2_5_ugm3": i}, 1_000 + i, "b", i)


def everything(o: Outbox) -> list:  # type: ignore[type-arg]
    return o.fetch_after(0, 10**12, 10**6)


def test_below_the_bound_nothing_is_dropped(tmp_path: Path) -> None:
    o = Outbox(tmp_path / "o.sqlite", max_bytes=10**6)
    o.append([reading(i) for i in range(100)])
    assert o.depth().readings == 100 and not o.dropped


def test_oldest_go_first_and_each_drop_is_recorded(tmp_path: Path) -> None:
    o = Outbox(tmp_path / "o.sqlite", max_bytes=8_000)
    for i in range(300):
        o.append([reading(i, sensor=f"pm-{i % 2}")])
        if i % 50 == 49:
            o.flush_gaps()  # as the agent does every health interval
    o.flush_gaps()
    rows = everything(o)
    kept = [r for r in rows if r.measurement != DROPS_MEASUREMENT]
    records = [r for r in rows if r.measurement == DROPS_MEASUREMENT]
    assert o.depth().bytes <= 8_000 + 2 * 400  # the bound, plus this flush's two records
    # Oldest first: every kept reading is newer than every dropped one.
    assert min(r.seq for r in kept) > max(r.fields["last_seq"] for r in records)
    # Every missing reading is counted, per sensor.
    assert sum(r.fields["dropped"] for r in records) == 300 - len(kept)
    assert dict(o.dropped) == {
        s: sum(r.fields["dropped"] for r in records if r.sensor == s) for s in ("pm-0", "pm-1")
    }
    for r in records:
        assert r.fields["first_time_ns"] <= r.fields["last_time_ns"] < r.time_ns
        assert r.fields["of_measurement"] == "particulate"


def test_gaps_are_kept_per_sensor_and_measurement(tmp_path: Path) -> None:
    """A sensor's own health readings dropped are not counted as its data dropped."""
    o = Outbox(tmp_path / "o.sqlite", max_bytes=8_000)
    for i in range(300):
        o.append([reading(i), reading(i, measurement="sensor_health")])
    o.flush_gaps()
    rows = everything(o)
    records = [r for r in rows if r.measurement == DROPS_MEASUREMENT]
    by_kind = {r.fields["of_measurement"]: r.fields["dropped"] for r in records}
    kept = {m: sum(1 for r in rows if r.measurement == m) for m in by_kind}
    assert set(by_kind) == {"particulate", "sensor_health"}
    for m, n in by_kind.items():
        assert n + kept[m] == 300
    assert len({r.time_ns for r in records}) == len(records)  # two points, not one


def test_in_flight_readings_are_spared(tmp_path: Path) -> None:
    o = Outbox(tmp_path / "o.sqlite", max_bytes=8_000)
    o.append([reading(i) for i in range(10)])
    assert [r.seq for r in o.fetch_after(0, 10**9, 5)] == [1, 2, 3, 4, 5]  # in flight
    for i in range(10, 300):
        o.append([reading(i)])
    seqs = _seqs(tmp_path / "o.sqlite")
    assert set(range(1, 6)) <= seqs
    assert 6 not in seqs


def test_priority_policy_drops_lowest_priority_first(tmp_path: Path) -> None:
    policy = DropPolicy("priority", {"gateway_health": -1, "particulate": 5})
    o = Outbox(tmp_path / "o.sqlite", max_bytes=20_000, drop_policy=policy)
    for i in range(150):
        o.append([reading(i), reading(i, sensor="agent", measurement="gateway_health")])
    kept = [r for r in everything(o) if r.measurement != DROPS_MEASUREMENT]
    assert len([r for r in kept if r.measurement == "particulate"]) == 150
    # Health (priority -1) went, oldest first, before any particulate reading was touched.
    assert o.dropped["agent"] > 0 and o.dropped["pm-1"] == 0
    health = [r.seq for r in kept if r.measurement == "gateway_health"]
    assert health == sorted(health) and len(health) == 150 - o.dropped["agent"]


def test_drop_counts_survive_a_reopen(tmp_path: Path) -> None:
    o = Outbox(tmp_path / "o.sqlite", max_bytes=8_000)
    for i in range(300):
        o.append([reading(i)])
    before = dict(o.dropped)
    assert before["pm-1"] > 0
    o.close()
    again = Outbox(tmp_path / "o.sqlite", max_bytes=8_000)
    assert dict(again.dropped) == before
    assert again.depth().bytes == o.bytes


def test_readings_handed_out_for_sending_are_never_dropped(tmp_path: Path) -> None:
    """A reading fetched for a batch may land even if its ack never comes: dropping it
    would count it lost while it is in InfluxDB."""
    o = Outbox(tmp_path / "o.sqlite", max_bytes=8_000)
    o.append([reading(i) for i in range(20)])
    sent = [r.seq for r in o.fetch_after(0, 10**9, 5)]
    for i in range(20, 300):
        o.append([reading(i)])
    left = {r.seq for r in everything(o)}
    assert set(sent) <= left
    assert 6 not in left
    o.delete(SeqRanges.of(sent))  # acked: gone, and no longer spared
    assert not set(sent) & {r.seq for r in everything(o)}


def _seqs(path: Path) -> set[int]:
    """What the file holds, read without handing anything out."""
    db = sqlite3.connect(path)
    try:
        return {row[0] for row in db.execute("SELECT seq FROM readings")}
    finally:
        db.close()


def test_what_an_earlier_run_handed_out_is_still_spared_after_a_restart(tmp_path: Path) -> None:
    """An agent restarted while its last batches wait at the broker for a collector:
    those readings may still land, so the next run must not drop them either."""
    path = tmp_path / "o.sqlite"
    o = Outbox(path, max_bytes=8_000)
    o.append([reading(i) for i in range(20)])
    sent = [r.seq for r in o.fetch_after(0, 10**9, 5)]
    o.close()  # the agent stops; the batch is not acked yet
    o = Outbox(path, max_bytes=8_000)
    for i in range(20, 300):
        o.append([reading(i)])
    left = _seqs(path)
    assert set(sent) <= left and 6 not in left
    o.delete(SeqRanges.of(sent[:2]))  # acked by the next run: no longer spared
    o.close()
    o = Outbox(path, max_bytes=8_000)
    for i in range(300, 600):
        o.append([reading(i)])
    left = _seqs(path)
    assert set(sent[2:]) <= left and not set(sent[:2]) & left


def test_protection_spans_two_runs_so_restarts_cannot_pile_it_up(tmp_path: Path) -> None:
    """A collector down through many agent restarts: each run hands out its window.
    Only the last run's hand-outs are spared by the next, so the drop policy keeps
    dropping oldest first instead of running out of droppable old readings."""
    path = tmp_path / "o.sqlite"
    per_run = []
    for run in range(6):
        o = Outbox(path, max_bytes=20_000)
        base = run * 200
        o.append([reading(base + i) for i in range(200)])
        per_run.append([r.seq for r in o.fetch_after(o.last_seq - 200, 10**9, 20)])
        o.close()
    o = Outbox(path, max_bytes=20_000)
    o.append([reading(2000 + i) for i in range(200)])
    o.close()
    left = _seqs(path)
    assert set(per_run[-1]) <= left  # the last run's batches may still land
    assert not set(per_run[0]) & left  # five restarts ago: old enough to drop
    assert max(left) == o.last_seq and len(left) > 100  # fresh readings kept
