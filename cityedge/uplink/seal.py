"""Seals: proof that an ack or a display message comes from a collector, sans-IO.

Gateways sit where anyone can reach them and the broker's network is not
trusted (DESIGN, Trust): any client that can publish to a gateway's ``ack``
or ``down`` topic could otherwise delete its readings, move its clock or put
text on a public display. The collector therefore seals what it sends to a
gateway with a key only it and that gateway know, and the gateway acts only
on what it can verify.

The rule, in one place:

- key: ``derive_key(secret)`` = HMAC-SHA256(key=secret, msg="cityedge/v1 seal key"),
  where ``secret`` is the gateway's credential (its MQTT password or HTTP
  token). The operator's registry stores the derived key (hex) per gateway,
  so the collector never needs the secret itself.
- seal: ``doc["mac"]`` = hex HMAC-SHA256(key, purpose + "\\n" + canonical(doc
  without "mac")), canonical being compact JSON with sorted keys and UTF-8
  text (``ensure_ascii=False``). Every field is covered.
- purpose: ``"ack"`` or ``"display"`` (``PURPOSES``), so a sealed message of
  one kind can never be replayed as the other.

Sealing proves origin and integrity, not freshness: a sealed message can be
replayed. The receivers bound what a replay can do (an ack applies only to a
batch in flight; a display id is acted on once and expires).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any, Literal, Protocol

Purpose = Literal["ack", "display"]
PURPOSES: tuple[Purpose, ...] = ("ack", "display")
MAC_FIELD = "mac"
_KEY_LABEL = b"cityedge/v1 seal key"
# A SHA-256 HMAC in hex.
MAC_HEX_CHARS = 64


def derive_key(secret: str) -> bytes:
    """The seal key for a gateway whose credential is ``secret`` (32 bytes)."""
    return hmac.new(secret.encode(), _KEY_LABEL, hashlib.sha256).digest()


def canonical(doc: Mapping[str, Any]) -> bytes:
    """The bytes a seal covers: ``doc`` without its mac, as compact sorted JSON."""
    body = {k: v for k, v in doc.items() if k != MAC_FIELD}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _mac(doc: Mapping[str, Any], key: bytes, purpose: str) -> str:
    if purpose not in PURPOSES:
        raise ValueError(f"purpose: expected one of {PURPOSES}, got {purpose!r}")
    return hmac.new(key, purpose.encode() + b"\n" + canonical(doc), hashlib.sha256).hexdigest()


def seal(doc: Mapping[str, Any], key: bytes, purpose: str) -> dict[str, Any]:
    """A copy of ``doc`` with its ``mac`` (any mac already there is replaced)."""
    return {**{k: v for k, v in doc.items() if k != MAC_FIELD},
            MAC_FIELD: _mac(doc, key, purpose)}


def verify(doc: Mapping[str, Any], key: bytes, purpose: str) -> bool:
    """True if ``doc`` carries the mac ``key`` gives it for ``purpose`` (constant time)."""
    given = doc.get(MAC_FIELD)
    if not isinstance(given, str) or len(given) != MAC_HEX_CHARS:
        return False
    try:
        expected = _mac(doc, key, purpose)
    except (TypeError, ValueError):  # text JSON cannot encode, or a bad purpose
        return False
    return hmac.compare_digest(given.encode("ascii", "replace"), expected.encode())


def is_sealed(doc: Mapping[str, Any]) -> bool:
    """Does ``doc`` carry a mac at all (to tell ``unsealed`` from ``bad_seal``)?"""
    return MAC_FIELD in doc


class KeyRing(Protocol):
    """Where the collector finds each gateway's seal key (the operator's registry)."""

    def key_for(self, gateway: str) -> bytes | None:
        """The gateway's seal key, or None if it has none (its messages go unsealed)."""
        ...


class StaticKeyRing:
    """A fixed map of gateway -> key, for tests and small setups without a registry."""

    def __init__(self, keys: Mapping[str, bytes]) -> None:
        self._keys = dict(keys)

    @classmethod
    def from_secrets(cls, secrets: Mapping[str, str]) -> StaticKeyRing:
        return cls({gateway: derive_key(secret) for gateway, secret in secrets.items()})

    def key_for(self, gateway: str) -> bytes | None:
        return self._keys.get(gateway)
