"""/write bodies the batch limits cannot take whole: split, every part written, then one answer.

Telegraf and influxdb-client drop a batch answered 400, so a valid body must never get
one for being big: over 256 tag sets or 4 MiB of batch JSON it is written as several
batches; a batch that does not land makes the whole answer a 503 (resent, and the lines
that did land are the same points with the same identity again).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from cityedge.uplink.payload import MAX_SENSORS_PER_BATCH
from collector.ratelimit import BATCH_COST_BYTES, RateLimiter
from collector.sources import lineproto_in as lp
from tests.unit.test_http_source import run
from tests.unit.test_influx_write_http import rig

T = 1_750_000_000_000_000_000


def _procstat(n: int) -> bytes:
    return "".join(f"procstat,host=edge-1,pid={i} cpu_usage=1.5 {T}\n" for i in range(n)).encode()


def test_300_tag_sets_are_written_in_batches_within_the_limits(tmp_path: Path) -> None:
    body = _procstat(300)
    parts = lp.to_batch(body, "gw-1", "n", T).parts
    assert len(parts) == 2 and all(len(p.lines) <= MAX_SENSORS_PER_BATCH for p in parts)

    async def main() -> None:
        async with rig(tmp_path) as r:
            status, doc, _ = await r.post("/write", body, r.telegraf_v1(body), db="telegraf")
            assert (status, doc) == (204, None)
            assert sorted(int(p.tags["pid"]) for p in r.writer.written) == list(range(300))
            assert r.source.influx_write is not None
            assert r.source.influx_write.stats.writes == 1
    run(main())


def test_a_body_whose_batch_json_is_over_4_mib_is_written(tmp_path: Path) -> None:
    fields = ",".join(f"usage_guest_{j:02d}=0" for j in range(40))
    body = "".join(f"cpu,host=edge-1,cpu=cpu0 {fields} {T + i}\n" for i in range(5000)).encode()
    assert 3_500_000 < len(body) < 4 * 1024 * 1024

    async def main() -> None:
        async with rig(tmp_path) as r:
            status, _, _ = await r.post("/write", body, r.telegraf_v1(body), db="telegraf")
            assert status == 204
            assert sorted(p.time_ns for p in r.writer.written) == [T + i for i in range(5000)]
    run(main())


def test_a_part_not_written_answers_503_and_the_resend_is_the_same_points(
        tmp_path: Path) -> None:
    body = _procstat(300)

    async def main() -> None:
        async with rig(tmp_path, max_pending=1) as r:  # the second batch finds no room
            status, doc, headers = await r.post("/write", body, r.telegraf_v1(body), db="t")
            assert status == 503 and headers["Retry-After"] == "2"
            assert doc["error"].startswith("partial write: 256 of 300 lines written")
            first = {(p.tags["pid"], p.time_ns, p.identity) for p in r.writer.written}
            assert len(first) == 256
            r.source.config = dataclasses.replace(r.source.config, max_pending=4)
            status, _, _ = await r.post("/write", body, r.telegraf_v1(body), db="t")
            assert status == 204
            again = {(p.tags["pid"], p.time_ns, p.identity) for p in r.writer.written}
            assert first < again and len(again) == 300  # nothing new but the missing 44
    run(main())


def test_sensor_and_identity_of_a_line_do_not_depend_on_the_other_lines(
        tmp_path: Path) -> None:
    temp = f"temp,sensor=s1,unit=c value=20.5 {T}\n".encode()
    humid = f"humid,sensor=s1 value=40 {T}\n".encode()

    async def main() -> None:
        async with rig(tmp_path) as r:
            for body in (humid, temp + humid, humid + temp):  # Telegraf re-batching a retry
                status, _, _ = await r.post("/write", body, r.telegraf_v1(body), db="t")
                assert status == 204
            got = {(p.measurement, p.tags["sensor"], p.tags.get("unit"), p.identity)
                   for p in r.writer.written}
            assert {(m, s, u) for m, s, u, _ in got} == {("humid", "s1", None),
                                                          ("temp", "s1", "c")}
            assert len(got) == 2  # the same identity every time: alerts count each once
    run(main())


def test_one_sensor_id_with_more_tag_sets_than_batches_is_413(tmp_path: Path) -> None:
    body = "".join(f"m,sensor=s1,unit=u{i} f=1 {T}\n" for i in range(lp.MAX_PARTS + 1)).encode()

    async def main() -> None:
        async with rig(tmp_path) as r:
            status, doc, _ = await r.post("/write", body, r.telegraf_v1(body), db="t")
            assert status == 413 and "split it" in doc["error"]
            assert r.writer.written == []
            half = body[: body.index(b"\n", len(body) // 2) + 1]  # what Telegraf sends next
            status, _, _ = await r.post("/write", half, r.telegraf_v1(half), db="t")
            assert status == 204
    run(main())


def test_a_line_protocol_body_costs_three_times_its_bytes_at_the_rate_limit(
        tmp_path: Path) -> None:
    line = f"m,host=h f=1,{'g' * 60}=2 {T}\n".encode()
    body = line * (BATCH_COST_BYTES // len(line))  # one token as JSON, three as lines

    async def main() -> None:
        async with rig(tmp_path, limiter=RateLimiter(0.001, 5, 100)) as r:
            statuses = [(await r.post("/write", body, r.telegraf_v1(body), db="t"))[0]
                        for _ in range(2)]
            assert statuses == [204, 429]  # 3 of 5 tokens, then 3 more are not there
    run(main())
