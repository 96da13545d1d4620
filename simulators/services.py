"""Real Mosquitto, InfluxDB 1.x and etcd, started on free loopback ports in their own temp dirs.

Used by the demo and by the test suite: both need the real services, started
and stopped by process id, leaving nothing behind. etcd carries the alert
lease of collectors on several hosts (docs/alerts.md, "Several collectors").
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SBIN_PATHS = ("/usr/sbin", "/usr/local/sbin", "/sbin")


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM if we die first (Linux), so nothing outlives a crash."""
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def spawn(argv: list[str], log_path: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start a child in its own session (a terminal's Ctrl-C reaches only us), logging to a file.

    The death signal is tied to the thread that forks, not the process, so it
    is only asked for from the main thread (a timer thread's child would be
    killed the moment the timer returns).
    """
    on_main = threading.current_thread() is threading.main_thread()
    with log_path.open("ab") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=die_with_parent if on_main else None,  # noqa: PLW1509  prctl PDEATHSIG, main thread only (see above)
                                **kwargs)


def influx_query(url: str, q: str, db: str | None = None, *, post: bool = False,
                 timeout: float = 30) -> dict[str, Any]:
    """InfluxQL over HTTP (1.x /query), for tests and the demo's progress view."""
    params = {"q": q, "epoch": "ns"}
    if db:
        params["db"] = db
    data = urllib.parse.urlencode(params)
    if post:
        req = urllib.request.Request(f"{url}/query", data=data.encode(), method="POST")
    else:
        req = urllib.request.Request(f"{url}/query?{data}")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        result: dict[str, Any] = json.loads(resp.read())
    return result


class ServiceError(RuntimeError):
    """A service could not be found or did not start."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_binary(name: str) -> str | None:
    path = os.environ.get("PATH", "") + os.pathsep + os.pathsep.join(SBIN_PATHS)
    return shutil.which(name, path=path)


def _require(name: str, package: str) -> str:
    binary = find_binary(name)
    if binary is None:
        raise ServiceError(f"{name} not found; install Debian's {package} package "
                           f"(apt-get install {package})")
    return binary


@dataclass
class Service:
    name: str
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.workdir / f"{self.name}.log"

    def _spawn(self, argv: list[str]) -> None:
        self.proc = spawn(argv, self.log_path)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _wait_ready(self, check: object, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise ServiceError(f"{self.name} exited: {self.log_tail()}")
            if check():  # type: ignore[operator]
                return
            time.sleep(0.05)
        raise ServiceError(f"{self.name} not ready after {timeout} s: {self.log_tail()}")

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


@dataclass(frozen=True)
class BrokerSecurity:
    """What a secure Mosquitto needs: its TLS files and the files generated from the registry.

    ``simulators.secure.SecureSetup`` makes all of them for a test or the demo.
    """

    ca_file: Path
    cert_file: Path
    key_file: Path
    passwd_file: Path
    acl_file: Path
    # A third listener that requires a client certificate and takes its CN as the username.
    client_certs: bool = False


class Mosquitto(Service):
    """Plain (anonymous, one TCP listener) unless ``security`` is given.

    Secure mode has TLS listeners only, ``allow_anonymous false``, and the
    registry's password and ACL files:

    - ``port``: gateways (username + password). ``use_username_as_clientid``
      pins each client id to its username, so a gateway cannot take over
      another's session (and the messages queued in it) by borrowing its id.
    - ``collector_port``: collectors, whose several connections (ingest,
      alerts, lease, downlink) need client ids of their own. A deployment binds
      it where only the collectors' hosts reach it.
    - ``cert_port`` (with ``client_certs``): a client certificate signed by the
      CA is required and its CN is the username (``use_identity_as_username``).
    """

    def __init__(self, workdir: Path, port: int | None = None,
                 security: BrokerSecurity | None = None) -> None:
        super().__init__("mosquitto", port or free_port(), workdir)
        self.binary = _require("mosquitto", "mosquitto")
        self.config_path = workdir / "mosquitto.conf"
        self.pid_file = workdir / "mosquitto.pid"
        self.security = security
        self.collector_port = free_port() if security else self.port
        self.cert_port = free_port() if security and security.client_certs else None

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def _listeners(self) -> str:
        sec = self.security
        if sec is None:
            return f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
        tls = (f"cafile {sec.ca_file}\ncertfile {sec.cert_file}\nkeyfile {sec.key_file}\n"
               "tls_version tlsv1.2\n")
        text = (f"listener {self.port} 127.0.0.1\n{tls}use_username_as_clientid true\n"
                f"listener {self.collector_port} 127.0.0.1\n{tls}")
        if self.cert_port is not None:
            text += (f"listener {self.cert_port} 127.0.0.1\n{tls}require_certificate true\n"
                     "use_identity_as_username true\nuse_username_as_clientid true\n")
        return text + (f"allow_anonymous false\npassword_file {sec.passwd_file}\n"
                       f"acl_file {sec.acl_file}\n")

    def start(self, timeout: float = 10.0) -> Mosquitto:
        self.config_path.write_text(
            self._listeners()
            + f"pid_file {self.pid_file}\n"
            "persistence false\n"
            "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            # Room for resends while a collector is down; the end-to-end acks
            # still cover anything the broker drops.
            "max_queued_messages 10000\n"
            # Small packets (PUBACKs, acks) go out at once instead of waiting
            # for a delayed TCP ACK; docs/delivery.md recommends it for brokers.
            "set_tcp_nodelay true\n"
            + ("user root\n" if os.geteuid() == 0 else "")
        )
        self._spawn([self.binary, "-c", str(self.config_path)])
        self._wait_ready(self._accepts, timeout)
        return self

    def reload(self) -> None:
        """SIGHUP: Mosquitto re-reads its password and ACL files (nobody is restarted)."""
        assert self.proc is not None and self.proc.poll() is None, "not running"
        self.proc.send_signal(signal.SIGHUP)

    def _accepts(self) -> bool:
        ports = [self.port, self.collector_port] + ([self.cert_port] if self.cert_port else [])
        try:
            for port in ports:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    pass
        except OSError:
            return False
        return True


class InfluxDB(Service):
    def __init__(self, workdir: Path, port: int | None = None, *, auth: bool = False,
                 max_series_per_database: int | None = None) -> None:
        """``auth``: HTTP authentication on (``[http] auth-enabled``); the first user
        must then be an admin, created with ``CREATE USER`` before anything else.
        ``max_series_per_database``: InfluxDB's series limit (None: its default,
        1,000,000); read at each ``start``, so a test can raise it and restart."""
        super().__init__("influxd", port or free_port(), workdir)
        self.auth = auth
        self.max_series_per_database = max_series_per_database
        self.binary = _require("influxd", "influxdb")
        self.rpc_port = free_port()
        self.config_path = workdir / "influxdb.conf"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> InfluxDB:
        d = self.workdir
        limit = self.max_series_per_database
        series = "" if limit is None else f"  max-series-per-database = {limit}\n"
        # bind-address (RPC) is a top-level key: it must precede the first section.
        self.config_path.write_text(
            f'reporting-enabled = false\nbind-address = "127.0.0.1:{self.rpc_port}"\n'
            f'[meta]\n  dir = "{d}/meta"\n'
            f'[data]\n  dir = "{d}/data"\n  wal-dir = "{d}/wal"\n  query-log-enabled = false\n'
            f"{series}"
            '[monitor]\n  store-enabled = false\n'
            # Continuous queries are looked at every second (default 1 s too, said here
            # because the retention tests rely on it).
            '[continuous_queries]\n  run-interval = "1s"\n'
            f'[http]\n  bind-address = "127.0.0.1:{self.port}"\n  log-enabled = false\n'
            f'  auth-enabled = {"true" if self.auth else "false"}\n'
            '[logging]\n  level = "warn"\n'
        )
        self._spawn([self.binary, "-config", str(self.config_path)])
        self._wait_ready(self._pings, timeout)
        return self

    def _pings(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=0.5) as resp:
                return int(resp.status) == 204
        except (OSError, urllib.error.URLError):
            return False

    def query(self, q: str, db: str | None = None, *, post: bool = False) -> dict[str, Any]:
        return influx_query(self.url, q, db, post=post)


class Etcd(Service):
    """A one-member etcd (Debian's etcd-server, 3.4) on loopback, its data in the workdir.

    Clients use its HTTP/JSON gateway (``/v3/...``) on ``url``. The peer port is
    loopback too: one member, no cluster to join.
    """

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        super().__init__("etcd", port or free_port(), workdir)
        self.binary = _require("etcd", "etcd-server")
        self.peer_port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> Etcd:
        peer = f"http://127.0.0.1:{self.peer_port}"
        self._spawn([self.binary, "--name", "cityedge", "--data-dir", str(self.workdir / "data"),
                     "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                     "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                     "--initial-cluster", f"cityedge={peer}", "--log-level", "warn",
                     # Old revisions of the handed-over state are dropped hourly.
                     "--auto-compaction-retention", "1"])
        self._wait_ready(self._healthy, timeout)
        return self

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=0.5) as resp:
                return bool(json.loads(resp.read()).get("health") == "true")
        except (OSError, ValueError, urllib.error.URLError):
            return False


class LocalServices:
    """Both services in one temp dir; a context manager that always stops them."""

    def __init__(self, root: Path | None = None) -> None:
        self._tmp = None if root else tempfile.TemporaryDirectory(prefix="cityedge-")
        self.root = root or Path(self._tmp.name)  # type: ignore[union-attr]
        (self.root / "mosquitto").mkdir(parents=True, exist_ok=True)
        (self.root / "influxdb").mkdir(parents=True, exist_ok=True)
        self.mosquitto = Mosquitto(self.root / "mosquitto")
        self.influxdb = InfluxDB(self.root / "influxdb")

    def start(self) -> LocalServices:
        try:
            self.mosquitto.start()
            self.influxdb.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.mosquitto.stop()
        self.influxdb.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> LocalServices:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
