"""``edge-sim fleet``: the options, and the report printed at the end."""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
from dataclasses import asdict
from typing import Any

from cityedge.uplink.topics import DEFAULT_PREFIX
from simulators.city_fleet.fleet import Fault, Fleet, FleetOptions, FleetReport
from simulators.city_fleet.sites import city, first, load


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def _fault(text: str) -> Fault:
    """KIND@AT[:SHARE[:LENGTH]], e.g. outage@30:0.1:20."""
    try:
        kind, _, rest = text.partition("@")
        parts = rest.split(":")
        if kind not in ("outage", "restart", "skew"):
            raise ValueError(kind)
        return Fault(kind, float(parts[0]),  # type: ignore[arg-type]
                     *(float(p) for p in parts[1:3]))
    except (ValueError, IndexError, TypeError):
        raise argparse.ArgumentTypeError(
            f"expected KIND@AT[:SHARE[:LENGTH]] (KIND outage, restart or skew), got {text!r}"
        ) from None


def add_parser(sub: Any) -> None:
    f = sub.add_parser(
        "fleet", help="thousands of simulated gateways in one process, on a real broker",
        description="The city's gateways (2,145 apartment units, 1,000 bus stops, 155 dust"
        " zones in 7 districts) in one asyncio process, one MQTT connection each, speaking"
        " the real uplink (batches, acks, seq, epoch, the agent's delivery window with"
        " resends after the ack timeout). Runs against a plain broker and a collector"
        " configured `insecure: true` (no registry: acks are not sealed). Prints a JSON"
        " report: readings taken and acked, resends, publish->ack p50/p99 and the fleet's"
        " own CPU per thousand gateways.")
    f.add_argument("--mqtt", required=True, type=_host_port, metavar="HOST:PORT",
                   help="the broker (plain MQTT)")
    size = f.add_mutually_exclusive_group()
    size.add_argument("--gateways", type=int, default=None,
                      help="this many gateways with the city's mix (default: the city)")
    size.add_argument("--scale", type=float, default=1.0,
                      help="the city times this, by site kind (default 1)")
    f.add_argument("--duration", type=float, default=60.0, help="seconds of sensing (60)")
    f.add_argument("--drain-timeout", type=float, default=120.0,
                   help="seconds to wait for every ack after sensing stops (120)")
    f.add_argument("--prefix", default=DEFAULT_PREFIX, help=f"topic prefix ({DEFAULT_PREFIX})")
    f.add_argument("--batch-size", type=int, default=500)
    f.add_argument("--max-in-flight", type=int, default=4)
    f.add_argument("--ack-timeout", type=float, default=15.0)
    f.add_argument("--seed", type=int, default=1)
    f.add_argument("--fault", type=_fault, action="append", default=[], metavar="SPEC",
                   help="KIND@AT[:SHARE[:LENGTH]]: outage (link down LENGTH s), restart, or"
                        " skew (clock off by LENGTH s) for SHARE of the gateways AT s after"
                        " the start; repeatable. e.g. --fault outage@20:0.1:30")


def raise_file_limit() -> int:
    """One socket per gateway: the soft open-files limit up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def run(args: argparse.Namespace) -> int:
    host, port = args.mqtt
    sites = first(args.gateways) if args.gateways else city(args.scale)
    limit = raise_file_limit()
    if len(sites) + 64 > limit:
        print(f"{len(sites)} gateways need as many sockets; the open-files limit is {limit}")
        return 2
    options = FleetOptions(host=host, port=port, sites=tuple(sites), duration=args.duration,
                           prefix=args.prefix, batch_size=args.batch_size,
                           max_in_flight=args.max_in_flight, ack_timeout=args.ack_timeout,
                           faults=tuple(args.fault), seed=args.seed,
                           drain_timeout=args.drain_timeout)
    report = asyncio.run(Fleet(options).run())
    print(json.dumps(summary(report, load(sites)), ensure_ascii=False))
    return 0 if report.unacked == 0 and report.dropped == 0 else 1


def summary(report: FleetReport, offered: float) -> dict[str, Any]:
    doc = asdict(report)
    doc.pop("per_gateway")
    doc["offered_readings_per_s"] = round(offered, 1)
    doc["core_share_per_1000_gateways"] = round(report.core_share_per_1000, 4)
    return doc
