"""Sans-IO frame decoding: firmware profiles in, readings and resync events out.

The public face of the package; the modules behind it are small and named for
their job (``events``, ``errors``, ``profile``, ``vocabulary``, ``loader``, ``checksums``,
``decoder``, ``stream``, ``wire``). Nothing here opens a port, reads a clock or starts a thread.

    profile = load_profile("firmware_profiles/pms5003.yaml")
    decoder = FrameDecoder(profile)
    decoder.receive_data(chunk)          # b"" at the end of the stream
    for event in decoder.events():       # Decoded | Reply | FrameRejected | Skipped
        ...
"""

from edge_agent.decoding.checksums import CHECKSUMS, ChecksumAlgorithm
from edge_agent.decoding.decoder import FrameDecoder
from edge_agent.decoding.errors import DecodingError, LocalProtocolError, ProfileError
from edge_agent.decoding.events import (
    END_OF_STREAM,
    NEED_DATA,
    Decoded,
    Event,
    FieldNotes,
    FrameRejected,
    Reason,
    Reply,
    Signal,
    Skipped,
)
from edge_agent.decoding.loader import (
    ProfileScan,
    load_profile,
    load_profiles,
    parse_profile,
    scan_profiles,
)
from edge_agent.decoding.profile import (
    MAX_FRAME_BYTES,
    ChecksumSpec,
    Command,
    CommandParam,
    Commands,
    Escape,
    FieldSpec,
    FrameSpec,
    Framing,
    LengthField,
    Mode,
    Polling,
    Profile,
    SerialSettings,
)
from edge_agent.decoding.stream import DecoderStats, StreamDecoder
from edge_agent.decoding.vocabulary import COMMAND_ROLES, UNITS, VALUE_TYPES, ValueType
from edge_agent.decoding.wire import seal, unseal
from edge_agent.modbus.regmap import ModbusMap, ModbusRead

__all__ = [
    "CHECKSUMS",
    "COMMAND_ROLES",
    "END_OF_STREAM",
    "MAX_FRAME_BYTES",
    "NEED_DATA",
    "UNITS",
    "VALUE_TYPES",
    "ChecksumAlgorithm",
    "ChecksumSpec",
    "Command",
    "CommandParam",
    "Commands",
    "Decoded",
    "DecoderStats",
    "DecodingError",
    "Escape",
    "Event",
    "FieldNotes",
    "FieldSpec",
    "FrameDecoder",
    "FrameRejected",
    "FrameSpec",
    "Framing",
    "LengthField",
    "LocalProtocolError",
    "ModbusMap",
    "ModbusRead",
    "Mode",
    "Polling",
    "Profile",
    "ProfileError",
    "ProfileScan",
    "Reason",
    "Reply",
    "SerialSettings",
    "Signal",
    "Skipped",
    "StreamDecoder",
    "ValueType",
    "load_profile",
    "load_profiles",
    "parse_profile",
    "scan_profiles",
    "seal",
    "unseal",
]
