"""A device that answers commands as its profile says, sans-IO: bytes in, emissions out.

The emulator reads what the gateway sends with the profile's own command framing
(a ``FrameDecoder`` over ``commands.framing``, so garbage and split writes are
handled as the device's firmware would), matches each frame to a command role,
and acts on it with the meaning the role has for every device:

    wake      awake; the warm-up starts          sleep     silent until wake
    active    stream readings on its schedule    passive   speak only when queried
    query     one reading now (or ``empty``)      start     measuring; warm-up starts
    stop      not measuring                      period    working period in minutes
    identify  the documented answer

Answers are the profile's bytes (``reply``), a frame of the named kind with
live values (``reply_frame``), or ``refused`` when the role is not allowed in
the device's state. A parameter (the SDS011 working period) is read from the
command and echoed at ``reply_offset`` with the checksum recomputed.

Each ``Emission`` carries the bytes and, for a reading, the values exactly as
the decoder will read them, so a test can compare end to end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from edge_agent.decoding import (
    Command,
    FrameDecoder,
    FrameSpec,
    Profile,
    Reply,
    seal,
    unseal,
)
from edge_agent.decoding.vocabulary import resolve
from simulators.frames import encode_frame

__all__ = ["Emission", "Emulator", "FrameEmulator"]

Values = dict[str, float]


@dataclass(frozen=True, slots=True)
class Emission:
    """Bytes a device sends; ``values`` when they are a reading (``warmup``: one to discard)."""

    data: bytes
    values: dict[str, int | float | bool] | None = None
    warmup: bool = False


class Emulator(Protocol):
    """A device's side of the wire, sans-IO (``FrameEmulator``, ``ModbusSlave``)."""

    def receive(self, data: bytes, now: float) -> list[Emission]: ...

    def due(self, now: float) -> list[Emission]: ...


class FrameEmulator:
    """One ``frames`` profile's device: state, command handling and its streaming schedule."""

    def __init__(
        self,
        profile: Profile,
        values: Callable[[], Values],
        *,
        interval: float = 1.0,
        warmup_frames: int | None = None,
        minute: float = 60.0,
    ) -> None:
        self.profile = profile
        self.values = values
        self.interval = interval
        self.minute = minute
        self.warmup_frames = (
            profile.polling.warmup_readings if warmup_frames is None else warmup_frames
        )
        commands = profile.commands
        self.commands: dict[str, Command] = dict(commands.by_role) if commands else {}
        self.needs_start = "start" in self.commands
        power_up = profile.polling.power_up
        self.awake = power_up != "asleep"
        self.mode = "active" if power_up == "active" else "passive"
        self.measuring = not self.needs_start
        self.period_min = 0
        # Powered up long ago: warm-ups follow a wake from sleep or a start.
        self.warmup_left = 0
        self.next_at: float | None = None
        self._host = self._host_decoder()
        self._text = b""

    def _host_decoder(self) -> FrameDecoder | None:
        commands = self.profile.commands
        if commands is None or not commands.framing.start:
            return None
        host = Profile(
            model=f"{self.profile.model}_host", vendor="", datasheet="", measurement="host",
            serial=self.profile.serial, framing=commands.framing, checksum=commands.checksum,
            frames=(FrameSpec("command", "reply", None, None, "binary", ()),),
        )
        return FrameDecoder(host)

    # -- what the gateway sends ---------------------------------------------------

    def receive(self, data: bytes, now: float) -> list[Emission]:
        """Act on the bytes the gateway wrote; returns the answers, in order."""
        out: list[Emission] = []
        for frame in self._frames(data):
            match = self._match(frame)
            if match is not None:
                out.extend(self._act(match[0], match[1], now))
        return out

    def _frames(self, data: bytes) -> list[bytes]:
        if self._host is None:  # text commands, one per line
            self._text = (self._text + data)[-4096:]
            lines = []
            while b"\n" in self._text:
                line, _, self._text = self._text.partition(b"\n")
                lines.append(line + b"\n")
            return lines
        self._host.receive_data(data)
        return [e.raw for e in self._host.events() if isinstance(e, Reply)]

    def _match(self, frame: bytes) -> tuple[Command, int | None] | None:
        commands = self.profile.commands
        if commands is None:
            return None
        if self._host is None:  # text: a line holds a command, around spaces and CR
            for command in self.commands.values():
                if frame.strip() and command.send.strip() == frame.strip():
                    return command, None
            return None
        got = unseal(commands.framing, frame)
        for command in self.commands.values():
            wire = command.send[command.send.find(commands.framing.start) :]
            want = unseal(commands.framing, wire)
            if len(want) != len(got):
                continue
            ignore: set[int] = set()
            if commands.checksum is not None:  # already verified by the host decoder
                at = resolve(commands.checksum.offset, len(want))
                ignore = set(range(at, at + commands.checksum.type.size))
            param = command.param
            if param is not None:
                ignore |= set(range(param.offset, param.offset + param.type.size))
            if all(got[i] == want[i] for i in range(len(want)) if i not in ignore):
                value = None
                if param is not None:
                    value = int(param.type.unpack(got, param.offset))
                return command, value
        return None

    def _act(self, command: Command, value: int | None, now: float) -> list[Emission]:
        role = command.role
        if not self.awake and role != "wake":
            return []  # a sleeping device hears only wake-up
        refused = {"start": self.measuring, "stop": not self.measuring}.get(role, False)
        if refused and command.refused is not None:
            return [Emission(command.refused)]
        if role == "query":
            if not self.measuring:
                return [Emission(command.empty)] if command.empty else []
            return [self._reading(command.reply_frame)]
        if role in ("wake", "start"):
            if role == "start" or not self.awake:  # a fan that was off spins up again
                self.warmup_left = self.warmup_frames
            self.awake = True
            self.measuring = self.measuring or role == "start" or not self.needs_start
            self.next_at = now + self.interval
        elif role == "sleep":
            self.awake = False
        elif role == "stop":
            self.measuring = False
        elif role in ("active", "passive"):
            self.mode = role
            self.next_at = now + self.interval
        elif role == "period" and value is not None:
            self.period_min = value
            self.next_at = now + self._spacing()
        return [Emission(self._answer(command, value))] if command.reply is not None else []

    def _answer(self, command: Command, value: int | None) -> bytes:
        reply = command.reply
        assert reply is not None
        param, layout = command.param, self.profile.layout_starting(reply)
        if param is None or value is None or param.reply_offset is None or layout is None:
            return reply
        frame = bytearray(unseal(layout.framing, reply))
        frame[param.reply_offset : param.reply_offset + param.type.size] = param.type.pack(value)
        return seal(layout.framing, layout.checksum, bytes(frame))

    # -- on its own schedule ----------------------------------------------------------

    def _spacing(self) -> float:
        return self.period_min * self.minute if self.period_min else self.interval

    def streaming(self) -> bool:
        return self.awake and self.measuring and self.mode == "active"

    def due(self, now: float) -> list[Emission]:
        """The reading the device sends by itself at ``now``, if one is due."""
        if not self.streaming():
            self.next_at = None
            return []
        if self.next_at is None:
            self.next_at = now
        if now < self.next_at:
            return []
        self.next_at += self._spacing()
        if self.next_at < now:
            self.next_at = now + self._spacing()
        return [self._reading(None)]

    def _reading(self, frame: str | None) -> Emission:
        values = self.values()
        data = encode_frame(self.profile, values, frame=frame)
        warmup = self.warmup_left > 0
        if warmup:
            self.warmup_left -= 1
        return Emission(data, dict(values), warmup)
