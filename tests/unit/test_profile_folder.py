"""A folder of profiles with one broken file: the others load, the broken one is one line.

``scan_profiles`` reports each broken file as a ``ProfileError`` and loads the
rest; ``edge-agent decode`` and ``probe`` go on with the models that loaded
(exit 2 only for the broken one itself); the agent refuses only a config whose
sensor uses a broken profile. Every error is one greppable line, never wrapped.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from edge_agent import cli
from edge_agent.decoding import ProfileError, scan_profiles

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "firmware_profiles"
# A field whose mistyped offset lands on another field (pm2_5_ugm3 sits at 2..3).
BROKEN = (SHIPPED / "sds011.yaml").read_text(encoding="utf-8").replace(
    "name: pm10_ugm3, offset: 4,", "name: pm10_ugm3, offset: 3,", 1)
LONG = "a_very_long_folder_name_" * 4  # error lines well past 80 columns


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / LONG
    path.mkdir()
    for model in ("pms5003", "wxt530"):
        shutil.copy(SHIPPED / f"{model}.yaml", path)
    (path / "sds011.yaml").write_text(BROKEN, encoding="utf-8")
    (path / "notes.yaml").write_text("model: notes\n  bad: [indent\n", encoding="utf-8")
    return path


def test_the_broken_ones_are_reported_and_the_others_load(folder: Path) -> None:
    assert "offset: 3" in BROKEN
    scan = scan_profiles(folder)
    assert sorted(scan.profiles) == ["pms5003", "wxt530"]
    assert [Path(e.file).name for e in scan.errors] == ["notes.yaml", "sds011.yaml"]
    overlap = scan.error_for("sds011")
    assert overlap is not None and overlap.path == "frames[0].fields[1].offset"
    assert overlap.message.startswith(
        "expected field pm10_ugm3 (bytes 3..4) not to overlap field pm2_5_ugm3 (bytes 2..3)")
    assert scan.error_for("pms5003") is None


def test_an_unreadable_folder_raises() -> None:
    with pytest.raises(OSError, match="not a folder of profiles"):
        scan_profiles(ROOT / "no-such-folder")


def test_errors_are_one_line_whatever_their_message() -> None:
    error = ProfileError("x.yaml", 3, "fields[0]", "expected a\nnumber,   got\t'x'")
    assert str(error) == "x.yaml:3: fields[0]: expected a number, got 'x'"


def test_decode_goes_on_with_the_models_that_loaded(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = ("42 4D 00 1C 00 0C 00 12 00 15 00 0C 00 12 00 15 08 37 02 67 00 60 00 07 00 02"
             " 00 00 00 00 02 22")
    code = cli.main(["decode", "--profile", "pms5003", "--hex", frame,
                     "--profiles-dir", str(folder)])
    out, err = capsys.readouterr()
    assert code == 0 and '"reading"' in out
    lines = [line for line in err.splitlines() if "yaml" in line]
    assert len(lines) == 2, err  # one line per broken file, not wrapped at 80 columns
    assert all(line.startswith("profile error: ") for line in lines)
    assert lines[1].startswith(f"profile error: {folder}/sds011.yaml:")
    assert "frames[0].fields[1].offset: expected field pm10_ugm3" in lines[1]


def test_decode_with_the_broken_profile_exits_2(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["decode", "--profile", "sds011", "--hex", "AA C0", "--profiles-dir", str(folder)])
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert "sds011 cannot be used until its file is fixed" in err


def _agent_config(tmp_path: Path, folder: Path, profile: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump({
        "gateway": {"id": "gw-1", "site": {"district": "중구", "site": "x", "kind": "dust_zone"}},
        "sensors": [{"id": "pm-1", "port": str(tmp_path / "tty"), "profile": profile}],
        "outbox": {"path": str(tmp_path / "outbox.sqlite")},
        "profiles_dir": str(folder),
    }, allow_unicode=True), encoding="utf-8")
    return path


def test_check_passes_when_no_sensor_uses_the_broken_profile(
    tmp_path: Path, folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert cli.main(["check", "--config", str(_agent_config(tmp_path, folder, "pms5003"))]) == 0
    assert "profile error: " in caplog.text and "sds011.yaml" in caplog.text


def test_check_refuses_a_sensor_on_the_broken_profile(
    tmp_path: Path, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["check", "--config", str(_agent_config(tmp_path, folder, "sds011"))]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("config error: sensors[0].profile: 'sds011' is broken: ")
    assert "fields[1].offset" in line
