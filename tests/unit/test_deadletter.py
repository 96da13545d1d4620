"""Dead letters pinned to the byte: those ingest makes of bad readings and those the
write pipeline makes of points that cannot be written (one builder,
collector/deadletter.py, makes both). A resend must overwrite the same dead
letter, so its line may not drift."""

from __future__ import annotations

from typing import Any

import pytest

from cityedge.uplink.payload import MAX_TIME_NS
from collector.delivery import quarantined_point, refused_point
from collector.ingest import Accepted, ingest
from collector.lineprotocol import Identity, Point, encode
from tests.unit.test_ingest import EPOCH, T0, payload, reading

DL = "cityedge_deadletter"
T2 = T0 + 2
ENV = f'seq=2i,epoch="{EPOCH}"'
BS4 = "\\" * 4  # one backslash, escaped by JSON and then by line protocol
FIELDS = '\\"f\\":{\\"pm2_5_ugm3\\":12,\\"pm10_ugm3\\":20.5}'


def q(text: str) -> str:
    """A JSON string inside the raw field: its quotes escaped once more."""
    return f'\\"{text}\\"'


def raw(*, sensor: str = q("pm-1"), m: str = q("particulate"), t: str = str(T2),
        seq: int = 2, mono: int = 2, f: str = FIELDS) -> str:
    return (f'raw="{{\\"seq\\":{seq},\\"sensor\\":{sensor},\\"m\\":{m},\\"t\\":{t},'
            f'\\"boot\\":\\"b00t\\",\\"mono\\":{mono},{f}}}"')


def dead_line(bad: dict[str, Any]) -> str:
    out = ingest(payload(readings=[bad]), "gw-1")
    assert isinstance(out, Accepted), out
    (dl,) = out.dead_letters
    return encode([dl]).decode()


@pytest.mark.parametrize(("bad", "line"), [
    (reading(2, f={"x": float("inf")}),
     f'{DL},gateway=gw-1,measurement=particulate,reason=bad_value,sensor=pm-1 {ENV},'
     f'detail="x=inf is not finite",{raw(f=q("f") + ":{" + q("x") + ":Infinity}")} {T2}\n'),
    # A time the wire refuses is not the dead letter's: its seq is, as stable.
    (reading(2, t=-5),
     f'{DL},gateway=gw-1,measurement=particulate,reason=bad_time,sensor=pm-1 {ENV},'
     f'detail="t=-5: expected an int from 0 to {MAX_TIME_NS}",{raw(t="-5")} 2\n'),
    # A seq past InfluxDB's last time: the last time.
    (reading(MAX_TIME_NS + 1, t="soon", mono=0),
     f'{DL},gateway=gw-1,measurement=particulate,reason=bad_time,sensor=pm-1 '
     f'seq={MAX_TIME_NS + 1}i,epoch="{EPOCH}",detail="t=\'soon\': expected an int from 0 to'
     f' {MAX_TIME_NS}",{raw(seq=MAX_TIME_NS + 1, t=q("soon"), mono=0)}'
     f' {MAX_TIME_NS}\n'),
    # Tags copied from the reading lose a trailing backslash.
    (reading(2, sensor="pm-9\\", m="a\\"),
     f'{DL},gateway=gw-1,measurement=a,reason=unknown_sensor,sensor=pm-9 {ENV},'
     f'detail="sensor \'pm-9\\\\\\\\\' is not in the batch\'s sensors",'
     f'{raw(sensor=q("pm-9" + BS4), m=q("a" + BS4))} {T2}\n'),
    # Tags the reading does not have as text are left out.
    (reading(2, sensor=7, m=["x"]),
     f'{DL},gateway=gw-1,reason=unknown_sensor {ENV},'
     f'detail="sensor 7 is not in the batch\'s sensors",'
     f'{raw(sensor="7", m="[" + q("x") + "]")} {T2}\n'),
])
def test_ingest_dead_letter_line(bad: dict[str, Any], line: str) -> None:
    assert dead_line(bad) == line


def test_ingest_dead_letter_keeps_the_first_4096_characters_of_the_reading() -> None:
    line = dead_line(reading(2, f={"s": "가" * 5000}))
    assert line.startswith(f'{DL},gateway=gw-1,measurement=particulate,reason=string_too_long,'
                           f'sensor=pm-1 {ENV},detail="s: 5000 characters > 1024",raw="')
    assert line.endswith(f'가...(+1007 chars)" {T2}\n')


def test_quarantined_point_line() -> None:
    p = Point("m\\", {"gateway": "gw-1", "sensor": "pm-1\\", "k": "v\\"}, {"f": 1}, T0,
              Identity(5, EPOCH))
    got = encode([quarantined_point(p, "unencodable", "tag value 'v\\\\': cannot end in a"
                                                     " backslash")]).decode()
    assert got == (
        f'{DL},gateway=gw-1,measurement=m,reason=unencodable,sensor=pm-1 seq=5i,'
        f'epoch="{EPOCH}",detail="tag value \'v\\\\\\\\\': cannot end in a backslash",'
        'raw="Point(measurement=\'m\\\\\\\\\', tags={\'gateway\': \'gw-1\', \'sensor\': '
        '\'pm-1\\\\\\\\\', \'k\': \'v\\\\\\\\\'}, fields={\'f\': 1}, time_ns=1700000000000000000,'
        f' identity=Identity(seq=5, epoch=\'{EPOCH}\'))" {T0}\n')


def test_quarantined_point_out_of_range_time_seq_and_long_detail() -> None:
    p = Point("m", {"gateway": "gw-1\udc80"}, {"f": "x\udc80"}, 2**63, Identity(2**64, "e\udc80"))
    got = encode([quarantined_point(p, "unencodable", "d" * 3000)]).decode()
    assert got == (
        f'{DL},gateway=gw-1\ufffd,measurement=m,reason=unencodable seq=0i,'
        f'epoch="e\\\\udc80",detail="{"d" * 2000}...(+1000 chars)",'
        'raw="m,gateway=gw-1\\\\udc80 f=\\"x\\\\udc80\\",seq=18446744073709551616i,'
        'epoch=\\"e\\\\udc80\\" 9223372036854775808" 0\n')


def test_quarantined_point_without_identity_keeps_a_storable_time() -> None:
    got = encode([quarantined_point(Point("m", {}, {"f": 1.5}, -7), "unencodable", "x")])
    assert got.decode() == f'{DL},measurement=m,reason=unencodable seq=0i,epoch="",detail="x",' \
                           'raw="m f=1.5 -7" -7\n'


def test_refused_point_line() -> None:
    p = Point("particulate", {"gateway": "gw-1", "sensor": "pm-1", "district": "마포구"},
              {"pm2_5": 1.0}, T0, Identity(3, EPOCH))
    reason = ('partial write: field type conflict: input field "pm2_5" on measurement'
              ' "particulate" is type float, already exists as type integer dropped=1')
    assert encode([refused_point(p, reason)]).decode() == (
        f'{DL},gateway=gw-1,measurement=particulate,reason=database_refused,sensor=pm-1 '
        f'seq=3i,epoch="{EPOCH}",detail="partial write: field type conflict: input field '
        '\\"pm2_5\\" on measurement \\"particulate\\" is type float, already exists as type '
        'integer dropped=1",raw="particulate,district=마포구,gateway=gw-1,sensor=pm-1 '
        f'pm2_5=1.0,seq=3i,epoch=\\"{EPOCH}\\" {T0}" {T0}\n')
