"""``edge-agent probe`` against every simulated device, as a real process on a real pty.

Each device runs in its power-up state (PM sensors streaming, the SPS30 idle,
the WXT530 and the Modbus slaves waiting to be asked). The probe must name its
profile, or, for the Plantower sensors whose frames are byte-identical, a set
of profiles that contains it and holds nothing but wire-identical models. A
pty full of random noise, and a silent one, must match nothing, and say so.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from edge_agent.decoding import load_profiles
from simulators.device import SimulatedDevice
from simulators.pty_device import PtyDevice

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROFILES = load_profiles(ROOT / "firmware_profiles")
# The Plantower models whose 32-byte frames and commands are the same bytes (pms5003.yaml,
# pms5003s.yaml, quirks).
PLANTOWER_32 = {"pms5003", "pms7003", "pmsa003", "pms5003t", "pms5003s"}


def run_probe(port: str, *extra: str, listen: float = 0.6) -> tuple[int, dict[str, Any], str]:
    # rich wraps at the terminal width (80 without one): a long temp path would split
    # the lines asserted on, so the test sets a width as a wide terminal would.
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="240")
    done = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "probe", port, "--listen", str(listen), *extra],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=env, check=False,
    )
    report = json.loads(done.stdout) if "--json" in extra and done.stdout.strip() else {}
    return done.returncode, report, done.stdout + done.stderr


@pytest.mark.parametrize("model", sorted(PROFILES))
def test_probe_names_each_simulated_device(tmp_path: Path, model: str) -> None:
    device = SimulatedDevice(PROFILES[model], link=tmp_path / model, interval=0.2, seed=5).start()
    try:
        code, report, output = run_probe(device.path, "--json")
    finally:
        device.close()
    assert code == 0, output
    matched = set(report["matched"])
    assert model in matched, output
    if model in PLANTOWER_32:
        assert matched <= PLANTOWER_32, output
        assert report["wire_identical"] is (len(matched) > 1)
    else:
        assert report["model"] == model, output  # nothing else is mistaken for it
    evidence = report["candidates"][model]
    assert evidence["readings"] >= 1 and evidence["checksums_passed"] >= evidence["readings"]
    shown = PROFILES[report["matched"][0]]  # the reading is decoded with the first match
    reading = report["reading"]
    assert reading and set(reading) <= set(shown.measurements)
    names = {name for fields in reading.values() for name in fields}
    assert names == {spec.name for spec in shown.fields}
    assert all(item["unit"] for fields in reading.values() for item in fields.values())


def test_probe_table_for_a_technician(tmp_path: Path) -> None:
    device = SimulatedDevice(PROFILES["sds011"], link=tmp_path / "sds", interval=0.2).start()
    try:
        code, _, output = run_probe(device.path)
    finally:
        device.close()
    assert code == 0
    assert "matched: " in output and "Nova Fitness sds011 (9600 8N1)" in output
    assert "pm2_5_ugm3" in output and "ug/m3" in output  # the decoded reading, with units


def test_probe_says_clearly_when_nothing_matches(tmp_path: Path) -> None:
    noise = PtyDevice(tmp_path / "noise")
    stop = threading.Event()
    rng = random.Random(3)

    def babble() -> None:
        while not stop.wait(0.02):
            noise.write(bytes(rng.randrange(256) for _ in range(20)))
            noise.read()  # what the probe sends is swallowed, never answered

    talker = threading.Thread(target=babble, daemon=True)
    talker.start()
    try:
        code, report, _ = run_probe(noise.path, "--json", listen=0.5)
        code_text, _, output = run_probe(noise.path, listen=0.5)
    finally:
        stop.set()
        talker.join()
        noise.close()
    assert code == 1 and code_text == 1
    assert report["matched"] == [] and report["model"] is None
    assert "No profile matched" in output and "bytes heard" in output


def test_probe_of_a_silent_port(tmp_path: Path) -> None:
    silent = PtyDevice(tmp_path / "silent")
    try:
        code, _, output = run_probe(silent.path, listen=0.3)
    finally:
        silent.close()
    assert code == 1
    assert "The port was silent." in output


def test_probe_of_a_missing_port(tmp_path: Path) -> None:
    code, _, output = run_probe(str(tmp_path / "nothing-here"))
    assert code == 2
    assert "cannot open" in output


def test_edge_sim_device_and_probe_on_another_slave_address(tmp_path: Path) -> None:
    """The technician's pair of commands: edge-sim device on a pty, edge-agent probe on it."""
    # rich wraps at the terminal width (80 without one): a long temp path would split
    # the lines asserted on, so the test sets a width as a wide terminal would.
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="240")
    link = tmp_path / "noise"
    sim = subprocess.Popen(
        [sys.executable, "-m", "simulators.cli", "device", "noise_meter_modbus", "--link",
         str(link), "--slave", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env,
    )
    try:
        assert sim.stdout is not None
        assert sim.stdout.readline().strip() == str(link)  # it prints the path to open
        code, report, output = run_probe(str(link), "--json", "--slave", "5")
        _, unanswered, _ = run_probe(str(link), "--json", listen=0.2)  # slave 1: nobody there
    finally:
        sim.terminate()
        sim.wait(10)
    assert code == 0 and report["model"] == "noise_meter_modbus", output
    assert set(report["reading"]["noise"]) == {"laeq_1min_dba", "lmax_dba", "laeq_5min_dba"}
    assert unanswered["matched"] == []
