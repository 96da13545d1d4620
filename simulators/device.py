"""A simulated sensor: frames from its firmware profile, written to a pty at an interval.

Each frame written in full is logged (one JSON line: time, seq, values), so a
test can check that exactly these readings reached InfluxDB. Faults are on
demand: noise bytes between frames, a corrupted checksum, an unplug.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from edge_agent.decoding import Profile
from simulators.frames import encode_frame
from simulators.pty_device import PtyDevice
from simulators.values import generator_for


@dataclass
class Faults:
    """Probabilities per frame."""

    noise: float = 0.0  # garbage bytes before the frame
    bad_checksum: float = 0.0  # a corrupted frame (not logged as emitted)


@dataclass
class DeviceStats:
    frames: int = 0
    corrupted: int = 0
    noise_bytes: int = 0
    blocked: int = 0  # frames not written because the port's buffer was full
    values: list[dict[str, float]] = field(default_factory=list)


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
    ) -> None:
        self.profile = profile
        self.pty = PtyDevice(link)
        self.interval = interval
        self.faults = faults or Faults()
        self.rng = random.Random(seed ^ 0x5EED)
        self.values = generator_for(profile, seed, episode)
        self.log = log
        self.keep_values = keep_values
        self.stats = DeviceStats()
        self._pending = b""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def path(self) -> str:
        return self.pty.path

    def emit_one(self) -> bool:
        """Write one frame (plus any fault); True if a good frame went out in full."""
        if self._pending:
            n = self.pty.write(self._pending)
            self._pending = self._pending[n:]
            if self._pending:
                self.stats.blocked += 1
                return False
        out = b""
        if self.rng.random() < self.faults.noise:
            noise = bytes(self.rng.randrange(256) for _ in range(self.rng.randint(1, 12)))
            out += noise
            self.stats.noise_bytes += len(noise)
        values = self.values()
        frame = encode_frame(self.profile, values)
        good = True
        if self.rng.random() < self.faults.bad_checksum:
            frame = frame[:-1] + bytes([(frame[-1] + 1) % 256])
            good = False
        out += frame
        n = self.pty.write(out)
        if n < len(out):
            # Keep byte order: the rest goes first next time. A frame cut here
            # still arrives whole, later.
            self._pending = out[n:]
        if good:
            self.stats.frames += 1
            if self.keep_values:
                self.stats.values.append(values)
            if self.log is not None:
                self.log.write(json.dumps({"t": time.time_ns(), "values": values}) + "\n")
                self.log.flush()
        else:
            self.stats.corrupted += 1
        return good

    def run(self, count: int | None = None) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set() and (count is None or self.stats.frames < count):
            self.emit_one()
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def start(self, count: int | None = None) -> SimulatedDevice:
        self._thread = threading.Thread(target=self.run, args=(count,), daemon=True,
                                        name=f"sim-{self.profile.model}")
        self._thread.start()
        return self

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
