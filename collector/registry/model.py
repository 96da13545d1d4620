"""The gateway registry the operator keeps: who may speak, where they stand, and their keys.

One YAML file (mode 0600, rewritten atomically) lists every client of the
broker. It holds no secret: a gateway's MQTT password and HTTP bearer token are
stored as Mosquitto ``$7$`` hashes, and its seal key is derived from the secret
(the collector needs the key to seal acks; the key does not reveal the secret)::

    version: 1
    topic_prefix: cityedge/v1
    gateways:
      gw-gn-001:
        district: 강남구
        site: 역삼역 2번 출구
        kind: bus_stop
        password_hash: $7$101$...
        seal_key: 3f0c...            # hex, 32 bytes
        revoked: false
        created: '2024-05-01T09:00:00Z'
        rotated: null
    collectors:
      collector-1:
        password_hash: $7$101$...
        created: '2024-05-01T09:00:00Z'

Everything here is pure: ``parse``/``dump`` turn text into a ``Registry`` and
back, and the edits (``add_gateway``, ``rotate``, ``revoke``...) return a new
``Registry`` plus the secret to show once. ``load``/``save`` are the only I/O.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast, get_args

import yaml

from cityedge.atomic import atomic_write
from cityedge.uplink.payload import tag_value_ok
from cityedge.uplink.seal import derive_key
from cityedge.uplink.topics import DEFAULT_PREFIX, RESERVED_LEVELS
from collector.registry.passwords import HashError, hash_password, new_secret, parse_hash

FORMAT_VERSION = 1
FILE_MODE = 0o600
SiteKind = Literal["dust_zone", "bus_stop", "apartment"]
SITE_KINDS: tuple[str, ...] = get_args(SiteKind)
# A gateway id is an MQTT username and a topic level: the payload's ID_RE less
# ':', which ends a username in Mosquitto's password file.
CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SEAL_KEY_RE = re.compile(r"^[0-9a-f]{64}$")
HEADER = (
    "## cityedge gateway registry, kept with `edge-collector gateways` (docs/identity.md).\n"
    "## No secrets: password hashes (Mosquitto $7$) and derived seal keys only.\n"
)


class RegistryError(ValueError):
    """The registry file is unreadable or wrong, or an edit is not allowed."""


@dataclass(frozen=True, slots=True)
class Gateway:
    id: str
    district: str
    site: str
    kind: SiteKind
    password_hash: str
    seal_key: str  # hex of derive_key(secret)
    revoked: bool = False
    created: str = ""
    rotated: str | None = None

    @property
    def site_tags(self) -> dict[str, str]:
        """The tags every reading of this gateway carries (the payload's are overridden)."""
        return {"district": self.district, "site": self.site, "kind": self.kind}


@dataclass(frozen=True, slots=True)
class CollectorAccount:
    name: str
    password_hash: str
    created: str = ""


@dataclass(frozen=True, slots=True)
class Registry:
    gateways: Mapping[str, Gateway] = field(default_factory=dict)
    collectors: Mapping[str, CollectorAccount] = field(default_factory=dict)
    topic_prefix: str = DEFAULT_PREFIX

    def active(self) -> list[Gateway]:
        """Gateways that may connect, in id order (what the broker's files list)."""
        return [g for _, g in sorted(self.gateways.items()) if not g.revoked]

    def key_for(self, gateway: str) -> bytes | None:
        """The gateway's seal key; None for an unknown or revoked gateway."""
        g = self.gateways.get(gateway)
        return None if g is None or g.revoked else bytes.fromhex(g.seal_key)


# -- edits: pure, each returns the new registry (and the secret to show once) ---------------
def check_client_name(name: str, what: str) -> None:
    if not CLIENT_ID_RE.fullmatch(name):
        raise RegistryError(f"{what} {name!r}: expected letters, digits and '_.-' (max 64,"
                            " starting with a letter or digit)")
    if name in RESERVED_LEVELS:
        raise RegistryError(f"{what} {name!r}: reserved for the collectors' own topics")


def add_gateway(reg: Registry, gateway: str, *, district: str, site: str, kind: str,
                now: str) -> tuple[Registry, str]:
    check_client_name(gateway, "gateway id")
    if gateway in reg.gateways:
        state = "revoked" if reg.gateways[gateway].revoked else "registered"
        raise RegistryError(f"gateway {gateway!r} is already {state}")
    if gateway in reg.collectors:
        raise RegistryError(f"{gateway!r} is a collector's name (one broker username each)")
    _check_site(district, site, kind)
    secret = new_secret()
    g = Gateway(gateway, district, site, cast(SiteKind, kind), hash_password(secret),
                derive_key(secret).hex(), created=now)
    return dataclasses.replace(reg, gateways={**reg.gateways, gateway: g}), secret


def rotate(reg: Registry, gateway: str, *, now: str) -> tuple[Registry, str]:
    g = _existing(reg, gateway)
    if g.revoked:
        raise RegistryError(f"gateway {gateway!r} is revoked; register the device under a new id")
    secret = new_secret()
    g = dataclasses.replace(g, password_hash=hash_password(secret),
                            seal_key=derive_key(secret).hex(), rotated=now)
    return dataclasses.replace(reg, gateways={**reg.gateways, gateway: g}), secret


def revoke(reg: Registry, gateway: str, *, now: str) -> Registry:
    g = _existing(reg, gateway)
    if g.revoked:
        return reg
    g = dataclasses.replace(g, revoked=True, rotated=now)
    return dataclasses.replace(reg, gateways={**reg.gateways, gateway: g})


def add_collector(reg: Registry, name: str, *, now: str,
                  replace: bool = False) -> tuple[Registry, str]:
    check_client_name(name, "collector name")
    if name in reg.gateways:
        raise RegistryError(f"{name!r} is a gateway id (one broker username each)")
    if name in reg.collectors and not replace:
        raise RegistryError(f"collector {name!r} exists; --replace gives it a new password")
    secret = new_secret()
    account = CollectorAccount(name, hash_password(secret), created=now)
    return dataclasses.replace(reg, collectors={**reg.collectors, name: account}), secret


def _existing(reg: Registry, gateway: str) -> Gateway:
    g = reg.gateways.get(gateway)
    if g is None:
        raise RegistryError(f"no gateway {gateway!r} in the registry")
    return g


def _check_site(district: str, site: str, kind: str) -> None:
    for key, value in (("district", district), ("site", site)):
        if not tag_value_ok(value):
            raise RegistryError(f"{key} {value!r}: expected a non-empty name without a newline"
                                " or a trailing backslash, at most 256 characters")
    if kind not in SITE_KINDS:
        raise RegistryError(f"kind {kind!r}: expected one of {', '.join(SITE_KINDS)}")


# -- text <-> Registry ---------------------------------------------------------------------
def parse(text: str, source: str = "<registry>") -> Registry:
    """A registry from YAML; RegistryError names the entry and the key that is wrong."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RegistryError(f"{source}: not valid YAML: {exc}") from None
    doc = {} if doc is None else doc
    if not isinstance(doc, dict):
        raise RegistryError(f"{source}: expected a mapping at the top")
    unknown = set(doc) - {"version", "topic_prefix", "gateways", "collectors"}
    if unknown:
        raise RegistryError(f"{source}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    if doc.get("version", FORMAT_VERSION) != FORMAT_VERSION:
        raise RegistryError(f"{source}: version {doc.get('version')!r}: this collector reads"
                            f" version {FORMAT_VERSION}")
    prefix = doc.get("topic_prefix", DEFAULT_PREFIX)
    if not isinstance(prefix, str) or not prefix or any(c in prefix for c in "+#"):
        raise RegistryError(f"{source}: topic_prefix: expected a topic without + or #")
    gateways = {gid: _gateway(gid, entry, source)
                for gid, entry in _section(doc, "gateways", source).items()}
    collectors = {name: _collector(name, entry, source)
                  for name, entry in _section(doc, "collectors", source).items()}
    both = set(gateways) & set(collectors)
    if both:
        raise RegistryError(f"{source}: {', '.join(sorted(both))}: both a gateway and a"
                            " collector (one broker username each)")
    return Registry(gateways, collectors, prefix)


def _section(doc: dict[str, Any], key: str, source: str) -> dict[str, Any]:
    value = doc.get(key) or {}
    if not isinstance(value, dict):
        raise RegistryError(f"{source}: {key}: expected a mapping of id to entry")
    return value


def _entry(kind: str, name: Any, entry: Any, source: str,
           known: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    where = f"{source}: {kind}.{name}"
    if not isinstance(name, str):
        raise RegistryError(f"{where}: the id must be a string")
    try:
        check_client_name(name, "id")
    except RegistryError as exc:
        raise RegistryError(f"{where}: {exc}") from None
    if not isinstance(entry, dict):
        raise RegistryError(f"{where}: expected a mapping")
    unknown = set(entry) - set(known)
    if unknown:
        raise RegistryError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    return where, entry


def _str(entry: dict[str, Any], key: str, where: str, *, optional: bool = False) -> Any:
    value = entry.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise RegistryError(f"{where}.{key}: expected a string")
    return value


def _hash(entry: dict[str, Any], where: str) -> str:
    value = _str(entry, "password_hash", where)
    try:
        parse_hash(value)
    except HashError as exc:
        raise RegistryError(f"{where}.password_hash: {exc}") from None
    return cast(str, value)


GATEWAY_KEYS = ("district", "site", "kind", "password_hash", "seal_key", "revoked", "created",
                "rotated")


def _gateway(gid: Any, entry: Any, source: str) -> Gateway:
    where, entry = _entry("gateways", gid, entry, source, GATEWAY_KEYS)
    district, site, kind = (_str(entry, k, where) for k in ("district", "site", "kind"))
    try:
        _check_site(district, site, kind)
    except RegistryError as exc:
        raise RegistryError(f"{where}: {exc}") from None
    seal_key = _str(entry, "seal_key", where)
    if not SEAL_KEY_RE.fullmatch(seal_key):
        raise RegistryError(f"{where}.seal_key: expected 64 lowercase hex digits")
    revoked = entry.get("revoked", False)
    if not isinstance(revoked, bool):
        raise RegistryError(f"{where}.revoked: expected true or false")
    return Gateway(gid, district, site, kind, _hash(entry, where), seal_key, revoked,
                   _str(entry, "created", where, optional=True) or "",
                   _str(entry, "rotated", where, optional=True))


def _collector(name: Any, entry: Any, source: str) -> CollectorAccount:
    where, entry = _entry("collectors", name, entry, source, ("password_hash", "created"))
    return CollectorAccount(name, _hash(entry, where),
                            _str(entry, "created", where, optional=True) or "")


def dump(reg: Registry) -> str:
    doc = {
        "version": FORMAT_VERSION,
        "topic_prefix": reg.topic_prefix,
        "gateways": {gid: {k: getattr(g, k) for k in GATEWAY_KEYS}
                     for gid, g in sorted(reg.gateways.items())},
        "collectors": {name: {"password_hash": c.password_hash, "created": c.created}
                       for name, c in sorted(reg.collectors.items())},
    }
    return HEADER + yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, width=1000)


# -- the file ----------------------------------------------------------------------------
def load(path: Path) -> Registry:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistryError(f"{path}: cannot read: {exc.strerror}") from None
    return parse(text, str(path))


def load_or_empty(path: Path) -> Registry:
    """The registry at ``path``; an empty one if the file does not exist yet (first ``add``)."""
    return load(path) if path.exists() else Registry()


def save(path: Path, reg: Registry) -> None:
    """Rewrite the file atomically, readable by its owner only."""
    atomic_write(path, dump(reg).encode("utf-8"), mode=FILE_MODE)


def file_stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes when the file is rewritten (inode, size, mtime), or None if it is gone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)
