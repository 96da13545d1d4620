"""``edge-sim``: simulated devices on pseudo-terminals, and the whole-city demo."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from cityedge import shipped
from cityedge.version import version_text
from simulators.city_fleet import cli as city_fleet
from simulators.fleet import DEMO_FLEET

if TYPE_CHECKING:
    from simulators.demo_secure import OperatorBroker

COLLECTOR = "collector-1"  # the collector account's default name (simulators/secure.py)


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def _operator(parser: argparse.ArgumentParser,
              args: argparse.Namespace) -> OperatorBroker | None:
    """The operator's broker from the demo's options; exits with a usage error when they
    do not go together."""
    from simulators.demo_secure import OperatorBroker

    given = [f"--{k.replace('_', '-')}" for k in ("registry", "secrets", "ca_file",
                                                   "collector_mqtt") if getattr(args, k)]
    if args.collector != COLLECTOR:
        given.append("--collector")
    if given and args.insecure:
        parser.error(f"--insecure runs without a registry; drop {' '.join(given)}")
    if given and args.mqtt is None:
        parser.error(f"{' '.join(given)}: only with --mqtt (the demo's own broker is secured"
                     " with a registry it makes)")
    if args.mqtt is not None and not args.insecure and (args.registry is None
                                                        or args.secrets is None):
        parser.error("--mqtt: the demo cannot write that broker's password and ACL files;"
                     " give the operator's --registry FILE and --secrets DIR, or --insecure")
    if args.registry is None or args.secrets is None:
        return None
    return OperatorBroker(args.registry, args.secrets, args.collector, args.ca_file,
                          args.collector_mqtt)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge-sim", description=__doc__)
    p.add_argument("--version", action="version", version=version_text("edge-sim"))
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser(
        "demo", help="services, simulated devices, agents and a collector, live",
        description="The whole path live: Mosquitto, InfluxDB, simulated sensors, one agent"
        " per gateway and a collector evaluating alerts, secured as a deployment is: the"
        " demo's own broker runs TLS only, with password and ACL files generated from a"
        " gateway registry the demo makes (CA, broker certificate, one secret per gateway,"
        " a collector account), and acks and displays are sealed with each gateway's key."
        " With --mqtt, the demo cannot write that broker's files: give the operator's"
        " registry and secrets (--registry, --secrets), or --insecure.")
    d.add_argument("--duration", type=float, default=None,
                   help="seconds the devices run (counted from their start), then stop"
                        " them and let agents deliver (default: until Ctrl-C)")
    d.add_argument("--mqtt", type=_host_port, default=None, metavar="HOST:PORT",
                   help="use this broker (its gateways' listener) instead of starting one;"
                        " needs --registry and --secrets, or --insecure")
    d.add_argument("--influx", default=None, metavar="URL",
                   help="use this InfluxDB instead of starting one (e.g. http://127.0.0.1:8086)")
    d.add_argument("--influx-api", choices=("v1", "v2"), default="v1",
                   help="the API --influx speaks: v1 (InfluxDB 1.x, the default) or v2"
                        " (/api/v2/write: InfluxDB 2.x, 3.x, Cloud; the collector's influxdb_v2"
                        " writer, --database as the bucket)")
    d.add_argument("--org", default=os.environ.get("CITYEDGE_INFLUX_ORG", "cityedge"),
                   help="with --influx-api v2: the organisation (env CITYEDGE_INFLUX_ORG)")
    d.add_argument("--database", default=os.environ.get("CITYEDGE_DATABASE", "cityedge"),
                   help="InfluxDB database (default cityedge; env CITYEDGE_DATABASE)")
    d.add_argument("--workdir", type=Path, default=None,
                   help="keep configs, logs and outboxes here (default: a temp dir, removed after)")
    d.add_argument("--episode-at", type=float, default=20.0, metavar="S",
                   help="seconds after the devices start that a dust episode begins at the bus"
                        " stop (default 20; a negative value: no episode)")
    d.add_argument("--episode-length", type=float, default=30.0, metavar="S",
                   help="seconds the dust episode lasts (default 30)")
    op = d.add_argument_group(
        "an operator's secured broker (with --mqtt)",
        f"The registry must list the demo's gateways ({', '.join(g.id for g in DEMO_FLEET)};"
        " the demo prints the `edge-collector gateways add` commands for any that are"
        " missing) and the broker's files must have been regenerated from it.")
    op.add_argument("--registry", type=Path, default=None, metavar="FILE",
                    help="the gateway registry the broker's password and ACL files come from")
    op.add_argument("--secrets", type=Path, default=None, metavar="DIR",
                    help="DIR/<id>.secret for each demo gateway and DIR/<collector>.secret,"
                         " as `edge-collector gateways add --secret-file` writes them")
    op.add_argument("--collector", default=COLLECTOR, metavar="NAME",
                    help=f"the collector account (default {COLLECTOR})")
    op.add_argument("--ca-file", type=Path, default=None, metavar="FILE",
                    help="the CA that signed the broker's certificate (default: the system's)")
    op.add_argument("--collector-mqtt", type=_host_port, default=None, metavar="HOST:PORT",
                    help="the broker's collectors' listener (default: --mqtt)")
    d.set_defaults(parser=d)  # usage errors about its options show its usage
    d.add_argument("--insecure", action="store_true",
                   help="plain MQTT, no registry, no ACLs, no seals: any client that reaches"
                        " the broker may speak for any gateway. Warned about at start-up; for"
                        " a closed test network only")

    dev = sub.add_parser(
        "device", help="one simulated device on a pty; prints its path",
        description="A byte-exact emulator of one firmware profile on a pseudo-terminal: it"
        " streams in active mode and answers the profile's commands (Modbus profiles: a"
        " pymodbus slave). Point an agent (or edge-agent probe) at the printed path.")
    dev.add_argument("profile", help="firmware profile name, e.g. pms5003")
    dev.add_argument("--link", type=Path, default=None, help="stable symlink to the pty")
    dev.add_argument("--interval", type=float, default=1.0,
                     help="seconds between frames in active mode (default 1.0)")
    dev.add_argument("--count", type=int, default=None,
                     help="stop after this many readings (default: run until Ctrl-C)")
    dev.add_argument("--seed", type=int, default=1, help="seed of the values (default 1)")
    dev.add_argument("--slave", type=int, default=None,
                     help="Modbus slave address (default: the profile's)")
    dev.add_argument("--warmup-frames", type=int, default=None,
                     help="readings flagged as warm-up after wake/start (default: the profile's)")
    dev.add_argument("--minute", type=float, default=60.0,
                     help="seconds in a working-period minute, to speed up SDS011 periods")
    faults = dev.add_argument_group("faults (probabilities per frame)")
    faults.add_argument("--noise", type=float, default=0.0, help="garbage bytes before a frame")
    faults.add_argument("--bad-checksum", type=float, default=0.0,
                        help="a frame with a wrong checksum")
    faults.add_argument("--drop", type=float, default=0.0, help="one byte of a frame lost")
    faults.add_argument("--stall", type=float, default=0.0,
                        help="the device falls silent for --stall-s seconds")
    faults.add_argument("--stall-s", type=float, default=2.0, help="length of a stall (default 2)")
    faults.add_argument("--unplug-every", type=float, default=None, metavar="S",
                        help="unplug the device every S seconds (the --link comes back)")
    faults.add_argument("--unplug-for", type=float, default=3.0, metavar="S",
                        help="seconds a device stays unplugged (default 3)")
    dev.add_argument("--log", type=Path, default=None, help="JSON line per good reading emitted")
    city_fleet.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from simulators.demo import DemoOptions, run_demo

        return run_demo(DemoOptions(args.duration, args.mqtt, args.influx, args.database,
                                    args.workdir,
                                    None if args.episode_at < 0 else args.episode_at,
                                    args.episode_length, args.insecure,
                                    _operator(args.parser, args), args.influx_api, args.org,
                                    os.environ.get("CITYEDGE_INFLUX_TOKEN")))
    if args.command == "fleet":
        return city_fleet.run(args)
    from edge_agent.decoding import scan_profiles
    from simulators.device import Faults, SimulatedDevice

    scan = scan_profiles(shipped.profiles_dir())  # a broken file stops only its own model
    for error in scan.errors:
        print(f"profile error: {error}", file=sys.stderr)
    profiles = scan.profiles
    if args.profile not in profiles:
        print(f"unknown profile {args.profile!r}; known: {', '.join(sorted(profiles))}",
              file=sys.stderr)
        return 2
    log = args.log.open("a") if args.log else None
    faults = Faults(args.noise, args.bad_checksum, args.drop, args.stall, args.stall_s)
    device = SimulatedDevice(profiles[args.profile], link=args.link, interval=args.interval,
                             seed=args.seed, faults=faults, log=log, slave=args.slave,
                             warmup_frames=args.warmup_frames, minute=args.minute)
    print(device.path, flush=True)
    try:
        device.start(args.count)
        next_unplug = time.monotonic() + (args.unplug_every or 0)
        while device._thread is not None and device._thread.is_alive():
            device.wait(0.2)
            if args.unplug_every and time.monotonic() >= next_unplug:
                device.unplug()
                print(f"unplugged for {args.unplug_for:g} s", file=sys.stderr, flush=True)
                time.sleep(args.unplug_for)
                device.plug()
                print(f"plugged back: {device.path}", file=sys.stderr, flush=True)
                next_unplug = time.monotonic() + args.unplug_every
    except KeyboardInterrupt:
        pass
    finally:
        device.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
