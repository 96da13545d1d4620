"""A gateway's status message (topic ``{prefix}/{gateway}/status``, topics.py).

Retained ``online`` when the gateway connects; ``offline`` as its last will
and when it stops. The collector's alert engine reads it for offline rules::

    {"gateway": "gw-1", "state": "online"}
"""

from __future__ import annotations

import json
from typing import Literal

State = Literal["online", "offline"]


def encode_status(gateway: str, state: State) -> bytes:
    return json.dumps({"gateway": gateway, "state": state}).encode()


def decode_status(payload: bytes, topic_gateway: str) -> State | None:
    """The state in a status message, or None if it is not a usable one (not JSON, not
    an object, another gateway's, or an unknown state)."""
    try:
        doc = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("gateway") != topic_gateway:
        return None
    state = doc.get("state")
    if state == "online":
        return "online"
    if state == "offline":
        return "offline"
    return None
