"""What the gateway and the collector share: the uplink wire format and config loading."""

from __future__ import annotations

import sys
from importlib import metadata


def version_text(prog: str) -> str:
    """What ``--version`` prints: the command, the installed cityedge, the Python."""
    try:
        version = metadata.version("cityedge")
    except metadata.PackageNotFoundError:
        version = "(not installed: run from a source tree)"
    return f"{prog} {version} (cityedge; Python {sys.version.split()[0]})"
