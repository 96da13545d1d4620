"""The lead evaluator's open alerts, handed to the next leader through etcd.

With ``lease: etcd`` the leader writes what ``dump_alerts`` gives (open
alerts, the members holding them, flap history, silences, the gateway
directory: the content of ``alerts.json``) to ``{prefix}/state`` each time it
saves ``alerts.json``, in a transaction that succeeds only while the leader
key still has the leader's create revision (etcd_wire.py): a deposed
leader's save never replaces the next one's. The value is one line of JSON,
the header, readable with ``etcdctl get``:

    {"format": 1, "holder": "c-a", "rank": 42, "n": 12, "saved_ns": ..., "open_alerts": 3}

then a newline and the alerts as zlib-compressed JSON. The header's version
(rank, holder, n) orders saves across hosts without comparing their clocks:
``rank`` is the leader's fencing token (the leader key's create revision),
which grows from one leader to the next, and ``n`` counts that process's
saves. The same version is kept in ``alerts.json``, so a new leader can tell
whether its own files or etcd's state are newer. Window statistics are not
handed over (tens of megabytes for a city); a takeover from etcd's state
starts them empty and they refill.

A header is only a claim: a takeover restores the state only if it decodes
and restores, else its own files. The body is inflated to a bounded size
(``MAX_STATE_JSON_BYTES``).
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any

from collector.alerts.errors import AlertError

FORMAT = 1
# etcd refuses a request over --max-request-bytes (1.5 MiB by default), and the
# gateway's JSON carries the value in base64 (4/3 of its size): 960,000 bytes
# are 1.28 MB of base64, leaving room for the transaction around it.
MAX_STATE_BYTES = 960_000
# The alerts' JSON, before compression: the most a state message may inflate to.
# The bench fleet with every sensor in alarm (10,000 sensors, 6,244 open
# alerts, docs/alerts.md) made 5.5 MB, 430 KB compressed; at that ratio
# MAX_STATE_BYTES holds 12 MB. Unbounded, a 778 KB message built to inflate
# (a zlib bomb) took 6 s and 1.6 GB to read. A leader hands over no more.
MAX_STATE_JSON_BYTES = 16 * 2**20
COMPRESS_LEVEL = 6


class HandoverError(AlertError):
    """A state message we cannot use (another version, torn, or not ours)."""


@dataclass(frozen=True, slots=True, order=True)
class Version:
    """Orders state saves across hosts: the leader's rank, its id, its save count."""

    rank: int
    holder: str
    n: int

    def as_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "holder": self.holder, "n": self.n}

    @classmethod
    def from_dict(cls, doc: Any) -> Version | None:
        """The version kept in alerts.json, or None when the file has none (or a bad one)."""
        if not isinstance(doc, dict):
            return None
        rank, holder, n = doc.get("rank"), doc.get("holder"), doc.get("n")
        if not (isinstance(rank, int) and isinstance(holder, str) and isinstance(n, int)):
            return None
        return cls(rank, holder, n)


@dataclass(frozen=True, slots=True)
class Header:
    version: Version
    saved_ns: int
    open_alerts: int


def encode_state(alerts: dict[str, Any], version: Version, saved_ns: int) -> bytes:
    """The state message; HandoverError if its JSON is over MAX_STATE_JSON_BYTES."""
    head = {"format": FORMAT, **version.as_dict(), "saved_ns": saved_ns,
            "open_alerts": len(alerts.get("groups", []))}
    body = json.dumps(alerts, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if len(body) > MAX_STATE_JSON_BYTES:
        raise HandoverError(f"alert state of {len(body)} bytes of JSON is over the "
                            f"{MAX_STATE_JSON_BYTES}-byte limit for a hand-over")
    return json.dumps(head).encode() + b"\n" + zlib.compress(body, COMPRESS_LEVEL)


def decode_header(payload: bytes) -> Header:
    """The header line; raises HandoverError, never anything else."""
    line, newline, _ = payload.partition(b"\n")
    try:
        head = json.loads(line) if newline else None
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the stack
        head = None
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise HandoverError(f"not a format {FORMAT} alert state message")
    version = Version.from_dict(head)
    saved, count = head.get("saved_ns"), head.get("open_alerts")
    if version is None or not isinstance(saved, int) or not isinstance(count, int):
        raise HandoverError("alert state header lacks rank, holder, n, saved_ns or open_alerts")
    return Header(version, saved, count)


def decode_alerts(payload: bytes) -> dict[str, Any]:
    """The alerts part; raises HandoverError, never anything else.

    It inflates at most MAX_STATE_JSON_BYTES and parses them: up to a few
    hundred milliseconds, so the runner calls it off the event loop.
    """
    decode_header(payload)
    inflater = zlib.decompressobj()
    try:
        body = inflater.decompress(payload.partition(b"\n")[2], MAX_STATE_JSON_BYTES + 1)
    except zlib.error as exc:
        raise HandoverError(f"alert state body unreadable: {exc}") from None
    if len(body) > MAX_STATE_JSON_BYTES:
        raise HandoverError(f"alert state body inflates past {MAX_STATE_JSON_BYTES} bytes")
    if not inflater.eof:
        raise HandoverError("alert state body unreadable: incomplete or truncated stream")
    try:
        alerts = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise HandoverError(f"alert state body unreadable: {exc}") from None
    if not isinstance(alerts, dict):
        raise HandoverError("alert state body is not a mapping")
    return alerts


def remote_is_newer(remote: Version | None, local: Version | None) -> bool:
    """Take etcd's state over the local files? Equal means the same save: keep local."""
    if remote is None:
        return False
    return local is None or remote > local
