"""How the demo's processes reach the broker, and who they are to it.

Three ways, chosen by ``edge-sim demo``'s options (docs/identity.md has the pieces):

- **its own broker** (the default): a CA and a broker certificate for 127.0.0.1,
  a registry with a collector account, each simulated gateway registered the
  way an operator does it (``edge-collector gateways add --secret-file``: its
  secret lands in a 0600 file, and the broker's password and ACL files are
  regenerated from the registry), then Mosquitto with TLS listeners only and
  those files. Agents read their secret from the file (``gateway.secret_file``);
  the collector, its alert notifier and the demo's own observer use the
  collector account on the collectors' listener.
- **an operator's broker** (``--mqtt`` with ``--registry`` and ``--secrets``):
  the demo cannot write that broker's files, so the operator's registry must
  already list the demo's gateways and the secrets folder hold their secrets
  and the collector's (checked against the registry before anything starts).
- **--insecure**: plain MQTT, no registry, no secrets, no seals: any client
  that reaches the broker may speak for any gateway. Warned about at start-up.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cityedge.atomic import atomic_write
from cityedge.mqtt import MqttOptions
from cityedge.tls import TlsConfig
from cityedge.uplink.topics import Topics
from collector.registry import cli as registry_cli
from collector.registry import model
from collector.registry.passwords import verify_password
from simulators.fleet import SimGateway
from simulators.secure import COLLECTOR, SecureSetup
from simulators.services import Mosquitto, influx_query

SECRET_MODE = 0o600
SECRETS_DIR_MODE = 0o700
INSECURE_WARNING = (
    "--insecure: plain MQTT, no gateway registry, no ACLs, acks and displays unsealed."
    " Any client that reaches the broker can send readings as any gateway, forge the acks"
    " that make a gateway delete its readings, and put any text on a bus stop's display."
    " For a closed test network only.")


@dataclass(frozen=True)
class OperatorBroker:
    """An operator's secured broker (``--registry``, ``--secrets``, ``--collector``,
    ``--ca-file``, ``--collector-mqtt``)."""

    registry: Path
    secrets: Path  # <gateway id>.secret for each demo gateway, <collector>.secret
    collector: str = COLLECTOR
    ca_file: Path | None = None  # None: the system's CAs
    collector_mqtt: tuple[str, int] | None = None  # None: the gateways' listener


@dataclass(frozen=True)
class Link:
    """One client's way to the broker: where, TLS (verified against ``ca_file``; None with
    ``tls``: the system's CAs), and an account whose password is in ``password_file``."""

    host: str
    port: int
    tls: bool = False
    ca_file: Path | None = None
    username: str | None = None
    password_file: Path | None = None

    def yaml(self) -> dict[str, Any]:
        """The ``mqtt`` keys of an agent's, collector's or notifier's config."""
        doc: dict[str, Any] = {"host": self.host, "port": self.port}
        if self.username is not None:
            doc["username"] = self.username
        if self.password_file is not None:
            doc["password_file"] = str(self.password_file)
        if self.tls:
            doc["tls"] = {"ca_file": None if self.ca_file is None else str(self.ca_file)}
        return doc

    def options(self, client_id: str, subscriptions: list[tuple[str, int]]) -> MqttOptions:
        """For a client of the demo's own (the alert observer): a clean session."""
        password = None if self.password_file is None else read_secret(self.password_file)
        tls = TlsConfig(ca_file=None if self.ca_file is None else str(self.ca_file))
        return MqttOptions(self.host, self.port, client_id, username=self.username,
                           password=password, clean_start=True, subscriptions=subscriptions,
                           tls=tls if self.tls else None)


@dataclass(frozen=True)
class Trust:
    """Who the demo's processes are to the broker. ``registry`` None: insecure."""

    gateways: Link  # the gateways' listener; each agent logs in with its own secret
    collectors: Link  # the collectors' listener, with the collector account
    registry: Path | None
    secret_files: dict[str, Path] = field(default_factory=dict)  # gateway id -> its secret
    summary: str = ""

    @property
    def insecure(self) -> bool:
        return self.registry is None

    def collector_keys(self) -> dict[str, Any]:
        return {"insecure": True} if self.registry is None else {"registry": str(self.registry)}


def read_secret(path: Path) -> str:
    return path.read_text(encoding="utf-8").removesuffix("\n")


def private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, SECRETS_DIR_MODE)
    return path


def register(setup: SecureSetup, gw: SimGateway, secret_file: Path) -> None:
    """``edge-collector gateways add``, as an operator runs it for a new gateway: the
    registry gains it, its secret goes to ``secret_file`` (0600), and the broker's
    password and ACL files are regenerated."""
    argv = ["--registry", str(setup.registry_path), "add", gw.id, "--district", gw.district,
            "--site", gw.site, "--kind", gw.kind, "--secret-file", str(secret_file),
            "--passwd", str(setup.passwd_file), "--acl", str(setup.acl_file)]
    notes = io.StringIO()
    with contextlib.redirect_stderr(notes):
        code = registry_cli.main(argv)
    if code != 0:
        raise SystemExit(f"registering {gw.id} failed: {notes.getvalue().strip()}")


def own_setup(root: Path, fleet: Sequence[SimGateway]) -> tuple[SecureSetup, dict[str, Path],
                                                                  Path]:
    """CA, broker certificate, registry with the collector account and every gateway of
    ``fleet``, broker files: (the setup, gateway -> secret file, the collector's secret file).
    """
    setup = SecureSetup.create(root)
    secrets = private_dir(root / "secrets")
    collector_file = secrets / f"{COLLECTOR}.secret"
    atomic_write(collector_file, setup.collector_secret.encode(), mode=SECRET_MODE)
    files = {}
    for gw in fleet:
        files[gw.id] = secrets / f"{gw.id}.secret"
        register(setup, gw, files[gw.id])
    return setup, files, collector_file


def own_trust(setup: SecureSetup, secret_files: dict[str, Path], collector_file: Path,
              broker: Mosquitto) -> Trust:
    reg = setup.registry()
    host, port, collector_port = broker.address[0], broker.port, broker.collector_port
    gateways = Link(host, port, tls=True, ca_file=setup.ca_file)
    collectors = Link(host, collector_port, tls=True, ca_file=setup.ca_file,
                      username=COLLECTOR, password_file=collector_file)
    summary = (f"TLS broker on {host}:{port} (collectors on :{collector_port}), CA"
               f" {setup.ca_file}; registry with {len(reg.active())} gateways and"
               f" {len(reg.collectors)} collector, password and ACL files generated from it;"
               " acks and displays sealed with each gateway's key")
    return Trust(gateways, collectors, setup.registry_path, secret_files, summary)


def _add_command(registry: Path, gw: SimGateway, secret_file: Path) -> str:
    return shlex.join(["edge-collector", "gateways", "--registry", str(registry), "add", gw.id,
                       "--district", gw.district, "--site", gw.site, "--kind", gw.kind,
                       "--secret-file", str(secret_file)])


def start_broker(root: Path, fleet: Sequence[SimGateway], mqtt: tuple[str, int] | None,
                 insecure: bool, operator: OperatorBroker | None) -> tuple[Trust, Mosquitto | None]:
    """The demo's own broker (secure unless ``insecure``), or how to use the one at ``mqtt``;
    the broker started, if any. A fresh CA and registry each run."""
    if mqtt is not None:
        if insecure:
            return insecure_trust(mqtt), None
        if operator is None:
            raise SystemExit("--mqtt: the demo cannot write that broker's password and ACL"
                             " files; give --registry and --secrets (the operator's), or"
                             " --insecure")
        return operator_trust(operator, mqtt, fleet), None
    broker_dir = root / "services" / "mosquitto"
    broker_dir.mkdir(parents=True, exist_ok=True)
    if insecure:
        plain = _start(Mosquitto(broker_dir))
        return insecure_trust(plain.address), plain
    secure_dir = root / "secure"
    if (secure_dir / "registry.yaml").exists():  # a previous run's, in a reused --workdir
        shutil.rmtree(secure_dir)
    setup, files, collector_file = own_setup(secure_dir, fleet)
    broker = _start(Mosquitto(broker_dir, security=setup.security()))
    return own_trust(setup, files, collector_file, broker), broker


def _start(broker: Mosquitto) -> Mosquitto:
    try:
        return broker.start()
    except BaseException:
        broker.stop()
        raise


def operator_trust(operator: OperatorBroker, mqtt: tuple[str, int],
                   fleet: Sequence[SimGateway]) -> Trust:
    """An operator's broker: their registry must list the demo's gateways and the collector,
    and ``secrets`` hold ``<id>.secret`` for each (what ``--secret-file`` writes).
    SystemExit, naming what is missing and the commands that add it, otherwise."""
    registry, secrets, collector = operator.registry, operator.secrets, operator.collector
    ca_file, collector_mqtt = operator.ca_file, operator.collector_mqtt or mqtt
    try:
        reg = model.load(registry)
    except model.RegistryError as exc:
        raise SystemExit(f"--registry: {exc}") from None
    if reg.topic_prefix != Topics().prefix:
        raise SystemExit(f"--registry: topic_prefix {reg.topic_prefix!r}; the demo's gateways"
                         f" use {Topics().prefix!r}")
    problems: list[str] = []
    files = {gw.id: secrets / f"{gw.id}.secret" for gw in fleet}
    for gw in fleet:
        entry = reg.gateways.get(gw.id)
        if entry is None or entry.revoked:
            problems.append(f"{gw.id} is not active in {registry}; register it (then regenerate"
                            f" the broker's files):\n  {_add_command(registry, gw, files[gw.id])}")
        else:
            problems += _check_secret(files[gw.id], entry.password_hash, gw.id)
    account = reg.collectors.get(collector)
    collector_file = secrets / f"{collector}.secret"
    if account is None:
        problems.append(f"collector {collector!r} is not in {registry}: " + shlex.join(
            ["edge-collector", "gateways", "--registry", str(registry), "add-collector",
             collector, "--secret-file", str(collector_file)]))
    else:
        problems += _check_secret(collector_file, account.password_hash, collector)
    if problems:
        raise SystemExit("the operator's registry is not ready for the demo:\n"
                         + "\n".join(f"- {p}" for p in problems))
    gateways = Link(mqtt[0], mqtt[1], tls=True, ca_file=ca_file)
    collectors = Link(collector_mqtt[0], collector_mqtt[1], tls=True, ca_file=ca_file,
                      username=collector, password_file=collector_file)
    summary = (f"TLS broker {mqtt[0]}:{mqtt[1]} (collectors on"
               f" {collector_mqtt[0]}:{collector_mqtt[1]}), CA {ca_file or 'the system CAs'};"
               f" the operator's registry {registry} with {len(reg.active())} active gateways;"
               " acks and displays sealed with each gateway's key")
    return Trust(gateways, collectors, registry, files, summary)


def _check_secret(path: Path, password_hash: str, name: str) -> list[str]:
    try:
        secret = read_secret(path)
    except OSError as exc:
        return [f"{name}'s secret: cannot read {path}: {exc.strerror}"]
    if not verify_password(secret, password_hash):
        return [f"{name}'s secret in {path} does not match the registry (rotated since?)"]
    return []


def insecure_trust(mqtt: tuple[str, int]) -> Trust:
    link = Link(mqtt[0], mqtt[1])
    summary = (f"INSECURE: plain MQTT on {mqtt[0]}:{mqtt[1]}, no gateway registry, no ACLs,"
               " acks and displays unsealed (--insecure)")
    return Trust(link, link, None, {}, summary)


def refusals(influx: str, database: str, since_ns: int, broker_log: Path | None) -> dict[str, int]:
    """What was refused since ``since_ns``, by whom: the broker's logins (its log), the
    collector's batches (``refused_*`` in its health point), and the agents' acks,
    displays and sends (``gateway_health``). Every count is 0 when all is well."""
    out = {"broker_logins": 0, "collector_batches": 0, "agent_bad_acks": 0,
           "agent_displays_rejected": 0, "agent_sends_refused": 0}
    if broker_log is not None and broker_log.exists():
        out["broker_logins"] = broker_log.read_text(errors="replace").count("not authorised")
    where = f"WHERE time >= {since_ns}"
    collector = influx_query(influx, f"SELECT * FROM cityedge_collector {where} ORDER BY time"
                             " DESC LIMIT 1", database, timeout=5)
    for series in _series(collector):
        row = dict(zip(series["columns"], series["values"][0], strict=True))
        out["collector_batches"] = sum(int(v or 0) for k, v in row.items()
                                       if k.startswith("refused_"))
    agents = influx_query(influx, "SELECT last(bad_acks), last(displays_rejected),"
                          f" last(refused_sends) FROM gateway_health {where} GROUP BY gateway",
                          database, timeout=5)
    for series in _series(agents):
        _, bad_acks, rejected, refused = series["values"][0]
        out["agent_bad_acks"] += int(bad_acks or 0)
        out["agent_displays_rejected"] += int(rejected or 0)
        out["agent_sends_refused"] += int(refused or 0)
    return out


def _series(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for r in result.get("results", []) for s in r.get("series", [])]
