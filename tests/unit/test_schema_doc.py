"""docs/schema.md is the generated one, and the gateway's new health fields are measured."""

from __future__ import annotations

from pathlib import Path

from collector.schema import docgen
from collector.schema.catalogue import all_measurements
from collector.schema.groups import group_of
from edge_agent.health import LinkTiming, cpu_temp_c

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_schema_doc_is_the_generated_one() -> None:
    committed = (ROOT / "docs" / "schema.md").read_text(encoding="utf-8")
    assert committed == docgen.render(), (
        "docs/schema.md differs from the code: run python -m collector.schema.docgen")


def test_every_measurement_is_documented_once_with_a_policy() -> None:
    names = [m.name for m in all_measurements()]
    assert len(names) == len(set(names))
    assert {"particulate", "noise", "climate", "bus_terminal", "gas", "gateway_health",
            "sensor_health", "outbox_drops", "cityedge_collector", "cityedge_deadletter",
            "alerts"} == set(names)
    assert {group_of(n) for n in names} == {"raw", "health", "events"}
    health = next(m for m in all_measurements() if m.name == "gateway_health")
    for name in ("clock_offset_ms", "uplink_rtt_ms", "cpu_temp_c", "disk_free_mb"):
        field = health.field_for(name)
        assert field is not None and field.type == "float" and field.unit


def test_cpu_temperature_from_the_thermal_zone_or_nothing(tmp_path: Path) -> None:
    zone = tmp_path / "temp"
    zone.write_text("48312\n")
    assert cpu_temp_c(zone) == 48.3
    assert cpu_temp_c(tmp_path / "missing") is None
    zone.write_text("garbage\n")
    assert cpu_temp_c(zone) is None


def test_link_timing_round_trip_and_clock_offset() -> None:
    timing = LinkTiming()
    assert timing.fields() == {}  # nothing measured yet: no fields
    timing.sent(7, mono_ns=1_000_000_000)
    # acked 250 ms later; the collector's clock reads 1.5 s ahead of ours
    timing.acked(7, mono_ns=1_250_000_000, wall_ns=10_000_000_000, collector_ns=11_500_000_000)
    assert timing.fields() == {"uplink_rtt_ms": 250.0, "clock_offset_ms": 1500.0}
    timing.acked(99, mono_ns=2_000_000_000, wall_ns=10**10, collector_ns=10**10 - 2_000_000)
    assert timing.fields() == {"uplink_rtt_ms": 250.0, "clock_offset_ms": -2.0}
    for i in range(1000):  # bounded: old send times are forgotten
        timing.sent(i, i)
    assert len(timing._sent) <= 256
