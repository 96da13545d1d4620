"""What a real run writes (the demo: agents, simulated sensors, collector, alerts) is what
docs/schema.md says: every measurement, tag and field (with its type) is in the catalogue,
and every field the catalogue says is always written is there."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from collector.schema.catalogue import all_measurements
from collector.schema.retention import RetentionLayout
from collector.schema.setup import Target, apply
from simulators.demo import Demo, DemoOptions
from simulators.services import InfluxDB
from tests.conftest import _need
from tests.helpers import rows

pytestmark = pytest.mark.integration


def keys(influxdb: InfluxDB, db: str, q: str) -> dict[str, dict[str, str]]:
    answer = influxdb.query(q, db)
    return {s["name"]: {v[0]: (v[1] if len(v) > 1 else "") for v in s["values"]}
            for s in answer["results"][0].get("series", [])}


def test_what_the_demo_writes_is_what_the_schema_says(
        tmp_path: Path, influxdb: InfluxDB, unique_name: str) -> None:
    _need("openssl", "openssl")
    # Set up as influx-setup does: the readings land in raw, the default policy.
    apply(Target(influxdb.url, unique_name), RetentionLayout())
    out = io.StringIO()
    demo = Demo(DemoOptions(duration=20, mqtt=None, influx=influxdb.url, database=unique_name,
                            workdir=tmp_path, episode_at=3, episode_length=6),
                Console(file=out, width=160))
    assert demo.run() == 0, out.getvalue()[-3000:]
    fields = keys(influxdb, unique_name, "SHOW FIELD KEYS")
    tags = keys(influxdb, unique_name, "SHOW TAG KEYS")
    catalogue = {m.name: m for m in all_measurements()}
    # The demo's fleet makes these; alerts come from its dust episode.
    assert {"particulate", "noise", "bus_terminal", "gateway_health", "sensor_health",
            "cityedge_collector", "alerts"} <= set(fields)

    problems = []
    for measurement, written in fields.items():
        doc = catalogue.get(measurement)
        if doc is None:
            problems.append(f"{measurement}: not in the schema")
            continue
        for name, kind in written.items():
            f = doc.field_for(name)
            if f is None:
                problems.append(f"{measurement}.{name} ({kind}): not in the schema")
            elif f.type != kind:
                problems.append(f"{measurement}.{name}: written as {kind}, schema says {f.type}")
        problems += [f"{measurement}.{f.name}: in the schema as always written, not written"
                     for f in doc.fields if not f.when and "<" not in f.name
                     and f.name not in written and not (
                         # a profile's field comes only from the models that report it
                         f.meaning.startswith("from "))]
        documented = {name for name, _ in doc.tags}
        open_tags = any(name.startswith("<") for name in documented)
        problems += [f"{measurement}: tag {t} not in the schema"
                     for t in tags.get(measurement, {}) if t not in documented and not open_tags]
    assert problems == []

    # The gateway's clock offset and round trip reach InfluxDB, and make sense here
    # (one machine: the collector's clock is the gateway's).
    last = rows(influxdb, unique_name, "SELECT last(clock_offset_ms) AS offset_ms,"
                " last(uplink_rtt_ms) AS rtt_ms FROM gateway_health GROUP BY gateway")
    assert len(last) == 3
    for r in last:
        assert abs(r["offset_ms"]) < 1000 and 0 < r["rtt_ms"] < 5000, r

    # Downsampled series appear on the demo's data: the minute means hold every raw
    # reading once (the continuous queries' SELECT, run over the last hour).
    apply(Target(influxdb.url, unique_name), RetentionLayout(), backfill_since="1h")
    raw = rows(influxdb, unique_name, "SELECT count(seq) AS n FROM raw.particulate"
               " GROUP BY gateway")
    minute = rows(influxdb, unique_name, "SELECT sum(readings) AS n, max(pm2_5_ugm3_max)"
                  " AS peak FROM mean_1m.particulate GROUP BY gateway")
    assert raw and {r["gateway"]: r["n"] for r in minute} == {r["gateway"]: r["n"] for r in raw}
    assert all(r["peak"] > 0 for r in minute)
