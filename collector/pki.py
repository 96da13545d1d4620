"""``edge-collector pki``: a small CA and its certificates, for one deployment and for the tests.

Uses the ``openssl`` command line (Debian's ``openssl`` package; ``./run``
installs it): the project has no Python crypto dependency, and these are the
same commands an operator would type. Keys are ECDSA P-256, readable by their
owner only; certificates carry the extensions strict verifiers want (CA
basic constraints and key usage, subject and authority key ids, extended key
usage, and the server's names as subjectAltName).

    edge-collector pki init --dir pki                        # pki/ca.key, pki/ca.crt
    edge-collector pki issue --dir pki --cn broker --server --host 127.0.0.1 --host mqtt.example
    edge-collector pki issue --dir pki --cn gw-gn-001        # a gateway's client certificate

A client certificate's CN is the identity: with Mosquitto's
``use_identity_as_username true`` it is the MQTT username, so it must be the
gateway id (or collector name) in the registry.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CA_DAYS = 3650
LEAF_DAYS = 825  # the longest validity browsers' CAs may issue; a deployment renews sooner
KEY_MODE = 0o600
CERT_MODE = 0o644
CN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_. -]{0,63}$")
NEW_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


class PkiError(RuntimeError):
    """openssl is missing or failed, or the request does not make sense."""


def _openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise PkiError("openssl not found; install Debian's openssl package")
    result = subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True,
                            check=False, timeout=60)
    if result.returncode != 0:
        raise PkiError(f"openssl {args[0]} failed: {result.stderr.strip()[-2000:]}")


def _install(src: Path, dst: Path, mode: int) -> None:
    os.chmod(src, mode)
    os.replace(src, dst)


def init_ca(directory: Path, *, cn: str = "cityedge CA", days: int = CA_DAYS) -> Path:
    """A new CA in ``directory`` (ca.key, ca.crt); refuses to replace an existing one."""
    _check_cn(cn)
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / "ca.key").exists():
        raise PkiError(f"{directory / 'ca.key'} exists: a new CA would orphan every"
                       " certificate it signed")
    with tempfile.TemporaryDirectory(dir=directory, prefix=".pki-") as tmp:
        work = Path(tmp)
        _openssl("req", "-x509", "-new", *NEW_KEY, "-keyout", "ca.key", "-out", "ca.crt",
                 "-days", str(days), "-subj", f"/CN={cn}",
                 "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                 "-addext", "subjectKeyIdentifier=hash", cwd=work)
        _install(work / "ca.key", directory / "ca.key", KEY_MODE)
        _install(work / "ca.crt", directory / "ca.crt", CERT_MODE)
    return directory / "ca.crt"


def issue(directory: Path, cn: str, *, server: bool = False, hosts: tuple[str, ...] = (),
          days: int = LEAF_DAYS) -> tuple[Path, Path]:
    """``{cn}.key`` and ``{cn}.crt`` signed by the CA in ``directory``.

    A server certificate names its ``hosts`` (IP addresses or DNS names) for
    hostname checks; a client certificate is for TLS client authentication.
    """
    _check_cn(cn)
    if not (directory / "ca.key").exists():
        raise PkiError(f"no CA in {directory}: run `pki init --dir {directory}` first")
    if server and not hosts:
        raise PkiError("a server certificate needs at least one --host")
    if hosts and not server:
        raise PkiError("--host is for server certificates (--server)")
    names = [_alt_name(h) for h in hosts]
    ext = ["basicConstraints=critical,CA:FALSE",
           "keyUsage=critical,digitalSignature",
           f"extendedKeyUsage={'serverAuth' if server else 'clientAuth'}",
           "subjectKeyIdentifier=hash",
           "authorityKeyIdentifier=keyid,issuer"]
    if names:
        ext.append("subjectAltName=" + ",".join(names))
    name = cn.replace(" ", "_")
    with tempfile.TemporaryDirectory(dir=directory, prefix=".pki-") as tmp:
        work = Path(tmp)
        (work / "ext.cnf").write_text("\n".join(ext) + "\n")
        _openssl("req", "-new", *NEW_KEY, "-keyout", "leaf.key", "-out", "leaf.csr",
                 "-subj", f"/CN={cn}", cwd=work)
        _openssl("x509", "-req", "-in", "leaf.csr", "-CA", str(directory.resolve() / "ca.crt"),
                 "-CAkey", str(directory.resolve() / "ca.key"),
                 "-set_serial", "0x" + secrets.token_hex(16), "-days", str(days),
                 "-extfile", "ext.cnf", "-out", "leaf.crt", cwd=work)
        key, crt = directory / f"{name}.key", directory / f"{name}.crt"
        _install(work / "leaf.key", key, KEY_MODE)
        _install(work / "leaf.crt", crt, CERT_MODE)
    return key, crt


def _check_cn(cn: str) -> None:
    if not CN_RE.fullmatch(cn):
        raise PkiError(f"--cn {cn!r}: expected letters, digits, spaces and '_.-' (max 64)")


def _alt_name(host: str) -> str:
    try:
        return f"IP:{ipaddress.ip_address(host)}"
    except ValueError:
        pass
    if not re.fullmatch(r"[A-Za-z0-9*]([A-Za-z0-9.-]{0,252})", host):
        raise PkiError(f"--host {host!r}: expected an IP address or a DNS name")
    return f"DNS:{host}"


def parser(prog: str = "edge-collector pki") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="create a CA: DIR/ca.key (0600) and DIR/ca.crt")
    init.add_argument("--dir", type=Path, required=True)
    init.add_argument("--cn", default="cityedge CA", help="the CA's name (default: %(default)s)")
    init.add_argument("--days", type=int, default=CA_DAYS, help="validity (default: %(default)s)")
    iss = sub.add_parser("issue", help="a certificate signed by DIR's CA: DIR/CN.key, DIR/CN.crt")
    iss.add_argument("--dir", type=Path, required=True)
    iss.add_argument("--cn", required=True,
                     help="subject CN: the gateway id or collector name for a client certificate")
    iss.add_argument("--server", action="store_true", help="a server certificate (broker, HTTP)")
    iss.add_argument("--host", action="append", default=[],
                     help="with --server: an IP address or DNS name clients connect to"
                     " (repeat for several)")
    iss.add_argument("--days", type=int, default=LEAF_DAYS, help="validity (default: %(default)s)")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "init":
            print(init_ca(args.dir, cn=args.cn, days=args.days))
        else:
            key, crt = issue(args.dir, args.cn, server=args.server, hosts=tuple(args.host),
                             days=args.days)
            print(crt)
            print(key)
    except PkiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
