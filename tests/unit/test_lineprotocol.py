"""InfluxDB line protocol: exact bytes for each escaping rule, value type and tag rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cityedge.uplink import FieldValue
from collector.lineprotocol import (
    Identity,
    LineProtocolError,
    Point,
    check,
    encode,
    format_point,
    identity_of,
    safe_string,
    safe_tag,
    with_identity,
)


def line(
    measurement: str = "m",
    tags: dict[str, str] | None = None,
    fields: dict[str, FieldValue] | None = None,
    time_ns: int = 0,
) -> str:
    return format_point(Point(measurement, tags or {}, fields or {"v": 1}, time_ns))


@pytest.mark.parametrize(
    ("measurement", "expected"),
    [
        ("particulate", "particulate"),
        ("a b", r"a\ b"),
        ("a,b", r"a\,b"),
        ("a=b", "a=b"),  # '=' needs no escape in a measurement
        ('a"b', 'a"b'),
        ("먼지", "먼지"),
    ],
)
def test_measurement_escaping(measurement: str, expected: str) -> None:
    assert line(measurement) == f"{expected} v=1i 0"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("district", "mapo", "district=mapo"),
        ("district", "마포구", "district=마포구"),
        ("site", "망원동 1번 정류장", r"site=망원동\ 1번\ 정류장"),
        ("a b", "x", r"a\ b=x"),
        ("a,b", "x", r"a\,b=x"),
        ("a=b", "x", r"a\=b=x"),
        ("k", "x,y", r"k=x\,y"),
        ("k", "x=y", r"k=x\=y"),
        ("k", "x y", r"k=x\ y"),
        ("k", 'say "hi"', r'k=say\ "hi"'),  # quotes are literal in tags
        ("k", "a, b=c", r"k=a\,\ b\=c"),
    ],
)
def test_tag_escaping(key: str, value: str, expected: str) -> None:
    assert line(tags={key: value}) == f"m,{expected} v=1i 0"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("pm2_5_ugm3", "pm2_5_ugm3"),
        ("a b", r"a\ b"),
        ("a,b", r"a\,b"),
        ("a=b", r"a\=b"),
    ],
)
def test_field_key_escaping(key: str, expected: str) -> None:
    assert line(fields={key: 1}) == f"m {expected}=1i 0"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "0i"),
        (-7, "-7i"),
        (2**63 - 1, "9223372036854775807i"),
        (True, "true"),
        (False, "false"),
        (1.0, "1.0"),
        (0.1, "0.1"),
        (-2.5, "-2.5"),
        (1e-05, "1e-05"),
        (1.2345678901234567, "1.2345678901234567"),  # repr keeps every digit
        ("", '""'),
        ("plain", '"plain"'),
        ("먼지 많음", '"먼지 많음"'),
        ('say "hi"', r'"say \"hi\""'),
        ("C:\\dev\\ttyUSB0", r'"C:\\dev\\ttyUSB0"'),
        ('end\\"', r'"end\\\""'),
        ("a,b=c d", '"a,b=c d"'),  # commas, equals and spaces are literal inside a string
    ],
)
def test_field_values(value: FieldValue, expected: str) -> None:
    assert line(fields={"f": value}) == f"m f={expected} 0"


def test_bool_is_not_an_int() -> None:
    assert line(fields={"b": True, "i": 1}) == "m b=true,i=1i 0"


def test_tags_sorted_and_empty_values_left_out() -> None:
    got = line(
        "particulate",
        {"sensor": "pm-1", "district": "마포구", "site": "", "gateway": "gw-1", "model": "pms5003"},
        {"pm2_5_ugm3": 12, "seq": 7, "epoch": "abcd1234"},
        1_700_000_000_000_000_000,
    )
    assert got == (
        "particulate,district=마포구,gateway=gw-1,model=pms5003,sensor=pm-1 "
        'pm2_5_ugm3=12i,seq=7i,epoch="abcd1234" 1700000000000000000'
    )


def test_all_tags_empty_leaves_just_the_measurement() -> None:
    assert line(tags={"a": "", "b": ""}) == "m v=1i 0"


def test_fields_keep_their_order() -> None:
    assert line(fields={"z": 1, "a": 2}) == "m z=1i,a=2i 0"


def test_point_line_is_format_point() -> None:
    p = Point("m", {"t": "x"}, {"v": 1.5}, 42)
    assert p.line() == format_point(p) == "m,t=x v=1.5 42"


def test_encode_joins_lines_and_ends_with_newline() -> None:
    pts = [Point("m", {}, {"v": 1}, 1), Point("n", {"k": "값"}, {"v": "x"}, 2)]
    assert encode(pts) == 'm v=1i 1\nn,k=값 v="x" 2\n'.encode()


@given(
    st.dictionaries(
        # A name or value ending in a backslash is refused: line protocol has no escape for it.
        st.text(min_size=1, max_size=6).filter(lambda k: not k.endswith("\\")),
        st.text(max_size=6).filter(lambda v: not v.endswith("\\")),
        max_size=5,
    ),
    st.randoms(),
)
def test_tag_order_does_not_matter(tags: dict[str, str], rnd: object) -> None:
    items = list(tags.items())
    rnd.shuffle(items)  # type: ignore[attr-defined]
    assert line(tags=dict(items)) == line(tags=tags)


@given(st.text(max_size=30))
def test_string_field_round_trips_through_unescape(text: str) -> None:
    out = line(fields={"s": text})
    body = out[len("m s=") : -len(" 0")]
    assert body[0] == body[-1] == '"'
    inner = body[1:-1]
    # Every quote and backslash in the output is escaped: no early end of string.
    i, chars = 0, []
    while i < len(inner):
        if inner[i] == "\\":
            assert inner[i + 1] in '"\\n'
            chars.append({'"': '"', "\\": "\\", "n": "\n"}[inner[i + 1]])
            i += 2
        else:
            assert inner[i] != '"'
            chars.append(inner[i])
            i += 1
    assert "".join(chars) == text


@given(st.text(max_size=20).filter(lambda k: not k.endswith("\\")),
       st.text(max_size=20).filter(lambda v: not v.endswith("\\")))
def test_one_point_is_one_line(key: str, value: str) -> None:
    got = line(measurement="m" + key, tags={"k" + key: value}, fields={"f" + key: value})
    assert "\n" not in got


def split_unescaped(text: str, sep: str) -> list[str]:
    """Split as InfluxDB's scanner does: a backslash always takes the next character with it."""
    parts, cur, i = [], "", 0
    while i < len(text):
        if text[i] == "\\":
            cur += text[i : i + 2]
            i += 2
        elif text[i] == sep:
            parts.append(cur)
            cur, i = "", i + 1
        else:
            cur += text[i]
            i += 1
    return [*parts, cur]


def test_split_unescaped_helper() -> None:
    assert split_unescaped(r"m,a=x\,y,b=z v=1i 0", " ") == [r"m,a=x\,y,b=z", "v=1i", "0"]
    assert split_unescaped(r"m,a=x\,y,b=z", ",") == ["m", r"a=x\,y", "b=z"]


@pytest.mark.parametrize("value", ["x", "x y", "a,b", "k=v", "마포구"])
def test_tags_survive_influx_scanning(value: str) -> None:
    got = line(tags={"a": value, "b": "y"})
    head, fields, ts = split_unescaped(got, " ")
    assert (fields, ts) == ("v=1i", "0")
    parts = split_unescaped(head, ",")
    assert len(parts) == 3
    assert parts[0] == "m"
    assert parts[2] == "b=y"


@pytest.mark.parametrize("tags", [{"a": "x\\", "b": "y"}, {"b": "y\\"}], ids=["comma", "space"])
def test_trailing_backslash_in_tag_value_does_not_escape_the_separator(
    tags: dict[str, str],
) -> None:
    try:
        got = line(tags=tags)
    except ValueError:
        return  # refusing such a value is a fix too
    head, fields, ts = split_unescaped(got, " ")
    assert (fields, ts) == ("v=1i", "0")
    assert len(split_unescaped(head, ",")) == 1 + len(tags)


# -- what no line can carry: refused with the point's place, never a bare ValueError -------
@pytest.mark.parametrize(
    "point",
    [
        Point("m\\", {}, {"v": 1}, 0),
        Point("m", {"k\\": "x"}, {"v": 1}, 0),
        Point("m", {"k": "x\\"}, {"v": 1}, 0),
        Point("m", {}, {"v\\": 1}, 0),
        Point("m", {"k": "\udc80"}, {"v": 1}, 0),
        Point("m", {}, {"v": "x\udc80"}, 0),
        Point("m\ud800", {}, {"v": 1}, 0),
    ],
    ids=["measurement", "tag-key", "tag-value", "field-key", "tag-surrogate",
         "string-surrogate", "measurement-surrogate"],
)
def test_a_point_no_line_can_carry_is_named(point: Point) -> None:
    good = Point("m", {"k": "v"}, {"v": 1}, 0)
    assert check(good) is None
    assert check(point) is not None
    with pytest.raises(LineProtocolError) as info:
        encode([good, good, point, good])
    assert info.value.index == 2


@given(st.text(max_size=80), st.integers(1, 80))
def test_safe_tag_always_encodes(text: str, limit: int) -> None:
    value = safe_tag(text, limit)
    assert len(value) <= limit
    assert not value.endswith("\\")
    assert value == "" or value.isprintable()
    assert check(Point("m", {"k": value}, {"v": 1}, 0)) is None


@pytest.mark.parametrize("cut", range(1, 10))
def test_safe_tag_never_leaves_a_trailing_backslash_at_the_cut(cut: int) -> None:
    assert safe_tag("a" * (cut - 1) + "\\\\\\\\", cut) == "a" * (cut - 1)


def test_safe_tag_replaces_what_is_not_printable_and_keeps_korean() -> None:
    assert safe_tag("마포\udc80구\n") == "마포\ufffd구\ufffd"


@given(st.text(max_size=50), st.integers(0, 60))
def test_safe_string_always_encodes(text: str, limit: int) -> None:
    value = safe_string(text + "\udc80", limit)
    assert check(Point("m", {}, {"s": value}, 0)) is None
    assert value.startswith(text[:limit].encode("utf-8", "backslashreplace").decode()[:limit])


def test_safe_string_says_how_much_was_cut() -> None:
    assert safe_string("x" * 10, 4) == "xxxx...(+6 chars)"
    assert safe_string("\udc80", 10) == "\\udc80"


def test_identity_is_written_as_the_same_fields_after_the_readings_own() -> None:
    tags = {"gateway": "gw-1", "sensor": "pm-1"}
    fields: dict[str, FieldValue] = {"pm2_5_ugm3": 12, "time_corrected": True}
    beside = Point("particulate", tags, fields, 5, Identity(7, 'ab"c'))
    inside = Point("particulate", tags, {**fields, "seq": 7, "epoch": 'ab"c'}, 5)
    assert beside.line() == inside.line()
    assert "seq" not in beside.fields
    assert identity_of(beside) == identity_of(inside) == Identity(7, 'ab"c')


def test_identity_read_back_as_fields_goes_beside_the_point() -> None:
    read_back = Point("particulate", {}, {"v": 1, "seq": 7, "epoch": "00ab"}, 5)
    assert with_identity(read_back) == Point("particulate", {}, {"v": 1}, 5, Identity(7, "00ab"))
    assert identity_of(Point("m", {}, {"seq": True, "epoch": "00ab"}, 5)) is None
