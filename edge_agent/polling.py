"""What to send a sensor, when, and which readings to keep: the polling schedule, sans-IO.

The profile's ``polling`` section names modes; each mode has ``start`` steps
(sent when the port opens, e.g. wake-up then passive mode), ``poll`` steps
(sent every interval, e.g. a query) or none at all (the device streams). A
Modbus profile polls each read of its register map in turn. The ``Poller``
turns that into ``Step`` values and answers three questions for the serial
shell, which owns the port and the clock:

- ``start_steps()`` / ``poll_steps()`` and ``payload(step)``: what to write;
- ``answers(step, event)``: does this decoded event answer the step (so the
  shell stops waiting before the reply timeout);
- ``keep(now)``: is a reading arriving now past the warm-up that follows a
  wake-up or a start (readings inside it are discarded and counted)?
- ``silent(now, last_heard)`` and ``recovery_steps()``: a device that has sent
  nothing for ``silent_s`` was probably left asleep (or is in another mode):
  the profile's ``recover`` commands (e.g. wake-up) go out, then the mode's
  start commands again.

When warm-up applies: after a wake-up sent because the device was silent, and
after a ``start`` the device accepted (an SPS30 already measuring refuses it,
and then nothing is discarded). A wake-up in a mode's start commands counts
too. The agent does not send a wake-up to a device that is talking: a sensor
that never slept has no warm-up, and its readings are all kept.

Nothing here reads a clock or touches a port: ``now`` is always passed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from edge_agent.codec import StreamDecoder
from edge_agent.decoding import Command, Decoded, Event, Profile, Reply, seal, unseal

__all__ = ["WAKING_ROLES", "PollConfigError", "Poller", "Step"]

# Sending one of these restarts the device's warm-up.
WAKING_ROLES = ("wake", "start")


class PollConfigError(ValueError):
    """A sensor's polling settings do not fit its profile (mode, params, slave address)."""


@dataclass(frozen=True, slots=True)
class Step:
    """One write to the device and what answers it.

    Attributes:
        name: the command role (``wake``, ``query``, ...) or ``read<i>`` for Modbus.
        awaits: frame kinds that answer it (empty: nothing does, e.g. a wake-up).
        timeout: seconds to wait for the answer.
        wakes: whether sending it starts the warm-up.
        index: the Modbus read index, or -1.
    """

    name: str
    awaits: frozenset[str]
    timeout: float
    wakes: bool = False
    index: int = -1


class Poller:
    """The polling schedule of one sensor, from its profile and its config."""

    def __init__(
        self,
        profile: Profile,
        decoder: StreamDecoder,
        *,
        mode: str | None = None,
        interval: float | None = None,
        params: Mapping[str, int] | None = None,
        warmup_s: float | None = None,
        warmup_readings: int | None = None,
    ) -> None:
        polling = profile.polling
        self.profile = profile
        self.decoder = decoder
        name = mode or polling.default
        if name not in polling.modes:
            known = ", ".join(polling.modes)
            raise PollConfigError(f"mode: {name!r} is not a mode of {profile.model} ({known})")
        self.mode = polling.modes[name]
        self.interval = self.mode.interval if interval is None else interval
        if self.interval is not None and self.interval <= 0:
            raise PollConfigError(f"poll_interval: expected seconds > 0, got {self.interval}")
        if not self.mode.poll:
            self.interval = None  # the device streams; there is nothing to poll
        self.params = self._check_params(dict(params or {}))
        self.warmup_s = polling.warmup_s if warmup_s is None else warmup_s
        self.warmup_readings = (
            polling.warmup_readings if warmup_readings is None else warmup_readings
        )
        self.silent_s = self._silence(polling.silent_s)
        self._woke_at: float | None = None
        self._discarded = 0
        self._payloads: dict[str, bytes] = {}

    def _silence(self, silent_s: float) -> float:
        """Seconds of silence that mean trouble: longer than the gaps the device keeps."""
        gaps = [silent_s]
        if self.interval is not None:
            gaps.append(3 * self.interval)
        commands = self.profile.commands
        period = commands.by_role.get("period") if commands else None
        if period is not None and period.param is not None and "period" in self.mode.start:
            minutes = self.params.get(period.param.name, period.param.default)
            gaps.append(2 * 60.0 * minutes + silent_s)
        return max(gaps)

    def _check_params(self, params: dict[str, int]) -> dict[str, int]:
        commands = self.profile.commands
        declared = {
            c.param.name: c.param
            for c in (commands.by_role.values() if commands else ())
            if c.param is not None
        }
        for key, value in params.items():
            if key not in declared:
                known = ", ".join(declared) or "none"
                raise PollConfigError(
                    f"params: {self.profile.model} has no parameter {key!r} ({known})"
                )
            low, high = declared[key].valid
            if not isinstance(value, int) or not low <= value <= high:
                raise PollConfigError(
                    f"params.{key}: expected an integer {low}..{high}, got {value!r}"
                )
        return params

    # -- steps ---------------------------------------------------------------

    def start_steps(self) -> list[Step]:
        return [self.command_step(role) for role in self.mode.start]

    def recovery_steps(self) -> list[Step]:
        """What to send a silent device: the profile's recover commands, then the mode's start."""
        recover = self.profile.polling.recover
        if not recover:
            return []
        roles = list(recover) + [r for r in self.mode.start if r not in recover]
        return [self.command_step(role) for role in roles]

    def silent(self, now: float, last_heard: float) -> bool:
        """Whether a device last heard at ``last_heard`` has been silent too long at ``now``."""
        return now - last_heard >= self.silent_s

    def poll_steps(self) -> list[Step]:
        modbus = self.profile.modbus
        if modbus is not None:
            timeout = self.profile.polling.reply_timeout
            last = len(modbus.reads) - 1
            return [
                Step(f"read{i}", frozenset({"data" if i == last else f"read{i}"}), timeout, index=i)
                for i in range(len(modbus.reads))
            ]
        return [self.command_step(role) for role in self.mode.poll]

    def command_step(self, role: str) -> Step:
        """The step that sends the command of ``role`` (probe uses it for ``identify``)."""
        assert self.profile.commands is not None  # the loader ties modes to commands
        command = self.profile.commands.by_role[role]
        replies = frozenset(f.name for f in self.profile.frames if not f.is_reading)
        awaits: frozenset[str] = frozenset()
        if command.reply is not None:
            awaits = replies
        elif command.reply_frame is not None:
            awaits = frozenset({command.reply_frame})
            if command.empty is not None or command.refused is not None:
                awaits |= replies
        return Step(role, awaits, self.profile.polling.reply_timeout, role in WAKING_ROLES)

    def payload(self, step: Step) -> bytes:
        """The bytes to write for ``step`` (for Modbus, this also tells the decoder what comes)."""
        if step.index >= 0:
            request = getattr(self.decoder, "request", None)
            assert request is not None, "a Modbus step needs the Modbus decoder"
            data: bytes = request(step.index)
            return data
        if step.name not in self._payloads:
            assert self.profile.commands is not None
            self._payloads[step.name] = self._with_param(self.profile.commands.by_role[step.name])
        return self._payloads[step.name]

    def _with_param(self, command: Command) -> bytes:
        param = command.param
        commands = self.profile.commands
        if param is None or commands is None:
            return command.send
        value = self.params.get(param.name, param.default)
        start = command.send.find(commands.framing.start)
        prefix, wire = command.send[:start], command.send[start:]
        frame = bytearray(unseal(commands.framing, wire))
        frame[param.offset : param.offset + param.type.size] = param.type.pack(value)
        return prefix + seal(commands.framing, commands.checksum, bytes(frame))

    # -- events ----------------------------------------------------------------

    def answers(self, step: Step, event: Event) -> bool:
        """Whether ``event`` is the device's answer to ``step`` (a refused start ends warm-up)."""
        if not isinstance(event, Decoded | Reply) or event.frame not in step.awaits:
            return False
        commands = self.profile.commands
        command = commands.by_role.get(step.name) if commands and step.index < 0 else None
        if step.wakes and command is not None and event.raw == command.refused:
            self._woke_at = None  # already running: nothing to warm up
        return True

    def sent(self, step: Step, now: float) -> None:
        """``step`` was written at ``now``; a wake-up or start begins the warm-up."""
        if step.wakes:
            self._woke_at = now
            self._discarded = 0

    def keep(self, now: float) -> bool:
        """Whether a reading decoded at ``now`` is past the warm-up (else it is discarded)."""
        if self._woke_at is None:
            return True
        if now - self._woke_at < self.warmup_s or self._discarded < self.warmup_readings:
            self._discarded += 1
            return False
        self._woke_at = None
        return True
