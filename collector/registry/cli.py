"""``edge-collector gateways``: the operator's registry of gateways and collectors.

Every change rewrites the registry atomically (mode 0600) under a lock. A new
or rotated secret is printed once on stdout, alone on its line (or written to
``--secret-file``, mode 0600); nothing keeps it. Mutating commands given
``--passwd`` and ``--acl`` also regenerate Mosquitto's files in the same step
(and ``--reload PIDFILE`` makes the broker re-read them), exactly as the
``mosquitto`` command does on its own.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from cityedge.atomic import atomic_write
from collector.registry import model
from collector.registry.model import SITE_KINDS, Registry, RegistryError
from collector.registry.mosquitto import ReloadError, reload, write_files

SECRET_MODE = 0o600


def parser(prog: str = "edge-collector gateways") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--registry", default=os.environ.get("CITYEDGE_REGISTRY"),
                   required="CITYEDGE_REGISTRY" not in os.environ,
                   help="registry YAML file, created by the first add (env CITYEDGE_REGISTRY)")
    files = argparse.ArgumentParser(add_help=False)
    g = files.add_argument_group("broker files (optional: regenerate them in the same step)")
    g.add_argument("--passwd", type=Path, help="Mosquitto password_file to write (mode 0600)")
    g.add_argument("--acl", type=Path, help="Mosquitto acl_file to write (mode 0644)")
    g.add_argument("--reload", type=Path, metavar="PIDFILE",
                   help="then send SIGHUP to the broker whose pid is in PIDFILE")
    g.add_argument("--owner", help="chown both files to this user (the broker's, e.g. mosquitto)")
    secret = argparse.ArgumentParser(add_help=False)
    secret.add_argument("--secret-file", type=Path, metavar="PATH",
                        help="write the new secret here (mode 0600) instead of printing it")
    sub = p.add_subparsers(dest="command", required=True)

    add = sub.add_parser("add", parents=[secret, files], help="register a gateway; prints its"
                         " secret (MQTT password, HTTP bearer token, seal key source) once")
    add.add_argument("id", help="gateway id: letters, digits, '_.-' (it is the MQTT username)")
    add.add_argument("--district", required=True, help="district tag, e.g. 강남구")
    add.add_argument("--site", required=True, help="site tag, e.g. '역삼역 2번 출구'")
    add.add_argument("--kind", required=True, choices=SITE_KINDS, help="site kind tag")

    ls = sub.add_parser("list", help="gateways and collectors, without hashes or keys")
    ls.add_argument("--json", action="store_true", help="one JSON document instead of a table")

    rot = sub.add_parser("rotate", parents=[secret, files],
                         help="give a gateway a new secret; the old one stops working")
    rot.add_argument("id")
    rev = sub.add_parser("revoke", parents=[files],
                         help="lock a gateway out: gone from the broker files, refused by"
                         " collectors (it stays listed as revoked)")
    rev.add_argument("id")
    col = sub.add_parser("add-collector", parents=[secret, files],
                         help="a broker account for a collector; prints its password once")
    col.add_argument("name", help="the collector's MQTT username")
    col.add_argument("--replace", action="store_true",
                     help="give an existing collector a new password")
    sub.add_parser("mosquitto", parents=[files],
                   help="write Mosquitto's password_file and acl_file (--passwd, --acl needed)")
    return p


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """One editor at a time: load, change and save happen under an exclusive lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent / f".{path.name}.lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _show_secret(args: argparse.Namespace, secret: str, what: str) -> None:
    if args.secret_file is not None:
        atomic_write(args.secret_file, secret.encode(), mode=SECRET_MODE)
        print(f"{what}: secret written to {args.secret_file}", file=sys.stderr)
    else:
        print(f"{what}: secret (shown once; not stored anywhere):", file=sys.stderr)
        print(secret)


def _broker_files(args: argparse.Namespace, reg: Registry) -> None:
    if args.passwd is None and args.acl is None:
        if args.reload is not None or args.owner is not None:
            raise RegistryError("--reload and --owner need --passwd and --acl")
        return
    if args.passwd is None or args.acl is None:
        raise RegistryError("--passwd and --acl go together")
    write_files(reg, args.passwd, args.acl, owner=args.owner)
    print(f"wrote {args.passwd} and {args.acl}", file=sys.stderr)
    if args.reload is not None:
        pid = reload(args.reload)
        print(f"broker pid {pid} told to reload (SIGHUP)", file=sys.stderr)


def _list(reg: Registry, as_json: bool) -> None:
    gateways = [{"id": g.id, "district": g.district, "site": g.site, "kind": g.kind,
                 "revoked": g.revoked, "created": g.created, "rotated": g.rotated}
                for _, g in sorted(reg.gateways.items())]
    collectors = [{"name": c.name, "created": c.created} for _, c in sorted(reg.collectors.items())]
    if as_json:
        print(json.dumps({"topic_prefix": reg.topic_prefix, "gateways": gateways,
                          "collectors": collectors}, ensure_ascii=False, indent=2))
        return
    for row in gateways:
        state = "revoked" if row["revoked"] else "active"
        print(f"{row['id']}\t{state}\t{row['kind']}\t{row['district']}\t{row['site']}"
              f"\tcreated {row['created']}\trotated {row['rotated'] or '-'}")
    for c in collectors:
        print(f"{c['name']}\tcollector\tcreated {c['created']}")


def run(args: argparse.Namespace) -> int:
    path = Path(args.registry)
    if args.command in ("list", "mosquitto"):
        reg = model.load(path)
        if args.command == "list":
            _list(reg, args.json)
        elif args.passwd is None or args.acl is None:
            raise RegistryError("mosquitto: --passwd and --acl are required")
        else:
            _broker_files(args, reg)
        return 0
    with locked(path):
        reg = model.load_or_empty(path)
        secret, what = None, ""
        if args.command == "add":
            reg, secret = model.add_gateway(reg, args.id, district=args.district,
                                            site=args.site, kind=args.kind, now=now_utc())
            what = f"gateway {args.id}"
        elif args.command == "rotate":
            reg, secret = model.rotate(reg, args.id, now=now_utc())
            what = f"gateway {args.id}"
        elif args.command == "revoke":
            reg = model.revoke(reg, args.id, now=now_utc())
        else:
            reg, secret = model.add_collector(reg, args.name, now=now_utc(),
                                              replace=args.replace)
            what = f"collector {args.name}"
        model.save(path, reg)
        if secret is not None:
            _show_secret(args, secret, what)
        _broker_files(args, reg)
    return 0


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except (RegistryError, ReloadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
