"""``edge-sim demo``: the whole path on one machine, with a live view of what lands.

Starts (or uses) Mosquitto and InfluxDB, simulated devices on ptys for a dust
zone, a bus stop and an apartment unit, one real agent process per gateway
and a real collector process evaluating alerts. Secured as a deployment is
(simulators/demo_secure.py): TLS, a gateway registry, the broker's password
and ACL files generated from it, sealed acks and displays; ``--insecure``
opts out, with a warning. A dust episode at the bus stop (``--episode-at``)
raises a fine-dust advisory: the live view shows when the webhook call came,
when the bus stop's terminal put the display up and when its ack arrived,
counted from the reading that caused it. Stops everything it started, by
process id: devices first, then agents once they have delivered what they
hold.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from cityedge import shipped
from collector.schema.retention import RetentionLayout
from collector.schema.setup import Target, apply
from edge_agent.config import load_config
from edge_agent.decoding import load_profiles
from edge_agent.status import status_socket
from edge_agent.status_cmd import ask
from simulators.demo_alerts import RULES_FILE, WEBHOOK_SECRET, AlertWatch, Episode
from simulators.demo_influx import READING_MEASUREMENTS, landed_by_metrics
from simulators.demo_secure import (
    INSECURE_WARNING,
    OperatorBroker,
    Trust,
    refusals,
    start_broker,
)
from simulators.device import SimulatedDevice
from simulators.fleet import (
    DEMO_FLEET,
    agent_config,
    alerts_config,
    collector_config,
    display_file,
    write_yaml,
)
from simulators.services import InfluxDB, Mosquitto, free_port, influx_query, spawn

ROOT = Path(__file__).resolve().parent.parent
QUERIES = (
    "SELECT mean(pm2_5_ugm3) AS pm2_5_ugm3 FROM particulate WHERE time > now() - 10m "
    "GROUP BY time(1m), district",
    "SELECT last(pm2_5_ugm3) AS pm2_5_ugm3, last(pm10_ugm3) AS pm10_ugm3 FROM particulate "
    "GROUP BY gateway, sensor",
    "SELECT last(outbox_readings) AS outbox_readings, last(link_up) AS link_up, "
    "last(clock_synced) AS clock_synced FROM gateway_health GROUP BY gateway",
    "SELECT rule, state, value, message FROM alerts ORDER BY time DESC LIMIT 10",
    # Filled by influx-setup's continuous queries once a minute is over.
    "SELECT pm2_5_ugm3, pm2_5_ugm3_max, readings FROM mean_1m.particulate "
    "WHERE time > now() - 10m GROUP BY district, sensor",
)


@dataclass
class DemoOptions:
    duration: float | None
    mqtt: tuple[str, int] | None
    influx: str | None
    database: str
    workdir: Path | None
    # Seconds after the devices start that the bus stop's dust episode begins
    # (None: no episode), and how long it lasts.
    episode_at: float | None = 20.0
    episode_length: float = 30.0
    # Plain MQTT, no registry, no seals (warned about); the default is secure.
    insecure: bool = False
    # With ``mqtt``: the operator's registry, secrets and CA for that broker.
    operator: OperatorBroker | None = None
    # The API ``influx`` speaks: v1 (InfluxQL, the live view queries it) or v2
    # (/api/v2/write; ``database`` is the bucket, the live view counts from the
    # collector's Prometheus metrics, since a v2 server need not answer InfluxQL).
    influx_api: str = "v1"
    org: str = "cityedge"
    token: str | None = None


class Demo:
    def __init__(self, options: DemoOptions, console: Console) -> None:
        self.options = options
        self.console = console
        self.stop_requested = threading.Event()
        self.broker: Mosquitto | None = None  # the demo's own, if it started one
        self.influxdb: InfluxDB | None = None
        self.trust: Trust | None = None
        self.procs: dict[str, Any] = {}
        self.log_starts: dict[Path, int] = {}  # log -> its size when this run's process started
        self.devices: dict[tuple[str, str], SimulatedDevice] = {}
        self.sockets: dict[str, Path] = {}  # each agent's status socket
        self.started = time.monotonic()
        # --duration counts from here: the devices' start, not the services' and agents'
        # (seconds on a loaded machine), so a short run emits what its length says.
        self.devices_started = self.started
        # Only this run's readings count (a reused --workdir or --influx holds older ones).
        self.since_ns = time.time_ns()
        self.first_landed_s: float | None = None
        self.episode = Episode(options.episode_at if options.episode_at is not None else 1e12,
                               options.episode_length)
        self.watch: AlertWatch | None = None
        self.delivered = (0, 0)  # (in InfluxDB, emitted) once the devices have stopped
        self.refused: dict[str, int] = {}  # refusals.refusals() once the agents delivered
        self.terminal: tuple[str, Path] | None = None
        # With influx_api v2: the collector's metrics listener (what landed is counted there).
        self.metrics_port: int | None = None
        self.ops_page: str | None = None  # the operations page's address (v1 targets)

    # -- setup ------------------------------------------------------------------
    def _start_services(self, root: Path) -> tuple[Trust, str]:
        o = self.options
        if o.insecure:
            self.console.print(f"[bold red]WARNING[/] {INSECURE_WARNING}", highlight=False)
        trust, self.broker = start_broker(root, DEMO_FLEET, o.mqtt, o.insecure, o.operator)
        if o.influx_api == "v2" and not o.influx:
            raise SystemExit("--influx-api v2 needs --influx URL (an InfluxDB 2.x, 3.x or Cloud"
                             " endpoint; the demo starts only an InfluxDB 1.x of its own)")
        if o.influx:
            return trust, o.influx
        (root / "services" / "influxdb").mkdir(parents=True, exist_ok=True)
        self.influxdb = InfluxDB(root / "services" / "influxdb")
        self.influxdb.start()
        # Its own InfluxDB gets the retention policies and continuous queries of
        # `edge-collector influx-setup` (an operator's --influx is left as it is).
        apply(Target(self.influxdb.url, o.database), RetentionLayout())
        return trust, self.influxdb.url

    def _python(self, module: str, *args: str, log: Path) -> Any:
        # A reused --workdir keeps the logs: this run's part starts here.
        self.log_starts[log] = log.stat().st_size if log.exists() else 0
        return spawn([sys.executable, "-m", module, *args], log, cwd=ROOT)

    def _this_run(self, log: Path) -> str:
        """What the process wrote to ``log`` in this run."""
        with log.open("rb") as f:
            f.seek(self.log_starts.get(log, 0))
            return f.read().decode(errors="replace")

    def run(self) -> int:
        with contextlib.ExitStack() as stack:
            if self.options.workdir is None:
                root = Path(stack.enter_context(
                    tempfile.TemporaryDirectory(prefix="cityedge-demo-")))
            else:
                root = self.options.workdir
                root.mkdir(parents=True, exist_ok=True)
            stack.callback(self._stop_all)
            trust, influx = self._start_services(root)
            self.trust, self.influx = trust, influx
            terminals = {gw.id: display_file(gw, root / "state")
                         for gw in DEMO_FLEET if gw.kind == "bus_stop"}
            self.terminal = next(iter(terminals.items()), None)
            self.watch = AlertWatch(trust.collectors, terminals)
            stack.callback(self.watch.stop)
            webhook = self.watch.start()
            alerts = alerts_config(RULES_FILE, root / "alerts", trust.collectors.yaml(), webhook,
                                   WEBHOOK_SECRET)
            doc = collector_config(trust.collectors.yaml(), trust.collector_keys(), influx,
                                   self.options.database, alerts,
                                   writer=self._writer(influx))
            if self.options.influx_api == "v2":
                self.metrics_port = free_port()
                doc["metrics"] = {"port": self.metrics_port}
            else:  # the page reads InfluxDB with InfluxQL
                page_port = free_port()
                self.ops_page = f"http://127.0.0.1:{page_port}/"
                doc["ops_page"] = {"port": page_port, "refresh": 5}
            cfg = write_yaml(root / "collector.yaml", doc)
            self.procs["collector"] = self._python("collector.cli", "run", "--config", str(cfg),
                                                   log=root / "collector.log")
            profiles = load_profiles(shipped.profiles_dir())
            for gw in DEMO_FLEET:
                # The episode is the bus stop's: its PM sensor reads it, its terminal shows it.
                episode = self.episode.multiplier if gw.kind == "bus_stop" else (lambda: 1.0)
                for s in gw.sensors:
                    self.devices[(gw.id, s.id)] = SimulatedDevice(
                        profiles[s.profile], link=root / "dev" / gw.id / s.id,
                        interval=s.interval, seed=s.seed, episode=episode)
                acfg = write_yaml(root / "agents" / f"{gw.id}.yaml", agent_config(
                    gw, root / "dev", root / "state", trust.gateways.yaml(),
                    trust.secret_files.get(gw.id)))
                self.sockets[gw.id] = status_socket(load_config(acfg), acfg.resolve().parent)
                self.procs[gw.id] = self._python("edge_agent.cli", "run", "--config", str(acfg),
                                                 log=root / "agents" / f"{gw.id}.log")
            self._wait_ports_open(root)
            for device in self.devices.values():
                device.start()
            self.devices_started = time.monotonic()
            self.episode.start()
            self._print_queries(influx)
            self._live()
            self._drain()
            self._alert_summary()
            self._refusal_summary()
        self._print_queries(influx, final=True)
        return 0

    def _writer(self, influx: str) -> dict[str, Any] | None:
        o = self.options
        if o.influx_api != "v2":
            return None
        writer = {"type": "influxdb_v2", "url": influx, "org": o.org, "bucket": o.database}
        if o.token:
            writer["token"] = o.token
        return writer

    def _wait_ports_open(self, root: Path, timeout: float = 20) -> None:
        """pyserial flushes a port's input when it opens it: start devices after the agents."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stop_requested.is_set():
            opened = sum(self._this_run(root / "agents" / f"{gw.id}.log").count("opened")
                         for gw in DEMO_FLEET)
            if opened >= len(self.devices):
                return
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    log = root / ("collector.log" if name == "collector" else f"agents/{name}.log")
                    raise SystemExit(f"{name} exited early:\n{self._this_run(log)[-2000:]}")
            time.sleep(0.1)

    # -- live view -----------------------------------------------------------------
    def landed(self) -> dict[str, tuple[int, float | None]]:
        """Per gateway: readings in InfluxDB (every reading measurement) and the last PM2.5."""
        if self.metrics_port is not None:
            return landed_by_metrics(self.metrics_port)
        try:
            counts = influx_query(
                self.influx, f"SELECT count(seq) FROM {', '.join(READING_MEASUREMENTS)} "
                f"WHERE time >= {self.since_ns} GROUP BY gateway", self.options.database, timeout=5)
            pm = influx_query(self.influx, "SELECT last(pm2_5_ugm3) FROM particulate "
                              f"WHERE time >= {self.since_ns} GROUP BY gateway",
                              self.options.database, timeout=5)
        except OSError:
            return {}
        total: dict[str, int] = {}
        for res in counts.get("results", []):
            for series in res.get("series", []):
                gw = series["tags"]["gateway"]
                total[gw] = total.get(gw, 0) + int(series["values"][0][1])
        last: dict[str, float] = {}
        for res in pm.get("results", []):
            for series in res.get("series", []):
                last[series["tags"]["gateway"]] = series["values"][0][1]
        return {gw: (n, last.get(gw)) for gw, n in total.items()}

    def _table(self, landed: dict[str, tuple[int, float | None]]) -> Table:
        t = Table(title="cityedge demo: readings from sensor to InfluxDB", expand=True)
        t.add_column("gateway", no_wrap=True)
        t.add_column("kind", no_wrap=True)
        t.add_column("district", no_wrap=True)
        for col in ("emitted", "in InfluxDB", "on the way", "PM2.5 ug/m3"):
            t.add_column(col, justify="right", no_wrap=True)
        for gw in DEMO_FLEET:
            emitted = sum(self.devices[(gw.id, s.id)].stats.frames for s in gw.sensors)
            count, last = landed.get(gw.id, (0, None))
            t.add_row(gw.id, gw.kind, gw.district, str(emitted), str(count),
                      str(max(0, emitted - count)), "-" if last is None else f"{last:.0f}")
        return t

    def _status(self, landed: dict[str, tuple[int, float | None]]) -> Panel:
        elapsed = time.monotonic() - self.started
        if self.first_landed_s is None and any(c for c, _ in landed.values()):
            self.first_landed_s = elapsed
        procs = ", ".join(f"{n} {'up' if p.poll() is None else 'EXITED'}"
                          for n, p in self.procs.items())
        first = (f"first reading landed after {self.first_landed_s:.1f} s"
                 if self.first_landed_s else "waiting for the first reading")
        running = time.monotonic() - self.devices_started
        left = (f", {max(0.0, self.options.duration - running):.0f} s left"
                if self.options.duration else ", Ctrl-C to stop")
        secured = "" if self.trust is None else f"\n{self.trust.summary}"
        return Panel(f"{elapsed:.0f} s{left}; {first}\nprocesses: {procs}{secured}",
                     title="status", style="red" if self.trust and self.trust.insecure else "")

    def _live(self) -> None:
        with Live(console=self.console, refresh_per_second=2, transient=False) as live:
            while not self.stop_requested.is_set():
                landed = self.landed()
                live.update(Group(self._table(landed), self._alerts(), self._status(landed)))
                if (self.options.duration
                        and time.monotonic() - self.devices_started >= self.options.duration):
                    break
                self.stop_requested.wait(1.0)

    def _alerts(self) -> Table | str:
        if self.watch is None:
            return ""
        return self.watch.table(self.episode, self.terminal)

    def _alert_summary(self) -> None:
        """The episode's advisory: how long after the reading each receiver had it."""
        if self.watch is None:
            return
        self.console.print(self._alerts())
        for seen in self.watch.timeline():
            if seen.event["state"] != "firing":
                continue
            acks = [f"{gw} {result} after {seen.after(ns):.2f} s"
                    for gw, (result, ns) in seen.acks.items()]
            self.console.print(
                f"[bold]{seen.event['rule']} firing in {seen.event['scope'].get('district')}[/]:"
                f" webhook {seen.after(seen.webhook_ns):.2f} s after the reading; on screen "
                + (", ".join(f"{gw} {seen.after(ns):.2f} s" for gw, ns in seen.on_screen.items())
                   or "none") + "; terminal ack " + (", ".join(acks) or "none"), highlight=False)
        if self.watch.bad_signatures:
            self.console.print(f"[red]{self.watch.bad_signatures} webhook calls with a bad"
                               " signature[/]")

    def _refusal_summary(self) -> None:
        """What the broker, the collector and the agents refused (all 0 when all is well)."""
        log = self.broker.log_path if self.broker is not None else None
        if self.options.influx_api == "v2":
            self.console.print("refusals: counted in the collector's metrics"
                               f" (http://127.0.0.1:{self.metrics_port}/metrics); a v2 target is"
                               " not asked with InfluxQL", highlight=False)
            return
        try:
            self.refused = refusals(self.influx, self.options.database, self.since_ns, log)
        except OSError as exc:
            self.console.print(f"refusals: InfluxDB did not answer: {exc}")
            return
        line = ", ".join(f"{k.replace('_', ' ')} {n}" for k, n in self.refused.items())
        self.console.print(f"[bold]refused[/]: {line}", highlight=False)
        assert self.trust is not None
        self.console.print(self.trust.summary, highlight=False,
                           style="bold red" if self.trust.insecure else None)

    # -- teardown ----------------------------------------------------------------------
    def _drain(self, timeout: float = 30) -> None:
        for device in self.devices.values():
            device.stop()
        emitted = {gw.id: sum(self.devices[(gw.id, s.id)].stats.frames for s in gw.sensors)
                   for gw in DEMO_FLEET}
        self.console.print("devices stopped; waiting for the agents to deliver what they hold ...")
        deadline = time.monotonic() + timeout
        landed: dict[str, tuple[int, float | None]] = {}
        while time.monotonic() < deadline:
            landed = self.landed()
            if (all(landed.get(g, (0, None))[0] >= n for g, n in emitted.items())
                    and (self.metrics_port is None or self._outboxes_empty())):
                break
            time.sleep(0.5)
        self.console.print(self._table(landed))
        total = sum(emitted.values())
        got = sum(landed.get(g, (0, None))[0] for g in emitted)
        self.delivered = (got, total)
        self.console.print(f"[bold]{got} of {total} emitted readings are in InfluxDB[/]")

    def _outboxes_empty(self) -> bool:
        """Every agent holds no reading: all acked, so all written. The collector's written
        count (a v2 target is not queried) counts a resent batch again, so it can reach
        the emitted count before the last readings are in."""
        try:
            return all(ask(path)["outbox"]["readings"] == 0 for path in self.sockets.values())
        except (OSError, ValueError, KeyError, TypeError):
            return False

    def _stop_all(self) -> None:
        for device in self.devices.values():
            device.close()
        agents = [p for n, p in self.procs.items() if n != "collector"]
        for proc in agents:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for proc in agents:
            try:
                proc.wait(15)
            except Exception:  # still alive after 15 s: it goes the hard way
                proc.kill()
                proc.wait()
        collector = self.procs.get("collector")
        if collector is not None:
            with contextlib.suppress(ProcessLookupError):
                collector.send_signal(signal.SIGTERM)
            try:
                collector.wait(15)
            except Exception:
                collector.kill()
                collector.wait()
        for service in (self.broker, self.influxdb):
            if service is not None:
                service.stop()

    def _print_queries(self, influx: str, final: bool = False) -> None:
        if self.options.influx_api == "v2":
            self.console.print(
                f"\n[bold]Readings go to {influx}/api/v2/write[/] (org {self.options.org!r},"
                f" bucket {self.options.database!r}); query them with that server's own"
                f" tools, e.g. Flux: from(bucket: \"{self.options.database}\")"
                " |> range(start: -10m) |> filter(fn: (r) => r._measurement == \"particulate\")",
                highlight=False, soft_wrap=True)
            if not final and self.trust is not None:
                self.console.print(self.trust.summary, highlight=False)
            return
        host_port = influx.split("://", 1)[-1].rstrip("/")
        host, _, port = host_port.partition(":")
        note = " (the demo's own InfluxDB has stopped; run the demo again to query it live)" \
            if final and self.influxdb is not None else ""
        self.console.print(
            f"\n[bold]Try these in InfluxDB[/] (database {self.options.database!r}){note}:")
        for q in QUERIES:
            self.console.print(f"  influx -host {host} -port {port or 8086} "
                               f"-database {self.options.database} -execute \"{q}\"",
                               highlight=False, soft_wrap=True)
        if not final and self.trust is not None:
            self.console.print(f"{self.trust.summary}\nInfluxDB {influx}\n", highlight=False,
                               style="bold red" if self.trust.insecure else None)
        if not final and self.ops_page is not None:
            self.console.print(f"[bold]Operations page[/]: {self.ops_page}\n", highlight=False)


def run_demo(options: DemoOptions) -> int:
    console = Console()
    demo = Demo(options, console)

    def on_signal(signum: int, _frame: object) -> None:
        if demo.stop_requested.is_set():
            raise KeyboardInterrupt
        console.print(f"\n{signal.Signals(signum).name}: stopping devices, agents, collector ...")
        demo.stop_requested.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        return demo.run()
    except KeyboardInterrupt:
        # A third signal while stopping: what is left dies with us (PDEATHSIG).
        console.print("interrupted again: exiting now")
        return 130
    except (RuntimeError, SystemExit) as exc:
        if isinstance(exc, SystemExit) and not isinstance(exc.code, str):
            raise
        console.print(f"[bold red]demo failed to start[/]: {exc}", highlight=False)
        return 1
