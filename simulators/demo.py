"""``edge-sim demo``: the whole path on one machine, with a live view of what lands.

Starts (or uses) Mosquitto and InfluxDB, simulated devices on ptys for a dust
zone, a bus stop and an apartment unit, one real agent process per gateway
and a real collector process evaluating alerts. A dust episode at the bus
stop (``--episode-at``) raises a fine-dust advisory: the live view shows
when the webhook call, the message on the bus stop's display downlink and
the terminal's ack arrived, counted from the reading that caused it. Stops
everything it started, by process id: devices first, then agents once they
have delivered what they hold.
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

from edge_agent.decoding import load_profiles
from simulators.demo_alerts import RULES_FILE, WEBHOOK_SECRET, AlertWatch, Episode
from simulators.device import SimulatedDevice
from simulators.fleet import (
    DEMO_FLEET,
    agent_config,
    alerts_config,
    collector_config,
    display_file,
    write_yaml,
)
from simulators.services import LocalServices, influx_query, spawn

ROOT = Path(__file__).resolve().parent.parent
# What the demo's devices produce (firmware_profiles/*.yaml measurements).
READING_MEASUREMENTS = ("particulate", "noise", "bus_terminal", "climate")
QUERIES = (
    "SELECT mean(pm2_5_ugm3) FROM particulate WHERE time > now() - 10m "
    "GROUP BY time(1m), district",
    "SELECT last(pm2_5_ugm3), last(pm10_ugm3) FROM particulate GROUP BY gateway, sensor",
    "SELECT last(outbox_readings), last(link_up), last(clock_synced) FROM gateway_health "
    "GROUP BY gateway",
    "SELECT rule, state, value, message FROM alerts ORDER BY time DESC LIMIT 10",
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


class Demo:
    def __init__(self, options: DemoOptions, console: Console) -> None:
        self.options = options
        self.console = console
        self.stop_requested = threading.Event()
        self.services: LocalServices | None = None
        self.procs: dict[str, Any] = {}
        self.devices: dict[tuple[str, str], SimulatedDevice] = {}
        self.started = time.monotonic()
        # Only this run's readings count (a reused --workdir or --influx holds older ones).
        self.since_ns = time.time_ns()
        self.first_landed_s: float | None = None
        self.episode = Episode(options.episode_at if options.episode_at is not None else 1e12,
                               options.episode_length)
        self.watch: AlertWatch | None = None
        self.delivered = (0, 0)  # (in InfluxDB, emitted) once the devices have stopped
        self.terminal: tuple[str, Path] | None = None

    # -- setup ------------------------------------------------------------------
    def _start_services(self, root: Path) -> tuple[tuple[str, int], str]:
        if self.options.mqtt and self.options.influx:
            return self.options.mqtt, self.options.influx
        self.services = LocalServices(root / "services")
        if not self.options.mqtt:
            self.services.mosquitto.start()
        if not self.options.influx:
            self.services.influxdb.start()
        mqtt = self.options.mqtt or self.services.mosquitto.address
        influx = self.options.influx or self.services.influxdb.url
        return mqtt, influx

    def _python(self, module: str, *args: str, log: Path) -> Any:
        return spawn([sys.executable, "-m", module, *args], log, cwd=ROOT)

    def run(self) -> int:
        with contextlib.ExitStack() as stack:
            if self.options.workdir is None:
                root = Path(stack.enter_context(
                    tempfile.TemporaryDirectory(prefix="cityedge-demo-")))
            else:
                root = self.options.workdir
                root.mkdir(parents=True, exist_ok=True)
            stack.callback(self._stop_all)
            mqtt, influx = self._start_services(root)
            self.influx = influx
            self.watch = AlertWatch(mqtt)
            stack.callback(self.watch.stop)
            webhook = self.watch.start()
            alerts = alerts_config(RULES_FILE, root / "alerts", mqtt, webhook, WEBHOOK_SECRET)
            cfg = write_yaml(root / "collector.yaml",
                             collector_config(mqtt, influx, self.options.database, alerts))
            self.procs["collector"] = self._python("collector.cli", "run", "--config", str(cfg),
                                                   log=root / "collector.log")
            profiles = load_profiles(ROOT / "firmware_profiles")
            for gw in DEMO_FLEET:
                if gw.kind == "bus_stop" and self.terminal is None:
                    self.terminal = (gw.id, display_file(gw, root / "state"))
                # The episode is the bus stop's: its PM sensor reads it, its terminal shows it.
                episode = self.episode.multiplier if gw.kind == "bus_stop" else (lambda: 1.0)
                for s in gw.sensors:
                    self.devices[(gw.id, s.id)] = SimulatedDevice(
                        profiles[s.profile], link=root / "dev" / gw.id / s.id,
                        interval=s.interval, seed=s.seed, episode=episode)
                acfg = write_yaml(root / "agents" / f"{gw.id}.yaml",
                                  agent_config(gw, root / "dev", root / "state", mqtt))
                self.procs[gw.id] = self._python("edge_agent.cli", "run", "--config", str(acfg),
                                                 log=root / "agents" / f"{gw.id}.log")
            self._wait_ports_open(root)
            for device in self.devices.values():
                device.start()
            self.episode.start()
            self._print_queries(mqtt, influx)
            self._live()
            self._drain()
            self._alert_summary()
        self._print_queries(mqtt, influx, final=True)
        return 0

    def _wait_ports_open(self, root: Path, timeout: float = 20) -> None:
        """pyserial flushes a port's input when it opens it: start devices after the agents."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stop_requested.is_set():
            opened = sum(
                (root / "agents" / f"{gw.id}.log").read_text(errors="replace").count("opened")
                for gw in DEMO_FLEET if (root / "agents" / f"{gw.id}.log").exists()
            )
            if opened >= len(self.devices):
                return
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    log = root / ("collector.log" if name == "collector" else f"agents/{name}.log")
                    raise SystemExit(f"{name} exited early:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)

    # -- live view -----------------------------------------------------------------
    def landed(self) -> dict[str, tuple[int, float | None]]:
        """Per gateway: readings in InfluxDB (every reading measurement) and the last PM2.5."""
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
        left = (f", {max(0.0, self.options.duration - elapsed):.0f} s left"
                if self.options.duration else ", Ctrl-C to stop")
        return Panel(f"{elapsed:.0f} s{left}; {first}\nprocesses: {procs}", title="status")

    def _live(self) -> None:
        with Live(console=self.console, refresh_per_second=2, transient=False) as live:
            while not self.stop_requested.is_set():
                landed = self.landed()
                live.update(Group(self._table(landed), self._alerts(), self._status(landed)))
                if (self.options.duration
                        and time.monotonic() - self.started >= self.options.duration):
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
                f" webhook {seen.after(seen.webhook_ns):.2f} s after the reading; downlink "
                + (", ".join(f"{gw} {seen.after(ns):.2f} s" for gw, ns in seen.downlinks.items())
                   or "none") + "; terminal ack " + (", ".join(acks) or "none"), highlight=False)
        if self.watch.bad_signatures:
            self.console.print(f"[red]{self.watch.bad_signatures} webhook calls with a bad"
                               " signature[/]")

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
            if all(landed.get(g, (0, None))[0] >= n for g, n in emitted.items()):
                break
            time.sleep(0.5)
        self.console.print(self._table(landed))
        total = sum(emitted.values())
        got = sum(landed.get(g, (0, None))[0] for g in emitted)
        self.delivered = (got, total)
        self.console.print(f"[bold]{got} of {total} emitted readings are in InfluxDB[/]")

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
        if self.services is not None:
            self.services.stop()

    def _print_queries(self, mqtt: tuple[str, int], influx: str, final: bool = False) -> None:
        host_port = influx.split("://", 1)[-1].rstrip("/")
        host, _, port = host_port.partition(":")
        note = " (the demo's own InfluxDB has stopped; run the demo again to query it live)" \
            if final and self.services and not self.options.influx else ""
        self.console.print(
            f"\n[bold]Try these in InfluxDB[/] (database {self.options.database!r}){note}:")
        for q in QUERIES:
            self.console.print(f"  influx -host {host} -port {port or 8086} "
                               f"-database {self.options.database} -execute \"{q}\"",
                               highlight=False, soft_wrap=True)
        if not final:
            self.console.print(f"MQTT broker {mqtt[0]}:{mqtt[1]}, InfluxDB {influx}\n",
                               highlight=False)


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
