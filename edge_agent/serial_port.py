"""One sensor on one serial port: read bytes, feed the profile's decoder, hand readings on.

pyserial opens the port non-blocking and asyncio watches its file descriptor,
so a gateway with many ports needs no thread per port. The profile's polling
schedule (``edge_agent.polling``) says what to write: commands when the port
opens (wake-up, mode), and a query or Modbus request every interval, each
waiting for its answer up to the reply timeout. A port that vanishes (USB
adapter unplugged) is closed, counted and reopened with backoff; the decoder
is replaced so a half frame from before the unplug cannot join one from after,
and the start commands are sent again.

``SensorPort.counters`` become the ``sensor_health`` fields; the names are
stable (docs/profiles.md, "Counters"):

    bytes, frames_ok, replies, rejected_<reason>, bytes_skipped,
    commands_sent, reply_timeouts, write_errors, warmup_discarded,
    recoveries, port_errors, port_reopens

The first five are the decoder's own counts (``DecoderStats``), summed over the
decoders a port has had (one per open); the port counts only what it does
itself. A field appears once its count is above zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections import Counter
from collections.abc import Callable, Mapping

import serial

from cityedge.backoff import Backoff
from cityedge.uplink import OUT_OF_RANGE_FIELD, FieldValue, Reading
from cityedge.uplink.payload import MAX_STRING_CHARS
from edge_agent.clock import Clock
from edge_agent.codec import StreamDecoder, make_decoder
from edge_agent.config import SensorConfig
from edge_agent.decoding import Decoded, DecoderStats, FrameRejected, Profile, Reply
from edge_agent.polling import PollConfigError, Poller, Step

log = logging.getLogger(__name__)

READ_CHUNK = 4096
# A device that has vanished stays "readable" and returns nothing, forever; a
# live one does this only now and then. This many in a row means gone.
MAX_EMPTY_READS = 100
REOPEN_MIN_S = 0.5
REOPEN_MAX_S = 30.0

COUNTERS = (
    "bytes", "frames_ok", "replies", "bytes_skipped", "commands_sent", "reply_timeouts",
    "write_errors", "warmup_discarded", "recoveries", "port_errors", "port_reopens",
    "fields_not_available", "readings_out_of_range",
)  # plus rejected_<reason> for each Reason


def decoder_counters(stats: DecoderStats) -> Counter[str]:
    """A decoder's counts under their sensor_health names; zero counts left out."""
    named = Counter({"bytes": stats.bytes_received, "frames_ok": stats.frames_ok,
                     "replies": stats.replies, "bytes_skipped": stats.bytes_skipped,
                     "fields_not_available": stats.fields_not_available,
                     "readings_out_of_range": stats.readings_out_of_range})
    named.update({f"rejected_{reason}": n for reason, n in stats.rejected.items()})
    return +named

def flag_out_of_range(
    fields: dict[str, int | float], flagged: tuple[str, ...]
) -> Mapping[str, FieldValue]:
    """``fields``, plus the field naming those of them outside their valid range, if any."""
    names = [name for name in flagged if name in fields] if flagged else None
    if not names:
        return fields
    text = ",".join(names)
    if len(text) > MAX_STRING_CHARS:  # never past what the collector takes in a string field
        text = text[: text.rfind(",", 0, MAX_STRING_CHARS - 3)] + ",..."
    return {**fields, OUT_OF_RANGE_FIELD: text}


_PARITY = {"none": serial.PARITY_NONE, "even": serial.PARITY_EVEN, "odd": serial.PARITY_ODD,
           "mark": serial.PARITY_MARK, "space": serial.PARITY_SPACE}


def sensor_plan(config: SensorConfig, profile: Profile) -> tuple[StreamDecoder, Poller]:
    """The decoder and polling schedule a sensor's config asks of its profile. Raises
    PollConfigError, its message starting with the key at fault, if the profile cannot
    do that; ``edge-agent check`` calls it too, so it reports what ``run`` would refuse."""
    slave = getattr(config, "modbus_slave", None)
    if slave is not None and profile.protocol != "modbus_rtu":
        raise PollConfigError(f"modbus_slave: {profile.model} is not a Modbus profile")
    decoder = make_decoder(profile, slave=slave)
    return decoder, poller_for(config, profile, decoder)


def poller_for(config: SensorConfig, profile: Profile, decoder: StreamDecoder) -> Poller:
    return Poller(
        profile, decoder,
        mode=getattr(config, "mode", None), interval=getattr(config, "poll_interval", None),
        params=getattr(config, "params", None), warmup_s=getattr(config, "warmup_s", None),
        warmup_readings=getattr(config, "warmup_readings", None),
    )


class SensorPort:
    """Owns the port, the decoder, the poller and the per-sensor counters."""

    def __init__(
        self,
        config: SensorConfig,
        profile: Profile,
        clock: Clock,
        on_readings: Callable[[list[Reading]], None],
    ) -> None:
        self.config = config
        self.profile = profile
        self.clock = clock
        self.on_readings = on_readings
        self._counts: Counter[str] = Counter()  # what the port itself does
        self._decoded_before: Counter[str] = Counter()  # decoders replaced by a reopen
        try:
            self._decoder, self._poller = sensor_plan(config, profile)
        except PollConfigError as exc:
            raise PollConfigError(f"sensor {config.id}: {exc}") from None
        self._serial: serial.Serial | None = None
        self._reopen: asyncio.Task[None] | None = None
        self._polling: asyncio.Task[None] | None = None
        self._waiting: tuple[Step, asyncio.Future[None]] | None = None
        self._closed = False
        self._empty_reads = 0
        self._last_heard = 0.0

    def _make_poller(self, decoder: StreamDecoder) -> Poller:
        return poller_for(self.config, self.profile, decoder)

    @property
    def counters(self) -> Counter[str]:
        """The ``sensor_health`` counts: the port's own and every decoder's it has had."""
        return self._counts + self._decoded_before + decoder_counters(self._decoder.stats)

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    def open(self) -> None:
        s = self.profile.serial
        port = serial.Serial(
            self.config.port,
            baudrate=self.config.baudrate or s.baudrate,
            bytesize=s.bytesize,
            parity=_PARITY[s.parity],
            stopbits=s.stopbits,
            timeout=0,
        )
        self._serial = port
        self._empty_reads = 0
        self._decoded_before += decoder_counters(self._decoder.stats)
        self._decoder = make_decoder(self.profile, slave=getattr(self.config, "modbus_slave", None))
        self._poller = self._make_poller(self._decoder)
        loop = asyncio.get_running_loop()
        loop.add_reader(port.fileno(), self._readable)
        if (
            self._poller.start_steps()
            or self._poller.interval is not None
            or self._poller.recovery_steps()
        ):
            self._polling = loop.create_task(self._poll_loop(), name=f"poll-{self.config.id}")
        log.info("%s: opened %s (%s)", self.config.id, self.config.port, self.profile.model)

    def start(self) -> None:
        try:
            self.open()
        except (serial.SerialException, OSError) as exc:
            self._lost(f"open failed: {exc}")

    # -- reading -----------------------------------------------------------------

    def _readable(self) -> None:
        assert self._serial is not None
        # os.read, not Serial.read: pyserial calls any empty read after select a
        # disconnect, but with VMIN=0 a tty returns empty reads spuriously too.
        try:
            data = os.read(self._serial.fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:  # EIO: pty hung up; ENODEV/ENXIO: USB adapter gone
            self._lost(f"read failed: {exc.strerror}")
            return
        if not data:
            self._empty_reads += 1
            if not os.path.exists(self.config.port) or self._empty_reads >= MAX_EMPTY_READS:
                self._lost("port gone (readable but empty)")
            return
        self._empty_reads = 0
        self._decoder.receive_data(data)
        now = asyncio.get_running_loop().time()
        readings: list[Reading] = []
        for event in self._decoder.events():
            if isinstance(event, Decoded):
                if self._poller.keep(now):
                    readings.extend(self._readings(event))
                else:
                    self._counts["warmup_discarded"] += 1
            elif isinstance(event, FrameRejected):
                log.debug("%s: rejected frame at %d: %s %s", self.config.id, event.offset,
                          event.reason, event.detail)
            if isinstance(event, Decoded | Reply):
                self._last_heard = now
            waiting = self._waiting
            if waiting is not None and not waiting[1].done() and self._poller.answers(
                waiting[0], event
            ):
                waiting[1].set_result(None)
        if readings:
            self.on_readings(readings)

    def _readings(self, event: Decoded) -> list[Reading]:
        wall, mono = self.clock.stamp(self.config.id)
        return [
            Reading(self.config.id, measurement, flag_out_of_range(fields, event.flagged), wall,
                    self.clock.boot, mono)
            for measurement, fields in event.readings
        ]

    # -- writing ---------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        loop = asyncio.get_running_loop()
        self._last_heard = loop.time()
        for step in self._poller.start_steps():
            await self._exchange(step)
        interval = self._poller.interval
        tick = interval if interval is not None else 1.0
        next_at = loop.time()
        while self._serial is not None:
            if interval is not None:
                for step in self._poller.poll_steps():
                    if not await self._exchange(step):
                        break  # a Modbus poll is all its reads or nothing
            now = loop.time()
            if self._poller.silent(now, self._last_heard):
                recovery = self._poller.recovery_steps()
                if recovery:
                    self._counts["recoveries"] += 1
                    log.info("%s: silent for %.0f s; sending %s", self.config.id,
                             now - self._last_heard, ", ".join(s.name for s in recovery))
                    self._last_heard = now  # give the device silent_s to answer
                    for step in recovery:
                        await self._exchange(step)
            next_at += tick
            now = loop.time()
            if next_at < now:  # fell behind (slow replies): skip, do not burst
                next_at = now + tick - (now - next_at) % tick
            await asyncio.sleep(next_at - now)

    async def _exchange(self, step: Step) -> bool:
        """Write ``step`` and wait for its answer; False on a write error or a timeout."""
        port = self._serial
        if port is None:
            return False
        loop = asyncio.get_running_loop()
        data = self._poller.payload(step)
        future: asyncio.Future[None] = loop.create_future()
        self._waiting = (step, future)
        try:
            try:
                written = os.write(port.fd, data)
            except OSError as exc:
                written = 0
                log.debug("%s: write failed: %s", self.config.id, exc)
            if written != len(data):
                self._counts["write_errors"] += 1
                return False
            self._counts["commands_sent"] += 1
            self._poller.sent(step, loop.time())
            if not step.awaits:
                return True
            try:
                await asyncio.wait_for(asyncio.shield(future), step.timeout)
            except TimeoutError:
                self._counts["reply_timeouts"] += 1
                log.debug("%s: no answer to %s in %.1f s", self.config.id, step.name, step.timeout)
                return False
            return True
        finally:
            self._waiting = None

    # -- losing and finding the port ----------------------------------------------------

    def _lost(self, why: str) -> None:
        self._counts["port_errors"] += 1
        log.warning("%s: %s on %s; reopening with backoff", self.config.id, why, self.config.port)
        self._close_port()
        if not self._closed and (self._reopen is None or self._reopen.done()):
            self._reopen = asyncio.get_running_loop().create_task(self._reopen_loop())

    async def _reopen_loop(self) -> None:
        backoff = Backoff(REOPEN_MIN_S, REOPEN_MAX_S, "none")
        while not self._closed:
            await asyncio.sleep(backoff.next(random.uniform))
            try:
                self.open()
                self._counts["port_reopens"] += 1
                return
            except (serial.SerialException, OSError):
                continue

    def _close_port(self) -> None:
        if self._polling is not None:
            self._polling.cancel()
            self._polling = None
        if self._waiting is not None and not self._waiting[1].done():
            self._waiting[1].cancel()
        if self._serial is not None:
            with contextlib.suppress(ValueError, OSError):  # fd already invalid: the port is gone
                asyncio.get_running_loop().remove_reader(self._serial.fileno())
            with contextlib.suppress(OSError):
                self._serial.close()
            self._serial = None

    def close(self) -> None:
        self._closed = True
        if self._reopen is not None:
            self._reopen.cancel()
        self._close_port()
