"""Where the data cityedge ships with lives: firmware profiles, rule sets, sample configs.

The same files are found the same way in a clone, in an editable install and in
an installed wheel, from any working directory: they are package data of this
package (``importlib.resources``). In the repository the folders stay at the top
(``firmware_profiles/``, ``configs/``), where people edit them; this package
reaches them through symbolic links, and a wheel carries copies.

Every caller asks this module; none builds a path from ``__file__``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["SAMPLES", "profiles_dir", "rule_files", "rules_dir", "sample_config", "systemd_unit"]

# Sample configs by the command they are for (configs/<name>.sample.yaml).
SAMPLES = ("agent", "collector")


def _folder(*parts: str) -> Path:
    # Installed from a wheel or a source tree, this package is a plain folder on disk
    # (no zip import), so the traversable is a real path every caller can hand on;
    # resolved, a clone's messages name the folders people edit (configs/, ...).
    return Path(str(resources.files(__name__).joinpath(*parts))).resolve()


def profiles_dir() -> Path:
    """The shipped firmware profiles, one YAML file per sensor model."""
    return _folder("firmware_profiles")


def rules_dir() -> Path:
    """The shipped alert rule sets (configs/rules/)."""
    return _folder("configs", "rules")


def rule_files() -> list[Path]:
    """Every shipped rule set, by name."""
    return sorted(rules_dir().glob("*.yaml"))


def systemd_unit(name: str) -> Path:
    """The systemd unit for ``name`` (one of SAMPLES): configs/systemd/cityedge-<name>.service."""
    if name not in SAMPLES:
        raise ValueError(f"no systemd unit {name!r}; expected one of {', '.join(SAMPLES)}")
    return _folder("configs", "systemd", f"cityedge-{name}.service")


def sample_config(name: str) -> Path:
    """The commented sample config for ``name`` (one of SAMPLES)."""
    if name not in SAMPLES:
        raise ValueError(f"no sample config {name!r}; expected one of {', '.join(SAMPLES)}")
    return _folder("configs", f"{name}.sample.yaml")
