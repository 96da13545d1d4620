"""A full disk on the gateway, on a real full file system (a small tmpfs): the agent keeps
running, says so once, counts and records exactly what it could not store, keeps
draining its backlog, and stores again by itself once space is freed. A read-only or
full state folder at start gives one error line and an exit code, not a traceback."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cityedge.uplink import Reading
from edge_agent.decoding import load_profiles
from edge_agent.outbox import Outbox
from edge_agent.outbox.space import RESERVE_BYTES
from simulators.device import SimulatedDevice
from simulators.services import InfluxDB
from tests.helpers import Proc, rows, wait_for, write_yaml
from tests.integration.test_outage import count, start
from tests.secure_fleet import SecureFleet
from tests.tcp_proxy import CuttableProxy

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
FS_SIZE = "4m"


@contextlib.contextmanager
def small_fs(where: Path, *options: str) -> Iterator[Path]:
    """A tmpfs of FS_SIZE mounted at ``where``, unmounted whatever happens."""
    if os.geteuid() != 0:
        reason = "mounting a tmpfs needs root"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}, and CI runs as root")
        pytest.skip(reason)
    where.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join((f"size={FS_SIZE}", *options)),
                    "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(folder: Path) -> Path:
    """Write a file until the file system says ENOSPC; returns it (delete it to free space)."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    try:  # what is left is less than one chunk
        while True:
            os.write(fd, b"\0" * 512)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    return filler


def waiting(config: Path) -> int:
    """Readings in the outbox, as ``edge-agent status`` asks the running agent (exit 1: it
    is degraded, the disk being full)."""
    done = subprocess.run([sys.executable, "-m", "edge_agent.cli", "status", "--json",
                           "--config", str(config)], capture_output=True, text=True, cwd=ROOT,
                          timeout=60, check=False)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    answer = json.loads(done.stdout)
    assert answer["running"] is True
    return int(answer["waiting"])


def sum_of(influxdb: InfluxDB, db: str, q: str) -> int:
    got = rows(influxdb, db, q)
    return int(got[0]["sum"]) if got and got[0]["sum"] is not None else 0


def landed_inside_gap(influxdb: InfluxDB, db: str) -> int:
    """Readings that landed within the one not-stored gap's time range: 0 if it is exact."""
    gaps = rows(influxdb, db, "SELECT * FROM outbox_drops WHERE reason = 'not_stored'"
                " AND of_measurement = 'particulate'")
    assert len(gaps) == 1, gaps
    return sum_of(influxdb, db, "SELECT count(pm2_5_ugm3) AS sum FROM particulate"
                  f" WHERE time >= {gaps[0]['first_time_ns']}"
                  f" AND time <= {gaps[0]['last_time_ns']}")


def test_a_full_disk_costs_exactly_the_readings_it_could_not_store(
    tmp_path: Path, secure: SecureFleet, influxdb: InfluxDB, unique_name: str
) -> None:
    profile = load_profiles(ROOT / "firmware_profiles")["pms5003"]
    device = SimulatedDevice(profile, link=tmp_path / "pm-1", interval=0.02, seed=9)
    proxy = CuttableProxy(secure.broker.address).start()
    db = unique_name
    with small_fs(tmp_path / "state") as state:
        collector, agent = start(tmp_path, db, secure, influxdb, proxy, gateway="gw-disk-full",
                                 device=device, outbox={"path": str(state / "outbox.sqlite")},
                                 health_interval=1)
        agent_config = tmp_path / "agent.yaml"
        try:
            device.start()
            wait_for(lambda: count(influxdb, db) > 0, 15, "first readings")
            # A backlog waits in the outbox while the disk fills: it must drain
            # (sends, acks, deletes, checkpoints) while the disk is full.
            proxy.cut(3600)
            time.sleep(3)
            filler = fill(state)
            wait_for(lambda: "outbox: disk full at" in agent.output(), 10, "the disk-full line")
            proxy.cut(0)
            wait_for(lambda: waiting(agent_config) == 0, 20,
                     "the backlog to drain while the disk is full")
            assert agent.alive(), agent.output()[-3000:]
            landed_while_full = count(influxdb, db)
            filler.unlink()
            wait_for(lambda: "outbox: storing again after" in agent.output(), 10,
                     "storing again")
            time.sleep(2)
            device.stop()
            produced = device.stats.frames + device.stats.warmup

            def not_stored(where: str = "of_measurement = 'particulate'") -> int:
                return sum_of(influxdb, db, "SELECT sum(dropped) FROM outbox_drops WHERE"
                              f" reason = 'not_stored' AND {where}")

            wait_for(lambda: count(influxdb, db) + not_stored() >= produced, 60,
                     "every reading landed or recorded as not stored")
            # The health readings taken after the gap was recorded carry the counters.
            time.sleep(3)
            log = agent.output()
            lost = not_stored()
            landed = rows(influxdb, db, "SELECT seq FROM particulate")
            print(f"produced {produced}, landed {len(landed)} ({landed_while_full} before space"
                  f" was freed), not stored {lost}")
            assert lost > 0
            assert len(landed) + lost == produced
            assert len({r["seq"] for r in landed}) == len(landed)
            assert landed_inside_gap(influxdb, db) == 0
            # Counted per sensor, and the counters reach the health readings.
            failed = rows(influxdb, db, "SELECT last(store_failed) FROM sensor_health"
                          " WHERE sensor = 'pm-1'")
            assert failed[0]["last"] == not_stored("sensor = 'pm-1'")
            total = rows(influxdb, db, "SELECT last(store_failed_readings) FROM gateway_health")
            assert total[0]["last"] == not_stored("true")
            # One line when it started, one when it ended, and no traceback.
            assert log.count("outbox: disk full at") == 1, log
            assert log.count("outbox: storing again after") == 1
            assert f"storing again after {total[0]['last']} readings not stored" in log
            assert "Traceback" not in log and "cannot rollback" not in log
            # Not a second crash on the way out: the last checkpoint goes through.
            assert agent.stop() == 0
        finally:
            device.close()
            agent.stop()
            collector.stop()
            proxy.close()


@pytest.mark.parametrize("reserve", [0, RESERVE_BYTES])
def test_a_checkpoint_on_a_full_disk_leaves_durable_seq_until_one_works(
    tmp_path: Path, reserve: int
) -> None:
    """Without a reserve the checkpoint fails and nothing new counts as durable (nor
    does close() raise); with one, releasing it lets the checkpoint through."""
    with small_fs(tmp_path / "state") as state:
        box = Outbox(state / "o.sqlite", reserve_bytes=reserve)
        box.append([reading(i) for i in range(100)])
        assert box.sync() == 100
        for i in range(100, 400):  # new pages, in the WAL only
            box.append([reading(i)])
        filler = fill(state)
        if reserve:
            assert box.sync() == 400
            assert box.disk_full and not box.reserve.held
        else:
            assert box.sync() == 100
            assert box.checkpoint_failures == 1
            box.close()
            filler.unlink()
            box = Outbox(state / "o.sqlite", reserve_bytes=reserve)
            assert box.durable_seq == box.last_seq == 400
        box.close()


def reading(i: int) -> Reading:
    return Reading("pm-1", "particulate", {"i": i, "pad": "x" * 300}, 1_000 + i, "b00t", i)


def agent_yaml(tmp: Path, outbox: Path) -> Path:
    return write_yaml(tmp / "agent.yaml", {
        "gateway": {"id": "gw-full", "site": {"district": "d", "site": "s", "kind": "dust_zone"}},
        "sensors": [],
        "outbox": {"path": str(outbox), "commit_window": 0.2},
        "uplink": {"mqtt": {"host": "127.0.0.1", "port": 9, "reconnect_max": 1}},
        "health_interval": 1,
    })


def test_the_agent_starts_on_a_full_disk_and_stores_once_space_is_freed(tmp_path: Path) -> None:
    with small_fs(tmp_path / "state") as state:
        config = agent_yaml(tmp_path, state / "outbox.sqlite")
        first = Proc(["edge_agent.cli", "run", "--config", str(config)], tmp_path / "1.log")
        first.start()
        wait_for(lambda: "readings waiting" in first.output(), 15, "the first start")
        assert first.stop() == 0
        filler = fill(state)
        agent = Proc(["edge_agent.cli", "run", "--config", str(config)], tmp_path / "2.log")
        agent.start()
        try:
            wait_for(lambda: "outbox: disk full at" in agent.output(), 15, "the disk-full line")
            time.sleep(2)
            assert agent.alive(), agent.output()
            filler.unlink()
            wait_for(lambda: "outbox: storing again after" in agent.output(), 10,
                     "storing again")
            assert agent.stop() == 0
            assert "Traceback" not in agent.output()
        finally:
            agent.stop()


def test_no_outbox_can_be_made_on_a_full_disk_one_line_and_exit_1(tmp_path: Path) -> None:
    with small_fs(tmp_path / "state") as state:
        fill(state)
        config = agent_yaml(tmp_path, state / "outbox.sqlite")
        agent = Proc(["edge_agent.cli", "run", "--config", str(config)], tmp_path / "a.log")
        agent.start()
        assert agent.proc is not None
        assert agent.proc.wait(20) == 1
        out = agent.output()
        assert "outbox error: cannot open the outbox" in out and "full" in out, out
        assert "Traceback" not in out


def test_a_read_only_state_folder_fails_check_and_run_with_one_line(tmp_path: Path) -> None:
    with small_fs(tmp_path / "state", "ro") as state:
        config = agent_yaml(tmp_path, state / "outbox.sqlite")
        check = subprocess.run(
            [sys.executable, "-m", "edge_agent.cli", "check", "--config", str(config)],
            capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
        assert check.returncode == 1, check
        assert "not writable" in check.stderr and "Read-only" in check.stderr
        agent = Proc(["edge_agent.cli", "run", "--config", str(config)], tmp_path / "a.log")
        agent.start()
        assert agent.proc is not None
        assert agent.proc.wait(20) == 1
        out = agent.output()
        assert "outbox error: cannot open the outbox" in out and "Read-only" in out, out
        assert "Traceback" not in out
