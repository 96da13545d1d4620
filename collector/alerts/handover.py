"""The lead evaluator's open alerts, handed to the next leader in one retained message.

With ``lease: mqtt`` the leader publishes what ``dump_alerts`` gives (open
alerts, the members holding them, flap history, silences, the gateway
directory: the content of ``alerts.json``) retained, QoS 1, on
``{prefix}/collectors/alerts/state`` each time it saves ``alerts.json``. The
payload is one line of JSON, the header, readable with ``mosquitto_sub``:

    {"format": 1, "holder": "c-a", "rank": ..., "n": 12, "saved_ns": ..., "open_alerts": 3}

then a newline and the alerts as zlib-compressed JSON. The header's version
(rank, holder, n) orders saves across hosts without comparing their clocks:
``rank`` is the leader's candidacy rank (collector/alerts/election.py), which
grows from one leader to the next, and ``n`` counts that process's saves. The
same version is kept in ``alerts.json``, so a new leader can tell whether its
own files or the broker's message are newer. Window statistics are not
handed over (tens of megabytes for a city); a takeover from the broker's
message starts them empty and they refill.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any

from collector.alerts.errors import AlertError

FORMAT = 1
# Under 1 MB, EMQX's default for both mqtt.max_packet_size (a bigger packet
# gets the client disconnected) and retainer.max_payload_size (a bigger
# message is passed on but not retained), leaving room for the topic and the
# packet's own header. Mosquitto, HiveMQ and VerneMQ allow far more by default.
MAX_STATE_BYTES = 960_000
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
    head = {"format": FORMAT, **version.as_dict(), "saved_ns": saved_ns,
            "open_alerts": len(alerts.get("groups", []))}
    body = json.dumps(alerts, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
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
    """The alerts part; raises HandoverError, never anything else."""
    decode_header(payload)
    try:
        alerts = json.loads(zlib.decompress(payload.partition(b"\n")[2]))
    except (zlib.error, ValueError, RecursionError) as exc:
        raise HandoverError(f"alert state body unreadable: {exc}") from None
    if not isinstance(alerts, dict):
        raise HandoverError("alert state body is not a mapping")
    return alerts


def remote_is_newer(remote: Version | None, local: Version | None) -> bool:
    """Take the broker's state over the local files? Equal means the same save: keep local."""
    if remote is None:
        return False
    return local is None or remote > local
