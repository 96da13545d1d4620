"""What a firmware profile says, as frozen values.

A profile (``firmware_profiles/<model>.yaml``, read by ``loader.py``) describes
one sensor model: serial settings, how its frames are cut (``Framing``) and
checked (``ChecksumSpec``), the kinds of frame it sends (``FrameSpec``: readings
and replies, each with its ``FieldSpec`` list), the commands a gateway sends it
(``Commands``), how it is polled (``Polling``) and, for Modbus RTU slaves, the
register map (``ModbusMap``, in edge_agent/modbus/regmap.py). The decoder, the
poller and the simulator interpret it; none of them names a model.

The words a profile may use (value types, units, command roles) and how its
offsets resolve are in vocabulary.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from edge_agent.decoding.checksums import ChecksumAlgorithm
from edge_agent.decoding.field import FieldSpec
from edge_agent.decoding.vocabulary import ValueType, resolve
from edge_agent.modbus.regmap import ModbusMap

__all__ = [
    "DEFAULT_LAYOUT",
    "MAX_FRAME_BYTES",
    "ChecksumSpec",
    "Command",
    "CommandParam",
    "Commands",
    "Escape",
    "FieldSpec",
    "FrameSpec",
    "Framing",
    "Layout",
    "LengthField",
    "Mode",
    "Polling",
    "Profile",
    "SerialSettings",
]

# The largest frame any profile may declare (max_length), in unstuffed bytes.
# Precedents: a Modbus RTU ADU is at most 256 bytes ("MODBUS over Serial Line
# Specification and Implementation Guide V1.02", section 2.5.1.1); a Sensirion
# SHDLC frame carries at most 255 data bytes plus 7 framing bytes (SPS30
# datasheet, section 5.3). Plantower frames are 32 bytes, Nova SDS011 frames 10.
# The decoder's buffer holds at most one frame (twice this when byte-stuffed)
# plus one read, so this constant also bounds its memory.
MAX_FRAME_BYTES = 1024


@dataclass(frozen=True, slots=True)
class SerialSettings:
    """Port settings; ``parity`` is one of none, even, odd, mark, space."""

    baudrate: int
    bytesize: int
    parity: str
    stopbits: float


@dataclass(frozen=True, slots=True)
class LengthField:
    """A length carried in the frame: total frame length = value + ``add``."""

    offset: int
    type: ValueType
    add: int


@dataclass(frozen=True, slots=True)
class Escape:
    """Byte stuffing (HDLC style): a byte in ``escaped`` is sent as ``byte``, ``b ^ xor``.

    Stuffing applies to everything between the start and the end marker; offsets,
    lengths and checksums in a profile always refer to the unstuffed frame.
    """

    byte: int
    xor: int
    escaped: frozenset[int]

    def stuff(self, data: bytes) -> bytes:
        out = bytearray()
        for value in data:
            if value in self.escaped:
                out += bytes((self.byte, value ^ self.xor))
            else:
                out.append(value)
        return bytes(out)


@dataclass(frozen=True, slots=True)
class Framing:
    """Where a frame starts, how long it is and how it ends.

    At most one of ``length`` (fixed size) and ``length_field`` is set; with
    neither, the frame is *delimited*: it ends at the first ``end`` marker (text
    lines). ``lengths`` is the set of total lengths the frame kinds declare, when
    every kind declares one: any other length is ``bad_length`` at once.
    """

    start: bytes
    end: bytes
    length: int | None
    length_field: LengthField | None
    min_length: int
    max_length: int
    escape: Escape | None
    lengths: frozenset[int] | None = None

    @property
    def delimited(self) -> bool:
        return self.length is None and self.length_field is None

    @property
    def max_raw_length(self) -> int:
        """The most bytes one frame can occupy on the wire (stuffing can double the body)."""
        if self.escape is None:
            return self.max_length
        markers = len(self.start) + len(self.end)
        return markers + 2 * (self.max_length - markers)

    @property
    def allowed(self) -> frozenset[int] | range:
        """Every total length a frame may have: the declared set, else min..max."""
        if self.lengths is not None:
            return self.lengths
        return range(self.min_length, self.max_length + 1)

    def accepts(self, total: int) -> bool:
        return total in self.allowed


@dataclass(frozen=True, slots=True)
class ChecksumSpec:
    """Checksum ``algorithm`` over frame bytes [start, end), stored at ``offset`` as ``type``."""

    algorithm: ChecksumAlgorithm
    start: int
    end: int
    offset: int
    type: ValueType

    def span(self, length: int) -> tuple[int, int, int]:
        """In a ``length``-byte frame: the covered bytes [first, stop) and where it is stored."""
        return resolve(self.start, length), resolve(self.end, length), resolve(self.offset, length)

    def compute(self, frame: bytes) -> int:
        first, stop, _ = self.span(len(frame))
        return self.algorithm.compute(frame[first:stop])


# The name of the layout a profile's top-level framing and checksum make.
DEFAULT_LAYOUT = "default"


@dataclass(frozen=True, slots=True)
class Layout:
    """One way a device frames what it sends: its framing and its checksum (or none).

    Most devices have one, ``default`` (the profile's top-level ``framing`` and
    ``checksum``). Some answer a query in another shape than they stream in
    (Winsen ZH03B: 24-byte ``42 4D`` frames, 9-byte ``FF 86`` answers), or
    acknowledge with bare bytes (Honeywell HPMA115: ``A5 A5``): each shape is a
    layout with its own start marker, and frame kinds name the one they use.
    """

    name: str
    framing: Framing
    checksum: ChecksumSpec | None


@dataclass(frozen=True, slots=True)
class FrameSpec:
    """One kind of frame a device sends: a reading, or a reply to a command.

    Attributes:
        name: how commands and events refer to it (``data`` when a profile has
            a single top-level ``fields`` list).
        kind: ``reading`` (its fields are stored) or ``reply`` (an answer to a
            command, reported as a ``Reply`` event).
        match: (offset, bytes) that identify this kind in an intact frame.
        length: the total (unstuffed) length of this kind, if fixed.
        format: ``binary``, ``key_value`` or ``csv``.
        fields: the values it carries.
        template: bytes the encoder starts from (reserved words, device ids).
        separator / assign: text formats: between items, and between key and value.
        layout: the ``Layout`` its frames are cut and checked by (``default``:
            the profile's top-level framing and checksum).
    """

    name: str
    kind: str
    match: tuple[int, bytes] | None
    length: int | None
    format: str
    fields: tuple[FieldSpec, ...]
    template: bytes | None = None
    separator: str = ","
    assign: str = "="
    layout: str = "default"

    @property
    def is_reading(self) -> bool:
        return self.kind == "reading"


@dataclass(frozen=True, slots=True)
class CommandParam:
    """A value the gateway writes into a command (and the device echoes in its reply)."""

    name: str
    offset: int
    type: ValueType
    valid: tuple[int, int]
    default: int
    reply_offset: int | None


@dataclass(frozen=True, slots=True)
class Command:
    """Bytes the gateway sends for one role, and what the device answers.

    ``send`` and ``reply`` are wire bytes (stuffed, checksummed) exactly as the
    vendor's document gives them. ``reply_frame`` names a frame kind instead,
    when the answer carries live values (a query). ``empty`` is what a device
    answers to a query when it has no new reading; ``refused`` what it answers
    when the command is not allowed in its state (start while measuring).
    """

    role: str
    send: bytes
    reply: bytes | None = None
    reply_frame: str | None = None
    empty: bytes | None = None
    param: CommandParam | None = None
    refused: bytes | None = None

    @property
    def answered(self) -> bool:
        return self.reply is not None or self.reply_frame is not None


@dataclass(frozen=True, slots=True)
class Commands:
    """How the device reads what it is sent, and the commands by role."""

    framing: Framing
    checksum: ChecksumSpec | None
    by_role: Mapping[str, Command]


@dataclass(frozen=True, slots=True)
class Mode:
    """One way to run a device: commands at start, commands each poll, and how often."""

    name: str
    start: tuple[str, ...]
    poll: tuple[str, ...]
    interval: float | None


@dataclass(frozen=True, slots=True)
class Polling:
    """The polling schedule and the warm-up after a wake.

    Attributes:
        modes: by name; ``default`` is used unless a sensor's config says.
        reply_timeout: seconds to wait for an answered command's reply.
        warmup_readings: readings discarded after a wake or start, at least.
        warmup_s: seconds after a wake or start during which readings are discarded.
        power_up: the device's state after power-up (``active``, ``passive``,
            ``idle`` = awake but not measuring, ``asleep``), for the simulator.
        recover: command roles sent when the device has been silent for
            ``silent_s`` (e.g. [wake]: it was left asleep); the mode's start
            commands follow them.
        silent_s: seconds without a frame after which the device counts as silent.
    """

    modes: Mapping[str, Mode]
    default: str
    reply_timeout: float = 1.0
    warmup_readings: int = 0
    warmup_s: float = 0.0
    power_up: str = "active"
    recover: tuple[str, ...] = ()
    silent_s: float = 10.0


STREAMING = Polling(
    modes=MappingProxyType({"active": Mode("active", (), (), None)}), default="active"
)


@dataclass(frozen=True, slots=True)
class Profile:
    """A sensor model's whole wire description, as loaded from its YAML file."""

    model: str
    vendor: str
    datasheet: str
    measurement: str
    serial: SerialSettings
    framing: Framing | None
    checksum: ChecksumSpec | None
    frames: tuple[FrameSpec, ...]
    source: str = ""
    protocol: str = "frames"
    commands: Commands | None = None
    polling: Polling = STREAMING
    modbus: ModbusMap | None = None
    layouts: tuple[Layout, ...] = ()

    @property
    def all_layouts(self) -> tuple[Layout, ...]:
        """Every layout, the default (top-level framing and checksum) first."""
        if self.layouts:
            return self.layouts
        if self.framing is None:
            return ()
        return (Layout(DEFAULT_LAYOUT, self.framing, self.checksum),)

    def layout_of(self, frame: FrameSpec) -> Layout:
        """The layout ``frame``'s kind is cut and checked by."""
        for layout in self.all_layouts:
            if layout.name == frame.layout:
                return layout
        raise KeyError(frame.layout)

    def layout_starting(self, data: bytes) -> Layout | None:
        """The layout whose start marker ``data`` begins with (markers are prefix-free)."""
        for layout in self.all_layouts:
            if data.startswith(layout.framing.start):
                return layout
        return None

    @property
    def reading_frames(self) -> tuple[FrameSpec, ...]:
        return tuple(frame for frame in self.frames if frame.is_reading)

    @property
    def fields(self) -> tuple[FieldSpec, ...]:
        """The fields of the first reading frame kind (the only one, for most models)."""
        readings = self.reading_frames
        return readings[0].fields if readings else ()

    def frame(self, name: str) -> FrameSpec:
        for frame in self.frames:
            if frame.name == name:
                return frame
        raise KeyError(name)

    @property
    def measurements(self) -> tuple[str, ...]:
        """Every measurement this profile's readings go to, in order of first use."""
        seen: dict[str, None] = {}
        for frame in self.reading_frames:
            for spec in frame.fields:
                seen[spec.measurement or self.measurement] = None
        return tuple(seen)
