"""The retention plan, sans-IO: what a database's answers lead to."""

from __future__ import annotations

import pytest

from collector.schema.catalogue import SensorField, SensorMeasurement
from collector.schema.retention import (
    Existing,
    Policy,
    RetentionError,
    RetentionLayout,
    continuous_queries,
    duration_s,
    plan,
)

NOISE = SensorMeasurement("noise", (SensorField("lmax_dba", "float", "dB(A)", ("m",)),
                                    SensorField("flag", "boolean", "1", ("m",))))


def test_durations_read_both_ways() -> None:
    assert duration_s("30d") == duration_s("720h0m0s") == 30 * 86400
    assert duration_s("INF") == duration_s("0s") == 0
    assert duration_s("52w") == duration_s("8736h0m0s")
    with pytest.raises(RetentionError):
        duration_s("30 days")


def test_a_layout_rejects_what_influxql_would_not_take() -> None:
    with pytest.raises(ValueError, match="raw: expected INF"):
        RetentionLayout(raw="30 days")
    with pytest.raises(ValueError, match="resample_every"):
        RetentionLayout(resample_every="soon")


def test_an_empty_server_gets_everything_and_a_set_up_one_nothing() -> None:
    layout = RetentionLayout()
    steps = plan("db", layout, [NOISE], Existing(False))
    assert steps[0].statement == "CREATE DATABASE db"
    assert steps[1].statement == ("CREATE RETENTION POLICY raw ON db DURATION 30d"
                                  " REPLICATION 1 DEFAULT")
    cqs = continuous_queries("db", layout, [NOISE])
    # booleans are not averaged; the extremes table adds lmax_dba_max
    assert cqs["cq_noise_1m"] == (
        "CREATE CONTINUOUS QUERY cq_noise_1m ON db BEGIN SELECT mean(lmax_dba) AS lmax_dba,"
        " max(lmax_dba) AS lmax_dba_max, count(seq) AS readings INTO db.mean_1m.noise"
        " FROM db.raw.noise GROUP BY time(1m), * END")
    done = Existing(True, {name: Policy(name, duration_s(d), name == "raw")
                           for name, d in layout.policies().items()},
                    {name: q.replace("db.", '"db".') for name, q in cqs.items()})
    assert plan("db", layout, [NOISE], done) == []


def test_stale_queries_of_ours_are_dropped_and_others_left() -> None:
    layout = RetentionLayout()
    done = Existing(True, {name: Policy(name, duration_s(d), name == "raw")
                           for name, d in layout.policies().items()},
                    {**continuous_queries("db", layout, [NOISE]), "cq_gone_1m": "x",
                     "someone_elses": "y"})
    assert [s.statement for s in plan("db", layout, [NOISE], done)] == [
        "DROP CONTINUOUS QUERY cq_gone_1m ON db"]
