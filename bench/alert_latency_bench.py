"""Alert latency under load: a reading published at a gateway to its webhook POST received.

A real collector process, with an alerts section, runs against a local
Mosquitto and InfluxDB. This process acts as the gateways (paho, through
cityedge.mqtt) and as the ops team's webhook endpoint (aiohttp):

- background load: --rate readings/s from --sensors PM sensors on --gateways
  gateways, each gateway sending one batch every --batch-interval seconds (as
  an agent does with the default 1 s commit window), staggered evenly; the
  values (5-60 ug/m3) never reach the rule, but every reading is evaluated;
- probes: every --probe-interval seconds, one batch with one reading from a
  dedicated gateway and sensor, alternating 500 and 10 ug/m3. The bench rule
  (threshold, raise at 300, clear below 100, no hold, flapping off) turns
  each probe into exactly one webhook event: firing, then resolved.

For each probe the bench records the time at publish, when the collector's
ack for its batch arrives (publish -> ack: the delivery path, validate ->
write InfluxDB -> ack, on the same batches in the same run: the baseline)
and when the webhook POST for its event arrives (publish -> webhook). The
third row is webhook minus ack for each probe: what alerting adds. The
collector feeds a write group to the engine before it acks the group, so
the engine's evaluation is in both rows; the difference is the notifier's
queue and POST against the ack's hop through the broker (bench/README.md).

    python bench/alert_latency_bench.py            # ~1 min: 50 s measured at 2,000 readings/s
    python bench/alert_latency_bench.py --quick    # a few seconds
    python bench/alert_latency_bench.py --rate 10000 --sensors 2000 --gateways 200
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import platform
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiohttp import web  # noqa: E402

from cityedge.mqtt import MqttClient, MqttOptions  # noqa: E402
from cityedge.uplink import Batch, PayloadError, Reading, Topics, decode_ack, encode_batch  # noqa: E402
from collector.notifiers.webhook import verify  # noqa: E402
from simulators.fleet import write_yaml  # noqa: E402
from simulators.services import LocalServices, spawn  # noqa: E402

SECRET = "bench-secret"
RULE = "bench_pm2_5_high"
PROBE_GATEWAY, PROBE_SENSOR = "gw-probe", "pm-probe"
PROBE_HIGH, PROBE_LOW = 500, 10
DISTRICTS = ("강남구", "서초구", "송파구", "마포구", "종로구", "중구", "용산구")
# How long to wait, after the measured period, for the last probes' acks and webhooks;
# a probe still without one after this is reported missing.
DRAIN_TIMEOUT_S = 10.0

RULES_YAML = f"""\
## The bench's one rule: every particulate reading is evaluated; only the probe's reach it.
timezone: Asia/Seoul
defaults:
  late_after: 5m
  repeat: "off"
  ## A probe fires and resolves every second: that is the point, not flapping.
  flap: {{enabled: false}}
rules:
  - name: {RULE}
    kind: threshold
    match: {{measurement: particulate}}
    field: pm2_5_ugm3
    above: 300
    clear: 100
    message: "PM2.5 {{value:.0f}} ug/m3 at {{sensor}}, {{site}}"
"""


@dataclass
class Probe:
    value: int
    published: float  # perf_counter seconds
    measured: bool
    acked: float | None = None
    hooked: float | None = None
    state: str = ""


@dataclass
class Run:
    """Everything both sides record; perf_counter seconds throughout."""

    probes: dict[int, Probe] = field(default_factory=dict)  # by reading time (ns)
    probe_batches: dict[int, int] = field(default_factory=dict)  # batch id -> reading time
    published: int = 0  # background readings in the measured period
    published_total: int = 0  # background readings, the whole run
    acked_total: int = 0
    measuring: bool = False
    unexpected: list[dict[str, Any]] = field(default_factory=list)
    bad_signatures: int = 0


class Receiver:
    """The webhook endpoint: timestamps each POST on arrival, then checks its signature."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.runner: web.AppRunner | None = None

    async def hook(self, request: web.Request) -> web.Response:
        arrived = time.perf_counter()
        payload = await request.read()
        if not verify(SECRET, request.headers.get("X-Cityedge-Signature", ""), payload,
                      int(time.time())):
            self.run.bad_signatures += 1
            return web.Response(status=401)
        event = json.loads(payload)
        probe = self.run.probes.get(event.get("time_ns", -1))
        if (event.get("rule") != RULE or event.get("scope", {}).get("sensor") != PROBE_SENSOR
                or probe is None or probe.hooked is not None):
            self.run.unexpected.append(event)
        else:
            probe.hooked, probe.state = arrived, event["state"]
        return web.Response(status=204)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/hook", self.hook)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}/hook"

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


class Gateway:
    """One gateway's batch envelope: its epoch, batch counter, seqs, site and sensors."""

    BOOT = "b0075eed"

    def __init__(self, gid: str, sensors: list[str], district: str) -> None:
        self.id, self.sensors = gid, sensors
        self.epoch = secrets.token_hex(8)
        self.site = {"district": district, "site": f"{district} {gid}", "kind": "dust_zone"}
        self.batch_id = self.seq = self.turn = 0
        self.owed = 0.0  # readings due but not yet sent (fractional rates)
        self.last_t = 0  # each sensor's readings stay in time order across batches

    def batch(self, readings: list[tuple[str, int, dict[str, Any]]]) -> tuple[int, bytes]:
        self.batch_id += 1
        mono = time.monotonic_ns()
        wire = []
        for sensor, t, fields in readings:
            self.seq += 1
            wire.append(Reading(sensor, "particulate", fields, t, self.BOOT, mono, seq=self.seq))
        payload = encode_batch(Batch(
            self.id, self.epoch, self.batch_id, time.time_ns(), True, self.BOOT, mono, self.site,
            {s: {"model": "pms5003"} for s in self.sensors}, tuple(wire)))
        return self.batch_id, payload


def percentile(sorted_ms: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q of the samples at or below it."""
    return sorted_ms[max(0, math.ceil(q * len(sorted_ms)) - 1)]


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process so far (Linux /proc), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def collector_config(tmp: Path, services: LocalServices, hook_url: str, *,
                     shipped_rules: bool) -> Path:
    (tmp / "rules.yaml").write_text(RULES_YAML, encoding="utf-8")
    rules = ["rules.yaml"]  # relative to the config's folder
    if shipped_rules:
        rules += [str(p) for p in sorted((ROOT / "configs" / "rules").glob("*.yaml"))]
    mqtt = services.mosquitto.address
    return write_yaml(tmp / "collector.yaml", {
        "insecure": True,  # a plain broker: no registry
        "writer": {"type": "influxdb_v1", "url": services.influxdb.url, "database": "bench"},
        "mqtt": {"host": mqtt[0], "port": mqtt[1], "client_id": "bench-collector"},
        "alerts": {
            "rules": rules,
            "state_dir": "alerts",
            "notifiers": [{"type": "webhook", "url": hook_url, "secret": SECRET,
                           "rules": [RULE]}],
        },
    })


def fleet(args: argparse.Namespace) -> list[Gateway]:
    gateways = []
    for g in range(args.gateways):
        n = args.sensors // args.gateways + (1 if g < args.sensors % args.gateways else 0)
        gateways.append(Gateway(f"gw-{g + 1:03d}", [f"pm-{i + 1:02d}" for i in range(n)],
                                DISTRICTS[g % len(DISTRICTS)]))
    return gateways


def background_readings(gw: Gateway, n: int, interval: float, seed: int
                        ) -> list[tuple[str, int, dict[str, Any]]]:
    """n readings over the gateway's sensors in turn, times spread over the last interval."""
    now = time.time_ns()
    step = int(interval * 1e9) // max(n, 1)
    out = []
    for j in range(n):
        sensor = gw.sensors[(gw.turn + j) % len(gw.sensors)]
        pm25 = 5 + (seed * 31 + j * 17) % 56  # 5..60: far below the rule's 300
        gw.last_t = max(now - (n - 1 - j) * step, gw.last_t + 1)
        out.append((sensor, gw.last_t,
                    {"pm1_0_ugm3": pm25 // 2, "pm2_5_ugm3": pm25, "pm10_ugm3": pm25 * 2}))
    gw.turn = (gw.turn + n) % len(gw.sensors)
    return out


async def load(client: MqttClient, topics: Topics, gateways: list[Gateway],
               args: argparse.Namespace, run: Run) -> None:
    """Each gateway sends once per batch interval; gateways are staggered evenly."""
    per_batch = args.rate * args.batch_interval / len(gateways)
    gap = args.batch_interval / len(gateways)
    start, k = time.perf_counter(), 0
    while True:
        gw = gateways[k % len(gateways)]
        gw.owed += per_batch
        n = int(gw.owed)
        gw.owed -= n
        if n:
            _, payload = gw.batch(background_readings(gw, n, args.batch_interval, k))
            client.publish(topics.up(gw.id), payload, qos=1)
            run.published_total += n
            if run.measuring:
                run.published += n
        k += 1
        await asyncio.sleep(max(0.0, start + k * gap - time.perf_counter()))


async def probes(client: MqttClient, topics: Topics, gw: Gateway, args: argparse.Namespace, *,
                 run: Run, stop: asyncio.Event) -> None:
    """One probe per interval at a random point in its first half.

    The jitter keeps the probes from locking onto the load's schedule (0.5 s is
    ten 50 ms gaps between background batches), which would always put them at
    the same point of the collector's write linger.
    """
    rnd = random.Random(args.seed)
    start, k = time.perf_counter(), 0
    await asyncio.sleep(rnd.uniform(0, args.probe_interval / 2))
    while not stop.is_set():
        value = PROBE_HIGH if k % 2 == 0 else PROBE_LOW
        t = time.time_ns()
        batch_id, payload = gw.batch([(PROBE_SENSOR, t, {"pm2_5_ugm3": value})])
        run.probe_batches[batch_id] = t
        run.probes[t] = Probe(value, time.perf_counter(), run.measuring)
        client.publish(topics.up(gw.id), payload, qos=1)
        k += 1
        due = start + (k + rnd.uniform(0, 0.5)) * args.probe_interval
        await asyncio.sleep(max(0.0, due - time.perf_counter()))


async def acks(client: MqttClient, run: Run, *, probe: bool) -> None:
    """The probe gateway's acks on its own connection; the others' on the load's."""
    while True:
        message = await client.get()
        arrived = time.perf_counter()
        try:
            ack = decode_ack(message.payload)
        except PayloadError:
            continue
        if (ack.gateway == PROBE_GATEWAY) != probe:
            continue
        if probe:
            t = run.probe_batches.get(ack.batch_id)
            if t is not None and run.probes[t].acked is None:
                run.probes[t].acked = arrived
        else:
            run.acked_total += len(ack.seqs)


async def until_ready(client: MqttClient, topics: Topics, gw: Gateway, *, collector: Any,
                      log: Path, timeout: float = 30.0) -> None:
    """Time probes (empty batches, acked at once) until the collector answers one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if collector.poll() is not None:
            raise SystemExit(f"collector exited {collector.returncode}:\n{log.read_text()[-3000:]}")
        client.publish(topics.up(gw.id), gw.batch([])[1], qos=1)
        with contextlib.suppress(TimeoutError):
            while True:
                message = await asyncio.wait_for(client.get(), 0.3)
                with contextlib.suppress(PayloadError):
                    if decode_ack(message.payload).gateway == gw.id:
                        return
    raise SystemExit(f"collector not answering after {timeout:g} s:\n{log.read_text()[-3000:]}")


async def finish(run: Run, measured: list[Probe], load_task: asyncio.Task[None],
                 collector: Any, log: Path) -> None:
    """Wait for the last probes' acks and webhooks, then for every background ack.

    The load goes on while the last probes finish, so they are measured under it too.
    """
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while (time.monotonic() < deadline
           and any(p.acked is None or p.hooked is None for p in measured)):
        if collector.poll() is not None:
            raise SystemExit(f"collector exited:\n{log.read_text()[-3000:]}")
        await asyncio.sleep(0.05)
    load_task.cancel()
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while time.monotonic() < deadline and run.acked_total < run.published_total:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # an extra webhook event would land by now


async def measure(tmp: Path, services: LocalServices, args: argparse.Namespace) -> dict[str, Any]:
    run = Run()
    topics = Topics()
    receiver = Receiver(run)
    hook_url = await receiver.start()
    config = collector_config(tmp, services, hook_url, shipped_rules=args.shipped_rules)
    log = tmp / "collector.log"
    host, port = services.mosquitto.address
    probe_gw = Gateway(PROBE_GATEWAY, [PROBE_SENSOR], DISTRICTS[0])
    gateways = fleet(args)
    probe_client = MqttClient(MqttOptions(host, port, "bench-probe", clean_start=True,
                                          subscriptions=[(topics.ack(PROBE_GATEWAY), 1)]))
    load_client = MqttClient(MqttOptions(host, port, "bench-gateways", clean_start=True,
                                         subscriptions=[(topics.ack(g.id), 1) for g in gateways]))
    collector = spawn([sys.executable, "-m", "collector.cli", "run", "--config", str(config),
                       "--log-level", "WARNING"], log, cwd=ROOT)
    tasks: list[asyncio.Task[None]] = []
    try:
        for client in (probe_client, load_client):
            client.start()
            await client.wait_connected(10)
        await until_ready(probe_client, topics, probe_gw, collector=collector, log=log)
        stop_probes = asyncio.Event()
        tasks = [asyncio.create_task(acks(probe_client, run, probe=True)),
                 asyncio.create_task(acks(load_client, run, probe=False)),
                 asyncio.create_task(load(load_client, topics, gateways, args, run)),
                 asyncio.create_task(probes(probe_client, topics, probe_gw, args, run=run,
                                            stop=stop_probes))]
        await asyncio.sleep(args.warmup)
        cpu0, started = cpu_seconds(collector.pid), time.perf_counter()
        run.measuring = True
        await asyncio.sleep(args.duration)
        run.measuring = False
        elapsed = time.perf_counter() - started
        cpu1 = cpu_seconds(collector.pid)
        stop_probes.set()
        measured = [p for p in run.probes.values() if p.measured]
        await finish(run, measured, tasks[2], collector, log)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        collector.terminate()
        try:
            await asyncio.to_thread(collector.wait, 20)
        except subprocess.TimeoutExpired:
            collector.kill()
            collector.wait()
        for client in (probe_client, load_client):
            await client.close()
        await receiver.close()
    problems = [line for line in log.read_text(errors="replace").splitlines()
                if " ERROR " in line or "Traceback" in line]
    return {"run": run, "measured": measured, "elapsed": elapsed,
            "cpu": None if cpu0 is None or cpu1 is None else (cpu1 - cpu0) / elapsed,
            "collector_errors": problems}


def row(name: str, samples_ms: list[float]) -> str:
    if not samples_ms:
        return f"| {name:<52} |" + f" {'-':>7} |" * 4 + f" {0:>5} |"
    s = sorted(samples_ms)
    cells = (percentile(s, 0.5), percentile(s, 0.99), s[-1], s[0])
    return f"| {name:<52} |" + "".join(f" {c:>7.1f} |" for c in cells) + f" {len(s):>5} |"


def report(result: dict[str, Any], args: argparse.Namespace) -> int:
    run: Run = result["run"]
    measured: list[Probe] = result["measured"]
    to_ack = [(p.acked - p.published) * 1000 for p in measured if p.acked is not None]
    to_hook = [(p.hooked - p.published) * 1000 for p in measured if p.hooked is not None]
    extra = [(p.hooked - p.acked) * 1000 for p in measured
             if p.hooked is not None and p.acked is not None]
    wrong_state = sum(1 for p in measured if p.hooked is not None
                      and p.state != ("firing" if p.value == PROBE_HIGH else "resolved"))
    no_ack = sum(1 for p in measured if p.acked is None)
    no_hook = sum(1 for p in measured if p.hooked is None)
    elapsed = result["elapsed"]
    print(f"| {'per probe':<52} |" + "".join(f" {h:>7} |" for h in
                                              ("p50 ms", "p99 ms", "max ms", "min ms"))
          + f" {'count':>5} |")
    print(f"|{'-' * 54}|" + f"{'-' * 9}|" * 4 + f"{'-' * 7}|")
    print(row("publish -> ack (delivery path: baseline)", to_ack))
    print(row("publish -> webhook received", to_hook))
    print(row("webhook minus ack (what alerting adds)", extra))
    print()
    cpu = result["cpu"]
    unacked = run.published_total - run.acked_total
    print(f"background: {run.published:,} readings in the {elapsed:.1f} s measured "
          f"({run.published / elapsed:,.0f}/s); of the whole run's {run.published_total:,}, "
          f"{unacked:,} not acked"
          + (f"; collector CPU {cpu * 100:.0f} % of one core" if cpu is not None else ""))
    print(f"probes: {len(measured)} measured, {no_ack} without ack, {no_hook} without webhook, "
          f"{wrong_state} with the wrong state; {len(run.unexpected)} unexpected webhook events, "
          f"{run.bad_signatures} bad signatures")
    for line in result["collector_errors"][:5]:
        print(f"collector log: {line}")

    def summary(samples: list[float]) -> dict[str, float] | None:
        s = sorted(samples)
        return {"p50": round(percentile(s, 0.5), 2), "p99": round(percentile(s, 0.99), 2),
                "max": round(s[-1], 2), "count": len(s)} if s else None

    print(json.dumps({"rate": args.rate, "sensors": args.sensors, "gateways": args.gateways,
                      "seconds": round(elapsed, 1), "published": run.published,
                      "unacked": unacked, "publish_to_ack_ms": summary(to_ack),
                      "publish_to_webhook_ms": summary(to_hook),
                      "webhook_minus_ack_ms": summary(extra), "without_ack": no_ack,
                      "without_webhook": no_hook, "wrong_state": wrong_state,
                      "unexpected_events": len(run.unexpected)}))
    failed = (not measured or no_ack or no_hook or wrong_state or run.unexpected
              or run.bad_signatures or unacked)
    if failed:
        print("FAILED: every reading must be acked, and every measured probe give exactly one"
              " webhook event", file=sys.stderr)
        for event in run.unexpected[:5]:
            print(f"unexpected: {json.dumps(event, ensure_ascii=False)[:300]}", file=sys.stderr)
    return 1 if failed else 0


def interrupted(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=None,
                    help="background readings per second (default 2000; --quick: 200)")
    ap.add_argument("--sensors", type=int, default=None,
                    help="background sensors (default 200; --quick: 20)")
    ap.add_argument("--gateways", type=int, default=None,
                    help="background gateways, the sensors split among them (default 20;"
                         " --quick: 4)")
    ap.add_argument("--batch-interval", type=float, default=1.0,
                    help="seconds between one gateway's batches (default 1.0)")
    ap.add_argument("--probe-interval", type=float, default=None,
                    help="seconds between probes (default 0.5; --quick: 0.25)")
    ap.add_argument("--duration", type=float, default=None,
                    help="measured seconds (default 50; --quick: 4)")
    ap.add_argument("--warmup", type=float, default=None,
                    help="seconds of load before measuring (default 3; --quick: 1)")
    ap.add_argument("--shipped-rules", action="store_true",
                    help="evaluate configs/rules/*.yaml too (the webhook still gets only the"
                         " bench rule's events)")
    ap.add_argument("--seed", type=int, default=1, help="for the probes' timing jitter")
    ap.add_argument("--quick", action="store_true", help="small load, a few seconds")
    ap.add_argument("--dir", type=Path, default=None,
                    help="where the services' and collector's files go (default: the system's"
                         " temporary folder); removed afterwards")
    args = ap.parse_args(argv)
    quick = args.quick
    for name, full, small in (("rate", 2000.0, 200.0), ("sensors", 200, 20), ("gateways", 20, 4),
                              ("probe_interval", 0.5, 0.25), ("duration", 50.0, 4.0),
                              ("warmup", 3.0, 1.0)):
        if getattr(args, name) is None:
            setattr(args, name, small if quick else full)
    if args.gateways < 1 or args.sensors < args.gateways:
        ap.error("need at least one gateway and one sensor per gateway")
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    signal.signal(signal.SIGTERM, interrupted)  # cleaned up like Ctrl-C
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
    print(f"# alert_latency_bench {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC")
    print(f"machine: {os.cpu_count()} cores, Linux {platform.release()}, "
          f"Python {platform.python_version()}")
    print(f"load: {args.rate:,.0f} readings/s from {args.sensors} sensors on {args.gateways} "
          f"gateways (a batch per gateway every {args.batch_interval:g} s); a probe every "
          f"{args.probe_interval:g} s; {args.duration:g} s measured after {args.warmup:g} s"
          + ("; the shipped rules too" if args.shipped_rules else ""))
    print()
    with tempfile.TemporaryDirectory(prefix="cityedge-alert-latency-", dir=args.dir) as d:
        tmp = Path(d)
        services = LocalServices(tmp / "services")
        with services:
            try:
                result = asyncio.run(measure(tmp, services, args))
            except KeyboardInterrupt as exc:
                print(f"interrupted ({str(exc) or 'SIGINT'}): collector, Mosquitto and InfluxDB"
                      " stopped, files removed", file=sys.stderr)
                return 130
    return report(result, args)


if __name__ == "__main__":
    sys.exit(main())
