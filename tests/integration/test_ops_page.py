"""The operations page in a real browser (Debian's chromium, headless): a real collector fed
real readings over the real broker, its page loaded and its script run, then the DOM read.

The browser's own DOM dump (``--dump-dom``, after the page's script has fetched and shown
the state) is what is asserted: a stale gateway marked stale, a gateway with its agent
version and problems, an open alert listed with its message, and hostile text (a site name
from a batch, a gateway id written straight into InfluxDB, an alert message made from
them) shown as text, with no element, script or handler of its own. Under CI=true a
missing chromium fails the run (tests/conftest.py's rule for services).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt import publish

from cityedge.uplink import Batch, Reading, encode_batch
from cityedge.uplink.status import encode_status
from cityedge.uplink.topics import Topics
from collector.lineprotocol import Identity, Point
from collector.writers.influxdb_v1.writer import InfluxV1Config, InfluxV1Writer
from simulators.services import InfluxDB, Mosquitto, find_binary, free_port
from tests.conftest import _need
from tests.helpers import Proc, wait_for, write_yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
S = 10**9
HOSTILE_SITE = "<img src=x onerror=\"document.title='owned'\">역삼"
HOSTILE_GATEWAY = "<script>document.title='owned'</script>gw"
# Seconds of virtual time the browser gives the page (its script fetches state.json).
BROWSER_BUDGET_MS = 5000


class Dom(HTMLParser):
    """The dumped DOM as elements: (tag, attributes, text inside), in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str], list[str]]] = []
        self.open: list[int] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}, []))
        if tag not in ("meta", "link", "br", "img", "input"):
            self.open.append(len(self.elements) - 1)

    def handle_endtag(self, tag: str) -> None:
        while self.open:
            if self.elements[self.open.pop()][0] == tag:
                break

    def handle_data(self, data: str) -> None:
        for i in self.open:
            self.elements[i][2].append(data)

    def text(self, i: int) -> str:
        return "".join(self.elements[i][2])

    def rows(self, attr: str) -> dict[str, list[str]]:
        """Each <tr> carrying ``attr``: its cells' texts, by the attribute's value."""
        out = {}
        for i, (tag, attrs, _) in enumerate(self.elements):
            if tag == "tr" and attr in attrs:
                cells = [self.text(j) for j in range(i + 1, len(self.elements))
                         if self.elements[j][0] == "td"
                         and self._inside(j, i)]
                out[attrs[attr]] = cells
        return out

    def _inside(self, j: int, row: int) -> bool:
        # A cell belongs to the row up to the next row.
        return not any(self.elements[k][0] == "tr" for k in range(row + 1, j))


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if find_binary(name) is not None:
            return name
    _need("chromium", "chromium")
    raise AssertionError("unreachable")


def dump_dom(url: str, profile: Path) -> tuple[str, float]:
    """The page's DOM after its script ran, from headless chromium; and the seconds it took."""
    binary = find_binary(chromium())
    assert binary is not None
    started = time.monotonic()
    out = subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--disable-extensions", "--disable-background-networking",
         f"--user-data-dir={profile}", f"--virtual-time-budget={BROWSER_BUDGET_MS}",
         "--dump-dom", url],
        capture_output=True, text=True, timeout=90, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout, time.monotonic() - started


def state(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/state.json", timeout=5) as r:
        doc: dict[str, Any] = json.loads(r.read())
        return doc


def reading(sensor: str, measurement: str, fields: dict[str, Any], t: int, seq: int) -> Reading:
    return Reading(sensor, measurement, fields, t, "b0", t, seq=seq)


def feed(topics: Topics, mosquitto: Mosquitto, influxdb: InfluxDB, database: str) -> None:
    """Readings over the broker, a status message, and a hostile point straight into InfluxDB."""
    now = time.time_ns()

    def send(gw: str, site: dict[str, str], readings: tuple[Reading, ...]) -> None:
        batch = Batch(gw, "00e100e1", 1, now, True, "b0", now, site,
                      {"pm-1": {"model": "pms5003"}, "agent": {"model": "agent"}}, readings)
        publish.single(topics.up(gw), encode_batch(batch), qos=1, hostname="127.0.0.1",
                       port=mosquitto.port)

    # A fresh gateway in a district with a hostile site name; its PM10 raises the demo
    # advisory, whose message names the site's district.
    send("gw-fresh", {"district": HOSTILE_SITE, "site": HOSTILE_SITE, "kind": "dust_zone"}, (
        reading("pm-1", "particulate", {"pm10_ugm3": 210.0, "pm2_5_ugm3": 90.0}, now, 1),
        reading("agent", "gateway_health", {
            "outbox_readings": 5, "outbox_full_pct": 91.0, "dropped_readings": 3,
            "clock_synced": True, "clock_offset_ms": 12.0, "link_up": True,
            "agent_version": "0.1.0"}, now, 2)))
    # A gateway last heard ten minutes ago.
    send("gw-quiet", {"district": "종로구", "site": "혜화", "kind": "dust_zone"}, (
        reading("agent", "gateway_health", {"outbox_readings": 0, "link_up": True,
                                            "agent_version": "0.0.9"}, now - 600 * S, 1),))
    publish.single(topics.status("gw-fresh"), encode_status("gw-fresh", "online", "0.1.1"),
                   qos=1, retain=True, hostname="127.0.0.1", port=mosquitto.port)

    # Anyone who may write InfluxDB directly can put any gateway tag there.
    async def hostile() -> None:
        w = InfluxV1Writer(InfluxV1Config(url=influxdb.url, database=database))
        await w.start()
        try:
            await w.write([Point("gateway_health", {
                "district": "중구", "site": "명동", "site_kind": "dust_zone",
                "gateway": HOSTILE_GATEWAY, "sensor": "agent", "model": "agent"},
                {"uptime_s": 1.0, "link_up": True}, now - 5 * S, Identity(1, "e"))])
        finally:
            await w.close()
    asyncio.run(hostile())



def assert_page_shows(dom_text: str) -> None:
    dom = Dom()
    dom.feed(dom_text)
    body = next(a for t, a, _ in dom.elements if t == "body")
    assert body.get("data-loaded") == "yes", dom_text[:3000]

    fleet = dom.rows("data-gateway")
    assert set(fleet) == {"gw-fresh", "gw-quiet", HOSTILE_GATEWAY}, fleet
    classes = {a["data-gateway"]: a.get("class", "").split()
               for t, a, _ in dom.elements if t == "tr" and "data-gateway" in a}
    # Stale first, and marked.
    order = [a["data-gateway"] for t, a, _ in dom.elements if t == "tr" and "data-gateway" in a]
    assert order[0] == "gw-quiet"
    assert "problem-stale" in classes["gw-quiet"]
    quiet = fleet["gw-quiet"]
    assert quiet[0] == "gw-quiet" and quiet[3] == "stale" and quiet[12] == "0.0.9"
    assert "min ago" in quiet[4]
    fresh = fleet["gw-fresh"]
    assert fresh[3] == "filling dropping"
    assert {"problem-filling", "problem-dropping"} <= set(classes["gw-fresh"])
    assert "problem-stale" not in classes["gw-fresh"]
    assert (fresh[5], fresh[6], fresh[7], fresh[8], fresh[10], fresh[12]) == (
        "online", "up", "5", "91", "3", "0.1.1")
    assert "s ago" in fresh[4]
    # The hostile strings are text in their cells.
    assert fleet[HOSTILE_GATEWAY][0] == HOSTILE_GATEWAY
    assert fresh[1] == HOSTILE_SITE and fresh[2] == HOSTILE_SITE

    alerts = dom.rows("data-alert-id")
    assert len(alerts) == 1, alerts
    (cells,) = alerts.values()
    assert cells[1] == "pm10_advisory_demo" and cells[2] == "advisory"
    assert cells[5] == f"PM10 advisory (firing) in {HOSTILE_SITE}: 210 ug/m3"
    assert fresh[13].startswith("pm10_advisory_demo (")

    # Nothing the field sent became markup: no element but the page's own.
    tags = {t for t, _, _ in dom.elements}
    assert "img" not in tags
    assert [a.get("src") for t, a, _ in dom.elements if t == "script"] == ["app.js"]
    title = next(i for i, (t, _, _) in enumerate(dom.elements) if t == "title")
    assert dom.text(title) == "cityedge operations"
    summary = next(i for i, (t, a, _) in enumerate(dom.elements) if a.get("id") == "summary")
    assert dom.text(summary) == ("3 gateways, 1 stale (silent over 120 s), 1 open alerts")



def assert_read_only(port: int) -> None:
    # Read-only, served locally, under a strict policy.
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
        page = r.read().decode()
        policy = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy
    assert "http://" not in page and "https://" not in page
    post = urllib.request.Request(f"http://127.0.0.1:{port}/state.json", data=b"x",
                                  method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(post, timeout=5)
    assert refused.value.code == 405


def test_the_operations_page_in_a_real_browser(
        tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB, unique_name: str) -> None:
    chromium()
    port = free_port()
    prefix = f"test/{unique_name}"
    topics = Topics(prefix)
    config = write_yaml(tmp_path / "collector.yaml", {
        "insecure": True,
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "client_id": f"c-{unique_name}",
                 "topic_prefix": prefix},
        "writer": {"type": "influxdb_v1", "url": influxdb.url, "database": unique_name},
        "alerts": {"rules": [str(ROOT / "simulators" / "demo_rules.yaml")],
                   "state_dir": str(tmp_path / "alerts")},
        "ops_page": {"port": port, "refresh": 1, "stale": 120},
        "health_interval": 1,
    })
    collector = Proc(["collector.cli", "run", "--config", str(config)],
                     tmp_path / "collector.log").start()
    try:
        wait_for(lambda: "collector running" in collector.output(), 20, "the collector")
        feed(topics, mosquitto, influxdb, unique_name)

        def shown() -> bool:
            doc = state(port)
            return (doc["alerts_total"] >= 1 and doc["gateways_total"] >= 3
                    and any(g["status"] for g in doc["gateways"]))
        try:
            wait_for(shown, 30, "the page's state to hold the gateways and the alert", step=0.5)
        except AssertionError:
            raise AssertionError(f"{state(port)}\n{collector.output()[-3000:]}") from None

        dom_text, seconds = dump_dom(f"http://127.0.0.1:{port}/", tmp_path / "chromium")
        print(f"page loaded and shown by chromium in {seconds:.2f} s")
        assert_page_shows(dom_text)
        assert_read_only(port)
    finally:
        publish.single(topics.status("gw-fresh"), b"", qos=1, retain=True,
                       hostname="127.0.0.1", port=mosquitto.port)
        rc = collector.stop()
        shutil.rmtree(tmp_path / "chromium", ignore_errors=True)
    assert rc == 0, collector.output()[-3000:]
