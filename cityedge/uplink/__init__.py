"""What crosses the wire between a gateway and the collector.

Both sides import this package and nothing else of each other: the reading
(``reading``), the batch and ack formats (``payload``) and the topic names
(``topics``) are defined here once, so a gateway and a collector built from
the same release always agree.
What a collector sends a gateway is sealed with the gateway's key (``seal``).
"""

from cityedge.uplink.payload import (
    FORMAT_VERSION,
    SUPPORTED_VERSIONS,
    Ack,
    Batch,
    PayloadError,
    decode_ack,
    decode_batch,
    encode_ack,
    encode_batch,
)
from cityedge.uplink.reading import (
    OUT_OF_RANGE_FIELD,
    QUALITY_TAG,
    UNASSIGNED,
    FieldValue,
    Reading,
    dump_fields,
)
from cityedge.uplink.seal import KeyRing, StaticKeyRing, derive_key
from cityedge.uplink.seqranges import SeqRanges
from cityedge.uplink.topics import Topics

__all__ = [
    "FORMAT_VERSION",
    "OUT_OF_RANGE_FIELD",
    "QUALITY_TAG",
    "SUPPORTED_VERSIONS",
    "UNASSIGNED",
    "Ack",
    "Batch",
    "FieldValue",
    "KeyRing",
    "PayloadError",
    "Reading",
    "SeqRanges",
    "StaticKeyRing",
    "Topics",
    "decode_ack",
    "decode_batch",
    "derive_key",
    "dump_fields",
    "encode_ack",
    "encode_batch",
]
