"""The broker's password and ACL files, generated from the registry, exactly."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from collector.registry import model
from collector.registry.model import Registry
from collector.registry.mosquitto import ReloadError, acl_text, passwd_text, reload, write_files

NOW = "2024-05-01T09:00:00Z"


def registry() -> Registry:
    reg = Registry()
    for gid in ("gw-b", "gw-a", "gw-gone"):
        reg, _ = model.add_gateway(reg, gid, district="강남구", site="s", kind="bus_stop", now=NOW)
    reg = model.revoke(reg, "gw-gone", now=NOW)
    reg, _ = model.add_collector(reg, "col-1", now=NOW)
    return reg


def test_passwd_lists_active_gateways_then_collectors() -> None:
    reg = registry()
    lines = passwd_text(reg).splitlines()
    assert lines[0].startswith("#")
    assert lines[1:] == [f"gw-a:{reg.gateways['gw-a'].password_hash}",
                         f"gw-b:{reg.gateways['gw-b'].password_hash}",
                         f"col-1:{reg.collectors['col-1'].password_hash}"]


def test_acl_grants_each_gateway_its_own_topics_and_collectors_the_rest() -> None:
    text = acl_text(registry())
    blocks = [b for b in text.split("\n\n") if b.startswith("user ")]
    assert blocks == [
        "user gw-a\n"
        "topic write cityedge/v1/gw-a/up\n"
        "topic write cityedge/v1/gw-a/status\n"
        "topic write cityedge/v1/gw-a/down_ack\n"
        "topic read cityedge/v1/gw-a/ack\n"
        "topic read cityedge/v1/gw-a/down",
        "user gw-b\n"
        "topic write cityedge/v1/gw-b/up\n"
        "topic write cityedge/v1/gw-b/status\n"
        "topic write cityedge/v1/gw-b/down_ack\n"
        "topic read cityedge/v1/gw-b/ack\n"
        "topic read cityedge/v1/gw-b/down",
        "user col-1\n"
        "topic write cityedge/v1/+/ack\n"
        "topic write cityedge/v1/+/down\n"
        "topic read cityedge/v1/+/up\n"
        "topic read cityedge/v1/+/status\n"
        "topic read cityedge/v1/+/down_ack\n"
        "topic readwrite cityedge/v1/collectors/#\n",
    ]
    assert "gw-gone" not in text
    assert "pattern" not in text  # nothing granted to users without a block


def test_the_registrys_prefix_is_used() -> None:
    reg = Registry(registry().gateways, {}, "city/v2")
    assert "topic write city/v2/gw-a/up" in acl_text(reg)


def test_files_are_written_atomically_with_their_modes(tmp_path: Path) -> None:
    reg = registry()
    write_files(reg, tmp_path / "passwd", tmp_path / "acl")
    assert stat.S_IMODE((tmp_path / "passwd").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "acl").stat().st_mode) == 0o644
    assert (tmp_path / "passwd").read_text() == passwd_text(reg)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acl", "passwd"]


def test_reload_sends_sighup_to_the_pid_in_the_file(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c",
                              "import signal, sys, time\n"
                              "signal.signal(signal.SIGHUP, lambda *a: sys.exit(7))\n"
                              "print('ready', flush=True)\n"
                              "time.sleep(30)\n"], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        (tmp_path / "pid").write_text(f"{child.pid}\n")
        assert reload(tmp_path / "pid") == child.pid
        assert child.wait(10) == 7
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            child.wait()


def test_reload_without_a_broker_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ReloadError, match="no broker pid"):
        reload(tmp_path / "missing.pid")
    (tmp_path / "pid").write_text("not a pid")
    with pytest.raises(ReloadError, match="no broker pid"):
        reload(tmp_path / "pid")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    time.sleep(0.05)
    (tmp_path / "pid").write_text(str(dead.pid))
    if os.path.exists(f"/proc/{dead.pid}"):
        pytest.fail("pid reused at once; cannot test a dead pid")
    with pytest.raises(ReloadError, match="No such process"):
        reload(tmp_path / "pid")
