"""``edge-agent probe PORT``: which sensor is on this port? Listen, then ask, then say.

For each serial setting the shipped profiles use (9600 8N1 first, as most
sensors), the probe opens the port and:

1. listens for ``--listen`` seconds, feeding every byte to a decoder of every
   profile with that setting (a sensor in active mode is found here, and
   nothing is sent to it);
2. if no profile decoded a reading, asks: for each profile, its ``identify``
   command, the start commands of its polling mode and one poll (a query, or
   the Modbus reads), each followed by up to ``reply_timeout`` of listening
   (less when an answer comes). Bytes already sent for another profile (the
   Plantower family shares its commands) are not sent twice. Every answer is
   fed to every decoder again.

3. if what was heard fits several profiles equally well (a 42 4D frame with a
   16-bit sum is a Plantower's, a Winsen ZH06-I's or a Honeywell HPMA115's),
   asks each of those in its own protocol, as in 2., and notes per profile
   which of its questions that expect an answer got none. An answer is a frame
   of a kind the question awaits and the listening did not already bring (a
   streamed reading answers nothing). A device answers its own protocol: a
   profile whose questions went unanswered while another's were answered is
   not this device's.

Evidence per profile: questions unanswered, whether identity registers named
the model (Modbus), readings in range (a ZH03B profile reads an MH-Z19B answer,
but out of its range), readings and replies decoded, frames with a good checksum,
damaged frames, and the first reading. A profile matches when it decoded at
least one reading or reply. Profiles with the same evidence are wire-identical
for this device (a PMS5003, PMS7003 and PMSA003 send the same bytes and answer
the same commands) and are reported together: the probe cannot, and does not
pretend to, tell them apart.

The probe may leave a sensor in a different mode (e.g. passive after a
query); the agent sets its own mode whenever it opens the port.
Exit code: 0 when a profile matched, 1 when none did, 2 when the port could
not be opened.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import serial

from edge_agent.codec import StreamDecoder, make_decoder
from edge_agent.decoding import Decoded, FrameRejected, Profile, Reply, SerialSettings
from edge_agent.polling import Poller, Step

__all__ = ["Evidence", "ProbeResult", "probe"]

INTACT = ("not_available", "unknown_frame", "bad_value", "wrong_device", "modbus_exception",
          "unexpected_reply")  # rejected, but the checksum (or CRC) passed
_PARITY = {"none": serial.PARITY_NONE, "even": serial.PARITY_EVEN, "odd": serial.PARITY_ODD,
           "mark": serial.PARITY_MARK, "space": serial.PARITY_SPACE}


@dataclass
class Evidence:
    """What one profile's decoder made of everything the port said."""

    model: str
    readings: int = 0
    replies: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    bytes_seen: int = 0
    first_reading: dict[str, dict[str, Any]] | None = None
    asked: list[str] = field(default_factory=list)
    unanswered: int = 0  # questions in the profile's protocol that got no answer
    flagged: int = 0  # readings with a value outside its datasheet range
    identified: bool = False  # a reading whose identity registers named the model
    kinds: set[str] = field(default_factory=set)  # frame kinds decoded or replied so far
    window: set[str] = field(default_factory=set)  # the same, since the last question

    @property
    def checksums_passed(self) -> int:
        return self.readings + self.replies + sum(self.rejected[r] for r in INTACT)

    @property
    def damaged(self) -> int:
        return sum(n for r, n in self.rejected.items() if r not in INTACT)

    @property
    def matched(self) -> bool:
        return self.readings > 0 or self.replies > 0

    def key(self) -> tuple[int, bool, int, int, int, int, int]:
        """Better evidence sorts higher: a reading in range counts before one flagged."""
        return (-self.unanswered, self.identified, self.readings - self.flagged, self.readings,
                self.replies, self.checksums_passed, -self.damaged)

    def as_dict(self) -> dict[str, Any]:
        return {
            "readings": self.readings, "replies": self.replies,
            "checksums_passed": self.checksums_passed, "damaged": self.damaged,
            "rejected": dict(self.rejected), "bytes": self.bytes_seen,
            "asked": self.asked, "unanswered": self.unanswered, "flagged": self.flagged,
            "identified": self.identified, "reading": self.first_reading,
        }


@dataclass
class ProbeResult:
    """``matched``: the profiles with the best evidence (several when wire-identical)."""

    port: str
    matched: list[str]
    evidence: dict[str, Evidence]
    settings: dict[str, str]  # model -> the serial setting it was tried at

    @property
    def model(self) -> str | None:
        """The one profile that matched, or None (nothing, or several wire-identical)."""
        return self.matched[0] if len(self.matched) == 1 else None

    @property
    def exit_code(self) -> int:
        return 0 if self.matched else 1

    def as_dict(self, profiles: dict[str, Profile]) -> dict[str, Any]:
        best = self.evidence.get(self.matched[0]) if self.matched else None
        return {
            "port": self.port,
            "matched": self.matched,
            "model": self.model,
            "wire_identical": len(self.matched) > 1,
            "vendor": profiles[self.matched[0]].vendor if self.matched else None,
            "reading": best.first_reading if best else None,
            "candidates": {
                m: {**e.as_dict(), "serial": self.settings.get(m)}
                for m, e in sorted(self.evidence.items(), key=lambda i: i[1].key(), reverse=True)
            },
        }


class _Listener:
    """Feeds what the port says to every candidate's decoder and keeps the evidence."""

    def __init__(self, profiles: list[Profile], slave: int | None) -> None:
        self.decoders: dict[str, StreamDecoder] = {}
        self.evidence: dict[str, Evidence] = {}
        for profile in profiles:
            self.decoders[profile.model] = make_decoder(
                profile, slave=slave if profile.protocol == "modbus_rtu" else None
            )
            self.evidence[profile.model] = Evidence(profile.model)

    def mark(self) -> None:
        """A question is about to go out: answers are counted from here."""
        for evidence in self.evidence.values():
            evidence.window = set()

    def heard(self) -> int:
        """Readings and replies decoded so far, by all decoders together."""
        return sum(e.readings + e.replies for e in self.evidence.values())

    def feed(self, data: bytes) -> None:
        for model, decoder in self.decoders.items():
            evidence = self.evidence[model]
            evidence.bytes_seen += len(data)
            for start in range(0, len(data), 64):
                decoder.receive_data(data[start : start + 64])
                for event in decoder.events():
                    self._note(evidence, decoder.profile, event)

    @staticmethod
    def _note(evidence: Evidence, profile: Profile, event: object) -> None:
        if isinstance(event, Decoded | Reply):
            evidence.kinds.add(event.frame)
            evidence.window.add(event.frame)
        if isinstance(event, Decoded):
            evidence.readings += 1
            evidence.flagged += bool(event.flagged)
            modbus = profile.modbus
            evidence.identified = evidence.identified or bool(modbus and modbus.identity)
            if evidence.first_reading is None:
                units = {s.name: s.unit for f in profile.frames for s in f.fields}
                evidence.first_reading = {
                    m: {k: {"value": v, "unit": units.get(k, "")} for k, v in fields.items()}
                    for m, fields in event.readings
                }
        elif isinstance(event, Reply):
            evidence.replies += 1
        elif isinstance(event, FrameRejected):
            evidence.rejected[str(event.reason)] += 1


def _setting(s: SerialSettings) -> tuple[int, int, str, float]:
    return (s.baudrate, s.bytesize, s.parity, s.stopbits)


def _label(setting: tuple[int, int, str, float]) -> str:
    baud, bits, parity, stop = setting
    return f"{baud} {bits}{parity[0].upper()}{stop:g}"


def _probe_steps(profile: Profile, decoder: StreamDecoder) -> list[tuple[Step, bytes]]:
    """What to send to ask ``profile``'s device for an answer: identify, start, one poll."""
    polling = profile.polling
    mode = next((m for m in polling.modes.values() if m.poll), None)
    poller = Poller(profile, decoder, mode=mode.name if mode else None)
    steps: list[Step] = []
    commands = profile.commands
    if commands is not None and "identify" in commands.by_role:
        steps.append(poller.command_step("identify"))
    if mode is not None:
        steps += [s for s in poller.start_steps() if s.name not in ("wake", "sleep")]
        steps += poller.poll_steps()
    return [(step, poller.payload(step)) for step in steps]


def probe(
    port: str,
    profiles: dict[str, Profile],
    *,
    baud: int | None = None,
    listen: float = 3.0,
    reply_timeout: float = 0.5,
    slave: int | None = None,
    opener: Callable[..., Any] = serial.Serial,
    clock: Callable[[], float] = time.monotonic,
    progress: Callable[[str], None] = lambda _: None,
) -> ProbeResult:
    """Find the profile whose device is on ``port``; ``opener`` is the pyserial seam."""
    groups: dict[tuple[int, int, str, float], list[Profile]] = {}
    for profile in profiles.values():
        setting = _setting(profile.serial)
        if baud is not None:
            setting = (baud, *setting[1:])
        groups.setdefault(setting, []).append(profile)
    order = sorted(groups, key=lambda s: (-len(groups[s]), s))
    evidence: dict[str, Evidence] = {}
    settings: dict[str, str] = {}
    for setting in order:
        members = groups[setting]
        progress(f"{_label(setting)}: listening for {listen:g} s")
        listener = _Listener(members, slave)
        baudrate, bytesize, parity, stopbits = setting
        with opener(port, baudrate=baudrate, bytesize=bytesize, parity=_PARITY[parity],
                    stopbits=stopbits, timeout=0.05) as ser:
            _read_for(ser, listen, listener, clock)
            if not any(e.readings for e in listener.evidence.values()):
                sent: set[bytes] = set()
                for profile in members:
                    decoder = make_decoder(
                        profile, slave=slave if profile.protocol == "modbus_rtu" else None
                    )
                    for step, data in _probe_steps(profile, decoder):
                        listener.evidence[profile.model].asked.append(step.name)
                        if data in sent:
                            continue  # the same bytes were sent for another profile
                        sent.add(data)
                        progress(f"{_label(setting)}: {profile.model}: {step.name}")
                        ser.write(data)
                        wait = min(step.timeout, reply_timeout) if step.awaits else 0.1
                        _read_for(ser, wait, listener, clock, answered=True)
            _settle(ser, members, listener, slave=slave, reply_timeout=reply_timeout,
                    clock=clock, progress=progress, setting=setting)
        for model, found in listener.evidence.items():
            evidence[model] = found
            settings[model] = _label(setting)
        if any(e.readings for e in listener.evidence.values()):
            break  # found at this setting: no need to disturb the port at others
    return _verdict(port, evidence, settings)


def _read_for(
    ser: Any, seconds: float, listener: _Listener, clock: Callable[[], float], *,
    answered: bool = False, until: Callable[[], bool] | None = None,
) -> None:
    """Feed what the port says for ``seconds``; stop soon after an answer.

    ``answered``: after any decoder heard something new; ``until``: once it is true.
    """
    deadline, before = clock() + seconds, listener.heard()
    while clock() < deadline:
        data = ser.read(4096)
        if data:
            listener.feed(bytes(data))
            done = until() if until is not None else answered and listener.heard() > before
            if done:
                deadline = min(deadline, clock() + 0.05)  # the rest of a split answer


def _contenders(listener: _Listener) -> list[str]:
    """The matched profiles whose evidence ties for best (several: the bytes did not decide)."""
    matched = [e for e in listener.evidence.values() if e.matched]
    if not matched:
        return []
    best = max(e.key() for e in matched)
    return [e.model for e in matched if e.key() == best]


def _answer_to(step: Step, evidence: Evidence) -> Callable[[], bool]:
    """True once ``evidence``'s decoder has heard a frame kind ``step`` awaits."""
    return lambda: bool(step.awaits & evidence.window)


def _settle(
    ser: Any, members: list[Profile], listener: _Listener, *, slave: int | None,
    reply_timeout: float, clock: Callable[[], float], progress: Callable[[str], None],
    setting: tuple[int, int, str, float],
) -> None:
    """Step 3: ask tied profiles in their own protocols; count questions left unanswered."""
    tied = set(_contenders(listener))
    if len(tied) < 2:
        return
    heard = {model: set(e.kinds) for model, e in listener.evidence.items()}
    windows: dict[bytes, dict[str, set[str]]] = {}
    for profile in (p for p in members if p.model in tied):
        decoder = make_decoder(profile, slave=slave if profile.protocol == "modbus_rtu" else None)
        evidence = listener.evidence[profile.model]
        for step, data in _probe_steps(profile, decoder):
            if data not in windows:
                progress(f"{_label(setting)}: {profile.model}: {step.name} (to tell apart)")
                listener.mark()
                ser.write(data)
                wait = min(step.timeout, reply_timeout) if step.awaits else 0.1
                _read_for(ser, wait, listener, clock, until=_answer_to(step, evidence))
                windows[data] = {m: set(e.window) for m, e in listener.evidence.items()}
            new = step.awaits - heard[profile.model]  # a streamed kind answers nothing
            if not new:
                continue
            evidence.asked.append(step.name)
            if not new & windows[data][profile.model]:
                evidence.unanswered += 1


def _verdict(port: str, evidence: dict[str, Evidence], settings: dict[str, str]) -> ProbeResult:
    matched = [e for e in evidence.values() if e.matched]
    if not matched:
        return ProbeResult(port, [], evidence, settings)
    best = max(e.key() for e in matched)
    return ProbeResult(port, sorted(e.model for e in matched if e.key() == best), evidence,
                       settings)


def describe(result: ProbeResult, profiles: dict[str, Profile]) -> Iterable[str]:
    """The verdict in plain sentences (the rich table shows the numbers)."""
    if not result.matched:
        yield f"No profile matched on {result.port}: no frame passed any profile's checksum."
        damaged = sum(e.damaged for e in result.evidence.values())
        seen = max((e.bytes_seen for e in result.evidence.values()), default=0)
        yield (f"{seen} bytes heard, {damaged} damaged frames: check wiring, baud rate,"
               " power, or add the model's profile.") if seen else "The port was silent."
        return
    first = profiles[result.matched[0]]
    setting = result.settings[result.matched[0]]
    if result.model is not None:
        yield f"{result.port}: {first.vendor} {result.model} ({setting})"
        return
    yield f"{result.port}: one of {', '.join(result.matched)} ({first.vendor}, {setting})"
    yield ("Their frames are byte-identical: the bytes cannot tell these models apart;"
           " the label on the sensor does.")
