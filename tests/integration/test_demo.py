"""The demo, run as README's ``./run demo`` runs it (in-process, shorter): secured as a
deployment is (TLS, a registry, generated ACLs, sealed acks and displays), every emitted
reading lands, nothing legitimate is refused, and the dust episode at the bus stop reaches
the webhook, the bus stop's terminal and its ack within 2 s of the reading that raised it.
With an operator's broker the demo uses their registry and secrets; ``--insecure`` warns."""

from __future__ import annotations

import contextlib
import io
import re
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from simulators import cli
from simulators.demo import Demo, DemoOptions
from simulators.demo_influx import READING_MEASUREMENTS
from simulators.demo_secure import OperatorBroker
from simulators.fleet import DEMO_FLEET
from simulators.secure import COLLECTOR, SecureSetup
from simulators.services import Mosquitto
from simulators.victoria import VictoriaMetrics
from tests.conftest import _need

pytestmark = pytest.mark.integration

BUS_STOP = "gw-bus-jongno-0147"
NOTHING_REFUSED = {"broker_logins": 0, "collector_batches": 0, "agent_bad_acks": 0,
                   "agent_displays_rejected": 0, "agent_sends_refused": 0}


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_secure_demo_delivers_everything_and_its_dust_episode_reaches_people_within_2_s(
        tmp_path: Path) -> None:
    _need("openssl", "openssl")
    out = io.StringIO()
    demo = Demo(DemoOptions(duration=30, mqtt=None, influx=None, database="cityedge",
                            workdir=tmp_path, episode_at=6, episode_length=10),
                Console(file=out, width=160))
    assert demo.run() == 0
    text = out.getvalue()
    flat = " ".join(text.split())  # rich wraps lines
    got, emitted = demo.delivered
    assert emitted > 50 and got == emitted, text[-3000:]

    # Secured: the registry lists every gateway, each agent has its secret from a 0600
    # file (not in its config), the broker's files were generated from the registry,
    # and nobody legitimate was refused by the broker, the collector or an agent.
    assert demo.trust is not None and not demo.trust.insecure
    assert "TLS broker on 127.0.0.1:" in flat and "registry with 3 gateways" in flat
    assert re.search(r"Operations page: http://127\.0\.0\.1:\d+/", flat), flat[:3000]
    secure = tmp_path / "secure"
    acl = (secure / "mosquitto.acl").read_text()
    for gw in DEMO_FLEET:
        assert f"user {gw.id}\n" in acl
        agent = yaml.safe_load((tmp_path / "agents" / f"{gw.id}.yaml").read_text())
        assert "secret" not in agent["gateway"]
        secret_file = Path(agent["gateway"]["secret_file"])
        assert _mode(secret_file) == 0o600 and _mode(secret_file.parent) == 0o700
        assert agent["uplink"]["mqtt"]["tls"] == {"ca_file": str(secure / "pki" / "ca.crt")}
    collector = yaml.safe_load((tmp_path / "collector.yaml").read_text())
    assert collector["registry"] == str(secure / "registry.yaml")
    assert "insecure" not in collector and collector["mqtt"]["username"] == COLLECTOR
    assert "insecure" not in (tmp_path / "collector.log").read_text()
    assert demo.refused == NOTHING_REFUSED, text[-3000:]
    broker_log = (tmp_path / "services" / "mosquitto" / "mosquitto.log").read_text()
    assert "Protocol error" not in broker_log, broker_log[-3000:]

    assert demo.watch is not None and demo.watch.bad_signatures == 0
    events = [(s.event["rule"], s.event["state"], s.event["scope"]) for s in demo.watch.timeline()]
    assert events == [("pm10_advisory_demo", "firing", {"district": "종로구"}),
                      ("pm10_advisory_demo", "resolved", {"district": "종로구"})], events
    fired, resolved = demo.watch.timeline()
    assert fired.event["value"] >= 150 and resolved.event["value"] < 100
    for seen, result in ((fired, "shown"), (resolved, "cleared")):
        assert set(seen.on_screen) == {BUS_STOP}  # only 종로구's bus stop has a terminal
        assert seen.after(seen.webhook_ns) < 2.0
        assert seen.after(seen.on_screen[BUS_STOP]) < 2.0
        ack, at = seen.acks[BUS_STOP]
        assert ack == result and seen.after(at) < 2.0
    assert "pm10_advisory_demo firing in 종로구: webhook" in text

    # Run again in the same --workdir: a fresh CA, registry and secrets, and the devices
    # wait for this run's agents (the logs still hold the last run's "opened" lines).
    ca = (secure / "pki" / "ca.crt").read_bytes()
    out = io.StringIO()
    again = Demo(DemoOptions(duration=5, mqtt=None, influx=None, database="cityedge",
                             workdir=tmp_path, episode_at=None), Console(file=out, width=160))
    assert again.run() == 0
    got, emitted = again.delivered
    assert emitted > 5 and got == emitted, out.getvalue()[-3000:]
    assert again.refused == NOTHING_REFUSED
    assert (secure / "pki" / "ca.crt").read_bytes() != ca


def test_with_an_operators_broker_the_demo_uses_their_registry_and_secrets(
        tmp_path: Path) -> None:
    """The operator registered the demo's gateways (secrets in files) and runs a TLS broker
    with the files generated from their registry; the demo only points at them."""
    _need("openssl", "openssl")
    _need("mosquitto", "mosquitto")
    ops = tmp_path / "operator"
    setup = SecureSetup.create(ops)
    secrets = ops / "secrets"
    secrets.mkdir()
    (secrets / f"{COLLECTOR}.secret").write_text(setup.collector_secret + "\n")
    (ops / "mosquitto").mkdir()
    broker = Mosquitto(ops / "mosquitto", security=setup.security())
    options = DemoOptions(duration=10, mqtt=("127.0.0.1", broker.port), influx=None,
                          database="cityedge", workdir=tmp_path / "demo", episode_at=None,
                          operator=OperatorBroker(ops / "registry.yaml", secrets, COLLECTOR,
                                                  setup.ca_file,
                                                  ("127.0.0.1", broker.collector_port)))

    # Not registered yet: the demo says what to run, and starts nothing.
    out = io.StringIO()
    with pytest.raises(SystemExit) as refused:
        Demo(options, Console(file=out, width=160)).run()
    assert "edge-collector gateways --registry" in str(refused.value)
    assert f"add {BUS_STOP} --district '종로구' --site" in str(refused.value)

    for gw in DEMO_FLEET:
        secret = setup.add_gateway(gw.id, district=gw.district, site=gw.site, kind=gw.kind)
        (secrets / f"{gw.id}.secret").write_text(secret + "\n")
    broker.start()
    try:
        demo = Demo(options, Console(file=out, width=160))
        assert demo.run() == 0
    finally:
        broker.stop()
    got, emitted = demo.delivered
    assert emitted > 10 and got == emitted, out.getvalue()[-3000:]
    assert demo.trust is not None and not demo.trust.insecure
    assert f"the operator's registry {ops / 'registry.yaml'} with 3 active gateways" in (
        " ".join(out.getvalue().split()))
    assert demo.refused == NOTHING_REFUSED
    assert "not authorised" not in broker.log_path.read_text()


def test_insecure_is_an_explicit_opt_in_that_warns_at_start_up(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--mqtt`` at a plain broker: refused without ``--insecure``; with it, the demo
    runs as before the registry existed and says loudly what that means."""
    _need("mosquitto", "mosquitto")
    (tmp_path / "mosquitto").mkdir()
    broker = Mosquitto(tmp_path / "mosquitto").start()
    argv = ["demo", "--mqtt", f"127.0.0.1:{broker.port}", "--duration", "8",
            "--episode-at", "-1", "--workdir", str(tmp_path / "demo")]
    try:
        with pytest.raises(SystemExit) as usage:
            cli.main(argv)
        assert usage.value.code == 2
        assert "give the operator's --registry FILE and --secrets DIR, or --insecure" in (
            capsys.readouterr().err)
        with _signals_restored():
            assert cli.main([*argv, "--insecure"]) == 0
    finally:
        broker.stop()
    shown = " ".join(capsys.readouterr().out.split())  # rich wraps lines
    assert "WARNING --insecure: plain MQTT, no gateway registry, no ACLs" in shown
    assert f"INSECURE: plain MQTT on 127.0.0.1:{broker.port}" in shown
    collector_log = (tmp_path / "demo" / "collector.log").read_text()
    assert "insecure: true: no gateway registry" in collector_log
    delivered = re.search(r"(\d+) of (\d+) emitted readings are in InfluxDB", shown)
    assert delivered is not None, shown[-2000:]
    assert int(delivered[1]) == int(delivered[2]) > 0, delivered[0]


@contextlib.contextmanager
def _signals_restored() -> Iterator[None]:
    """run_demo installs SIGINT/SIGTERM handlers for the demo; put pytest's back after."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def test_the_demo_writes_to_an_influxdb_2_style_server(tmp_path: Path) -> None:
    """``--influx URL --influx-api v2``: the collector writes through its influxdb_v2 writer to
    a real server with InfluxDB 2.x's /api/v2/write (Debian's VictoriaMetrics; no InfluxDB
    2.x is packaged), the live view counts from the collector's metrics, and the server
    holds every emitted reading once."""
    _need("openssl", "openssl")
    _need("victoria-metrics", "victoria-metrics")
    (tmp_path / "victoria").mkdir()
    server = VictoriaMetrics(tmp_path / "victoria").start()
    out = io.StringIO()
    try:
        demo = Demo(DemoOptions(duration=15, mqtt=None, influx=server.url, database="citybucket",
                                workdir=tmp_path / "demo", episode_at=None, influx_api="v2",
                                org="cityorg"),
                    Console(file=out, width=160))
        assert demo.run() == 0
        text = out.getvalue()
        flat = " ".join(text.split())
        got, emitted = demo.delivered
        assert emitted > 20 and got >= emitted, text[-3000:]
        writer = yaml.safe_load((tmp_path / "demo" / "collector.yaml").read_text())["writer"]
        assert writer == {"type": "influxdb_v2", "url": server.url, "org": "cityorg",
                          "bucket": "citybucket"}
        assert f"{server.url}/api/v2/write" in flat and "bucket 'citybucket'" in flat
        # Every emitted reading is in the server, once: its distinct timestamps per series.
        stamps: dict[tuple[str, str, str], set[int]] = {}
        names = "|".join(READING_MEASUREMENTS)
        for series in server.export(f'{{__name__=~"({names})_.*"}}'):
            m = series["metric"]
            measurement = next(x for x in READING_MEASUREMENTS
                               if m["__name__"].startswith(x + "_"))
            stamps.setdefault((measurement, m["gateway"], m["sensor"]), set()).update(
                series["timestamps"])
        assert sum(len(s) for s in stamps.values()) == emitted, text[-3000:]
        assert {gw for _, gw, _ in stamps} == {gw.id for gw in DEMO_FLEET}
    finally:
        server.stop()
