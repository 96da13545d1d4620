"""What both fuzz suites do with a byte stream: feed it in pieces, and check every byte of it
is accounted for by exactly one event."""

from __future__ import annotations

import itertools

from edge_agent.codec import make_decoder
from edge_agent.decoding import (
    Decoded,
    Event,
    FrameRejected,
    Profile,
    Reply,
    Skipped,
    StreamDecoder,
)


def feed(profile: Profile, reads: list[bytes]) -> tuple[list[Event], StreamDecoder]:
    """Every event of the stream fed as ``reads`` then its end; the buffer stays bounded."""
    decoder = make_decoder(profile)
    events: list[Event] = []
    for data in [*reads, b""]:
        decoder.receive_data(data)
        events.extend(decoder.events())
        undecided = decoder.stats.bytes_received - decoder.offset
        assert undecided < decoder.buffer_limit or not data
    return events, decoder


def cut(stream: bytes, points: list[int]) -> list[bytes]:
    """The stream split at the given points (taken modulo its length)."""
    edges = sorted({0, len(stream), *(p % (len(stream) + 1) for p in points)})
    return [stream[a:b] for a, b in itertools.pairwise(edges)]


def merged(events: list[Event]) -> list[Event]:
    """Adjacent Skipped runs merged: how garbage splits into events depends on the reads."""
    out: list[Event] = []
    for event in events:
        last = out[-1] if out else None
        if isinstance(event, Skipped) and isinstance(last, Skipped):
            out[-1] = Skipped(last.offset, last.count + event.count)
        else:
            out.append(event)
    return out


def check_accounting(events: list[Event], total: int) -> None:
    """Events tile the stream: each starts where the last ended, and together they cover it."""
    covered = 0
    for event in events:
        assert isinstance(event, Decoded | Reply | FrameRejected | Skipped), event
        assert event.offset == covered
        if isinstance(event, Decoded | Reply):
            covered += len(event.raw)
        else:
            covered += event.count if isinstance(event, Skipped) else 1
    assert covered == total
