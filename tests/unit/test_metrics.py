"""The collector's health fields as Prometheus metric families (sans-IO: fields in, text out)."""

from __future__ import annotations

from collector.config import MetricsConfig
from collector.lineprotocol import Identity, Point
from collector.metrics import Metrics

FIELDS = {"batches": 4, "readings": 40, "pending_points": 2, "last_write_ms": 12.5,
          "refused_batches": 3, "refused_rate_limited": 2, "refused_bad_json": 1,
          "dead_letters": 1, "dead_letters_too_many_fields": 1, "insecure": True,
          "notify_mqtt_downlink_delivered": 5, "notify_mqtt_downlink_queued": 1,
          "notify_log_delivered": 7, "alerts_leader": 1, "collector": "ignored"}


def test_health_fields_become_conventional_metrics() -> None:
    m = Metrics(MetricsConfig(), lambda: FIELDS, lambda: ["log", "mqtt_downlink"])
    m.landed([Point("particulate", {"gateway": "gw-1"}, {"v": 1.0}, 1, Identity(1, "e")),
              Point("cityedge_collector", {"gateway": "not-a-reading"}, {"v": 1.0}, 1)])
    text = m.exposition().decode()
    for line in (
        "cityedge_collector_batches_landed_total 4.0",
        "cityedge_collector_readings_landed_total 40.0",
        "cityedge_collector_pending_points 2.0",
        "cityedge_collector_last_write_seconds 0.0125",
        'cityedge_collector_batches_refused_total{reason="rate_limited"} 2.0',
        'cityedge_collector_batches_refused_total{reason="bad_json"} 1.0',
        'cityedge_collector_dead_letters_total{reason="too_many_fields"} 1.0',
        'cityedge_collector_notifications_total{notifier="mqtt_downlink",outcome="delivered"} 5.0',
        'cityedge_collector_notifications_total{notifier="log",outcome="delivered"} 7.0',
        'cityedge_collector_notifications_queued{notifier="mqtt_downlink"} 1.0',
        "cityedge_collector_alerts_leader 1.0",
        "cityedge_collector_insecure 1.0",
        'cityedge_collector_gateway_readings_written_total{gateway="gw-1",'
        'measurement="particulate"} 1.0',
    ):
        assert line in text.splitlines(), line
    assert "# TYPE cityedge_collector_pending_points gauge" in text
    assert 'gateway="gw-1"' in text and "not-a-reading" not in text
    # The by-reason totals are not repeated as unlabelled series of the same name.
    assert "cityedge_collector_refused_batches_total" not in text
    assert "cityedge_collector_dead_letters_total 1.0" not in text
