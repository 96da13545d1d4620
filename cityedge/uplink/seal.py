"""The key a gateway's acks are sealed with, derived from the gateway's one secret."""

from __future__ import annotations

import hashlib
import hmac


def derive_key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"cityedge/v1 seal key", hashlib.sha256).digest()
