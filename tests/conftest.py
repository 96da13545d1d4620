"""Real services for the suite: one InfluxDB, two Mosquittos and an etcd per session, on free ports.

``secure_broker`` is the one the integration tests run on: TLS, the gateway
registry and the password and ACL files generated from it (tests/secure_fleet.py);
``secure`` is the same broker for one test, cleared of what the test left on it.
``mosquitto`` is plain and anonymous, for the tests of the insecure mode.

Under CI=true a missing binary fails the run; elsewhere tests that need the
services are skipped with the reason, so a laptop without them can still run
the unit tests.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulators.secure import SecureSetup
from simulators.services import Etcd, InfluxDB, Mosquitto, ServiceError, find_binary
from tests.secure_fleet import SecureFleet

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _need(binary: str, package: str) -> None:
    if find_binary(binary) is None:
        message = f"{binary} is not installed (apt-get install {package})"
        if IN_CI:
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--chaos-rounds", type=int, default=1,
                     help="rounds of faults in the chaos test (about a minute each)")
    parser.addoption("--chaos-seed", type=int, default=None,
                     help="seed for the chaos schedule (default: random, printed)")
    parser.addoption("--power-cuts", type=int, default=25,
                     help="power cuts per gateway (one per commit_window setting) in the"
                          " agent's power-cut test (about 2 s each)")
    parser.addoption("--outbox-power-cuts", type=int, default=50,
                     help="power cuts per setting in the outbox's power-cut test (0.3 s each)")
    parser.addoption("--power-cut-seed", type=int, default=None,
                     help="seed for the power-cut schedule (default: random, printed)")


@pytest.fixture(scope="session")
def services_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="cityedge-test-") as d:
        yield Path(d)


@pytest.fixture(scope="session")
def mosquitto(services_dir: Path) -> Iterator[Mosquitto]:
    _need("mosquitto", "mosquitto")
    workdir = services_dir / "mosquitto"
    workdir.mkdir()
    broker = Mosquitto(workdir)
    try:
        broker.start()
    except ServiceError as exc:
        pytest.fail(f"mosquitto did not start: {exc}", pytrace=False)
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def secure_broker(services_dir: Path) -> Iterator[SecureFleet]:
    _need("mosquitto", "mosquitto")
    _need("openssl", "openssl")
    setup = SecureSetup.create(services_dir / "secure")
    workdir = services_dir / "secure-mosquitto"
    workdir.mkdir()
    broker = Mosquitto(workdir, security=setup.security())
    try:
        broker.start()
    except ServiceError as exc:
        pytest.fail(f"the secure mosquitto did not start: {exc}", pytrace=False)
    yield SecureFleet(setup, broker)
    broker.stop()


@pytest.fixture
def secure(secure_broker: SecureFleet) -> Iterator[SecureFleet]:
    """The session's secure broker; what the test registered or left on it is cleared after."""
    with secure_broker.scope():
        yield secure_broker


@pytest.fixture(scope="session")
def influxdb(services_dir: Path) -> Iterator[InfluxDB]:
    _need("influxd", "influxdb")
    workdir = services_dir / "influxdb"
    workdir.mkdir()
    db = InfluxDB(workdir)
    try:
        db.start()
    except ServiceError as exc:
        pytest.fail(f"influxd did not start: {exc}", pytrace=False)
    yield db
    db.stop()


@pytest.fixture(scope="session")
def etcd(services_dir: Path) -> Iterator[Etcd]:
    """etcd for the alert lease of collectors on several hosts (``lease: etcd``)."""
    _need("etcd", "etcd-server")
    workdir = services_dir / "etcd"
    workdir.mkdir()
    server = Etcd(workdir)
    try:
        server.start()
    except ServiceError as exc:
        pytest.fail(f"etcd did not start: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A database name / topic prefix / gateway id unique to this test."""
    name = "".join(c if c.isalnum() else "_" for c in request.node.name)[:40]
    return f"t_{name}_{os.getpid()}"
