#!/usr/bin/env python3
"""The whole city on one collector, each figure beside its baseline measured in the same run.

Starts its own Mosquitto and InfluxDB (simulators/services.py), real collector
processes (``insecure: true``: the bench's broker is plain) and the simulated
fleet (simulators/city_fleet: one MQTT session per gateway, the agent's
delivery window), then prints one table:

- raw InfluxDB line-protocol ingest of the collector's own 14-field points, 1 and
  2 writers: the ceiling for everything below;
- Mosquitto's message rate for the city's own batches, plain paho in and out;
- the city (3,300 gateways, ~2,500 readings/s) and 5x its readings on one
  collector: landed/s, publish -> ack and reading -> acked (queryable by then)
  p50/p99, collector CPU per reading and RSS, the fleet's own CPU;
- saturation: a 1M-reading backlog drained by the fleet's gateways at once
  (default agent settings), as a share of raw ingest;
- 1, 2 and 3 collectors on one shared subscription, the same backlog each;
- where a collector's main thread spends its time (cProfile);
- the edge agent with 20 simulated PMS5003s at 1 Hz: CPU per reading and RSS,
  beside raw sqlite3 inserts of the same rows (bench/edge_cost_bench.py).

Every reading acked in every phase is then checked in InfluxDB: per gateway,
as many points as readings, seqs 1..n (exactly once); a phase that fails says so.

    python bench/city.py            # about 7 minutes on 2 cores
    python bench/city.py --quick    # under a minute, smaller everything
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "bench"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import city_parts as parts  # noqa: E402
import edge_cost_bench  # noqa: E402

from edge_agent.decoding import load_profile  # noqa: E402
from simulators.city_fleet import Fleet, FleetOptions, FleetReport, city, first  # noqa: E402
from simulators.city_fleet.cli import raise_file_limit  # noqa: E402
from simulators.city_fleet.sites import load  # noqa: E402
from simulators.device import SimulatedDevice  # noqa: E402
from simulators.fleet import write_yaml  # noqa: E402
from simulators.services import LocalServices, influx_query, spawn  # noqa: E402

Row = tuple[str, str, str, str]  # figure, value, baseline, ratio


def run_fleet(options: FleetOptions, backlog: int = 0) -> tuple[FleetReport, int]:
    fleet = Fleet(options)
    loaded = parts.preload(fleet, backlog) if backlog else 0
    return asyncio.run(fleet.run()), loaded


def city_phase(tmp: Path, s: LocalServices, name: str, *, rate: float, seconds: float,
               scale: float) -> dict[str, Any]:
    sites = tuple(city(scale))
    port, url = s.mosquitto.port, s.influxdb.url
    with parts.collectors(tmp, port, url, prefix=f"bench/{name}", db=name) as c:
        cpu0 = c.cpu()
        report, _ = run_fleet(FleetOptions(host="127.0.0.1", port=port, sites=sites,
                                           duration=seconds, prefix=f"bench/{name}", rate=rate,
                                           drain_timeout=90))
        cpu = c.cpu() - cpu0
        rss, hwm = c.rss_mib(), c.rss_mib("VmHWM")
    return {"report": report, "offered": load(sites) * rate, "cpu": cpu, "rss": rss,
            "hwm": hwm, "check": parts.exactly_once(url, name, report.per_gateway),
            "landed_per_s": report.readings / seconds}


def drain_phase(tmp: Path, s: LocalServices, name: str, *, gateways: int, per_gateway: int,
                n: int = 1, profile: Path | None = None) -> dict[str, Any]:
    port, url = s.mosquitto.port, s.influxdb.url
    with parts.collectors(tmp, port, url, prefix=f"bench/{name}", db=name, n=n,
                          profile=profile) as c:
        cpu0 = c.cpu()
        report, loaded = run_fleet(FleetOptions(host="127.0.0.1", port=port,
                                                sites=tuple(first(gateways)), duration=0.0,
                                                prefix=f"bench/{name}", drain_timeout=240),
                                   per_gateway)
        cpu = c.cpu() - cpu0
        rss, hwm = c.rss_mib(), c.rss_mib("VmHWM")
    secs = report.wall_s - report.connect_s
    return {"report": report, "readings": loaded, "secs": secs, "rate": report.acked / secs,
            "cpu": cpu, "rss": rss, "hwm": hwm,
            "check": parts.exactly_once(url, name, report.per_gateway)}


def edge_phase(tmp: Path, s: LocalServices, seconds: float, sensors: int = 20) -> dict[str, Any]:
    """A real agent with ``sensors`` simulated PMS5003s at 1 Hz; its CPU per reading stored
    and its RSS, beside edge_cost_bench's raw sqlite3 inserts of the same rows."""
    profile = load_profile(ROOT / "firmware_profiles" / "pms5003.yaml")
    devices = [SimulatedDevice(profile, interval=1.0, seed=k) for k in range(sensors)]
    port, url, db = s.mosquitto.port, s.influxdb.url, "edge"
    agent_yaml = write_yaml(tmp / "agent.yaml", {
        "gateway": {"id": "gw-edge", "site": {"district": "강남구", "site": "bench",
                                              "kind": "dust_zone"}},
        "sensors": [{"id": f"pm-{k}", "port": d.path, "profile": "pms5003", "warmup_s": 0,
                     "warmup_readings": 0} for k, d in enumerate(devices)],
        "outbox": {"path": str(tmp / "edge-outbox.sqlite")},
        "uplink": {"mqtt": {"host": "127.0.0.1", "port": port, "topic_prefix": "bench/edge"}},
        "clock_synced": True,
        "health_interval": 3600,
    })
    with parts.collectors(tmp, port, url, prefix="bench/edge", db=db):
        agent = spawn([sys.executable, "-m", "edge_agent.cli", "run", "--config",
                       str(agent_yaml)], tmp / "agent.log", cwd=ROOT)
        try:
            for d in devices:
                d.start()
            time.sleep(5.0)  # imports, ports opened
            cpu0, t0 = parts.cpu_s(agent.pid), time.monotonic()
            n0 = _count(url, db)
            time.sleep(seconds)
            cpu, secs = parts.cpu_s(agent.pid) - cpu0, time.monotonic() - t0
            n = _count(url, db) - n0
            rss, hwm = (parts.status_kib(agent.pid, k) / 1024 for k in ("VmRSS", "VmHWM"))
        finally:
            for d in devices:
                d.close()
            agent.terminate()
            agent.wait(60)
    with tempfile.TemporaryDirectory(dir=tmp) as folder:
        _h, body = edge_cost_bench.cost_table(Path(folder), 2000, [32], sensors, 3)
    base = {row[0]: float(row[1]) for row in body}
    return {"us_per_reading": cpu / max(1, n) * 1e6, "core": cpu / secs, "readings": n,
            "rss": rss, "hwm": hwm, "raw_us": base[edge_cost_bench.RAW],
            "path_us": base[edge_cost_bench.AGENT]}


def _count(url: str, db: str) -> int:
    res = influx_query(url, "SELECT count(pm2_5_ugm3) FROM particulate", db)
    series = res["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


def city_payloads(n: int = 200) -> list[bytes]:
    """Batches as the city's gateways send them: one commit window of readings each."""
    fleet = Fleet(FleetOptions(host="", port=0, sites=tuple(first(n)), duration=0,
                               start_ns=parts.T0))
    out = []
    for gw in fleet.gateways:
        gw.take_readings(parts.T0 + 2_000_000_000, 0)
        gw.commit()
        out += gw.take_batches(0.0, parts.T0, 0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    ap.add_argument("--city-seconds", type=float, default=None)
    ap.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = ap.parse_args()
    q = args.quick
    scale = 0.05 if q else 1.0
    secs = args.city_seconds or (8.0 if q else 40.0)
    raw_n = 20_000 if q else 200_000
    # 1M readings from 20 gateways: 40,000 in flight with the agent's defaults (4 x 500),
    # which one collector acks well within the 15 s ack timeout. From 100 gateways (200,000
    # in flight) the drain resends faster than one collector writes and never converges.
    drain_gw, drain_per = (10, 2_000) if q else (20, 50_000)
    # 200k readings each from 20 gateways (40,000 in flight), so that even one collector on
    # a busy machine acks within the ack timeout and the figure is throughput, not resends.
    share_gw, share_per = (10, 1_000) if q else (20, 10_000)
    raise_file_limit()
    started = time.monotonic()
    r: dict[str, Any] = {"load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="cityedge-city-") as d, \
            LocalServices(Path(d) / "s") as s:
        tmp = Path(d)
        phase = _progress(started)
        phase("raw InfluxDB ingest")
        r["raw1"] = parts.raw_ingest(s.influxdb.url, raw_n, 1, "w1")
        r["raw2"] = parts.raw_ingest(s.influxdb.url, raw_n, 2, "w2")
        phase("Mosquitto with plain paho")
        payloads = city_payloads()
        r["per_batch"] = sum(p.count(b'"seq"') for p in payloads) / len(payloads)
        r["mq"] = parts.mosquitto_rate(s.mosquitto.port, payloads, 5_000 if q else 30_000)
        phase("the city on one collector")
        r["city1"] = city_phase(tmp, s, "city1", rate=1.0, seconds=secs, scale=scale)
        phase("5x the city's readings")
        r["city5"] = city_phase(tmp, s, "city5", rate=5.0, seconds=secs, scale=scale)
        phase("1M-reading backlog, one collector")
        r["drain"] = drain_phase(tmp, s, "drain", gateways=drain_gw, per_gateway=drain_per)
        for n in (1, 2, 3):
            phase(f"{n} collector(s) on a shared subscription")
            r[f"share{n}"] = drain_phase(tmp, s, f"share{n}", gateways=share_gw,
                                       per_gateway=share_per, n=n)
        phase("profile of one collector (cProfile, main thread)")
        prof = tmp / "collector.prof"
        r["prof_run"] = drain_phase(tmp, s, "prof", gateways=share_gw // 2,
                                     per_gateway=share_per // 2, profile=prof)
        r["profile"] = parts.profile_summary(prof)
        phase("edge agent, 20 sensors")
        r["edge"] = edge_phase(tmp, s, 8.0 if q else 30.0)
    r["load_after"] = os.getloadavg()
    print_table(r, time.monotonic() - started)
    if args.json:
        print(json.dumps(_plain(r), default=str, ensure_ascii=False))
    checks = [v["check"] for v in r.values() if isinstance(v, dict) and "check" in v]
    return 0 if all(c == "ok" for c in checks) else 1


def _progress(started: float) -> Any:
    def phase(name: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {name}", file=sys.stderr, flush=True)
    return phase


def _plain(r: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in r.items():
        if isinstance(v, dict):
            out[k] = {kk: (vars(vv) if isinstance(vv, FleetReport) else vv)
                      for kk, vv in v.items()}
            out[k].get("report", {}).pop("per_gateway", None)
        else:
            out[k] = v
    return out


def print_table(r: dict[str, Any], took: float) -> None:
    raw1, raw2 = r["raw1"], r["raw2"]
    rows: list[Row] = [
        ("raw InfluxDB ingest, 1 writer (points/s)", f"{raw1:,.0f}", "", ""),
        ("raw InfluxDB ingest, 2 writers (points/s)", f"{raw2:,.0f}", f"{raw1:,.0f} (1 writer)",
         f"{raw2 / raw1:.2f}x"),
        (f"Mosquitto, city batches (~{r['per_batch']:.1f} readings), paho QoS 1 (msgs/s)",
         f"{r['mq']:,.0f}", "", ""),
    ]
    for key, label in (("city1", "the city"), ("city5", "5x the city's readings")):
        c = r[key]
        rep: FleetReport = c["report"]
        rows += [
            (f"{label}: {rep.gateways:,} gateways, offered readings/s", f"{c['offered']:,.0f}",
             "", ""),
            (f"{label}: landed and acked readings/s", f"{c['landed_per_s']:,.0f}",
             f"{raw1:,.0f} raw", f"{c['landed_per_s'] / raw1:.3f}x"),
            (f"{label}: batches/s published",
             f"{rep.batches_sent / rep.wall_s:,.0f}", f"{r['mq']:,.0f} Mosquitto",
             f"{rep.batches_sent / rep.wall_s / r['mq']:.2f}x"),
            (f"{label}: publish -> ack p50 / p99 (ms)",
             f"{rep.ack_p50_ms:.0f} / {rep.ack_p99_ms:.0f}", "", ""),
            (f"{label}: reading taken -> acked, queryable p50 / p99 (ms)",
             f"{rep.age_p50_ms:.0f} / {rep.age_p99_ms:.0f}", "", "commit window incl."),
            (f"{label}: collector CPU per reading (us), share of a core",
             f"{c['cpu'] / max(1, rep.acked) * 1e6:.0f}", "",
             f"{c['cpu'] / rep.wall_s:.0%}"),
            (f"{label}: collector RSS / peak (MiB)", f"{c['rss']:.0f} / {c['hwm']:.0f}", "", ""),
            (f"{label}: fleet CPU, share of a core per 1,000 gateways",
             f"{rep.core_share_per_1000:.1%}", "", ""),
            (f"{label}: fleet's commit-window slices late, p50 / p99 (ms)",
             f"{rep.tick_late_p50_ms:.0f} / {rep.tick_late_p99_ms:.0f}", "",
             "fleet kept up" if rep.tick_late_p99_ms < 100 else "fleet short of CPU"),
            (f"{label}: resent batches; exactly once", f"{rep.resent_batches:,}", "",
             c["check"]),
        ]
    d = r["drain"]
    rows += [
        (f"saturation: {d['readings']:,}-reading backlog, {d['report'].gateways} gateways,"
         " readings/s", f"{d['rate']:,.0f}", f"{raw1:,.0f} raw", f"{d['rate'] / raw1:.3f}x"),
        ("saturation: drain time (s); resent batches", f"{d['secs']:.1f}",
         f"{d['report'].resent_batches:,} resent", d["check"]),
        ("saturation: collector CPU per reading (us), share of a core",
         f"{d['cpu'] / max(1, d['readings']) * 1e6:.0f}", "", f"{d['cpu'] / d['secs']:.0%}"),
        ("saturation: collector RSS / peak (MiB)", f"{d['rss']:.0f} / {d['hwm']:.0f}", "", ""),
    ]
    one = r["share1"]["rate"]
    for n in (1, 2, 3):
        x = r[f"share{n}"]
        rows.append((f"{n} collector(s), shared subscription, {x['readings']:,} backlog,"
                     " readings/s", f"{x['rate']:,.0f}", f"{one:,.0f} (1 collector)",
                     f"{x['rate'] / one:.2f}x; {x['check']}"))
    e = r["edge"]
    rows += [
        ("edge agent, 20 PMS5003 at 1 Hz: whole process CPU per reading (us)",
         f"{e['us_per_reading']:.0f}", f"{e['raw_us']:.0f} raw sqlite3",
         f"{e['us_per_reading'] / e['raw_us']:.1f}x"),
        ("edge agent storage path (decode, Reading, append, sync per 20), per reading (us)",
         f"{e['path_us']:.0f}", f"{e['raw_us']:.0f} raw sqlite3",
         f"{e['path_us'] / e['raw_us']:.1f}x"),
        ("edge agent, 20 sensors: share of a core; RSS / peak (MiB)",
         f"{e['core']:.1%}", f"{e['rss']:.1f} / {e['hwm']:.1f}", ""),
    ]
    w = [max(len(row[k]) for row in rows) for k in range(4)]
    head = ("figure", "value", "baseline (same run)", "ratio / check")
    w = [max(a, len(b)) for a, b in zip(w, head, strict=True)]
    print()
    print("| " + " | ".join(h.ljust(x) for h, x in zip(head, w, strict=True)) + " |")
    print("|" + "|".join("-" * (x + 2) for x in w) + "|")
    for row in rows:
        print(f"| {row[0].ljust(w[0])} | {row[1].rjust(w[1])} | {row[2].rjust(w[2])} |"
              f" {row[3].ljust(w[3])} |")
    print(f"\nwhere one collector's main thread spends its time (cProfile, drain of"
          f" {r['prof_run']['readings']:,} readings; paho's network thread not included):\n")
    print("| function | own, of busy time | with callees |\n|---|---|---|")
    for name, own, cum in r["profile"]:
        print(f"| {name} | {own:.1%} | {cum:.1%} |")
    before, after = r["load_before"], r["load_after"]
    print(f"\nbench took {took:.0f} s on {os.cpu_count()} cores; load average before"
          f" {before[0]:.1f}, after {after[0]:.1f} (1 min), {after[2]:.1f} (15 min): other"
          " work on the machine takes its share of every figure, baselines included")


if __name__ == "__main__":
    sys.exit(main())
