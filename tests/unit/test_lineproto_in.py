"""Line protocol in: bodies as Telegraf and the Influx clients write them, to cityedge batches."""

from __future__ import annotations

import json

import pytest

from collector.ingest import Accepted, ingest
from collector.sources import lineproto_in as lp

NOW = 1_750_000_000_000_000_000

# As Telegraf's influxdb output serializes (tags sorted, integers with i, ns times, \n).
TELEGRAF = (b"cpu,cpu=cpu-total,host=edge-1 usage_idle=97.5,usage_user=1.25 1750000000000000000\n"
            b"mem,host=edge-1 available=1634525184i,used_percent=61.9 1750000000000000000\n"
            b"system,host=edge-1 uptime=86400u,load1=0.11 1750000000000000000\n")


@pytest.mark.parametrize(("line", "expected"), [
    ("m f=1", lp.Line("m", {}, {"f": 1.0}, None)),
    ("m,a=b f=1i,g=-2i,h=3u 17", lp.Line("m", {"a": "b"}, {"f": 1, "g": -2, "h": 3}, 17)),
    ('m s="a \\"q\\" \\\\ ,= x",b=t,c=FALSE,d=True',
     lp.Line("m", {}, {"s": 'a "q" \\ ,= x', "b": True, "c": False, "d": True}, None)),
    ("my\\ meas\\,x,t\\ k=v\\,1\\=2\\ 3 f\\ k=1.5e3",
     lp.Line("my meas,x", {"t k": "v,1=2 3"}, {"f k": 1500.0}, None)),
    ("m,a=b f=1 1", lp.Line("m", {"a": "b"}, {"f": 1.0}, 1)),
    ("m,site=강남구 pm10=35.5", lp.Line("m", {"site": "강남구"}, {"pm10": 35.5}, None)),
])
def test_lines(line: str, expected: lp.Line) -> None:
    assert lp.parse_line(line, 1) == expected


@pytest.mark.parametrize(("line", "message"), [
    ("m", "missing fields"),
    ("m ", "missing '='"),
    (",a=b f=1", "missing measurement"),
    ("m,a f=1", "tag 'a': missing '='"),
    ("m,a= f=1", "tag 'a': missing value"),
    ("m f=", "invalid value"),
    ("m f=abc", "invalid value"),
    ("m f=1_000i", "invalid value"),
    ("m f=NaN", "not a finite number"),
    ("m f=inf", "not a finite number"),
    ("m f=9223372036854775808i", "does not fit"),
    ("m f=-1u", "does not fit"),
    ('m f="open', "unterminated"),
    ("m f=1 12x", "invalid timestamp"),
    ("m f=1 -5", "outside"),
])
def test_bad_lines(line: str, message: str) -> None:
    with pytest.raises(lp.LineError, match=message):
        lp.parse_line(line, 1)


def test_precision_scales_the_timestamp() -> None:
    assert lp.parse_line("m f=1 1750000000", lp.PRECISION_NS["s"]).time == NOW
    assert lp.parse_line("m f=1 1750000000000", lp.PRECISION_NS["ms"]).time == NOW
    with pytest.raises(lp.LineError, match="outside"):
        lp.parse_line("m f=1 9223372036854775807", lp.PRECISION_NS["s"])


def test_telegraf_body_becomes_readings_through_ingest() -> None:
    lines = lp.to_batch(TELEGRAF, "gw-1", "n", NOW)
    assert lines.rejected == () and lines.lines == 3
    result = ingest(lines.payload, "gw-1", {"district": "강남구", "site": "s", "site_kind":
                                            "bus_stop"})
    assert isinstance(result, Accepted) and result.dead_letters == ()
    got = [(p.measurement, {k: v for k, v in p.tags.items() if k != "sensor"}, dict(p.fields),
            p.time_ns) for p in result.points]
    assert got == [
        ("cpu", {"cpu": "cpu-total", "host": "edge-1", "district": "강남구", "site": "s",
                 "site_kind": "bus_stop", "gateway": "gw-1"},
         {"usage_idle": 97.5, "usage_user": 1.25}, NOW),
        ("mem", {"host": "edge-1", "district": "강남구", "site": "s", "site_kind": "bus_stop",
                 "gateway": "gw-1"}, {"available": 1634525184, "used_percent": 61.9}, NOW),
        ("system", {"host": "edge-1", "district": "강남구", "site": "s", "site_kind":
                    "bus_stop", "gateway": "gw-1"}, {"uptime": 86400, "load1": 0.11}, NOW),
    ]
    # The identity: each line's own (series and time), the same on a resend.
    assert [p.identity.seq for p in result.points if p.identity] == [
        lp.seq_of("cpu", {"cpu": "cpu-total", "host": "edge-1"}, NOW),
        lp.seq_of("mem", {"host": "edge-1"}, NOW), lp.seq_of("system", {"host": "edge-1"}, NOW)]
    assert lp.to_batch(TELEGRAF, "gw-1", "n", NOW + 5).epoch == lines.epoch
    # No sensor tag: one is made from the tag set (the same tags, the same sensor).
    assert result.points[1].tags["sensor"] == result.points[2].tags["sensor"]


def test_client_tags_cannot_pose_as_another_gateway_or_site() -> None:
    lines = lp.to_batch(b"m,gateway=gw-9,site=x,sensor=pm-1 f=1 5\n", "gw-1", "n", NOW)
    result = ingest(lines.payload, "gw-1", {"district": "d", "site": "s", "site_kind": "k"})
    assert isinstance(result, Accepted)
    (p,) = result.points
    assert (p.tags["gateway"], p.tags["site"], p.tags["sensor"]) == ("gw-1", "s", "pm-1")


def test_bad_lines_are_returned_with_their_number_the_rest_are_readings() -> None:
    body = b"# a comment\n\nm f=1 5\nm,bad-key=x f=1 6\nm f=oops 7\r\nm g=2 8\n"
    lines = lp.to_batch(body, "gw-1", "n", NOW)
    assert [(b.number, b.reason, b.text) for b in lines.rejected] == [
        (4, "bad_line", "m,bad-key=x f=1 6"), (5, "bad_line", "m f=oops 7")]
    assert "tag key 'bad-key'" in lines.rejected[0].detail
    assert [r["t"] for r in json.loads(lines.payload)["readings"]] == [5, 8]
    # Lines the parser takes but the collector's validation does not: dead letters by ingest.
    lines = lp.to_batch(b"cityedge_collector f=1 5\nm time=1 6\nm f=1 7\n", "gw-1", "n", NOW)
    result = ingest(lines.payload, "gw-1")
    assert isinstance(result, Accepted) and len(result.points) == 1
    assert sorted((d.fields["seq"], d.tags["reason"]) for d in result.dead_letters) == sorted([
        (lp.seq_of("cityedge_collector", {}, 5), "reserved_measurement"),
        (lp.seq_of("m", {}, 6), "bad_field_name")])


def test_whole_body_refusals() -> None:
    with pytest.raises(lp.LineError, match="not UTF-8"):
        lp.to_batch(b"m f=1 \xff\n", "gw-1", "n", NOW)
    with pytest.raises(lp.LineError, match="more than 5000 lines"):
        lp.to_batch(b"m f=1\n" * 5001, "gw-1", "n", NOW)


def test_a_line_without_time_gets_the_arrival_time() -> None:
    lines = lp.to_batch(b"m f=1", "gw-1", "n", NOW)
    assert json.loads(lines.payload)["readings"][0]["t"] == NOW


@pytest.mark.parametrize(("line", "message"), [
    ('m f="a"x 123', "'x 123' after the closing quote"),
    ('m f="a"junk', "'junk' after the closing quote"),
    ("m f=1 1_000", "invalid timestamp '1_000'"),
    ("m f=1 +5", "invalid timestamp"),
])
def test_what_influxdb_refuses_is_refused_with_a_reason(line: str, message: str) -> None:
    for parse in (lp.parse_line, lp.parse_fast):
        with pytest.raises(lp.LineError, match=message):
            parse(line, 1)


@pytest.mark.parametrize("line", [
    "m f=1", "m,a=b,c=d f=1i,g=-2.5,h=t 17", "m,a=b=c f=1 5", "m f=1  5", "m f=1 5 ",
    "m,a=b  f=1", "m f=1,", "m ,f=1", "m,=b f=1", "m f=1=2", ",a=b f=1", "m f==1",
    "m,a=b f=1 -5", "m f=1 12x", "m\tf=1",
])
def test_the_fast_path_agrees_with_the_careful_scanner(line: str) -> None:
    def outcome(parse: object) -> object:
        try:
            return parse(line, 1)  # type: ignore[operator]
        except lp.LineError as exc:
            return str(exc)
    assert outcome(lp.parse_fast) == outcome(lp.parse_line)


def test_the_sensor_of_a_line_is_its_own() -> None:
    alone = lp.to_batch(f"humid,sensor=s1 value=40 {NOW}\n".encode(), "gw-1", "n", NOW)
    behind = lp.to_batch(f"temp,sensor=s1,unit=c value=1 {NOW}\nhumid,sensor=s1 value=40"
                         f" {NOW}\n".encode(), "gw-1", "n", NOW)
    sensors = [json.loads(p.payload)["sensors"] for p in behind.parts]
    assert sensors == [{"s1": {"unit": "c"}}, {"s1": {}}]  # never overwritten: two batches
    assert json.loads(alone.payload)["readings"][0]["seq"] == json.loads(
        behind.parts[1].payload)["readings"][0]["seq"]
