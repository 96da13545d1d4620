"""A gateway's status message (topic ``{prefix}/{gateway}/status``, topics.py).

Retained ``online`` when the gateway connects; ``offline`` as its last will
and when it stops. Both carry the agent's version, so the fleet view can
show what runs where without asking InfluxDB. The collector's alert engine
reads the state for offline rules::

    {"gateway": "gw-1", "state": "online", "agent_version": "0.1.0"}

``agent_version`` is optional (agents before it sent none).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal

State = Literal["online", "offline"]

# What an agent_version may look like (a PEP 440 or git-describe string); anything else,
# or longer, is not shown: a status message comes from the broker's untrusted side.
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+_-]{0,39}$")


@dataclass(frozen=True, slots=True)
class GatewayStatus:
    state: State
    agent_version: str | None = None


def encode_status(gateway: str, state: State, agent_version: str | None = None) -> bytes:
    doc: dict[str, str] = {"gateway": gateway, "state": state}
    if agent_version is not None:
        doc["agent_version"] = agent_version
    return json.dumps(doc).encode()


def read_status(payload: bytes, topic_gateway: str) -> GatewayStatus | None:
    """The status message, or None if it is not a usable one (not JSON, not an object,
    another gateway's, or an unknown state). A malformed agent_version is left out."""
    try:
        doc = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("gateway") != topic_gateway:
        return None
    state = doc.get("state")
    if state not in ("online", "offline"):
        return None
    version = doc.get("agent_version")
    ok = isinstance(version, str) and VERSION_RE.fullmatch(version) is not None
    return GatewayStatus("online" if state == "online" else "offline",
                         version if ok else None)


def decode_status(payload: bytes, topic_gateway: str) -> State | None:
    """The state in a status message, or None if it is not a usable one."""
    status = read_status(payload, topic_gateway)
    return None if status is None else status.state
