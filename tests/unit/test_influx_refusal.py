"""InfluxDB 1.x's refusals read into what was refused: the answers as influxd 1.6 gave them."""

from __future__ import annotations

import pytest

from collector.lineprotocol import Point
from collector.refusals import named
from collector.writers.errors import UNNAMED, Refusal, RefusalKind
from collector.writers.influxdb_v1.refusal import parse_refusal

CONFLICT = ('{"error":"partial write: field type conflict: input field \\"pm2_5_ugm3\\" on '
            'measurement \\"particulate\\" is type string, already exists as type float '
            'dropped=5000"}\n')


@pytest.mark.parametrize(("body", "expected"), [
    (CONFLICT, Refusal(RefusalKind.FIELD_TYPE, 5000, "particulate", "pm2_5_ugm3", "string")),
    ('{"error":"partial write: field type conflict: input field \\"f\\" on measurement \\"p\\" '
     'is type integer, already exists as type float dropped=1"}',
     Refusal(RefusalKind.FIELD_TYPE, 1, "p", "f", "integer")),
    ('{"error":"partial write: points beyond retention policy dropped=2"}\n',
     Refusal(RefusalKind.RETENTION, 2)),
    ('{"error":"partial write: max-series-per-database limit exceeded: (20) dropped=30"}\n',
     Refusal(RefusalKind.SERIES_LIMIT, 30)),
    ('{"error":"partial write: max-values-per-tag limit exceeded (10/10): measurement=\\"r\\" '
     'tag=\\"s\\" value=\\"v\\" dropped=1"}', Refusal(RefusalKind.SERIES_LIMIT, 1)),
    # Nothing named: bisected by the pipeline.
    ('{"error":"field type conflict"}\n', UNNAMED),
    ('{"error":"partial write: unable to parse \'p,s=a f= 1\': missing field value dropped=0"}',
     UNNAMED),
    ('{"error":"partial write: points beyond retention policy dropped=0"}', UNNAMED),
    ("<html>bad gateway</html>", UNNAMED),
    ('{"error": 5}', UNNAMED),
    ("", UNNAMED),
])
def test_answers_are_read(body: str, expected: Refusal) -> None:
    assert parse_refusal(body) == expected


def pt(measurement: str, value: object, t: int = 1) -> tuple[int, Point]:
    return (0, Point(measurement, {}, {"f": value}, t))  # type: ignore[dict-item]


def test_a_conflict_names_the_points_of_its_type_only() -> None:
    items = [pt("p", "x"), pt("p", 1.5), pt("q", "x"), pt("p", True), pt("p", "y")]
    r = Refusal(RefusalKind.FIELD_TYPE, 3, "p", "f", "string")
    assert named(items, r) == [0, 4]
    # More matches than the answer dropped: the write spanned shards that disagree.
    assert named(items, Refusal(RefusalKind.FIELD_TYPE, 1, "p", "f", "string")) is None
    assert named(items, Refusal(RefusalKind.FIELD_TYPE, 3, "p", "g", "string")) is None


def test_retention_names_the_oldest_unless_a_tie_blurs_the_cut() -> None:
    items = [pt("p", 1.0, 30), pt("p", 1.0, 10), pt("p", 1.0, 20)]
    assert named(items, Refusal(RefusalKind.RETENTION, 2)) == [1, 2]
    assert named(items, Refusal(RefusalKind.RETENTION, 4)) is None
    tied = [pt("p", 1.0, 10), pt("p", 2.0, 10)]
    assert named(tied, Refusal(RefusalKind.RETENTION, 1)) is None
    assert named(tied, Refusal(RefusalKind.RETENTION, 2)) == [0, 1]
