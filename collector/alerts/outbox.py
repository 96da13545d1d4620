"""The notification outbox of ``lease: etcd``: what is written ahead, pending, settled (sans-IO).

Each transition a leader notifies goes through etcd before any notifier sees
it (docs/alerts.md, "Several collectors"): the leader writes its new alert
state and the transition as pending delivery for each notifier that takes it,
in one transaction fenced by its leader key, and only once that write
succeeded hands the transition to the notifiers. A notifier's outcome (sent,
or given up and dead-lettered) settles its entry, and the next write leaves
it out. A new leader reads the outbox with the state it restores and delivers
what is still pending there, with the same event ids.

This module only keeps the books, and encodes the outbox's value; the runner's
shell (write_ahead.py) does the etcd I/O. One write is in flight at a time;
each write carries the whole outbox etcd is to hold after it:

- ``stage``: a new transition for a notifier, to be written ahead; refused
  (``outbox_full``) past MAX_PENDING entries or MAX_OUTBOX_JSON_BYTES.
- ``take``: the next write (or None), ``written``: it succeeded, here are the
  entries now free to go to their notifiers; ``failed``: no answer, take it
  again; ``fenced``: etcd refused our token, nothing staged ever goes out.
- ``settle``: a notifier is done with an entry; ``restore``: a new leader's
  outbox as read from etcd, all of it due again.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from collector.alerts.errors import AlertError
from collector.alerts.events import AlertEvent

FORMAT = 1
# Entries (a transition for one notifier) written ahead and not yet settled. A
# notifier that is down keeps its entries pending; past this the next transition
# is refused for that notifier (dead-lettered, counted as ``outbox_full``) rather
# than growing the value etcd holds. Each delivery queue holds 1,000 by default.
MAX_PENDING = 500
# The outbox's JSON before compression. It goes into etcd in the same
# transaction as the state (handover.MAX_STATE_BYTES, 960,000 bytes): both in
# base64 are (960,000 + 160,000) * 4/3 = 1,493,334 bytes, under etcd's default
# --max-request-bytes of 1,572,864 with the transaction's own few hundred bytes.
# zlib never grows its input by more than 0.03% and a few bytes: the JSON
# bound is also the compressed value's bound, within MAX_OUTBOX_BYTES.
MAX_OUTBOX_JSON_BYTES = 159_000
MAX_OUTBOX_BYTES = 160_000
FULL = "outbox_full"
# The entry of a transition's ``alerts`` point, settled once the collector's writer took it:
# a successor writes the points of a dead leader that were not yet in InfluxDB. Not a
# notifier's name (those are letters, digits, - and _).
POINTS = "(points)"

Key = tuple[str, str]  # (event id, notifier name)


class OutboxError(AlertError):
    """An outbox value from etcd we cannot read (another format, torn, or not ours)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One transition pending delivery by one notifier."""

    notifier: str
    event: AlertEvent

    @property
    def key(self) -> Key:
        return (self.event.event_id, self.notifier)


@dataclass(frozen=True, slots=True)
class Write:
    """One fenced write to etcd.

    entries: the whole outbox etcd holds once this write succeeded.
    released: the entries newly written ahead, handed to their notifiers then.
    settled: the keys this write leaves out (their notifiers are done).
    with_state: the alert state goes into the same transaction (new
        transitions, or a save asked for it).
    """

    entries: tuple[Entry, ...]
    released: tuple[Entry, ...]
    settled: frozenset[Key]
    with_state: bool


@dataclass
class OutboxStats:
    staged: int = 0  # transitions (per notifier) accepted for writing ahead
    refused_full: int = 0  # refused: the outbox was full (reason outbox_full)
    written: int = 0  # written ahead and handed to their notifiers
    settled: int = 0  # settled by their notifiers (sent, or given up)
    writes: int = 0  # successful fenced writes
    write_errors: int = 0  # writes with no answer (taken again)
    fenced: int = 0  # entries dropped because etcd refused our token: never sent by us
    restored: int = 0  # entries a takeover found pending and delivered again


def _size(entry: Entry) -> int:
    return len(json.dumps(entry_doc(entry), ensure_ascii=False).encode()) + 1


class Outbox:
    def __init__(self, limit: int = MAX_PENDING,
                 limit_bytes: int = MAX_OUTBOX_JSON_BYTES) -> None:
        self.limit, self.limit_bytes = limit, limit_bytes
        self.stats = OutboxStats()
        self._durable: dict[Key, Entry] = {}  # what etcd holds (as of our last write)
        self._staged: dict[Key, Entry] = {}  # accepted, not yet written
        self._settled: set[Key] = set()  # durable entries whose notifiers are done
        self._sizes: dict[Key, int] = {}
        self._state_due = False
        self._inflight: Write | None = None

    @property
    def pending(self) -> int:
        """Entries written ahead or staged, not yet settled in etcd."""
        return len(self._durable.keys() | self._staged.keys())

    def _bytes(self) -> int:
        return sum(self._sizes.values())

    def stage(self, notifier: str, event: AlertEvent) -> bool:
        """Accept a transition for notifier; False (counted, reason FULL) when full."""
        entry = Entry(notifier, event)
        size = _size(entry)
        if self.pending >= self.limit or self._bytes() + size > self.limit_bytes:
            self.stats.refused_full += 1
            return False
        self._staged[entry.key] = entry
        self._sizes[entry.key] = size
        self.stats.staged += 1
        return True

    def state_due(self) -> None:
        """Write the alert state at the next write even without new transitions."""
        self._state_due = True

    def settle(self, notifier: str, event_id: str) -> None:
        """The notifier is done with it; also before it was written (a point can be)."""
        key = (event_id, notifier)
        if (key in self._durable or key in self._staged) and key not in self._settled:
            self._settled.add(key)
            self.stats.settled += 1

    def due(self) -> bool:
        """Is there anything to write (and no write in flight)?"""
        return self._inflight is None and bool(self._staged or self._settled or self._state_due)

    def take(self) -> Write | None:
        if not self.due():
            return None
        settled = frozenset(self._settled)
        kept = [e for k, e in self._durable.items() if k not in settled]
        released = tuple(self._staged.values())
        new = [e for e in released if e.key not in settled]
        write = Write(tuple(kept + new), released, settled, bool(released) or self._state_due)
        self._state_due = False
        self._inflight = write
        return write

    def written(self, write: Write) -> tuple[Entry, ...]:
        """The write succeeded: its new entries are free to go to their notifiers."""
        assert write is self._inflight
        self._inflight = None
        self._durable = {e.key: e for e in write.entries}
        for e in write.released:
            self._staged.pop(e.key, None)
        self._settled -= write.settled
        self._settled &= self._durable.keys() | self._staged.keys()
        self._sizes = {k: s for k, s in self._sizes.items()
                       if k in self._durable or k in self._staged}
        self.stats.writes += 1
        self.stats.written += len(write.released)
        return write.released

    def failed(self, write: Write) -> None:
        """No answer: nothing is known to be written; the next take() tries again."""
        assert write is self._inflight
        self._inflight = None
        self._state_due = self._state_due or write.with_state
        self.stats.write_errors += 1

    def fenced(self, write: Write | None = None) -> int:
        """etcd refused our token (or we lead no more): drop everything, return how many
        staged entries will never be sent by us (the next leader has the durable ones)."""
        if write is not None:
            assert write is self._inflight
        dropped = len(self._staged)
        self.stats.fenced += dropped
        self.clear()
        return dropped

    def clear(self) -> None:
        self._durable, self._staged, self._settled, self._sizes = {}, {}, set(), {}
        self._state_due = False
        self._inflight = None

    def restore(self, entries: Iterable[Entry]) -> tuple[Entry, ...]:
        """A new leader's outbox as read from etcd: all of it is due again."""
        self.clear()
        self._durable = {e.key: e for e in entries}
        self._sizes = {k: _size(e) for k, e in self._durable.items()}
        self.stats.restored += len(self._durable)
        return tuple(self._durable.values())


# -- the value in etcd -------------------------------------------------------------------
def event_doc(event: AlertEvent) -> dict[str, Any]:
    doc = {f.name: getattr(event, f.name) for f in fields(AlertEvent)}
    doc["scope"] = dict(event.scope)
    return doc


def entry_doc(entry: Entry) -> dict[str, Any]:
    return {"notifier": entry.notifier, "event": event_doc(entry.event)}


_TYPES: Mapping[str, tuple[type, ...]] = {
    f.name: (float, int) if f.name == "value" else
    (bool,) if f.type == "bool" else (int,) if f.type == "int" else
    (str,) if f.type == "str" else (dict,) for f in fields(AlertEvent)}


def _event(doc: Any) -> AlertEvent:
    if not isinstance(doc, dict) or set(doc) != set(_TYPES):
        raise OutboxError("an outbox entry's event lacks fields or has unknown ones")
    for name, kinds in _TYPES.items():
        value = doc[name]
        if not isinstance(value, kinds) or (kinds == (int,) and isinstance(value, bool)):
            raise OutboxError(f"an outbox entry's {name} is not a {kinds[0].__name__}")
    scope = doc["scope"]
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in scope.items()):
        raise OutboxError("an outbox entry's scope is not text to text")
    return AlertEvent(**{**doc, "value": float(doc["value"])})


def encode(entries: Iterable[Entry]) -> bytes:
    body = {"format": FORMAT, "entries": [entry_doc(e) for e in entries]}
    return zlib.compress(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode())


def decode(payload: bytes) -> tuple[Entry, ...]:
    """The outbox's entries; raises OutboxError, never anything else."""
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(payload, MAX_OUTBOX_JSON_BYTES * 2)
        doc = json.loads(text)
    except (zlib.error, ValueError, RecursionError) as exc:
        raise OutboxError(f"outbox unreadable: {exc}") from None
    if not inflater.eof:
        raise OutboxError("outbox unreadable: incomplete, or inflates past its limit")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise OutboxError(f"not a format {FORMAT} outbox")
    raw = doc.get("entries")
    if not isinstance(raw, list):
        raise OutboxError("an outbox without entries")
    out = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("notifier"), str):
            raise OutboxError("an outbox entry without a notifier")
        out.append(Entry(item["notifier"], _event(item.get("event"))))
    return tuple(out)


def restamped(entry: Entry, token: int) -> AlertEvent:
    """The entry's event as a new leader sends it: the same event id, the new leader's token."""
    return replace(entry.event, fencing_token=token)
