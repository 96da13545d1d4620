"""What the operations page shows, as one JSON document (sans-IO: rows in, document out).

The fleet (collector/fleet.py: each gateway's health, status and problems)
and the open alerts (the newest transition of each alert, where it is
firing). Everything in it is data for the page's script to put in text
nodes; nothing here is markup.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from typing import Any

from cityedge.uplink.status import GatewayStatus
from collector.fleet import firing_alerts, fleet

# Alerts listed at most (newest first); more are counted, not listed.
MAX_ALERTS = 500
# Gateways listed at most (stale and troubled first); more are counted.
MAX_GATEWAYS = 5000
ALERT_KEYS = ("alert_id", "rule", "severity", "state", "message", "value", "gateway", "site",
              "district")


def open_alerts(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The firing alerts, newest first, with the keys the page shows."""
    out = [{**{k: r.get(k) for k in ALERT_KEYS}, "time_ns": r["time"]}
           for r in firing_alerts(rows)]
    return sorted(out, key=lambda a: a["time_ns"], reverse=True)


def page_state(health: Iterable[Mapping[str, Any]], alerts: Iterable[Mapping[str, Any]],
               statuses: Mapping[str, GatewayStatus], *, now_ns: int, stale_s: float,
               refresh_s: float, error: str | None = None) -> bytes:
    """The document ``state.json`` serves."""
    alerts = list(alerts)
    gateways = fleet(health, alerts, now_ns, stale_s, statuses)
    gateways.sort(key=lambda g: (not g.stale, not g.problems, g.gateway))
    listed = open_alerts(alerts)
    doc = {
        "generated_ns": now_ns, "refresh_s": refresh_s, "stale_s": stale_s, "error": error,
        "gateways": [asdict(g) for g in gateways[:MAX_GATEWAYS]],
        "gateways_total": len(gateways),
        "stale_total": sum(g.stale for g in gateways),
        "alerts": listed[:MAX_ALERTS], "alerts_total": len(listed),
    }
    return json.dumps(doc, ensure_ascii=False, allow_nan=False).encode()
