"""The suite's secure broker: one CA, one gateway registry, one TLS Mosquitto with the
password and ACL files generated from the registry (simulators/secure.py).

Every integration test that is not about the insecure mode runs on it: an agent logs in
with its registry secret over TLS (``agent_mqtt``), a collector with the collector
account and the registry (``collector_mqtt``, ``registry_path``), and the test's own
clients as a collector (``collector_options``) or as a registered gateway
(``gateway_options``), so the ACLs bind them as they bind a deployment.

The registry has one topic prefix, so every test shares it and tests are kept apart by
their names instead:

- each test registers gateways of its own (``add_gateway``; the registry refuses an id
  twice);
- each collector gets a share group of its own (by default its client id): a stopped
  collector's persistent session stays subscribed, and in a shared group it would keep
  taking its turn at the next test's batches;
- when a test's ``scope`` ends, what it left on the broker goes: its gateways' and
  collectors' sessions, its gateways' retained status, and the retained messages under
  ``{prefix}/collectors/`` (the alert lease and state).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cityedge.mqtt import MqttOptions
from cityedge.tls import TlsConfig, client_context
from cityedge.uplink import Topics
from cityedge.uplink.seal import derive_key
from collector.admission import Admission
from collector.config import MqttSourceConfig
from collector.registry.live import LiveRegistry
from simulators.secure import COLLECTOR, SecureSetup
from simulators.services import Mosquitto

HOST = "127.0.0.1"
# The longest a broker step (connect, reload, publish) may take before the test fails.
WAIT_S = 10.0
# Between connect attempts while the broker re-reads its files after a SIGHUP.
RELOAD_POLL_S = 0.02


@dataclass
class _Scope:
    gateways: list[str] = field(default_factory=list)
    client_ids: list[str] = field(default_factory=list)


class _Session:
    """One short synchronous MQTT 5 connection: clean start, no session left behind."""

    def __init__(self, port: int, username: str, password: str, tls: TlsConfig,
                 client_id: str) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=MQTTProtocolVersion.MQTTv5,
                                  reconnect_on_failure=False)
        self.client.username_pw_set(username, password)
        self.client.tls_set_context(client_context(tls))
        self.port = port
        self.ok = False
        self.answered = threading.Event()
        self.subscribed = threading.Event()
        self.retained: dict[str, bytes] = {}
        self.marker = threading.Event()
        self.marker_topic = ""
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *_a: self.answered.set()
        self.client.on_subscribe = lambda *_a: self.subscribed.set()
        self.client.on_message = self._on_message

    def _on_connect(self, _c: object, _u: object, _f: object, rc: Any, _p: object) -> None:
        self.ok = not rc.is_failure
        self.answered.set()

    def _on_message(self, _c: object, _u: object, m: paho.MQTTMessage) -> None:
        if m.topic == self.marker_topic:
            self.marker.set()
        elif m.retain:
            self.retained[m.topic] = bytes(m.payload)

    def open(self) -> bool:
        """True if the broker took the login."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0
        self.client.connect(HOST, self.port, keepalive=30, clean_start=True, properties=props)
        self.client.loop_start()
        if not self.answered.wait(WAIT_S):
            self.close()
            raise AssertionError(f"no CONNACK from the broker on port {self.port}")
        if not self.ok:
            self.close()
        return self.ok

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(WAIT_S)
        assert info.is_published(), f"the broker did not take a publish to {topic}"

    def retained_under(self, filter_: str, marker_topic: str) -> dict[str, bytes]:
        """The retained messages under ``filter_``: all of them arrived once a message
        published after the SUBACK, on a topic it matches, comes back."""
        self.marker_topic = marker_topic
        self.client.subscribe(filter_, qos=1)
        assert self.subscribed.wait(WAIT_S), f"no SUBACK for {filter_}"
        self.publish(marker_topic, b"")
        assert self.marker.wait(WAIT_S), f"the marker on {marker_topic} never came back"
        return {t: p for t, p in self.retained.items() if p}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class SecureFleet:
    def __init__(self, setup: SecureSetup, broker: Mosquitto) -> None:
        self.setup, self.broker = setup, broker
        self.topics = Topics(setup.registry().topic_prefix)
        self.secrets: dict[str, str] = {}
        self._scopes: list[_Scope] = [_Scope()]

    # -- what configs need ---------------------------------------------------------------
    @property
    def prefix(self) -> str:
        return self.topics.prefix

    @property
    def registry_path(self) -> Path:
        return self.setup.registry_path

    @property
    def tls(self) -> dict[str, str]:
        """A config's ``tls`` section: trust the suite's CA."""
        return {"ca_file": str(self.setup.ca_file)}

    def tls_config(self) -> TlsConfig:
        return self.setup.tls()

    def server_tls(self) -> TlsConfig:
        """The broker's certificate (127.0.0.1), fit for a collector's https too."""
        return self.setup.server_tls()

    def secret(self, gateway: str) -> str:
        return self.secrets[gateway]

    def key(self, gateway: str) -> bytes:
        """The gateway's seal key, as the collector has it from the registry."""
        return derive_key(self.secrets[gateway])

    def admission(self) -> Admission:
        """The registry as a collector in this process reads it (also its keyring)."""
        return Admission(LiveRegistry(self.registry_path))

    def agent_mqtt(self, gateway: str, *, port: int | None = None,
                   **extra: Any) -> dict[str, Any]:
        """An agent's ``uplink.mqtt``; its login is ``gateway.secret`` (the default)."""
        assert gateway in self.secrets, f"{gateway} is not registered: add_gateway first"
        return {"host": HOST, "port": port or self.broker.port, "topic_prefix": self.prefix,
                "tls": self.tls, **extra}

    def collector_login(self, client_id: str, *, port: int | None = None) -> dict[str, Any]:
        """The broker part of a collector-side config (the mqtt_downlink notifier's)."""
        self._scopes[-1].client_ids.append(client_id)
        return {"host": HOST, "port": port or self.broker.collector_port,
                "client_id": client_id, "username": COLLECTOR,
                "password": self.setup.collector_secret, "tls": self.tls}

    def collector_mqtt(self, client_id: str, *, share_group: str | None = None,
                       port: int | None = None, **extra: Any) -> dict[str, Any]:
        """A collector's ``mqtt`` section: the collector account, the registry's prefix,
        and a share group of its own unless collectors are meant to split the load."""
        return {**self.collector_login(client_id, port=port), "topic_prefix": self.prefix,
                "share_group": share_group or client_id, **extra}

    def source_config(self, client_id: str, *, share_group: str | None = None,
                      port: int | None = None, **extra: Any) -> MqttSourceConfig:
        """``collector_mqtt`` for a source or alert runner in this process."""
        doc = self.collector_mqtt(client_id, share_group=share_group, port=port, **extra)
        return MqttSourceConfig(**{**doc, "tls": self.tls_config()})

    def collector_options(self, client_id: str, **extra: Any) -> MqttOptions:
        """A raw client on the collectors' listener, as the collector account."""
        self._scopes[-1].client_ids.append(client_id)
        return MqttOptions(HOST, self.broker.collector_port, client_id, username=COLLECTOR,
                           password=self.setup.collector_secret, tls=self.tls_config(),
                           **{"clean_start": True, "session_expiry": 0, **extra})

    def gateway_options(self, gateway: str, **extra: Any) -> MqttOptions:
        """A raw client logged in as a registered gateway (its client id is its name)."""
        return MqttOptions(HOST, self.broker.port, gateway, username=gateway,
                           password=self.secrets[gateway], tls=self.tls_config(),
                           **{"clean_start": True, "session_expiry": 0, **extra})

    # -- the registry ---------------------------------------------------------------------
    def add_gateway(self, gateway: str, *, district: str = "강남구", site: str = "역삼역",
                    kind: str = "dust_zone") -> str:
        """Registered, the broker's files regenerated and reloaded (SIGHUP), and waited for
        until the broker lets the gateway in; returns its secret."""
        secret = self.setup.add_gateway(gateway, district=district, site=site, kind=kind)
        self.secrets[gateway] = secret
        self._scopes[-1].gateways.append(gateway)
        self.setup.apply(self.broker)
        deadline = time.monotonic() + WAIT_S
        while True:
            probe = self._session(gateway)
            if probe.open():
                probe.close()
                return secret
            if time.monotonic() > deadline:
                raise AssertionError(f"the broker never let {gateway} in after the reload")
            time.sleep(RELOAD_POLL_S)

    def _session(self, gateway: str) -> _Session:
        return _Session(self.broker.port, gateway, self.secrets[gateway], self.tls_config(),
                        gateway)

    # -- keeping tests apart ---------------------------------------------------------------
    @contextmanager
    def scope(self) -> Iterator[SecureFleet]:
        """What is registered or connected inside is cleared from the broker at the end."""
        self._scopes.append(_Scope())
        try:
            yield self
        finally:
            self._clear(self._scopes.pop())

    def _clear(self, scope: _Scope) -> None:
        for gateway in scope.gateways:  # its session ends, its retained status goes
            s = self._session(gateway)
            assert s.open(), f"{gateway} cannot log in to clear its status"
            s.publish(self.topics.status(gateway), b"", retain=True)
            s.close()
        for client_id in dict.fromkeys(scope.client_ids):  # clean start ends the session
            s = _Session(self.broker.collector_port, COLLECTOR, self.setup.collector_secret,
                         self.tls_config(), client_id)
            assert s.open(), f"the collector account cannot log in as {client_id}"
            s.close()
        s = _Session(self.broker.collector_port, COLLECTOR, self.setup.collector_secret,
                     self.tls_config(), "suite-cleanup")
        assert s.open(), "the collector account cannot log in"
        tree = f"{self.prefix}/collectors"
        for topic in s.retained_under(f"{tree}/#", f"{tree}/suite-cleanup"):
            s.publish(topic, b"", retain=True)
        s.close()
