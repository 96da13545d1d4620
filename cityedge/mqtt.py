"""The only module that imports paho: an asyncio face over paho-mqtt 2.x.

paho runs its network loop in one thread of ours (so we own reconnection:
exponential backoff with full jitter, which paho lacks); everything that
crosses into asyncio goes through ``call_soon_threadsafe``, and only that
thread touches the socket (see ``_write_in_loop_thread``). Incoming messages
land in a bounded queue; with ``manual_ack`` the broker's ReceiveMaximum keeps
it from ever overflowing, and an overflow is counted, never silent.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cityedge.backoff import Backoff, Uniform
from cityedge.flowgate import FlowGate
from cityedge.logthrottle import LogThrottle
from cityedge.tls import TlsConfig, client_context

log = logging.getLogger(__name__)

# MQTT 5 session expiry for persistent sessions: a gateway offline for a
# weekend still finds its acks queued. The end-to-end acks make this an
# optimisation, not a guarantee.
DEFAULT_SESSION_EXPIRY_S = 7 * 24 * 3600


class MqttError(Exception):
    """A broker operation failed; ``rc`` is paho's error code when there is one."""

    def __init__(self, message: str, rc: int | None = None) -> None:
        super().__init__(message if rc is None else f"{message}: {paho.error_string(rc)}")
        self.rc = rc


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int
    generation: int  # which connection it arrived on; acks on a later one are void


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass
class MqttStats:
    """What the collector's health point shows (mqtt_reconnects, mqtt_overflowed,
    mqtt_acks_not_sent), and the last error for logs and connect failures."""

    connects: int = 0
    overflowed: int = 0
    publish_refused: int = 0
    last_error: str = ""


@dataclass
class MqttOptions:
    host: str
    port: int
    client_id: str
    keepalive: int = 30
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    clean_start: bool = False
    session_expiry: int = DEFAULT_SESSION_EXPIRY_S
    manual_ack: bool = False
    receive_maximum: int = 100
    max_queued_outgoing: int = 1000
    incoming_queue: int = 1000
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0
    will: Will | None = None
    subscriptions: list[tuple[str, int]] = field(default_factory=list)
    # TLS to the broker (verified, TLS 1.2+); None: plain TCP (a broker on this host only).
    tls: TlsConfig | None = None
    # MQTT 5 Maximum Packet Size announced in CONNECT: the broker sends us no larger
    # packet (Mosquitto drops it for this client and logs "Dropping too large outgoing
    # PUBLISH"), so a huge message is never received and copied. None: no limit
    # announced (the broker's own, 256 MB by default for Mosquitto).
    max_packet_size: int | None = None
    # With manual_ack: QoS 1 messages handed on and not acked yet before reading pauses
    # (cityedge/flowgate.py; the broker may ignore our receive_maximum). None: no pause.
    max_unanswered: int | None = None


def _write_in_loop_thread(_c: paho.Client, _u: object, _sock: object) -> None:
    """Set as paho's ``on_socket_register_write``, so a publish or an ack only queues.

    Without a loop thread of paho's own (``loop_start``), paho writes a packet
    from the thread that queued it: our asyncio thread, while the mqtt thread
    may be reading the same socket. An SSL connection does not survive that
    (garbled records; the broker drops the client for a protocol error). With
    this callback set, paho instead wakes ``loop()`` in the mqtt thread (its
    socket pair), which writes the packet there.
    """


class MqttClient:
    """Connects in the background and stays connected until ``close()``."""

    def __init__(self, options: MqttOptions, *, uniform: Uniform = random.uniform) -> None:
        self.options = options
        # Reconnecting, in the mqtt thread only. Full jitter: a city's gateways
        # reconnecting after a broker restart must not arrive in lockstep.
        self._backoff = Backoff(options.reconnect_min, options.reconnect_max, "full")
        self._uniform = uniform
        self._log = LogThrottle(log)  # a flood past the queue is not a flood of lines
        self.stats = MqttStats()
        self.generation = 0
        self.connected = asyncio.Event()
        self.on_connect: Callable[[], None] | None = None
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Message] = asyncio.Queue(options.incoming_queue)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Counted in the mqtt thread (received) and the asyncio one (answered), under a lock.
        self.gate = FlowGate(options.max_unanswered) if options.max_unanswered else None
        self._gate_lock = threading.Lock()
        self._reopened = threading.Event()
        c = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=options.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        if options.username is not None:
            c.username_pw_set(options.username, options.password)
        if options.tls is not None:
            # Never tls_insecure_set(True): the broker's name is checked against its certificate.
            c.tls_set_context(client_context(options.tls))
        if options.will is not None:
            w = options.will
            c.will_set(w.topic, w.payload, qos=w.qos, retain=w.retain)
        c.manual_ack_set(options.manual_ack)
        c.max_queued_messages_set(options.max_queued_outgoing)
        c.on_socket_register_write = _write_in_loop_thread
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        self._client = c

    # -- paho's thread ----------------------------------------------------
    def _on_connect(self, _c: paho.Client, _u: object, _f: object, rc: object, _p: object) -> None:
        if getattr(rc, "is_failure", False):
            self.stats.last_error = f"connect refused: {rc}"
            return
        # Bumped here, in paho's thread, before any message of this connection arrives.
        self.generation += 1
        for topic, qos in self.options.subscriptions:
            self._client.subscribe(topic, qos)
        self._loop.call_soon_threadsafe(self._connected)

    def _on_disconnect(
        self, _c: paho.Client, _u: object, _f: object, rc: object, _p: object
    ) -> None:
        self._loop.call_soon_threadsafe(self._disconnected, str(rc))

    def _on_message(self, _c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        if self.gate is not None and msg.qos > 0:
            with self._gate_lock:
                self.gate.received()
        m = Message(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain), msg.mid,
                    self.generation)
        self._loop.call_soon_threadsafe(self._deliver, m)

    def _run(self) -> None:
        backoff = self._backoff
        first = True
        while not self._stop.is_set():
            try:
                if first:
                    self._client.connect(
                        self.options.host,
                        self.options.port,
                        self.options.keepalive,
                        clean_start=self.options.clean_start,
                        properties=self._connect_properties(),
                    )
                    first = False
                else:
                    self._client.reconnect()
                self._no_delay()
            except (OSError, paho.WebsocketConnectionError) as exc:
                self.stats.last_error = f"connect: {exc}"
                self._stop.wait(backoff.next(self._uniform))
                continue
            while not self._stop.is_set():
                rc = self._paused_loop() if self._paused() else self._client.loop(timeout=0.2)
                if self._client.is_connected():
                    backoff.reset()
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break
            if not self._stop.is_set():
                self._stop.wait(backoff.next(self._uniform))
        try:
            self._client.disconnect()
            self._client.loop(timeout=0.2)
        except (OSError, ValueError):  # already gone; nothing left to tell the broker
            pass

    def _paused(self) -> bool:
        with self._gate_lock:
            return self.gate is not None and self.gate.paused

    def _paused_loop(self) -> MQTTErrorCode:
        """Write (acks, PUBACKs) and keep the connection alive, but read nothing: TCP then
        holds the broker back. Woken when an ack reopens the gate."""
        rc = self._client.loop_write()
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            rc = self._client.loop_misc()
        self._reopened.wait(0.05)
        self._reopened.clear()
        return rc

    def _no_delay(self) -> None:
        """Send small packets (acks, PUBACKs) at once: with Nagle's algorithm on both
        ends a PUBACK can wait for a delayed TCP ACK, 40 ms on Linux (measured by
        bench/alert_latency_bench.py on a quarter to a third of the acks)."""
        sock = self._client.socket()
        if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho ships it unannotated
        props.SessionExpiryInterval = self.options.session_expiry
        props.ReceiveMaximum = self.options.receive_maximum
        if self.options.max_packet_size is not None:
            props.MaximumPacketSize = self.options.max_packet_size
        return props

    # -- the asyncio side --------------------------------------------------
    def _connected(self) -> None:
        self.stats.connects += 1
        self.connected.set()
        if self.on_connect is not None:
            self.on_connect()

    def _disconnected(self, reason: str) -> None:
        # A refused login is followed by a disconnect: the refusal says more ("Bad user
        # name or password") than the disconnect's reason does.
        if self.connected.is_set() or not self.stats.last_error.startswith("connect refused"):
            self.stats.last_error = f"disconnected: {reason}"
        self.connected.clear()

    def _deliver(self, message: Message) -> None:
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            # Unacked, so the broker (or the gateway's resend) brings it back.
            self.stats.overflowed += 1
            self._log.note("overflowed", f"incoming queue full ({self._queue.maxsize});"
                           f" message on {message.topic} left unacked"
                           f" ({self.stats.overflowed} so far)", time.monotonic())

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)
        self._thread.start()

    async def wait_connected(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self.connected.wait(), timeout)
        except TimeoutError:
            raise MqttError(
                f"no connection to {self.options.host}:{self.options.port} within {timeout:g} s"
                f" ({self.stats.last_error or 'no answer'})"
            ) from None

    async def get(self) -> Message:
        return await self._queue.get()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> bool:
        """Queue a publish; False when paho refused it (queue full, not connected for QoS 0)."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN) and qos > 0:
            return True  # QoS>0 while offline: paho holds it (bounded) for the next connection
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            return True
        self.stats.publish_refused += 1
        return False

    def ack(self, message: Message) -> None:
        """Acknowledge a QoS 1 message (manual_ack mode) if its connection is still current."""
        if message.qos > 0 and message.generation == self.generation and self.connected.is_set():
            self._client.ack(message.mid, message.qos)
        self.answered(message)

    def answered(self, message: Message) -> None:
        """``message`` needs nothing more from us (acked, or given up): it leaves the gate."""
        if self.gate is None or message.qos == 0:
            return
        # Whichever connection it came on: a batch of an earlier one still holds memory
        # until it is written, so it counts until then.
        with self._gate_lock:
            if self.gate.open > 0 and self.gate.answered():
                self._reopened.set()

    async def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5.0)
