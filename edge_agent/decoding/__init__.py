"""Sans-IO frame decoding: firmware profiles in, readings and resync events out.

The public face of the package; the modules behind it are small and named for
their job (``events``, ``errors``, ``profile``, ``loader``, ``checksums``,
``decoder``). Nothing here opens a port, reads a clock or starts a thread.

    profile = load_profile("firmware_profiles/pms5003.yaml")
    decoder = FrameDecoder(profile)
    decoder.receive_data(chunk)          # b"" at the end of the stream
    for event in decoder.events():       # Decoded | Rejected | Skipped
        ...
"""

from edge_agent.decoding.checksums import CHECKSUMS, ChecksumAlgorithm
from edge_agent.decoding.decoder import DecoderStats, FrameDecoder
from edge_agent.decoding.errors import DecodingError, LocalProtocolError, ProfileError
from edge_agent.decoding.events import (
    END_OF_STREAM,
    NEED_DATA,
    Decoded,
    Event,
    Reason,
    Rejected,
    Signal,
    Skipped,
)
from edge_agent.decoding.loader import load_profile, load_profiles, parse_profile
from edge_agent.decoding.profile import (
    MAX_FRAME_BYTES,
    UNITS,
    VALUE_TYPES,
    ChecksumSpec,
    Escape,
    FieldSpec,
    Framing,
    LengthField,
    Profile,
    SerialSettings,
    ValueType,
)

__all__ = [
    "CHECKSUMS",
    "END_OF_STREAM",
    "MAX_FRAME_BYTES",
    "NEED_DATA",
    "UNITS",
    "VALUE_TYPES",
    "ChecksumAlgorithm",
    "ChecksumSpec",
    "Decoded",
    "DecoderStats",
    "DecodingError",
    "Escape",
    "Event",
    "FieldSpec",
    "FrameDecoder",
    "Framing",
    "LengthField",
    "LocalProtocolError",
    "Profile",
    "ProfileError",
    "Reason",
    "Rejected",
    "SerialSettings",
    "Signal",
    "Skipped",
    "ValueType",
    "load_profile",
    "load_profiles",
    "parse_profile",
]
