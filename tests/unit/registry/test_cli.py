"""``edge-collector gateways`` and ``edge-collector pki`` as an operator runs them."""

from __future__ import annotations

import json
import ssl
import stat
import subprocess
from pathlib import Path

import pytest

from cityedge.uplink.seal import derive_key
from collector.cli import main
from collector.registry import model
from collector.registry.passwords import verify_password
from tests.conftest import _need


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_add_prints_the_secret_once_and_stores_only_its_hash(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reg = str(tmp_path / "registry.yaml")
    rc, out, err = run(capsys, "gateways", "--registry", reg, "add", "gw-1",
                       "--district", "강남구", "--site", "역삼역 2번 출구", "--kind", "bus_stop")
    assert rc == 0, err
    secret = out.strip()
    assert "shown once" in err
    g = model.load(Path(reg)).gateways["gw-1"]
    assert (g.district, g.site, g.kind) == ("강남구", "역삼역 2번 출구", "bus_stop")
    assert verify_password(secret, g.password_hash)
    assert bytes.fromhex(g.seal_key) == derive_key(secret)
    assert secret not in Path(reg).read_text(encoding="utf-8")
    assert stat.S_IMODE(Path(reg).stat().st_mode) == 0o600


def test_secret_file_list_rotate_revoke_and_the_broker_files(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reg = str(tmp_path / "registry.yaml")
    files = ["--passwd", str(tmp_path / "passwd"), "--acl", str(tmp_path / "acl")]
    sf = tmp_path / "gw-1.secret"
    rc, out, err = run(capsys, "gateways", "--registry", reg, "add", "gw-1", "--district",
                       "마포구", "--site", "망원동", "--kind", "dust_zone", "--secret-file",
                       str(sf), *files)
    assert (rc, out) == (0, ""), err
    assert stat.S_IMODE(sf.stat().st_mode) == 0o600
    first = sf.read_text()
    assert "gw-1:" in (tmp_path / "passwd").read_text()
    assert run(capsys, "gateways", "--registry", reg, "add-collector", "col-1")[0] == 0

    rc, out, _ = run(capsys, "gateways", "--registry", reg, "list", "--json")
    listed = json.loads(out)
    assert listed["gateways"][0] | {"created": "", "rotated": None} == {
        "id": "gw-1", "district": "마포구", "site": "망원동", "kind": "dust_zone",
        "revoked": False, "created": "", "rotated": None}
    assert [c["name"] for c in listed["collectors"]] == ["col-1"]
    assert "password_hash" not in out and "seal_key" not in out
    rc, out, _ = run(capsys, "gateways", "--registry", reg, "list")
    assert out.splitlines()[0].startswith("gw-1\tactive\tdust_zone\t마포구\t망원동")

    rc, _, _ = run(capsys, "gateways", "--registry", reg, "rotate", "gw-1", "--secret-file",
                   str(sf))
    assert rc == 0 and sf.read_text() != first
    assert verify_password(sf.read_text(), model.load(Path(reg)).gateways["gw-1"].password_hash)

    rc, _, err = run(capsys, "gateways", "--registry", reg, "revoke", "gw-1", *files)
    assert rc == 0, err
    assert "gw-1" not in (tmp_path / "passwd").read_text()
    assert "gw-1" not in (tmp_path / "acl").read_text()
    assert "user col-1" in (tmp_path / "acl").read_text()
    assert json.loads(run(capsys, "gateways", "--registry", reg, "list", "--json")[1])[
        "gateways"][0]["revoked"] is True


def test_mosquitto_command_needs_both_files(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    reg = str(tmp_path / "registry.yaml")
    run(capsys, "gateways", "--registry", reg, "add-collector", "col-1")
    rc, _, err = run(capsys, "gateways", "--registry", reg, "mosquitto", "--passwd",
                     str(tmp_path / "p"))
    assert rc == 1 and "--passwd and --acl" in err
    rc, _, err = run(capsys, "gateways", "--registry", reg, "mosquitto", "--passwd",
                     str(tmp_path / "p"), "--acl", str(tmp_path / "a"), "--reload",
                     str(tmp_path / "no.pid"))
    assert rc == 1 and "no broker pid" in err
    assert (tmp_path / "p").exists()  # written before the reload was attempted


@pytest.mark.parametrize(("argv", "message"), [
    (["rotate", "gw-9"], "no gateway 'gw-9'"),
    (["revoke", "gw-9"], "no gateway 'gw-9'"),
    (["add", "gw:9", "--district", "d", "--site", "s", "--kind", "apartment"], "gw:9"),
    (["add", "gw-1", "--district", "d", "--site", "s", "--kind", "apartment"], "already"),
    (["add", "gw-2", "--district", "d", "--site", "s", "--kind", "apartment", "--reload",
      "x.pid"], "--reload and --owner need --passwd and --acl"),
])
def test_refusals_say_why(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                          argv: list[str], message: str) -> None:
    reg = str(tmp_path / "registry.yaml")
    run(capsys, "gateways", "--registry", reg, "add", "gw-1", "--district", "d", "--site", "s",
        "--kind", "apartment")
    rc, _, err = run(capsys, "gateways", "--registry", reg, *argv)
    assert rc == 1
    assert message in err


def test_pki_init_and_issue_make_a_chain_python_verifies(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _need("openssl", "openssl")
    d = str(tmp_path / "pki")
    assert run(capsys, "pki", "init", "--dir", d)[0] == 0
    rc, _, err = run(capsys, "pki", "init", "--dir", d)
    assert rc == 1 and "exists" in err
    assert run(capsys, "pki", "issue", "--dir", d, "--cn", "broker", "--server",
               "--host", "127.0.0.1", "--host", "localhost")[0] == 0
    assert run(capsys, "pki", "issue", "--dir", d, "--cn", "gw-1")[0] == 0
    rc, _, err = run(capsys, "pki", "issue", "--dir", d, "--cn", "x", "--server")
    assert rc == 1 and "--host" in err
    for name in ("ca", "broker", "gw-1"):
        assert stat.S_IMODE((tmp_path / "pki" / f"{name}.key").stat().st_mode) == 0o600
    text = subprocess.run(["openssl", "x509", "-in", f"{d}/broker.crt", "-noout", "-text"],
                          capture_output=True, text=True, check=True).stdout
    assert "IP Address:127.0.0.1" in text and "DNS:localhost" in text
    assert "TLS Web Server Authentication" in text
    client = subprocess.run(["openssl", "x509", "-in", f"{d}/gw-1.crt", "-noout", "-subject",
                             "-ext", "extendedKeyUsage"], capture_output=True, text=True,
                            check=True).stdout
    assert "CN = gw-1" in client and "TLS Web Client Authentication" in client
    # Both load into Python's TLS with the CA (the strict X.509 checks included).
    ctx = ssl.create_default_context(cafile=f"{d}/ca.crt")
    ctx.load_cert_chain(f"{d}/gw-1.crt", f"{d}/gw-1.key")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(f"{d}/broker.crt", f"{d}/broker.key")
    verify = subprocess.run(["openssl", "verify", "-x509_strict", "-CAfile", f"{d}/ca.crt",
                             f"{d}/broker.crt", f"{d}/gw-1.crt"], capture_output=True,
                            text=True, check=False)
    assert verify.returncode == 0, verify.stderr
