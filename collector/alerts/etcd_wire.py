"""etcd's v3 HTTP/JSON gateway as the alert lease uses it: request bodies and answers, sans-IO.

etcd serves its gRPC API as JSON under ``/v3/`` (3.4 also under the older
``/v3beta/``, which 3.5 dropped; ``/v3/`` works on both). Keys and values
are base64, 64-bit numbers are strings, and proto3 leaves fields at their
zero value out (a failed transaction has no ``succeeded``, an unknown lease
no ``TTL``). An error answer is ``{"error": ..., "code": <gRPC code>}``.

Keys, under the configured prefix (``alerts.etcd.prefix``):

- ``{prefix}/leader``: the leader's id, bound to its lease; its create
  revision is the fencing token (etcd_election.py).
- ``{prefix}/state``: the open alerts handed to the next leader
  (handover.py's format), written only while ``{prefix}/leader`` has the
  writer's create revision.
- ``{prefix}/outbox``: the transitions written ahead and not yet delivered
  (outbox.py's format), written in the same fenced transaction as the state.

Any answer either parses or raises EtcdWireError, never anything else.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from collector.alerts.errors import AlertError

API = "/v3"
GRANT, KEEPALIVE, REVOKE, TXN = (f"{API}/lease/grant", f"{API}/lease/keepalive",
                                 f"{API}/lease/revoke", f"{API}/kv/txn")
# gRPC's NOT_FOUND: etcd's "requested lease not found" (HTTP 404 from the gateway).
CODE_NOT_FOUND = 5


class EtcdWireError(AlertError):
    """An answer from etcd we cannot read; the request counts as failed."""


class LeaseNotFound(AlertError):
    """etcd no longer knows the lease the request named (expired or revoked)."""


def b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str

    @property
    def leader(self) -> str:
        return f"{self.prefix}/leader"

    @property
    def state(self) -> str:
        return f"{self.prefix}/state"

    @property
    def outbox(self) -> str:
        return f"{self.prefix}/outbox"


def grant_body(ttl: int) -> dict[str, Any]:
    return {"TTL": ttl}


def lease_body(lease: int) -> dict[str, Any]:
    return {"ID": str(lease)}


def campaign_body(keys: Keys, lease: int, holder: str) -> dict[str, Any]:
    """Create the leader key unless it exists; read it back (its create revision) and the
    handed-over state and outbox in the same transaction, or read who holds it."""
    leader = b64(keys.leader)
    return {"compare": [{"key": leader, "target": "CREATE", "result": "EQUAL",
                         "create_revision": "0"}],
            "success": [{"request_put": {"key": leader, "value": b64(holder),
                                         "lease": str(lease)}},
                        {"request_range": {"key": leader}},
                        {"request_range": {"key": b64(keys.state)}},
                        {"request_range": {"key": b64(keys.outbox)}}],
            "failure": [{"request_range": {"key": leader}}]}


def fenced_put_body(keys: Keys, token: int, value: bytes) -> dict[str, Any]:
    """Put the state only while the leader key has our create revision (our token)."""
    return {"compare": [{"key": b64(keys.leader), "target": "CREATE", "result": "EQUAL",
                         "create_revision": str(token)}],
            "success": [{"request_put": {"key": b64(keys.state), "value": b64(value)}}]}


def write_ahead_body(keys: Keys, token: int, state: bytes | None,
                     outbox: bytes) -> dict[str, Any]:
    """Put the outbox, and the state with it if given, only while the leader key has our
    create revision: the state and the transitions pending delivery land together or not."""
    puts = [] if state is None else [{"request_put": {"key": b64(keys.state),
                                                      "value": b64(state)}}]
    puts.append({"request_put": {"key": b64(keys.outbox), "value": b64(outbox)}})
    return {"compare": [{"key": b64(keys.leader), "target": "CREATE", "result": "EQUAL",
                         "create_revision": str(token)}],
            "success": puts}


def parse(status: int, text: str) -> dict[str, Any]:
    """The answer's JSON; raises LeaseNotFound or EtcdWireError for an error answer."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        raise EtcdWireError(f"HTTP {status}, not JSON: {text[:80]!r}") from None
    if not isinstance(doc, dict):
        raise EtcdWireError(f"HTTP {status}, not a JSON object")
    if "error" in doc or status != 200:
        if doc.get("code") == CODE_NOT_FOUND and "lease" in str(doc.get("error", "")):
            raise LeaseNotFound(str(doc.get("error")))
        raise EtcdWireError(f"HTTP {status}: {str(doc.get('error', text))[:120]}")
    return doc


def _int(doc: dict[str, Any], key: str) -> int:
    value = doc.get(key, "0")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise EtcdWireError(f"{key} is not a number: {value!r:.40}") from None


def granted(doc: dict[str, Any]) -> tuple[int, int]:
    """(lease id, TTL) of a grant."""
    lease, ttl = _int(doc, "ID"), _int(doc, "TTL")
    if lease <= 0 or ttl <= 0:
        raise EtcdWireError(f"a grant without a lease: {doc.get('error') or doc}"[:120])
    return lease, ttl


def kept_alive(doc: dict[str, Any]) -> int:
    """The lease's remaining TTL (0: etcd does not know it). The gateway streams: one result."""
    result = doc.get("result")
    if not isinstance(result, dict):
        raise EtcdWireError("a keepalive answer without a result")
    return _int(result, "TTL")


@dataclass(frozen=True, slots=True)
class Campaigned:
    won: bool
    create_revision: int  # the leader key's, whoever holds it (0: nobody)
    holder: str
    state: bytes | None  # the handed-over state, read when we won
    outbox: bytes | None = None  # the transitions pending delivery, read when we won


def _kv(response: Any, kind: str) -> dict[str, Any] | None:
    if not isinstance(response, dict) or not isinstance(response.get(kind), dict):
        raise EtcdWireError(f"a transaction answer without {kind}")
    kvs = response[kind].get("kvs") or []
    if not isinstance(kvs, list) or (kvs and not isinstance(kvs[0], dict)):
        raise EtcdWireError("a range answer with bad kvs")
    return kvs[0] if kvs else None


def _value(kv: dict[str, Any] | None) -> bytes:
    if kv is None:
        return b""
    try:
        return base64.b64decode(str(kv.get("value", "")), validate=True)
    except ValueError:
        raise EtcdWireError("a value that is not base64") from None


def campaigned(doc: dict[str, Any]) -> Campaigned:
    responses = doc.get("responses") or []
    won = doc.get("succeeded") is True
    if not isinstance(responses, list) or len(responses) != (4 if won else 1):
        raise EtcdWireError("a campaign answer with the wrong number of responses")
    leader = _kv(responses[1 if won else 0], "response_range")
    revision = _int(leader, "create_revision") if leader is not None else 0
    holder = _value(leader).decode("utf-8", "replace")
    state = _value(_kv(responses[2], "response_range")) or None if won else None
    outbox = _value(_kv(responses[3], "response_range")) or None if won else None
    return Campaigned(won, revision, holder, state, outbox)


def put_fenced(doc: dict[str, Any]) -> bool:
    """Was the fenced put made (False: another leader's key, or none)?"""
    return doc.get("succeeded") is True
