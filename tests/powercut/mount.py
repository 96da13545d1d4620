"""Mount, cut and reboot the power-cut filesystem (fuse_fs.py) from a test."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def fuse_available() -> str | None:
    """Why power-cut tests cannot run here, or None."""
    if shutil.which("fusermount3") is None:
        return "fusermount3 is missing (Debian package fuse3)"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    try:
        import mfusepy  # noqa: F401, PLC0415  (libfuse is loaded when imported)
    except (ImportError, OSError) as exc:
        return f"mfusepy cannot load libfuse: {exc}"
    return None


def need_fuse() -> None:
    """Skip a power-cut test where FUSE is missing; under CI=true, fail instead."""
    import pytest  # noqa: PLC0415  (only the tests need it; the filesystem does not)

    why = fuse_available()
    if why is not None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true: {why}", pytrace=False)
        pytest.skip(why)


class PowerCutMount:
    """One disk (its durable folder) mounted again and again at one mount point."""

    def __init__(self, durable: Path, mountpoint: Path, log: Path, *,
                 lose_dir_fsyncs: bool = False) -> None:
        self.durable, self.mountpoint, self.log = durable, mountpoint, log
        self.lose_dir_fsyncs = lose_dir_fsyncs
        durable.mkdir(parents=True, exist_ok=True)
        mountpoint.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.cuts: list[dict[str, Any]] = []

    def mount(self, *, cut_at: int | None = None, cut_on: str = "any",
              torn_seed: int | None = None) -> None:
        args = [sys.executable, "-m", "tests.powercut.fuse_fs", str(self.durable),
                str(self.mountpoint), "--cut-on", cut_on, "--log", str(self.log)]
        if cut_at is not None:
            args += ["--cut-at", str(cut_at)]
        if torn_seed is not None:
            args += ["--torn-seed", str(torn_seed)]
        if self.lose_dir_fsyncs:
            args.append("--lose-dir-fsyncs")
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH",
                                                                                  ""))
        with (self.durable.parent / f"{self.durable.name}.fs.log").open("ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env,
                                         cwd=ROOT)
        deadline = time.monotonic() + 10
        while not os.path.ismount(self.mountpoint):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the power-cut filesystem did not mount at {self.mountpoint}")
            time.sleep(0.02)

    def boot_and_cut(self, rng: random.Random, cut_on: dict[str, int], module: str,
                     *args: str, run_s: tuple[float, float] = (1.0, 3.0)) -> dict[str, Any]:
        """Mount with a cut at a random call (a third of them torn), run ``python -m
        module args`` on it until the cut kills it (or the test cuts after ``run_s``
        seconds), and return the cut's record (``torn`` added)."""
        kind = rng.choice(list(cut_on))
        torn = rng.randrange(1 << 30) if rng.random() < 1 / 3 else None
        self.mount(cut_at=rng.randint(1, cut_on[kind]), cut_on=kind, torn_seed=torn)
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH",
                                                                                  ""))
        driver = subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                                  stderr=subprocess.PIPE)
        try:
            _, err = driver.communicate(timeout=rng.uniform(*run_s))
        except subprocess.TimeoutExpired:
            driver.kill()
            _, err = driver.communicate()
        if driver.returncode != -signal.SIGKILL:  # only a cut may stop it
            self.cut()
            raise AssertionError(f"{module} exited {driver.returncode}: {err.decode()[-2000:]}")
        return {**self.cut(), "torn": torn}

    def cut_by_itself(self) -> bool:
        """The filesystem cut the power at its chosen call (and exited)."""
        return self.proc is not None and self.proc.poll() is not None

    def cut(self) -> dict[str, Any]:
        """The power goes now, if the filesystem has not cut it already; returns the record."""
        assert self.proc is not None
        by_itself = self.proc.poll() is not None
        if not by_itself:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._detach()
        record: dict[str, Any] = {"during": "test (a moment it chose)"}
        if by_itself:
            lines = self.log.read_text().splitlines() if self.log.exists() else []
            record = json.loads(lines[-1]) if lines else {"during": "unknown"}
        self.cuts.append(record)
        return record

    def unmount(self) -> None:
        """A clean stop (everything the process wrote stays only as far as it was fsynced)."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGKILL)  # unsynced pages are lost on a clean stop too
        self.proc.wait()
        self._detach()
        self.proc = None

    def _detach(self) -> None:
        subprocess.run(["fusermount3", "-u", "-z", str(self.mountpoint)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        deadline = time.monotonic() + 5
        while os.path.ismount(self.mountpoint) and time.monotonic() < deadline:
            time.sleep(0.02)
        with contextlib.suppress(OSError):
            os.rmdir(self.mountpoint)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
