"""The collector's ``alerts:`` config section: rule files, state, notifiers and their routes.

Validated at load like the rest of collector.yaml (file:line, key path),
before anything connects: the rule files are loaded and checked, and each
notifier is built and validated (no network). docs/alerts.md lists the keys.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from cityedge import yamlconfig
from collector.alerts.events import AlertEvent
from collector.alerts.rules import RuleSet, load_rules
from collector.alerts.table import MAX_FUTURE_NS, MAX_GATEWAYS, MAX_MEMBERS, EngineLimits
from collector.notifiers import Notifier, build

NotifiedState = Literal["firing", "resolved", "acknowledged", "flapping"]
# Who evaluates when several collectors run (docs/alerts.md, "Several collectors").
LeaseKind = Literal["none", "file", "etcd"]
# Before the choice there was ``lease: true|false``; both still read as they did.
LEGACY_LEASE: dict[bool, LeaseKind] = {False: "none", True: "file"}


@dataclass(frozen=True)
class RouteConfig:
    """Which events one notifier gets; these keys sit next to the notifier's own."""

    name: str | None = None
    rules: list[str] = field(default_factory=lambda: ["*"])
    states: list[NotifiedState] = field(
        default_factory=lambda: ["firing", "resolved", "acknowledged", "flapping"])
    match: dict[str, str | list[str]] = field(default_factory=dict)
    late: bool = False

    def accepts(self, event: AlertEvent) -> bool:
        if event.state not in self.states or (event.late and not self.late):
            return False
        if not any(fnmatch.fnmatchcase(event.rule, glob) for glob in self.rules):
            return False
        for tag, want in self.match.items():
            allowed = [want] if isinstance(want, str) else want
            if event.scope.get(tag) not in allowed:
                return False
        return True


ROUTE_KEYS = frozenset(f.name for f in fields(RouteConfig))


@dataclass(frozen=True)
class EtcdConfig:
    """Where ``lease: etcd`` takes the lease (etcd_lease.py); docs/alerts.md lists the keys.

    endpoints: etcd's client URLs (its HTTP/JSON gateway), tried in turn.
    prefix: the keys' prefix, the same on every collector of one deployment.
    ttl: the lease's seconds; a killed leader is replaced after about this long
        (etcd raises a smaller one to its minimum, 2 s with its default timing).
    timeout: seconds one request to etcd may take.
    """

    endpoints: list[str] = field(default_factory=lambda: ["http://127.0.0.1:2379"])
    prefix: str = "cityedge/alerts"
    ttl: int = field(default=5, metadata={"min": 1, "max": 300})
    timeout: float = field(default=2.0, metadata={"min": 0.1, "max": 60.0})


@dataclass(frozen=True)
class AlertsConfig:
    rules: list[str]
    enabled: bool = True
    state_dir: str = "var/alerts"
    tick_interval: float = field(default=1.0, metadata={"min": 0.05, "max": 60.0})
    save_interval: float = field(default=300.0, metadata={"min": 1.0})
    lease: LeaseKind | bool = "none"
    etcd: EtcdConfig = field(default_factory=EtcdConfig)
    status: bool = True
    observe_uplinks: bool = False
    queue_size: int = field(default=1000, metadata={"min": 1})
    max_attempts: int = field(default=10, metadata={"min": 1})
    retry_min: float = field(default=1.0, metadata={"min": 0.01})
    retry_max: float = field(default=300.0, metadata={"min": 0.01})
    notifiers: list[dict[str, Any]] = field(default_factory=lambda: [{"type": "log"}])
    # The engine's bounds (docs/alerts.md, "Bounds").
    max_future_skew: float = field(default=MAX_FUTURE_NS / 1e9, metadata={"min": 0.0})
    max_members: int = field(default=MAX_MEMBERS, metadata={"min": 1})
    max_gateways: int = field(default=MAX_GATEWAYS, metadata={"min": 1})

    @property
    def limits(self) -> EngineLimits:
        return EngineLimits(max_members=self.max_members, max_gateways=self.max_gateways,
                            max_future_ns=int(self.max_future_skew * 1e9))

    @property
    def lease_kind(self) -> LeaseKind:
        return LEGACY_LEASE[self.lease] if isinstance(self.lease, bool) else self.lease


@dataclass
class LoadedAlerts:
    config: AlertsConfig
    rules: RuleSet
    notifiers: list[tuple[str, RouteConfig, Notifier]]
    base_dir: Path

    @property
    def state_dir(self) -> Path:
        return self.base_dir / self.config.state_dir


def load_alerts(options: Any, doc: yamlconfig.Located, base_dir: Path,
                path: yamlconfig.KeyPath = ("alerts",)) -> LoadedAlerts:
    """Bind and check the alerts section; raises ConfigError (or RuleError for a rule file)."""
    config = yamlconfig.bind(AlertsConfig, options, doc, path)
    paths = [str(base_dir / p) for p in config.rules]
    rules = load_rules(paths)  # a RuleError names the rule file's own line
    notifiers: list[tuple[str, RouteConfig, Notifier]] = []
    for i, entry in enumerate(config.notifiers):
        at = (*path, "notifiers", i)
        if "type" not in entry:
            raise doc.error(at, "missing required key 'type' (log, webhook, mqtt_downlink, ...)")
        route_opts = {k: v for k, v in entry.items() if k in ROUTE_KEYS}
        plugin_opts = {k: v for k, v in entry.items() if k not in ROUTE_KEYS and k != "type"}
        route = yamlconfig.bind(RouteConfig, route_opts, doc, at)
        notifier = build(entry["type"], plugin_opts, doc, at)
        name = route.name or entry["type"]
        if name in {n for n, _, _ in notifiers}:
            raise doc.error((*at, "name"), f"two notifiers named {name!r}; give each a name")
        notifiers.append((name, route, notifier))
    return LoadedAlerts(config, rules, notifiers, base_dir)
