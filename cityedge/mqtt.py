"""The only module that imports paho: paho-mqtt 2.x driven from the asyncio event loop.

paho has no thread here. Its socket is registered with the loop (``add_reader``,
and ``add_writer`` while paho has bytes to send), and the loop calls
``loop_read``/``loop_write`` when the socket is ready and ``loop_misc`` once a
second (keepalive pings, a broker that stopped answering). So every paho
callback runs on the loop thread, and a publish or an ack only queues: the
writer callback sends it. We own reconnection (exponential backoff with full
jitter, which paho lacks): the loop waits out the backoff and calls paho's
``reconnect()``. Only what would block the loop (name lookup, TCP connect, TLS
handshake: seconds against a broker that does not answer, while the serial
ports wait) runs in a thread, on a fresh socket that nothing else sees
until paho takes it on the loop. Incoming messages land in a bounded queue;
with ``manual_ack`` the broker's ReceiveMaximum keeps it from ever
overflowing, and an overflow is counted, never silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cityedge.backoff import Backoff, Uniform
from cityedge.flowgate import FlowGate
from cityedge.logthrottle import LogThrottle
from cityedge.tls import TlsConfig, client_context

if TYPE_CHECKING:
    from paho.mqtt.client import SocketLike

log = logging.getLogger(__name__)

# MQTT 5 session expiry for persistent sessions: a gateway offline for a
# weekend still finds its acks queued. The end-to-end acks make this an
# optimisation, not a guarantee.
DEFAULT_SESSION_EXPIRY_S = 7 * 24 * 3600
# How often the loop calls paho's loop_misc: keepalive pings are due every
# ``keepalive`` seconds (30), so a second late is nothing.
MISC_INTERVAL_S = 1.0
# Closing: how long the DISCONNECT (and what was queued before it) may take to
# leave before the socket is closed without it (the broker then sends the will).
CLOSE_TIMEOUT_S = 1.0


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


def open_socket(host: str, port: int, tls: ssl.SSLContext | None,
                timeout: float) -> socket.socket:
    """A connected socket (TLS done) to the broker; blocking, so run in a worker thread.

    What paho's own ``connect`` does before it sends CONNECT: TCP with
    ``timeout``, then, with a context, the handshake, the broker's name checked
    against its certificate (the context's ``check_hostname``). Small packets
    (acks, PUBACKs) leave at once: with Nagle's algorithm on both ends a PUBACK
    can wait for a delayed TCP ACK, 40 ms on Linux (measured by
    bench/alert_latency_bench.py on a quarter to a third of the acks).
    """
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            return tls.wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise
    return sock


class _Paho(paho.Client):
    """paho, given the socket ``open_socket`` made instead of making one itself: its
    ``reconnect()`` then does no I/O that blocks and can run on the loop."""

    ready: socket.socket | None = None

    def _create_socket(self) -> SocketLike:
        sock, self.ready = self.ready, None
        if sock is None:
            raise OSError("no socket opened for this connection")
        return sock


class MqttClient:
    """Connects in the background and stays connected until ``close()``."""

    def __init__(self, options: MqttOptions, *, uniform: Uniform = random.uniform) -> None:
        self.options = options
        # Full jitter: a city's gateways reconnecting after a broker restart must not
        # arrive in lockstep.
        self._backoff = Backoff(options.reconnect_min, options.reconnect_max, "full")
        self._uniform = uniform
        self._log = LogThrottle(log)  # a flood past the queue is not a flood of lines
        self.stats = MqttStats()
        self.generation = 0
        self.connected = asyncio.Event()
        self.on_connect: Callable[[], None] | None = None
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Message] = asyncio.Queue(options.incoming_queue)
        self._task: asyncio.Task[None] | None = None
        self._fd = -1  # paho's socket while it has one
        self._closed = asyncio.Event()  # set when paho closes it
        self._closed.set()
        self._misc: asyncio.TimerHandle | None = None
        self._tls = None if options.tls is None else client_context(options.tls)
        c = _Paho(
            CallbackAPIVersion.VERSION2,
            client_id=options.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        if options.username is not None:
            c.username_pw_set(options.username, options.password)
        if self._tls is not None:
            # Never tls_insecure_set(True): the broker's name is checked against its certificate.
            c.tls_set_context(self._tls)
        if options.will is not None:
            w = options.will
            c.will_set(w.topic, w.payload, qos=w.qos, retain=w.retain)
        c.manual_ack_set(options.manual_ack)
        c.max_queued_messages_set(options.max_queued_outgoing)
        c.on_socket_open = self._socket_open
        c.on_socket_close = self._socket_close
        c.on_socket_register_write = self._want_write
        c.on_socket_unregister_write = self._wrote
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        # Messages handed on and not answered yet; reading pauses at the limit.
        self.gate = FlowGate(options.max_unanswered) if options.max_unanswered else None
        self._client = c

    # -- paho's socket on the loop -----------------------------------------
    def _socket_open(self, _c: paho.Client, _u: object, sock: SocketLike) -> None:
        self._fd = sock.fileno()
        self._closed.clear()
        if not self._paused():
            self._loop.add_reader(self._fd, self._readable)
        self._misc = self._loop.call_later(MISC_INTERVAL_S, self._tick)

    def _socket_close(self, _c: paho.Client, _u: object, _sock: SocketLike) -> None:
        self._forget_socket()

    def _forget_socket(self) -> None:
        self._loop.remove_reader(self._fd)
        self._loop.remove_writer(self._fd)
        self._fd = -1
        if self._misc is not None:
            self._misc.cancel()
            self._misc = None
        self._closed.set()

    def _want_write(self, _c: paho.Client, _u: object, _sock: SocketLike) -> None:
        self._loop.add_writer(self._fd, self._writable)

    def _wrote(self, _c: paho.Client, _u: object, _sock: SocketLike) -> None:
        self._loop.remove_writer(self._fd)

    def _readable(self) -> None:
        if self._fd < 0 or self._paused():
            return
        self._guarded(self._client.loop_read)
        if self._paused() and self._fd >= 0:
            # Too many messages unanswered: read nothing more, so TCP holds the broker
            # back, until ``answered`` reopens the gate. Writes and pings go on.
            self._loop.remove_reader(self._fd)
            return
        self._read_pending()

    def _read_pending(self) -> None:
        # TLS: a record read whole may hold more than paho took; those bytes wait in
        # the SSL object, not on the socket, so the loop would not call us again.
        sock = self._client.socket()
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            self._loop.call_soon(self._readable)

    def _paused(self) -> bool:
        return self.gate is not None and self.gate.paused

    def _writable(self) -> None:
        self._guarded(self._client.loop_write)

    def _tick(self) -> None:
        self._misc = self._loop.call_later(MISC_INTERVAL_S, self._tick)
        self._guarded(self._client.loop_misc)

    def _guarded(self, step: Callable[[], MQTTErrorCode]) -> None:
        """One paho step; a bug raised in it ends the connection (paho's own way:
        the socket shut down reads as lost) instead of leaving paho half done."""
        try:
            step()
        except Exception as exc:
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            self._log.note("paho_raised", f"paho raised: {self.stats.last_error};"
                           " reconnecting", time.monotonic())
            sock = self._client.socket()
            if isinstance(sock, socket.socket):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    # -- connecting ---------------------------------------------------------
    async def _run(self) -> None:
        o = self.options
        self._client.connect_async(o.host, o.port, o.keepalive, clean_start=o.clean_start,
                                   properties=self._connect_properties())
        while True:
            try:
                self._client.ready = await self._open_socket()
                self._client.reconnect()
            except Exception as exc:  # OSError, TLS, a bad host name: all mean try again
                self.stats.last_error = f"connect: {exc}"
                if self._client.ready is not None:  # opened, but paho did not take it
                    self._client.ready.close()
                    self._client.ready = None
            else:
                await self._closed.wait()
            await asyncio.sleep(self._backoff.next(self._uniform))

    async def _open_socket(self) -> socket.socket:
        """``open_socket`` in a daemon thread of its own, as paho's thread was: a name
        lookup that hangs never holds up the process's exit (the loop's default
        executor would be waited for)."""
        o = self.options
        opening: asyncio.Future[socket.socket] = self._loop.create_future()

        def work() -> None:
            try:
                sock = open_socket(o.host, o.port, self._tls, self._client.connect_timeout)
            except Exception as exc:
                with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                    self._loop.call_soon_threadsafe(opening.set_exception, exc)
                return
            try:
                self._loop.call_soon_threadsafe(opening.set_result, sock)
            except RuntimeError:
                sock.close()

        threading.Thread(target=work, name="mqtt-connect", daemon=True).start()
        try:
            return await asyncio.shield(opening)
        except asyncio.CancelledError:
            # Closed while connecting: the socket still comes; nobody will use it.
            opening.add_done_callback(_close_unused)
            raise

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho ships it unannotated
        props.SessionExpiryInterval = self.options.session_expiry
        props.ReceiveMaximum = self.options.receive_maximum
        if self.options.max_packet_size is not None:
            props.MaximumPacketSize = self.options.max_packet_size
        return props

    # -- paho's callbacks, on the loop ----------------------------------------
    def _on_connect(self, _c: paho.Client, _u: object, _f: object, rc: object, _p: object) -> None:
        if getattr(rc, "is_failure", False):
            self.stats.last_error = f"connect refused: {rc}"
            return
        # Bumped before any message of this connection arrives.
        self.generation += 1
        self._backoff.reset()
        for topic, qos in self.options.subscriptions:
            self._client.subscribe(topic, qos)
        self.stats.connects += 1
        self.connected.set()
        if self.on_connect is not None:
            self.on_connect()

    def _on_disconnect(
        self, _c: paho.Client, _u: object, _f: object, rc: object, _p: object
    ) -> None:
        # A refused login is followed by a disconnect: the refusal says more ("Bad user
        # name or password") than the disconnect's reason does.
        if self.connected.is_set() or not self.stats.last_error.startswith("connect refused"):
            self.stats.last_error = f"disconnected: {rc}"
        self.connected.clear()

    def _on_message(self, _c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        if self.gate is not None and msg.qos > 0:
            self.gate.received()
        message = Message(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain), msg.mid,
                          self.generation)
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            # Unacked, so the broker (or the gateway's resend) brings it back.
            self.stats.overflowed += 1
            self._log.note("overflowed", f"incoming queue full ({self._queue.maxsize});"
                           f" message on {message.topic} left unacked"
                           f" ({self.stats.overflowed} so far)", time.monotonic())
            # Not held here, so not counted as held: a count that never came back down
            # would keep reading paused for good once enough of these had happened.
            self.answered(message)

    # -- the caller's side ----------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mqtt")

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
        if self.gate.open > 0 and self.gate.answered() and self._fd >= 0:
            self._loop.add_reader(self._fd, self._readable)  # reading resumes
            self._read_pending()

    async def close(self) -> None:
        """Stop reconnecting; send what is queued and a DISCONNECT, then close the socket."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._closed.is_set():
            return
        if self._client.disconnect() == MQTTErrorCode.MQTT_ERR_SUCCESS:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), CLOSE_TIMEOUT_S)
        if not self._closed.is_set():  # the DISCONNECT did not leave: close without it
            self._forget_socket()
            sock = self._client.socket()
            if sock is not None:
                sock.close()
        self.connected.clear()


def _close_unused(opening: asyncio.Future[socket.socket]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close()
