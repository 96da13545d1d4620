"""Retention policies and continuous queries for one database, planned sans-IO.

Five policies, their durations configurable (``RetentionLayout``):

- ``raw`` (default 30 days, the database's default policy): readings as written;
- ``mean_1m`` (1 year) and ``mean_1h`` (forever): per-minute and per-hour means
  of every numeric sensor field under the same name, the extremes of the fields
  that need them as ``<field>_max``/``<field>_min``, and ``readings`` (how many
  raw readings went into the row); filled by one continuous query per
  measurement and interval, ``GROUP BY time(...), *`` so every tag is kept;
- ``health`` (1 year): gateway_health, sensor_health, cityedge_collector;
- ``events`` (forever): alerts, dead letters, outbox drops.

``plan`` compares what a database has (``Existing``, read from SHOW RETENTION
POLICIES and SHOW CONTINUOUS QUERIES) with what the layout wants and returns
the statements that make them equal: none when they already are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from collector.schema.catalogue import EXTREMES, SensorMeasurement
from collector.schema.groups import Group

# InfluxQL duration literals accepted for a policy ("INF": kept forever).
_DURATION = re.compile(r"^(INF|[1-9][0-9]*(m|h|d|w))$")
_UNIT_S = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# SHOW RETENTION POLICIES writes durations as Go does: "720h0m0s", "0s" for INF.
_GO_DURATION = re.compile(r"(\d+)(h|m|s)")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MINUTE_RP, HOUR_RP = "mean_1m", "mean_1h"
INTERVALS = {MINUTE_RP: "1m", HOUR_RP: "1h"}


class RetentionError(ValueError):
    """A layout or a database's answer that cannot be planned with."""


def _check_duration(value: str, key: str) -> None:
    if not _DURATION.match(value):
        raise ValueError(f"{key}: expected INF or a whole number with m, h, d or w"
                         f" (e.g. 30d), got {value!r}")


@dataclass(frozen=True)
class RetentionLayout:
    """How long each policy keeps its points (InfluxQL durations; INF: forever)."""

    raw: str = "30d"
    mean_1m: str = "52w"
    mean_1h: str = "INF"
    health: str = "52w"
    events: str = "INF"
    # How often and over how long the minute query recomputes (RESAMPLE EVERY/FOR);
    # null: once a minute over the last minute, InfluxDB's default. Readings that
    # arrive late (a gateway's backlog) are only in a minute recomputed after them.
    resample_every: str | None = None
    resample_for: str | None = None

    def __post_init__(self) -> None:
        for key in ("raw", "mean_1m", "mean_1h", "health", "events"):
            _check_duration(getattr(self, key), key)
        for key in ("resample_every", "resample_for"):
            value = getattr(self, key)
            if value is not None and not re.match(r"^[1-9][0-9]*(s|m|h|d)$", value):
                raise ValueError(f"{key}: expected a duration like 1m or 2h, got {value!r}")

    def policies(self) -> dict[str, str]:
        """Policy name -> duration, the default (raw) first."""
        return {"raw": self.raw, MINUTE_RP: self.mean_1m, HOUR_RP: self.mean_1h,
                "health": self.health, "events": self.events}

    def policy_for(self, group: Group) -> str:
        return group


def duration_s(text: str) -> int:
    """Seconds of an InfluxQL literal (``30d``) or of InfluxDB's answer (``720h0m0s``); 0: INF."""
    if text in ("INF", "0s", "0"):
        return 0
    m = _DURATION.match(text)
    if m:
        return int(text[:-1]) * _UNIT_S[text[-1]]
    parts = _GO_DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise RetentionError(f"unreadable duration {text!r}")
    return sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


@dataclass(frozen=True)
class Policy:
    name: str
    duration_s: int
    default: bool


@dataclass(frozen=True)
class Existing:
    """What the database has: whether it exists, its policies and its continuous queries."""

    database: bool
    policies: Mapping[str, Policy] = field(default_factory=dict)
    # name -> the query as SHOW CONTINUOUS QUERIES gives it
    queries: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    """One statement and what it does, in words for the operator."""

    statement: str
    says: str


def _q(name: str) -> str:
    if not _NAME.match(name):
        raise RetentionError(f"name {name!r}: expected letters, digits and _")
    return name


def _select(m: SensorMeasurement) -> str:
    parts = [f"mean({f.name}) AS {f.name}" for f in m.numeric]
    names = {f.name for f in m.numeric}
    for name, funcs in EXTREMES.get(m.name, {}).items():
        if name in names:
            parts += [f"{fn}({name}) AS {name}_{fn}" for fn in funcs]
    # Every reading has a seq (lineprotocol.Identity): the raw rows behind the mean.
    parts.append("count(seq) AS readings")
    return ", ".join(parts)


def continuous_queries(database: str, layout: RetentionLayout,
                       measurements: Iterable[SensorMeasurement]) -> dict[str, str]:
    """Query name -> its CREATE statement, written as SHOW CONTINUOUS QUERIES gives it back
    (names unquoted), so that an unchanged query compares equal."""
    db = _q(database)
    out: dict[str, str] = {}
    for m in measurements:
        name = _q(m.name)
        for rp, every in INTERVALS.items():
            resample = ""
            if rp == MINUTE_RP and (layout.resample_every or layout.resample_for):
                resample = " RESAMPLE" + (f" EVERY {layout.resample_every}"
                                          if layout.resample_every else "") + (
                    f" FOR {layout.resample_for}" if layout.resample_for else "")
            cq = f"cq_{name}_{every}"
            out[cq] = (f"CREATE CONTINUOUS QUERY {cq} ON {db}{resample} BEGIN SELECT {_select(m)}"
                       f" INTO {db}.{rp}.{name} FROM {db}.raw.{name}"
                       f" GROUP BY time({every}), * END")
    return out


def _same_query(a: str, b: str) -> bool:
    return " ".join(a.replace('"', "").split()) == " ".join(b.replace('"', "").split())


def plan(database: str, layout: RetentionLayout, measurements: Sequence[SensorMeasurement],
         existing: Existing) -> list[Step]:
    """The statements that bring ``existing`` to ``layout``; empty when nothing differs.

    Continuous queries cannot be altered: a changed one is dropped and created
    again. Queries of this layout's shape (``cq_*``) that it no longer wants are
    dropped; other queries are left alone.
    """
    db = _q(database)
    steps: list[Step] = []
    if not existing.database:
        steps.append(Step(f"CREATE DATABASE {db}", f"database {db} created"))
    for name, duration in layout.policies().items():
        want_s, default = duration_s(duration), name == "raw"
        have = existing.policies.get(name)
        flag = " DEFAULT" if default else ""
        if have is None:
            steps.append(Step(f"CREATE RETENTION POLICY {name} ON {db} DURATION {duration}"
                              f" REPLICATION 1{flag}", f"policy {name} created ({duration})"))
        elif have.duration_s != want_s or (default and not have.default):
            steps.append(Step(f"ALTER RETENTION POLICY {name} ON {db} DURATION {duration}{flag}",
                              f"policy {name} set to {duration}{flag.lower()}"))
    wanted = continuous_queries(database, layout, measurements)
    for name in sorted(existing.queries):
        if name.startswith("cq_") and name not in wanted:
            steps.append(Step(f"DROP CONTINUOUS QUERY {name} ON {db}",
                              f"continuous query {name} dropped (no longer in the layout)"))
    for name, query in wanted.items():
        have_q = existing.queries.get(name)
        if have_q is not None and _same_query(have_q, query):
            continue
        if have_q is not None:
            steps.append(Step(f"DROP CONTINUOUS QUERY {name} ON {db}",
                              f"continuous query {name} changed: dropped"))
        steps.append(Step(query, f"continuous query {name} created"))
    return steps


def backfill(database: str, measurements: Iterable[SensorMeasurement], since: str) -> list[Step]:
    """The continuous queries' SELECT ... INTO run once over the raw points of the last
    ``since`` (e.g. 30d): fills the downsampled policies with what was written before
    the queries existed. Idempotent: the same rows overwrite themselves."""
    db = _q(database)
    steps = []
    for m in measurements:
        name = _q(m.name)
        for rp, every in INTERVALS.items():
            steps.append(Step(f"SELECT {_select(m)} INTO {db}.{rp}.{name} FROM {db}.raw.{name}"
                              f" WHERE time > now() - {since} GROUP BY time({every}), *",
                              f"{rp}.{name} filled from raw (last {since})"))
    return steps


def read_existing(databases: dict[str, Any], policies: dict[str, Any],
                  queries: dict[str, Any], database: str) -> Existing:
    """``Existing`` from the JSON answers to SHOW DATABASES, SHOW RETENTION POLICIES ON
    <database> (may be an error: no such database) and SHOW CONTINUOUS QUERIES."""
    names = {row[0] for row in _rows(databases)}
    if database not in names:
        return Existing(False)
    pols = {}
    for row in _rows(policies):
        pols[str(row[0])] = Policy(str(row[0]), duration_s(str(row[1])), bool(row[4]))
    cqs: dict[str, str] = {}
    for series in _series(queries):
        if series.get("name") == database:
            cqs.update({str(r[0]): str(r[1]) for r in series.get("values") or []})
    return Existing(True, pols, cqs)


def _series(answer: dict[str, Any]) -> list[dict[str, Any]]:
    results = answer.get("results")
    if not isinstance(results, list) or not results:
        raise RetentionError(f"unexpected answer {str(answer)[:200]}")
    first = results[0]
    if not isinstance(first, dict):
        raise RetentionError(f"unexpected answer {str(answer)[:200]}")
    if "error" in first:
        raise RetentionError(str(first["error"]))
    series = first.get("series") or []
    return [s for s in series if isinstance(s, dict)] if isinstance(series, list) else []


def _rows(answer: dict[str, Any]) -> list[list[Any]]:
    return [row for s in _series(answer) for row in (s.get("values") or [])
            if isinstance(row, list)]
