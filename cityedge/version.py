"""What ``--version`` prints, for every cityedge command, and the version an agent reports."""

from __future__ import annotations

import functools
import sys
from importlib import metadata

# The version reported when cityedge runs from a source tree, not installed.
SOURCE_VERSION = "source"


@functools.cache
def package_version() -> str:
    """The installed cityedge's version (what an agent reports in its status and health)."""
    try:
        return metadata.version("cityedge")
    except metadata.PackageNotFoundError:
        return SOURCE_VERSION


def version_text(prog: str) -> str:
    """The command, the installed cityedge, the Python."""
    version = package_version()
    if version == SOURCE_VERSION:
        version = "(not installed: run from a source tree)"
    return f"{prog} {version} (cityedge; Python {sys.version.split()[0]})"
