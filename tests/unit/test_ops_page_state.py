"""The operations page's document (sans-IO): troubled gateways first, open alerts newest first,
resolved ones gone, hostile text kept as data, lists bounded with their totals."""

from __future__ import annotations

import json

import pytest

from cityedge.uplink.status import GatewayStatus
from collector.opspage import state
from collector.opspage.state import page_state

S = 10**9
NOW = 10_000 * S


def _health(gw: str, age_s: int, **fields: object) -> dict[str, object]:
    return {"time": NOW - age_s * S, "gateway": gw, "district": "d", "site": "s", **fields}


def _alert(alert_id: str, state_: str, t: int, **tags: str) -> dict[str, object]:
    return {"time": t, "alert_id": alert_id, "state": state_, "rule": "r", "severity": "s",
            "message": tags.pop("message", "m"), "value": 1.0, **tags}


def test_the_document_orders_gateways_and_alerts() -> None:
    hostile = "<script>x</script>"
    doc = json.loads(page_state(
        [_health("b-ok", 1), _health("a-dropping", 1, dropped_readings=2),
         _health("c-stale", 999), _health(hostile, 1)],
        [_alert("1", "firing", NOW - 50 * S, district="d", message=hostile),
         _alert("2", "firing", NOW - 40 * S, gateway="b-ok"),
         _alert("3", "firing", NOW - 30 * S, gateway="b-ok"),
         _alert("3", "resolved", NOW - 20 * S, gateway="b-ok")],
        {"b-ok": GatewayStatus("offline", "1.0")}, now_ns=NOW, stale_s=120, refresh_s=5))
    assert [g["gateway"] for g in doc["gateways"]] == ["c-stale", "a-dropping", "b-ok", hostile]
    assert doc["gateways"][2]["problems"] == ["offline"]
    assert [a["alert_id"] for a in doc["alerts"]] == ["2", "1"]
    assert doc["alerts"][1]["message"] == hostile
    assert (doc["gateways_total"], doc["stale_total"], doc["alerts_total"]) == (4, 1, 2)
    assert (doc["refresh_s"], doc["error"]) == (5, None)


def test_the_lists_are_bounded_and_say_how_many_there_were(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state, "MAX_GATEWAYS", 2)
    monkeypatch.setattr(state, "MAX_ALERTS", 1)
    doc = json.loads(page_state(
        [_health(f"gw-{i}", 1) for i in range(5)],
        [_alert(str(i), "firing", NOW - i * S, gateway="gw-0") for i in range(3)],
        {}, now_ns=NOW, stale_s=120, refresh_s=5, error="InfluxDB: down"))
    assert len(doc["gateways"]) == 2 and doc["gateways_total"] == 5
    assert len(doc["alerts"]) == 1 and doc["alerts_total"] == 3
    assert doc["error"] == "InfluxDB: down"
