"""A gateway is set up with ``pip install``: the wheel carries the firmware profiles, rule
sets, sample configs and demo rules, and its commands find them from any directory.

The wheel is built without warnings from a copy of the source tree, installed into a
fresh virtual environment outside the repository, and its console scripts are run from
another folder with no PYTHONPATH. The new environment borrows the installed
dependencies of the Python running the tests (a path file), so no network is needed:
the test checks what the wheel holds, not what PyPI serves.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import site
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from tests.conftest import _need

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# What a build needs from the source tree (the rest is tests, docs and benchmarks).
SOURCES = ("pyproject.toml", "README.md", "cityedge", "edge_agent", "collector", "simulators",
           "firmware_profiles", "configs")
# setuptools that understands the SPDX license string (PEP 639).
SETUPTOOLS_SPDX = (77, 0)
# One SDS011 frame: PM2.5 123.6, PM10 261.8 ug/m3, device id A160, checksum 1D.
SDS011_FRAME = "AA C0 D4 04 3A 0A A1 60 1D AB"
COMMANDS = ("edge-agent", "edge-collector", "edge-sim")


def _setuptools_version() -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in metadata.version("setuptools").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return (0,)


def _env() -> dict[str, str]:
    """The environment of an installed gateway: no PYTHONPATH into the source tree."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the sources (no build/ left in the clone)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        item = ROOT / name
        if item.is_dir():
            shutil.copytree(item, src / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(item, src / name)
    # ./run's venv has the setuptools the build needs (the test extra), so the build
    # works offline; an older one is left alone and pip fetches the build's own.
    offline = ["--no-build-isolation"] if _setuptools_version() >= SETUPTOOLS_SPDX else []
    args = [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(tmp / "dist"),
            *offline, str(src)]
    built = _run(args, tmp, timeout=300)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    warnings = [line for line in (built.stdout + built.stderr).splitlines()
                if re.search(r"warn", line, re.IGNORECASE)]
    assert warnings == [], "\n".join(warnings)
    (found,) = (tmp / "dist").glob("cityedge-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv outside the repository with the wheel installed; its dependencies are
    this Python's installed ones (a path file: their own .pth files, e.g. an editable
    cityedge, are not read, so only the wheel's cityedge is importable)."""
    home = tmp_path_factory.mktemp("venv") / "gateway"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(home)], home.parent)
    assert made.returncode == 0, made.stderr
    python = home / "bin" / "python"
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                            "['purelib'])"], home).stdout.strip())
    borrowed = [*site.getsitepackages(), sysconfig.get_paths()["purelib"]]
    (purelib / "borrowed-dependencies.pth").write_text(
        "".join(f"{p}\n" for p in dict.fromkeys(borrowed) if Path(p).is_dir()))
    installed = _run([sys.executable, "-m", "pip", "--python", str(python), "install",
                      "--no-deps", "--no-index", str(wheel)], home.parent, timeout=300)
    assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-2000:]
    where = _run([str(python), "-c", "import cityedge, edge_agent; print(cityedge.__file__)"],
                 home.parent)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(home), where.stdout
    return home


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A folder with nothing of cityedge's in it, to run the commands from."""
    assert not tmp_path.is_relative_to(ROOT)
    return tmp_path


@pytest.fixture
def device(venv: Path, elsewhere: Path) -> Iterator[Path]:
    """A simulated PMS5003 on a pty, from the installed edge-sim (its profile shipped)."""
    link = elsewhere / "ttyPMS"
    proc = subprocess.Popen([str(venv / "bin" / "edge-sim"), "device", "pms5003", "--link",
                             str(link), "--interval", "0.2"], cwd=elsewhere, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not link.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert link.exists(), proc.communicate()[1] if proc.poll() is not None else "no pty"
        yield link
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_every_command_tells_its_version(venv: Path, elsewhere: Path) -> None:
    version = metadata.version("cityedge") if _installed_here() else None
    for command in COMMANDS:
        shown = _run([str(venv / "bin" / command), "--version"], elsewhere)
        assert shown.returncode == 0, shown.stderr
        assert re.fullmatch(rf"{command} \d+\.\d+\S* \(cityedge; Python \d+\.\d+\.\d+\)\n",
                            shown.stdout), shown.stdout
        assert version is None or version in shown.stdout


def _installed_here() -> bool:
    try:
        metadata.version("cityedge")
    except metadata.PackageNotFoundError:
        return False
    return True


def test_installed_agent_decodes_and_checks_with_its_shipped_profiles(
        venv: Path, elsewhere: Path, device: Path) -> None:
    agent = str(venv / "bin" / "edge-agent")
    decoded = _run([agent, "decode", "--profile", "sds011", "--hex", SDS011_FRAME], elsewhere)
    assert decoded.returncode == 0, decoded.stderr
    assert '"pm2_5_ugm3"' in decoded.stdout and "123.6" in decoded.stdout, decoded.stdout

    sample = _run([agent, "sample-config"], elsewhere)
    assert sample.returncode == 0 and "gateway:" in sample.stdout, sample.stderr
    unit = _run([agent, "sample-config", "--systemd"], elsewhere)
    assert unit.returncode == 0 and "StateDirectory=cityedge" in unit.stdout, unit.stderr
    for site_kind, kind in (("dust_pole", "dust_zone"), ("bus_stop", "bus_stop"),
                            ("apartment", "apartment")):
        sample = _run([agent, "sample-config", "--site", site_kind], elsewhere)
        assert sample.returncode == 0 and f"kind: {kind}" in sample.stdout, sample.stderr
    config = elsewhere / "agent.yaml"
    config.write_text(
        "gateway: {id: gw-wheel-01, site: {district: 강남구, site: 옥상, kind: dust_zone}}\n"
        f"sensors:\n  - {{id: pm, port: {device}, profile: pms5003}}\n"
        f"outbox: {{path: {elsewhere / 'state' / 'outbox.sqlite'}}}\n", encoding="utf-8")
    checked = _run([agent, "check", "--config", str(config)], elsewhere)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{config}: ok (1 sensors" in checked.stdout


def test_installed_collector_checks_its_shipped_rule_sets(venv: Path, elsewhere: Path) -> None:
    checked = _run([str(venv / "bin" / "edge-collector"), "rules", "check"], elsewhere)
    assert checked.returncode == 0, checked.stderr
    shipped = {line.split(":", 1)[0].rsplit("/", 1)[-1] for line in checked.stdout.splitlines()}
    assert shipped >= {"dust.yaml", "noise.yaml", "fleet.yaml", "bus_terminal.yaml"}, \
        checked.stdout
    assert all(str(venv) in line for line in checked.stdout.splitlines()), checked.stdout
    sample = _run([str(venv / "bin" / "edge-collector"), "sample-config"], elsewhere)
    assert sample.returncode == 0 and "writer:" in sample.stdout, sample.stderr
    listed = _run([str(venv / "bin" / "python"), "-c", "from cityedge import shipped; print("
                   "' '.join(sorted(p.name for p in shipped.schemas_dir().glob('*.json'))))"],
                  elsewhere)
    assert listed.stdout.split() == ["agent.schema.json", "collector.schema.json",
                                     "profile.schema.json", "rules.schema.json"], listed


def test_installed_demo_delivers_every_reading(venv: Path, elsewhere: Path) -> None:
    _need("mosquitto", "mosquitto")
    _need("influxd", "influxdb")
    _need("openssl", "openssl")
    demo = _run([str(venv / "bin" / "edge-sim"), "demo", "--duration", "8", "--episode-at",
                 "-1", "--workdir", str(elsewhere / "demo")], elsewhere, timeout=180)
    flat = " ".join(demo.stdout.split())
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    got = re.search(r"(\d+) of (\d+) emitted readings are in InfluxDB", flat)
    assert got and int(got[2]) > 10 and got[1] == got[2], flat[-3000:]
