"""One sensor on one serial port: read bytes, feed the profile's decoder, hand readings on.

pyserial opens the port non-blocking and asyncio watches its file descriptor,
so a gateway with many ports needs no thread per port. A port that vanishes
(USB adapter unplugged) is closed, counted and reopened with backoff; the
decoder is replaced so a half frame from before the unplug cannot join one
from after.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from collections.abc import Callable

import serial

from edge_agent.clock import Clock
from edge_agent.config import SensorConfig
from edge_agent.decoding import Decoded, FrameDecoder, Profile, Rejected, Skipped
from edge_agent.readings import Reading

log = logging.getLogger(__name__)

READ_CHUNK = 4096
# A device that has vanished stays "readable" and returns nothing, forever; a
# live one does this only now and then. This many in a row means gone.
MAX_EMPTY_READS = 100
REOPEN_MIN_S = 0.5
REOPEN_MAX_S = 30.0

_PARITY = {"none": serial.PARITY_NONE, "even": serial.PARITY_EVEN, "odd": serial.PARITY_ODD,
           "mark": serial.PARITY_MARK, "space": serial.PARITY_SPACE}


class SensorPort:
    """Owns the port, the decoder and the per-sensor counters shown in health readings."""

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
        self.counters: Counter[str] = Counter()
        self._serial: serial.Serial | None = None
        self._decoder = FrameDecoder(profile)
        self._reopen: asyncio.Task[None] | None = None
        self._closed = False
        self._empty_reads = 0

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
        self._decoder = FrameDecoder(self.profile)
        asyncio.get_running_loop().add_reader(port.fileno(), self._readable)
        log.info("%s: opened %s (%s)", self.config.id, self.config.port, self.profile.model)

    def start(self) -> None:
        try:
            self.open()
        except (serial.SerialException, OSError) as exc:
            self._lost(f"open failed: {exc}")

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
        self.counters["bytes"] += len(data)
        self._decoder.receive_data(data)
        readings = []
        for event in self._decoder.events():
            if isinstance(event, Decoded):
                self.counters["frames_ok"] += 1
                wall, mono = self.clock.stamp(self.config.id)
                readings.append(
                    Reading(self.config.id, event.measurement, event.fields, wall,
                            self.clock.boot, mono)
                )
            elif isinstance(event, Rejected):
                self.counters[f"rejected_{event.reason}"] += 1
                log.debug("%s: rejected frame at %d: %s %s", self.config.id, event.offset,
                          event.reason, event.detail)
            elif isinstance(event, Skipped):
                self.counters["bytes_skipped"] += event.count
        if readings:
            self.on_readings(readings)

    def _lost(self, why: str) -> None:
        self.counters["port_errors"] += 1
        log.warning("%s: %s on %s; reopening with backoff", self.config.id, why, self.config.port)
        self._close_port()
        if not self._closed and (self._reopen is None or self._reopen.done()):
            self._reopen = asyncio.get_running_loop().create_task(self._reopen_loop())

    async def _reopen_loop(self) -> None:
        delay = REOPEN_MIN_S
        while not self._closed:
            await asyncio.sleep(delay)
            try:
                self.open()
                self.counters["port_reopens"] += 1
                return
            except (serial.SerialException, OSError):
                delay = min(delay * 2, REOPEN_MAX_S)

    def _close_port(self) -> None:
        if self._serial is not None:
            try:
                asyncio.get_running_loop().remove_reader(self._serial.fileno())
            except (ValueError, OSError):  # fd already invalid: the port is gone anyway
                pass
            self._serial.close()
            self._serial = None

    def close(self) -> None:
        self._closed = True
        if self._reopen is not None:
            self._reopen.cancel()
        self._close_port()
