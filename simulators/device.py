"""A simulated sensor on a pty: its emulator answers what the agent writes, on a thread.

Any profile works: ``frames`` profiles through ``FrameEmulator`` (streaming in
active mode, answering commands byte for byte), ``modbus_rtu`` profiles through
``ModbusSlave`` (pymodbus). Each reading written in full is logged (one JSON
line: time, values, warm-up flag) and kept in ``stats.values`` on request, so a
test can check that exactly these readings reached InfluxDB.

Faults are on demand, per frame: noise bytes before it, a byte dropped from it,
a wrong checksum byte, a stall (the device goes quiet, then resumes), and an
unplug (the pty vanishes; ``plug`` brings it back under the same link). A
corrupted frame is never logged as a reading.
"""

from __future__ import annotations

import json
import random
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from edge_agent.decoding import Profile
from simulators.emulator import Emission, Emulator, FrameEmulator
from simulators.pty_device import PtyDevice
from simulators.values import generator_for


@dataclass
class Faults:
    """Probabilities per frame, and how long a stall lasts."""

    noise: float = 0.0  # garbage bytes before the frame
    bad_checksum: float = 0.0  # a corrupted frame (not logged as emitted)
    drop: float = 0.0  # one byte of the frame lost on the line (not logged)
    stall: float = 0.0  # the device falls silent for stall_s before this frame
    stall_s: float = 2.0


@dataclass
class DeviceStats:
    frames: int = 0  # good readings written in full (warm-up readings not counted)
    warmup: int = 0  # good readings written during the warm-up
    replies: int = 0  # answers to commands
    commands: int = 0  # bytes-chunks received from the gateway
    corrupted: int = 0
    dropped: int = 0
    noise_bytes: int = 0
    stalls: int = 0
    unplugs: int = 0
    blocked: int = 0  # frames not written because the port's buffer was full
    values: list[dict[str, int | float | bool]] = field(default_factory=list)


class SimulatedDevice:
    def __init__(
        self,
        profile: Profile,
        *,
        link: Path | None = None,
        interval: float = 1.0,
        seed: int = 1,
        faults: Faults | None = None,
        log: IO[str] | None = None,
        episode: Callable[[], float] = lambda: 1.0,
        keep_values: bool = False,
        warmup_frames: int | None = None,
        slave: int | None = None,
        minute: float = 60.0,
    ) -> None:
        self.profile = profile
        self.pty = PtyDevice(link)
        self.interval = interval
        self.faults = faults or Faults()
        self.rng = random.Random(seed ^ 0x5EED)
        values = generator_for(profile, seed, episode)
        self.emulator: Emulator
        if profile.protocol == "modbus_rtu":
            from simulators.modbus_slave import ModbusSlave  # noqa: PLC0415  (pymodbus on demand)

            self.emulator = ModbusSlave(profile, values, slave=slave)
        else:
            self.emulator = FrameEmulator(
                profile, values, interval=interval, warmup_frames=warmup_frames, minute=minute
            )
        self.log = log
        self.keep_values = keep_values
        self.stats = DeviceStats()
        self._pending = b""
        self._quiet_until = 0.0
        self._count: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def path(self) -> str:
        return self.pty.path

    # -- faults on the line ------------------------------------------------------------

    def _damage(self, data: bytes) -> tuple[bytes, bool]:
        """``data`` as it reaches the line, and whether it is still intact."""
        faults, rng = self.faults, self.rng
        if rng.random() < faults.bad_checksum:
            self.stats.corrupted += 1
            return data[:-2] + bytes([data[-2] ^ 0x5A]) + data[-1:], False
        if len(data) > 1 and rng.random() < faults.drop:
            self.stats.dropped += 1
            cut = rng.randrange(len(data))
            return data[:cut] + data[cut + 1 :], False
        return data, True

    def _noise(self) -> bytes:
        if self.rng.random() >= self.faults.noise:
            return b""
        noise = bytes(self.rng.randrange(256) for _ in range(self.rng.randint(1, 12)))
        self.stats.noise_bytes += len(noise)
        return noise

    # -- writing -----------------------------------------------------------------------

    def _emit(self, emission: Emission) -> bool:
        """Write one emission (plus any fault); True if a good reading went out in full."""
        if self._pending:
            n = self.pty.write(self._pending)
            self._pending = self._pending[n:]
            if self._pending:
                self.stats.blocked += 1
                return False
        data, intact = self._damage(emission.data)
        out = self._noise() + data
        n = self.pty.write(out)
        if n == 0 and not self.pty.plugged:
            return False  # unplugged: nothing reached the line
        if n < len(out):
            # Keep byte order: the rest goes first next time. A frame cut here
            # still arrives whole, later.
            self._pending = out[n:]
        if emission.values is None:
            self.stats.replies += intact
            return False
        if not intact:
            return False
        if emission.warmup:
            self.stats.warmup += 1
        else:
            self.stats.frames += 1
            if self.keep_values:
                self.stats.values.append(emission.values)
        if self.log is not None:
            line = {"t": time.time_ns(), "values": emission.values, "warmup": emission.warmup}
            self.log.write(json.dumps(line) + "\n")
            self.log.flush()
        return not emission.warmup

    def emit_one(self) -> bool:
        """Stream one reading now, whatever the schedule (active devices only)."""
        emulator = self.emulator
        if not isinstance(emulator, FrameEmulator) or not emulator.streaming():
            return False
        return self._emit(emulator._reading(None))

    # -- the device's life -------------------------------------------------------------

    def _done(self) -> bool:
        return self._count is not None and self.stats.frames >= self._count

    def step(self, now: float, wait: float = 0.0) -> None:
        """Hear what the gateway wrote, answer it, and send what is due (one turn)."""
        fd = self.pty.master_fd
        if fd >= 0 and wait > 0:
            select.select([fd], [], [], wait)
        elif wait > 0:
            time.sleep(wait)
        with self._lock:
            heard = self.pty.read()
            emissions: list[Emission] = []
            if heard:
                self.stats.commands += 1
                emissions += self.emulator.receive(heard, now)
            if now >= self._quiet_until:
                emissions += self.emulator.due(now)
            for emission in emissions:
                if self._done():
                    break
                if emission.values is not None and self.rng.random() < self.faults.stall:
                    self.stats.stalls += 1
                    self._quiet_until = now + self.faults.stall_s
                    break  # this and what follows are lost while the device hangs
                if now < self._quiet_until:
                    break
                self._emit(emission)

    def run(self, count: int | None = None) -> None:
        self._count = count
        while not self._stop.is_set() and not self._done():
            self.step(time.monotonic(), wait=min(0.02, self.interval / 4))

    def start(self, count: int | None = None) -> SimulatedDevice:
        self._thread = threading.Thread(target=self.run, args=(count,), daemon=True,
                                        name=f"sim-{self.profile.model}")
        self._thread.start()
        return self

    def unplug(self) -> None:
        """The device vanishes from the bus (its pty closes; the link dangles)."""
        with self._lock:
            self.pty.unplug()
            self._pending = b""
            self.stats.unplugs += 1

    def plug(self) -> None:
        """The device comes back: a new pty behind the same link."""
        with self._lock:
            self.pty.plug()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def close(self) -> None:
        self.stop()
        self.pty.close()
        close = getattr(self.emulator, "close", None)
        if close is not None:
            close()
