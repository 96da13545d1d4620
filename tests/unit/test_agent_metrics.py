"""The agent's health readings as Prometheus metric families (sans-IO: readings in, text out):
base units, _total counters, reasons and sensors as labels, strings as info labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from cityedge.uplink import Reading
from edge_agent.config import MetricsConfig
from edge_agent.metrics import AgentMetrics


def test_health_readings_become_conventional_metrics(tmp_path: Path) -> None:
    textfile = tmp_path / "agent.prom"
    m = AgentMetrics(MetricsConfig(textfile=str(textfile)), "gw-1")
    m.update([
        Reading("agent", "gateway_health", {
            "outbox_readings": 12, "outbox_full_pct": 25.0, "oldest_age_s": 3.5,
            "disk_free_mb": 2.0, "link_up": False, "uplink_rtt_ms": 40.0,
            "clock_offset_ms": -1500.0, "dropped_readings": 7, "bad_acks": 3,
            "bad_acks_bad_seal": 2, "bad_acks_other_outbox": 1, "agent_version": "1.2.3",
            "clock_anchor": "ntp"}, 2_000_000_000, "b", 1),
        Reading("pm-1", "sensor_health", {"port_open": True, "frames_ok": 50,
                                          "rejected_bad_checksum": 4}, 2_000_000_000, "b", 1),
    ])
    text = m.exposition().decode()
    for line in (
        "cityedge_agent_outbox_readings 12.0",
        "cityedge_agent_outbox_full_ratio 0.25",
        "cityedge_agent_outbox_oldest_age_seconds 3.5",
        "cityedge_agent_disk_free_bytes 2.097152e+06",
        "cityedge_agent_uplink_up 0.0",
        "cityedge_agent_ack_round_trip_seconds 0.04",
        "cityedge_agent_clock_offset_seconds -1.5",
        "cityedge_agent_dropped_readings_total 7.0",
        'cityedge_agent_bad_acks_total{reason="bad_seal"} 2.0',
        'cityedge_agent_bad_acks_total{reason="other_outbox"} 1.0',
        'cityedge_agent_info{agent_version="1.2.3",clock_anchor="ntp",gateway="gw-1"} 1.0',
        "cityedge_agent_health_timestamp_seconds 2.0",
        'cityedge_agent_sensor_port_open{sensor="pm-1"} 1.0',
        'cityedge_agent_sensor_frames_ok_total{sensor="pm-1"} 50.0',
        'cityedge_agent_sensor_frames_rejected_total{reason="bad_checksum",sensor="pm-1"} 4.0',
        "cityedge_agent_metrics_textfile_failures_total 0.0",
    ):
        assert line in text.splitlines(), line
    assert "cityedge_agent_bad_acks_total 3.0" not in text  # its by-reason family has it
    assert textfile.read_bytes() == m.exposition()


def test_a_textfile_that_cannot_be_written_is_counted(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    m = AgentMetrics(MetricsConfig(port=None, textfile=str(tmp_path / "file" / "a.prom")), "g")
    m.update([])
    assert "cityedge_agent_metrics_textfile_failures_total 1.0" in m.exposition().decode()


def test_the_metrics_config_refuses_what_would_expose_nothing() -> None:
    with pytest.raises(ValueError, match="textfile"):
        MetricsConfig(port=None)
    with pytest.raises(ValueError, match=r"\.prom"):
        MetricsConfig(textfile="/var/lib/node_exporter/agent.txt")
