"""Which points of a refused write a database's answer names, sans-IO.

The pipeline (collector/delivery.py) writes a group of batches as one request.
A refusal that names its points (``Refusal`` from the writer) lets it settle
them in one step: every point named is dead-lettered at once and the rest is
written again (a rewrite overwrites itself), so a write costs one request per
distinct refusal, not per refused point. A refusal that names nothing is
bisected, within a request budget.

An item is (part, point): the part is the index of the batch the point came
from, which is what is acked or answered "not written".
"""

from __future__ import annotations

from collections.abc import Sequence

from cityedge.uplink import FieldValue
from collector.lineprotocol import Point
from collector.writers.errors import Refusal, RefusalKind

Item = tuple[int, Point]


def field_type(value: FieldValue) -> str:
    """The line protocol type of a field value, in InfluxDB's words."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    return "string"


def named(items: Sequence[Item], refusal: Refusal) -> list[int] | None:
    """The positions of the items ``refusal`` names, or None when it names none for sure.

    A field type conflict names the points of its measurement whose field has the
    refused type; more of them than the answer says it dropped means the write
    spanned shards that disagree, so nothing is trusted. A retention refusal of N
    points names the N oldest (the database drops exactly those older than a
    cut-off), unless a tie at the N-th makes the cut-off ambiguous.
    """
    if refusal.kind is RefusalKind.FIELD_TYPE:
        found = [i for i, (_, p) in enumerate(items)
                 if p.measurement == refusal.measurement and refusal.field in p.fields
                 and field_type(p.fields[refusal.field]) == refusal.value_type]
        if not found or (refusal.dropped is not None and len(found) > refusal.dropped):
            return None
        return found
    if refusal.kind is RefusalKind.RETENTION:
        n = refusal.dropped or 0
        if not 0 < n <= len(items):
            return None
        order = sorted(range(len(items)), key=lambda i: items[i][1].time_ns)
        if n < len(items) and items[order[n - 1]][1].time_ns == items[order[n]][1].time_ns:
            return None
        return order[:n]
    return None


def halves(items: Sequence[Item]) -> list[list[Item]]:
    """Two halves by position (bisection of a refusal that names nothing)."""
    mid = len(items) // 2
    return [list(items[:mid]), list(items[mid:])]


def halves_by_part(items: Sequence[Item]) -> list[list[Item]] | None:
    """Two halves that keep each part whole, or None when all items are of one part."""
    parts = sorted({part for part, _ in items})
    if len(parts) < 2:
        return None
    first = set(parts[: len(parts) // 2])
    return [[it for it in items if it[0] in first], [it for it in items if it[0] not in first]]
