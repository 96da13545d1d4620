"""The alert runner's counters, and the fields they give the collector's health point.

Every counter here reaches ``cityedge_collector`` (collector/service.py
health_point calls the runner's ``health_fields``); README.md lists them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from collector.alerts.delivery import Delivery
from collector.alerts.engine import Engine
from collector.alerts.lease import Lease


@dataclass
class RunnerStats:
    events: int = 0  # alert events, notified or not (each is one `alerts` point)
    standby_points: int = 0  # readings fed while another collector held the lease
    points_dropped: int = 0  # alert points past MAX_PENDING_POINTS, dropped
    write_errors: int = 0  # writes of alert points that failed (retried with the next)
    commands: int = 0  # spooled `alerts ack|silence|unsilence` commands taken
    saves: int = 0  # state saves (alerts.json, and the statistics when due)
    takeovers: int = 0  # times we took the lease over
    stepdowns: int = 0  # times we lost it


def engine_fields(engine: Engine) -> dict[str, int]:
    """What the engine refused or forgot to stay bounded (docs/alerts.md, "Bounds")."""
    t = engine.tables
    return {"alert_readings_too_old": engine.clock.too_old,
            "alert_readings_future": engine.counts["future"],
            "alert_members_evicted": t.evicted, "alert_members_refused": t.refused,
            "alert_gateways_forgotten": t.gateways_forgotten}


def health_fields(stats: RunnerStats, open_alerts: int, leader: bool,
                  deliveries: Sequence[Delivery], lease: Lease | None) -> dict[str, int]:
    """Counters for the collector's health point (cityedge_collector)."""
    out = {"alert_events": stats.events, "alerts_open": open_alerts,
           "alert_points_dropped": stats.points_dropped,
           "alert_point_write_errors": stats.write_errors,
           "alert_standby_points": stats.standby_points, "alert_commands": stats.commands,
           "alert_saves": stats.saves, "alerts_leader": int(leader),
           "alert_takeovers": stats.takeovers, "alert_stepdowns": stats.stepdowns}
    if lease is not None:
        out |= lease.health_fields()
    for d in deliveries:
        out |= d.health_fields()
    return out
