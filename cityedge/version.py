"""What ``--version`` prints, for every cityedge command."""

from __future__ import annotations

import sys
from importlib import metadata


def version_text(prog: str) -> str:
    """The command, the installed cityedge, the Python."""
    try:
        version = metadata.version("cityedge")
    except metadata.PackageNotFoundError:
        version = "(not installed: run from a source tree)"
    return f"{prog} {version} (cityedge; Python {sys.version.split()[0]})"
