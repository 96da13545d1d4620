"""A real Mosquitto 2.0 with TLS and the password and ACL files generated from the registry.

What each test pins is the broker's behaviour under our generated files, with
real paho clients: a gateway speaks only for itself and hears only its own
acks and downlinks; wrong passwords, untrusted certificates, plain TCP and
anonymous clients get nothing; a revoked gateway is locked out by a reload
(SIGHUP), without restarting the broker.

Negative checks never wait on a sleep: the forbidden message is sent first
and a permitted marker after it on the same connection; the broker handles a
connection's packets in order, so once the marker arrives the forbidden
message would have arrived before it.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cityedge.mqtt import MqttClient, MqttError, MqttOptions
from cityedge.tls import TlsConfig, client_context
from cityedge.uplink import Topics
from cityedge.uplink.topics import DEFAULT_PREFIX
from collector import pki
from simulators.secure import SecureSetup
from simulators.services import Mosquitto
from tests.conftest import _need

pytestmark = pytest.mark.integration

T = Topics()
WAIT_S = 10.0
_ids = itertools.count()


class Peer:
    """One plain paho client on its own network thread; what it receives lands in a queue."""

    def __init__(self, port: int, username: str | None, password: str | None,
                 tls: TlsConfig | None, *, client_id: str | None = None,
                 clean: bool = True) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"test-peer-{next(_ids)}",
                                  protocol=MQTTProtocolVersion.MQTTv5, reconnect_on_failure=False)
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls is not None:
            self.client.tls_set_context(client_context(tls))
        self.port, self.clean = port, clean
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.connack = threading.Event()
        self.disconnected = threading.Event()
        self.reason: str = ""  # the CONNACK's
        self.disconnect_reason: str = ""
        self.acks: dict[int, str] = {}
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = lambda _c, _u, m: self.messages.put((m.topic, bytes(m.payload)))
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = lambda *_a: None

    def _on_connect(self, _c: object, _u: object, _f: object, rc: object, _p: object) -> None:
        self.reason = str(rc)
        self.ok = not getattr(rc, "is_failure", True)
        self.connack.set()

    def _on_disconnect(self, _c: object, _u: object, _f: object, rc: object, _p: object) -> None:
        self.disconnect_reason = str(rc)
        self.disconnected.set()

    def _on_publish(self, _c: object, _u: object, mid: int, rc: object, _p: object) -> None:
        self.acks[mid] = str(rc)

    def connect(self) -> Peer:
        self.ok = False
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0 if self.clean else 300
        self.client.connect("127.0.0.1", self.port, keepalive=30, clean_start=self.clean,
                            properties=props)
        self.client.loop_start()
        assert self.connack.wait(WAIT_S), "no CONNACK"
        return self

    def refused(self) -> bool:
        """True if the broker will not have this client: the TLS handshake fails, or the
        connection ends without a successful CONNACK (TLS 1.3 reports a refused client
        certificate only after the client's side of the handshake is done)."""
        self.ok = False
        try:
            self.client.connect("127.0.0.1", self.port, keepalive=30)
        except (ssl.SSLError, OSError):
            return True
        self.client.loop_start()
        return not (self.connack.wait(3.0) and self.ok)

    def subscribe(self, *topics: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *_a: done.set()
        self.client.subscribe([(t, 1) for t in topics])
        assert done.wait(WAIT_S), "no SUBACK"

    def publish(self, topic: str, payload: bytes) -> int:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(WAIT_S)
        return info.mid

    def expect(self, topic: str, payload: bytes) -> list[tuple[str, bytes]]:
        """Everything received up to and including (topic, payload); fails if it never comes."""
        seen: list[tuple[str, bytes]] = []
        while True:
            try:
                got = self.messages.get(timeout=WAIT_S)
            except queue.Empty:
                raise AssertionError(f"{payload!r} on {topic} never arrived; got {seen}") from None
            seen.append(got)
            if got == (topic, payload):
                return seen

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Secure:
    def __init__(self, setup: SecureSetup, broker: Mosquitto) -> None:
        self.setup, self.broker = setup, broker
        self.secrets: dict[str, str] = {}
        self.peers: list[Peer] = []

    def gateway(self, gid: str) -> str:
        """Registered, the broker reloaded, and waited for until it lets the gateway in."""
        secret = self.setup.add_gateway(gid, district="강남구", site="역삼역 2번 출구",
                                        kind="bus_stop")
        self.secrets[gid] = secret
        self.setup.apply(self.broker)
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            probe = Peer(self.broker.port, gid, secret, self.setup.tls(),
                         client_id=f"probe-{gid}")
            probe.connect()
            probe.close()
            if probe.ok:
                return secret
            time.sleep(0.05)
        raise AssertionError(f"the broker never let {gid} in after the reload")

    def peer(self, username: str | None, password: str | None, *, port: int | None = None,
             tls: TlsConfig | None = None, connect: bool = True, **kw: object) -> Peer:
        p = Peer(port or self.broker.port, username, password,
                 tls if tls is not None else self.setup.tls(), **kw)  # type: ignore[arg-type]
        self.peers.append(p)
        return p.connect() if connect else p

    def collector(self) -> Peer:
        return self.peer("collector-1", self.setup.collector_secret,
                         port=self.broker.collector_port)


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secure]:
    _need("mosquitto", "mosquitto")
    _need("openssl", "openssl")
    root = tmp_path_factory.mktemp("secure")
    setup = SecureSetup.create(root)
    (root / "mosquitto").mkdir()
    broker = Mosquitto(root / "mosquitto", security=setup.security(client_certs=True)).start()
    try:
        yield Secure(setup, broker)
    finally:
        broker.stop()


@pytest.fixture
def secure(secure_broker: Secure) -> Iterator[Secure]:
    """The module's broker; each test's clients are closed after it (a collector left in
    the share group would take its turn at the next test's messages)."""
    try:
        yield secure_broker
    finally:
        for p in secure_broker.peers:
            p.close()
        secure_broker.peers.clear()


def test_a_gateway_cannot_publish_as_another(secure: Secure) -> None:
    secure.gateway("gw-a1")
    secure.gateway("gw-b1")
    col = secure.collector()
    col.subscribe(f"$share/collectors/{T.up_subscription(None)}")
    a = secure.peer("gw-a1", secure.secrets["gw-a1"])
    spoofed = [a.publish(T.up("gw-b1"), b"spoofed"),
               a.publish(T.status("gw-b1"), b"spoofed status")]
    own = a.publish(T.up("gw-a1"), b"marker")
    assert col.expect(T.up("gw-a1"), b"marker") == [(T.up("gw-a1"), b"marker")]
    # The broker answered the forbidden publishes "not authorized" (MQTT 5 reason 135).
    assert [a.acks[mid] for mid in spoofed] == ["Not authorized"] * 2
    assert a.acks[own] == "Success"


def test_a_gateway_cannot_read_another_gateways_acks_or_downlink(secure: Secure) -> None:
    secure.gateway("gw-a2")
    secure.gateway("gw-b2")
    a = secure.peer("gw-a2", secure.secrets["gw-a2"])
    a.subscribe(T.ack("gw-b2"), T.down("gw-b2"), f"{DEFAULT_PREFIX}/#", "#",
                f"$share/x/{T.ack('gw-b2')}", T.ack("gw-a2"))
    b = secure.peer("gw-b2", secure.secrets["gw-b2"])
    b.subscribe(T.ack("gw-b2"), T.down("gw-b2"))
    col = secure.collector()
    col.publish(T.ack("gw-b2"), b"ack for b")
    col.publish(T.down("gw-b2"), b"display for b")
    col.publish(T.ack("gw-a2"), b"ack for a")
    assert b.expect(T.down("gw-b2"), b"display for b") == [
        (T.ack("gw-b2"), b"ack for b"), (T.down("gw-b2"), b"display for b")]
    seen = a.expect(T.ack("gw-a2"), b"ack for a")
    assert all(payload == b"ack for a" for _, payload in seen), seen


def test_a_gateway_cannot_take_over_another_gateways_session(secure: Secure) -> None:
    """use_username_as_clientid: B's client id gives A only A's own session."""
    secure.gateway("gw-a3")
    secure.gateway("gw-b3")
    b = secure.peer("gw-b3", secure.secrets["gw-b3"], client_id="cityedge-gw-gw-b3",
                    clean=False)
    b.subscribe(T.ack("gw-b3"))
    b.close()
    col = secure.collector()
    col.publish(T.ack("gw-b3"), b"queued for b")
    a = secure.peer("gw-a3", secure.secrets["gw-a3"], client_id="cityedge-gw-gw-b3",
                    clean=False)
    a.subscribe(T.ack("gw-a3"))
    col.publish(T.ack("gw-a3"), b"for a")
    assert a.expect(T.ack("gw-a3"), b"for a") == [(T.ack("gw-a3"), b"for a")]
    b2 = secure.peer("gw-b3", secure.secrets["gw-b3"], client_id="cityedge-gw-gw-b3",
                     clean=False)
    assert b2.expect(T.ack("gw-b3"), b"queued for b")


def test_a_wrong_password_is_refused(secure: Secure) -> None:
    secure.gateway("gw-a4")
    p = secure.peer("gw-a4", secure.secrets["gw-a4"] + "x")
    assert not p.ok
    assert "Not authorized" in p.reason or "Bad user name or password" in p.reason
    other = secure.peer("gw-a4", secure.setup.collector_secret)  # another client's password
    assert not other.ok


def test_anonymous_and_plain_tcp_clients_get_nothing(secure: Secure) -> None:
    anonymous = secure.peer(None, None)
    assert not anonymous.ok
    # Plain MQTT to the TLS ports: no CONNACK ever comes back (the broker expects a
    # TLS ClientHello and drops the connection, or answers with a TLS alert).
    connect = bytes([0x10, 0x10, 0, 4]) + b"MQTT" + bytes([5, 2, 0, 30, 0, 0, 0])
    for port in (secure.broker.port, secure.broker.collector_port, secure.broker.cert_port):
        assert port is not None
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.settimeout(5)
            sock.sendall(connect)
            try:
                answer = sock.recv(16)
            except (ConnectionResetError, TimeoutError):
                answer = b""
            assert not answer.startswith(b"\x20"), f"port {port} answered plain MQTT"


def test_a_client_trusting_another_ca_refuses_the_broker(secure: Secure,
                                                         tmp_path: Path) -> None:
    pki.init_ca(tmp_path / "other", cn="another CA")
    secure.gateway("gw-a5")
    p = secure.peer("gw-a5", secure.secrets["gw-a5"],
                    tls=TlsConfig(ca_file=str(tmp_path / "other" / "ca.crt")), connect=False)
    with pytest.raises(ssl.SSLCertVerificationError):
        p.client.connect("127.0.0.1", secure.broker.port)

    async def through_cityedge_mqtt() -> str:
        client = MqttClient(MqttOptions("127.0.0.1", secure.broker.port, "gw-a5",
                                        username="gw-a5", password=secure.secrets["gw-a5"],
                                        tls=TlsConfig(str(tmp_path / "other" / "ca.crt"))))
        client.start()
        try:
            with pytest.raises(MqttError) as info:
                await client.wait_connected(2.0)
        finally:
            await client.close()
        return str(info.value)

    assert "CERTIFICATE_VERIFY_FAILED" in asyncio.run(through_cityedge_mqtt())


def test_client_certificate_cn_is_the_gateway_id(secure: Secure, tmp_path: Path) -> None:
    """require_certificate + use_identity_as_username: the certificate's CN is the username,
    so it must be the gateway id, and the ACL applies to it. No password is involved."""
    secure.gateway("gw-a6")
    port = secure.broker.cert_port
    assert port is not None
    col = secure.collector()
    col.subscribe(T.up_subscription(None))
    a = secure.peer(None, None, port=port, tls=secure.setup.client_cert("gw-a6"))
    assert a.ok, a.reason
    a.publish(T.up("gw-b1"), b"spoofed by certificate")
    a.publish(T.up("gw-a6"), b"by certificate")
    assert col.expect(T.up("gw-a6"), b"by certificate") == [(T.up("gw-a6"), b"by certificate")]
    # A certificate from another CA is refused in the handshake.
    pki.init_ca(tmp_path / "rogue", cn="rogue CA")
    key, crt = pki.issue(tmp_path / "rogue", "gw-a6")
    rogue = secure.peer(None, None, port=port, connect=False,
                        tls=TlsConfig(str(secure.setup.ca_file), str(crt), str(key)))
    assert rogue.refused(), "a certificate from another CA was accepted"
    # No certificate at all, even with the right password: refused too.
    bare = secure.peer("gw-a6", secure.secrets["gw-a6"], port=port, connect=False)
    assert bare.refused(), "a client without a certificate was accepted"


def test_cityedge_mqtt_logs_in_by_client_certificate(secure: Secure) -> None:
    """The client both sides use, driven from the event loop, over TLS with a client
    certificate: it publishes as its gateway and hears what is sent to it."""
    secure.gateway("gw-a7")
    port = secure.broker.cert_port
    assert port is not None
    col = secure.collector()
    col.subscribe(T.up_subscription(None))

    async def as_gateway() -> tuple[str, bytes]:
        client = MqttClient(MqttOptions("127.0.0.1", port, "gw-a7", clean_start=True,
                                        session_expiry=0,
                                        tls=secure.setup.client_cert("gw-a7"),
                                        subscriptions=[(T.ack("gw-a7"), 1)]))
        client.start()
        try:
            await client.wait_connected(WAIT_S)
            assert client.publish(T.up("gw-a7"), b"by certificate, from the loop")
            await asyncio.to_thread(col.expect, T.up("gw-a7"), b"by certificate, from the loop")
            await asyncio.to_thread(col.publish, T.ack("gw-a7"), b"ack")
            message = await asyncio.wait_for(client.get(), WAIT_S)
            return message.topic, message.payload
        finally:
            await client.close()

    assert asyncio.run(as_gateway()) == (T.ack("gw-a7"), b"ack")


def test_a_revoked_gateway_is_locked_out_by_a_reload(secure: Secure) -> None:
    """Observed on Mosquitto 2.0.11: after revoke + SIGHUP the connected password client
    is disconnected at once (its password no longer checks) and cannot log in again;
    a client logged in by certificate stays connected, but the ACL no longer lets it
    publish or receive anything."""
    secret = secure.gateway("gw-r1")
    secure.gateway("gw-r2")
    secure.gateway("gw-r3")
    col = secure.collector()
    col.subscribe(f"$share/collectors/{T.up_subscription(None)}")
    r1 = secure.peer("gw-r1", secret)
    port = secure.broker.cert_port
    assert port is not None
    r2 = secure.peer(None, None, port=port, tls=secure.setup.client_cert("gw-r2"))
    r2.subscribe(T.ack("gw-r2"))
    r3 = secure.peer("gw-r3", secure.secrets["gw-r3"])
    r3.subscribe(T.ack("gw-r3"))
    r1.publish(T.up("gw-r1"), b"before")
    r2.publish(T.up("gw-r2"), b"before")
    col.expect(T.up("gw-r2"), b"before")

    secure.setup.revoke("gw-r1")
    secure.setup.revoke("gw-r2")
    secure.setup.apply(secure.broker)  # SIGHUP; nothing restarted

    assert r1.disconnected.wait(WAIT_S), "the revoked password client stayed connected"
    assert not secure.peer("gw-r1", secret).ok
    assert not r2.disconnected.is_set()  # by certificate: still connected ...
    mid = r2.publish(T.up("gw-r2"), b"after revoke")  # ... but refused by the ACL
    r3.publish(T.up("gw-r3"), b"marker")
    seen = col.expect(T.up("gw-r3"), b"marker")
    assert (T.up("gw-r2"), b"after revoke") not in seen
    assert r2.acks[mid] == "Not authorized"
    col.publish(T.ack("gw-r2"), b"ack after revoke")
    col.publish(T.ack("gw-r3"), b"ack for r3")
    r3.expect(T.ack("gw-r3"), b"ack for r3")
    time.sleep(0.5)  # r2's socket had the ack before r3's, were it sent; give paho a moment
    assert r2.messages.empty()
