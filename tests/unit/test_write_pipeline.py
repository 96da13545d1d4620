"""WritePipeline: write, then acknowledge (DESIGN invariant 3), against a scripted fake writer.

The fake is injected through the constructor, the seam the service uses; nothing is patched
except the module's own backoff constants, to keep the tests fast.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import pytest

from collector import delivery
from collector.deadletter import DEADLETTER_MEASUREMENT
from collector.delivery import WriteFailed, WritePipeline
from collector.ingest import Accepted, ingest
from collector.lineprotocol import Point, check, encode, format_point, identity_of
from collector.writers import DeliveryRejected, Retryable, Throttled, TooLarge, WriteError
from collector.writers.errors import PartialWrite, Refusal, RefusalKind

EPOCH = "0011223344556677"
TIMEOUT = 5.0


class FakeWriter:
    """Records every write; raises the scripted errors in turn, then refuses points by rule."""

    name = "fake"

    def __init__(
        self,
        script: Sequence[WriteError | None] = (),
        refuse: Callable[[Point], bool] = lambda _p: False,
        too_large_over: int | None = None,
    ) -> None:
        self.script: deque[WriteError | None] = deque(script)
        self.refuse = refuse
        self.too_large_over = too_large_over
        self.calls: list[list[Point]] = []
        self.call_times: list[float] = []
        self.written: list[Point] = []
        self.ok_calls: list[list[Point]] = []
        self.gate: asyncio.Event | None = None

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def write(self, points: Sequence[Point]) -> None:
        self.calls.append(list(points))
        self.call_times.append(asyncio.get_running_loop().time())
        if self.gate is not None:
            await self.gate.wait()
        if self.script:
            error = self.script.popleft()
            if error is not None:
                raise error
        if self.too_large_over is not None and len(points) > self.too_large_over:
            raise TooLarge(f"HTTP 413: {len(points)} points")
        bad = [p for p in points if self.refuse(p)]
        if bad:
            raise DeliveryRejected(
                f'HTTP 400: {{"error":"partial write: bad point {bad[0].fields}"}}')
        self.written.extend(points)
        self.ok_calls.append(list(points))


def batch(first_seq: int, n: int, gateway: str = "gw-1", bad: Sequence[int] = ()) -> Accepted:
    readings = [
        {
            "seq": s,
            "sensor": "pm-1",
            "m": "particulate",
            "t": 1_000 + s,
            "boot": "b",
            "mono": s,
            "f": {"pm2_5_ugm3": s} if s not in bad else {},
        }
        for s in range(first_seq, first_seq + n)
    ]
    doc = {
        "v": 1,
        "gateway": gateway,
        "epoch": EPOCH,
        "batch": first_seq,
        "sent_ns": 1,
        "clock": {"synced": True, "boot": "b", "mono_ns": 1},
        "site": {"district": "마포구"},
        "sensors": {"pm-1": {"model": "pms5003"}},
        "readings": readings,
    }
    out = ingest(json.dumps(doc).encode(), gateway)
    assert isinstance(out, Accepted)
    return out


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, TIMEOUT))


# Retry bounds for tests: a database outage of a few tries costs milliseconds.
FAST = (0.001, 0.004)


async def drain(pipeline: WritePipeline, task: asyncio.Task[None]) -> None:
    await pipeline.close()
    await task


def seq_of(p: Point) -> int | None:
    """A reading's seq (beside its point) or a dead letter's (in its fields)."""
    identity = identity_of(p)
    return None if identity is None else identity.seq


def seqs_of(points: Sequence[Point], measurement: str = "particulate") -> list[int]:
    return sorted(s for p in points if p.measurement == measurement and (s := seq_of(p)))


def test_future_resolves_only_after_the_write_succeeds() -> None:
    async def main() -> None:
        writer = FakeWriter()
        writer.gate = asyncio.Event()
        pipeline = WritePipeline(writer, max_points=100, linger=0, retry=FAST)
        task = asyncio.create_task(pipeline.run())
        fut = pipeline.submit(batch(1, 3))
        for _ in range(20):
            await asyncio.sleep(0)
        assert len(writer.calls) == 1
        assert not fut.done()  # the write is still on its way: no ack yet
        assert writer.written == []
        writer.gate.set()
        await fut
        assert seqs_of(writer.written) == [1, 2, 3]
        assert pipeline.stats.batches == 1
        assert pipeline.stats.readings == 3
        assert pipeline.stats.writes == 1
        await drain(pipeline, task)

    run(main())


def test_retryable_is_retried_until_it_succeeds() -> None:
    async def main() -> None:
        writer = FakeWriter(script=[Retryable("HTTP 500: down")] * 4)
        pipeline = WritePipeline(writer, max_points=100, linger=0, retry=FAST)
        task = asyncio.create_task(pipeline.run())
        fut = pipeline.submit(batch(1, 2))
        while len(writer.calls) < 3:
            await asyncio.sleep(0.001)
        assert not fut.done()  # still failing: nothing acked
        await fut
        assert len(writer.calls) == 5
        assert all(call == writer.calls[0] for call in writer.calls)  # the same write again
        assert seqs_of(writer.written) == [1, 2]
        assert pipeline.stats.write_retries == 4
        assert pipeline.stats.last_error == "HTTP 500: down"
        await drain(pipeline, task)

    run(main())


def test_retry_backoff_grows_and_is_capped() -> None:

    async def main() -> None:
        writer = FakeWriter(script=[Retryable("HTTP 502")] * 5)
        pipeline = WritePipeline(writer, linger=0, retry=(0.01, 0.02))
        await pipeline.write_durably(batch(1, 1).points)
        gaps = [b - a for a, b in zip(writer.call_times, writer.call_times[1:], strict=False)]
        assert len(gaps) == 5
        assert gaps[0] >= 0.005 - 1e-3  # uniform(min/2, min)
        assert all(g >= 0.01 - 1e-3 for g in gaps[2:])  # capped at max, drawn in (max/2, max)
        assert sum(gaps) < 1.0

    run(main())


def test_throttled_waits_retry_after_not_the_backoff() -> None:

    async def main() -> None:
        writer = FakeWriter(
            script=[Throttled("HTTP 429", retry_after=0.15), Throttled("HTTP 503", 0.0)]
        )
        pipeline = WritePipeline(writer, linger=0, retry=(30.0, 30.0))  # times out if used
        task = asyncio.create_task(pipeline.run())
        await pipeline.submit(batch(1, 2))
        assert len(writer.calls) == 3
        assert writer.call_times[1] - writer.call_times[0] >= 0.15 - 0.01
        assert writer.call_times[1] - writer.call_times[0] < 2.0
        assert pipeline.stats.write_retries == 2
        await drain(pipeline, task)

    run(main())


def test_rejected_point_is_isolated_and_dead_lettered() -> None:
    async def main() -> None:
        def is_bad(p: Point) -> bool:
            return p.measurement == "particulate" and seq_of(p) == 11

        writer = FakeWriter(refuse=is_bad)
        pipeline = WritePipeline(writer, max_points=100, linger=0, retry=FAST)
        task = asyncio.create_task(pipeline.run())
        await pipeline.submit(batch(1, 16))
        # Every reading but the refused one is in the database...
        assert seqs_of(writer.written) == [s for s in range(1, 17) if s != 11]
        # ... and the refused one is there as a dead letter, with the database's reason.
        (dl,) = [p for p in writer.written if p.measurement == DEADLETTER_MEASUREMENT]
        bad = next(p for p in writer.calls[0] if is_bad(p))
        assert dict(dl.tags) == {"gateway": "gw-1", "reason": "database_refused",
                                 "sensor": bad.tags.get("sensor", ""),
                                 "measurement": bad.measurement}
        assert dl.fields["seq"] == 11
        assert dl.fields["epoch"] == EPOCH
        assert dl.fields["raw"] == format_point(bad)
        assert "partial write" in str(dl.fields["detail"])
        assert dl.time_ns == bad.time_ns
        # Halving: the bad point ends up written alone, then its dead letter takes its place.
        alone = writer.calls.index([bad])
        assert writer.calls[alone + 1] == [dl]
        assert [dl] in writer.ok_calls
        assert [bad] not in writer.ok_calls
        assert not any(is_bad(p) for call in writer.ok_calls for p in call)
        assert len(writer.calls) <= 2 * 5 + 2  # log2(16) levels of halving
        assert pipeline.stats.rejected_points == 1
        await drain(pipeline, task)

    run(main())


def test_two_rejected_points_in_one_write() -> None:
    async def main() -> None:
        writer = FakeWriter(refuse=lambda p: p.fields.get("pm2_5_ugm3") in (2, 7))
        pipeline = WritePipeline(writer, linger=0, retry=FAST)
        await pipeline.write_durably(batch(1, 9).points)
        assert seqs_of(writer.written) == [1, 3, 4, 5, 6, 8, 9]
        assert seqs_of(writer.written, DEADLETTER_MEASUREMENT) == [2, 7]
        assert pipeline.stats.rejected_points == 2

    run(main())


def test_a_refused_dead_letter_is_not_written_not_acked() -> None:
    async def main() -> None:
        writer = FakeWriter(refuse=lambda p: seq_of(p) == 3)  # its dead letter too
        pipeline = WritePipeline(writer, linger=0, retry=FAST)
        task = asyncio.create_task(pipeline.run())
        # The point was refused and its dead letter too, for a reason other than the
        # retention policy: nothing of it is stored, so the batch is not acked (the
        # gateway keeps it and resends it later). Acking it was a silent loss.
        with pytest.raises(WriteFailed, match="dead_letter_refused"):
            await pipeline.submit(batch(1, 4))
        # What is left of a batch given up costs no more requests: the resend brings it.
        assert seqs_of(writer.written) == [1, 2]
        assert seqs_of(writer.written, DEADLETTER_MEASUREMENT) == []
        assert pipeline.stats.rejected_points == 1
        assert pipeline.stats.dropped_points == 0
        assert pipeline.stats.not_written == {"dead_letter_refused": 1}
        assert pipeline.stats.batches == 0
        await drain(pipeline, task)

    run(main())


class RefusingWriter(FakeWriter):
    """Answers like InfluxDB 1.x: a partial write that names what it refused."""

    def __init__(self, refuse: Callable[[Point], Refusal | None]) -> None:
        super().__init__()
        self.why = refuse

    async def write(self, points: Sequence[Point]) -> None:
        self.calls.append(list(points))
        refused = [(p, r) for p in points if (r := self.why(p)) is not None]
        ok = [p for p in points if self.why(p) is None]
        self.written.extend(ok)  # a partial write: the rest is written
        if refused:
            first = refused[0][1]
            raise PartialWrite("HTTP 400: partial write",
                               dataclasses.replace(first, dropped=sum(
                                   1 for _, r in refused if r.kind is first.kind)))
        self.ok_calls.append(list(points))


def test_a_dead_letter_beyond_retention_is_dropped_acked_and_counted() -> None:
    async def main() -> None:
        old = Refusal(RefusalKind.RETENTION)
        writer = RefusingWriter(lambda p: old if p.time_ns < 1_003 else None)
        pipeline = WritePipeline(writer, linger=0, retry=FAST)
        task = asyncio.create_task(pipeline.run())
        await pipeline.submit(batch(1, 4))  # acked: the one loss admitted
        assert set(seqs_of(writer.written)) == {3, 4}  # (rewritten: each overwrites itself)
        assert pipeline.stats.rejected_points == 2
        assert pipeline.stats.dropped_points == 2
        assert pipeline.stats.not_written == {}
        assert len(writer.calls) == 3  # the group; the rest and 2 dead letters; the rest
        await drain(pipeline, task)

    run(main())


def conflict(p: Point) -> Refusal | None:
    if p.measurement == "particulate" and isinstance(p.fields.get("pm2_5_ugm3"), str):
        return Refusal(RefusalKind.FIELD_TYPE, measurement="particulate", field="pm2_5_ugm3",
                       value_type="string")
    return None


def test_a_named_conflict_dead_letters_every_match_in_one_step() -> None:
    async def main() -> None:
        writer = RefusingWriter(conflict)
        pipeline = WritePipeline(writer, linger=0, retry=FAST)
        good = batch(1, 50)
        bad = batch(100, 400)
        bad = dataclasses.replace(bad, points=tuple(
            dataclasses.replace(p, fields={**p.fields, "pm2_5_ugm3": "x"}) for p in bad.points))
        task = asyncio.create_task(pipeline.run())
        await asyncio.gather(pipeline.submit(good), pipeline.submit(bad))
        assert len(writer.calls) == 2  # the group, then the rest with 400 dead letters
        assert sorted(set(seqs_of(writer.written))) == list(range(1, 51))
        assert seqs_of(writer.written, DEADLETTER_MEASUREMENT) == list(range(100, 500))
        assert pipeline.stats.rejected_points == 400
        await drain(pipeline, task)

    run(main())


def test_a_series_limit_gives_up_only_the_batches_that_hit_it() -> None:
    async def main() -> None:
        limit = Refusal(RefusalKind.SERIES_LIMIT)
        writer = RefusingWriter(lambda p: limit if p.tags.get("gateway") == "gw-new" else None)
        pipeline = WritePipeline(writer, max_points=100, linger=0.01, retry=FAST)
        futs = [pipeline.submit(batch(1, 3, gateway=f"gw-{i}")) for i in range(6)]
        new = pipeline.submit(batch(1, 3, gateway="gw-new"))
        task = asyncio.create_task(pipeline.run())
        await asyncio.gather(*futs)
        with pytest.raises(WriteFailed, match="series_limit"):
            await new
        assert pipeline.stats.not_written == {"series_limit": 1}
        assert pipeline.stats.rejected_points == 0  # not the points' fault: no dead letters
        assert not [p for p in writer.written if p.measurement == DEADLETTER_MEASUREMENT]
        assert pipeline.stats.batches == 6
        await drain(pipeline, task)

    run(main())


def test_past_the_request_budget_the_unsettled_batches_are_not_written() -> None:
    async def main() -> None:
        writer = FakeWriter(refuse=lambda p: p.tags.get("gateway") == "gw-bad")
        pipeline = WritePipeline(writer, max_points=1000, linger=0.01, retry=FAST,
                                 max_requests=8)
        good = pipeline.submit(batch(1, 10, gateway="gw-good"))
        bad = pipeline.submit(batch(1, 200, gateway="gw-bad"))
        task = asyncio.create_task(pipeline.run())
        await good
        with pytest.raises(WriteFailed, match="write_budget"):
            await bad
        assert len(writer.calls) == 8
        assert seqs_of([p for p in writer.written if p.tags.get("gateway") == "gw-good"]) == (
            list(range(1, 11)))
        assert pipeline.stats.over_budget == 1
        assert pipeline.stats.not_written == {"write_budget": 1}
        await drain(pipeline, task)

    run(main())


def test_refused_points_log_a_few_lines_not_one_each(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        writer = FakeWriter(refuse=lambda p: seq_of(p) % 8 == 0
                            and p.measurement == "particulate")
        pipeline = WritePipeline(writer, linger=0, retry=FAST)
        await pipeline.write_durably(batch(1, 40).points)
        assert pipeline.stats.rejected_points == 5

    with caplog.at_level("ERROR", logger="collector.delivery"):
        run(main())
    assert len(caplog.records) == 1


def test_too_large_is_split_without_dead_letters() -> None:
    async def main() -> None:
        writer = FakeWriter(too_large_over=3)
        pipeline = WritePipeline(writer, linger=0, retry=FAST)
        await pipeline.write_durably(batch(1, 10).points)
        assert seqs_of(writer.written) == list(range(1, 11))
        assert not [p for p in writer.written if p.measurement == DEADLETTER_MEASUREMENT]
        assert all(len(c) <= 3 for c in writer.ok_calls)
        assert all(len(c) > 3 for c in writer.calls if c not in writer.ok_calls)

    run(main())


def test_ingest_dead_letters_go_in_the_same_write() -> None:
    async def main() -> None:
        writer = FakeWriter()
        pipeline = WritePipeline(writer, linger=0, retry=FAST)
        task = asyncio.create_task(pipeline.run())
        await pipeline.submit(batch(1, 4, bad=[2]))
        (call,) = writer.calls
        assert seqs_of(call) == [1, 3, 4]
        assert seqs_of(call, DEADLETTER_MEASUREMENT) == [2]
        assert pipeline.stats.dead_letters == 1
        assert pipeline.stats.readings == 4
        await drain(pipeline, task)

    run(main())


def test_grouping_fills_writes_up_to_max_points() -> None:
    async def main() -> None:
        writer = FakeWriter()
        pipeline = WritePipeline(writer, max_points=8, linger=0.01, retry=FAST)
        futs = [pipeline.submit(batch(1 + 4 * i, 4)) for i in range(5)]
        assert pipeline.pending_points == 20
        task = asyncio.create_task(pipeline.run())
        await asyncio.gather(*futs)
        assert [len(c) for c in writer.calls] == [8, 8, 4]
        assert seqs_of(writer.written) == list(range(1, 21))
        assert pipeline.pending_points == 0
        await drain(pipeline, task)

    run(main())


def test_many_gateways_share_a_write() -> None:
    async def main() -> None:
        writer = FakeWriter()
        pipeline = WritePipeline(writer, max_points=100, linger=0.01, retry=FAST)
        futs = [pipeline.submit(batch(1, 3, gateway=f"gw-{i}")) for i in range(4)]
        task = asyncio.create_task(pipeline.run())
        await asyncio.gather(*futs)
        (call,) = writer.calls
        assert sorted({p.tags["gateway"] for p in call}) == ["gw-0", "gw-1", "gw-2", "gw-3"]
        await drain(pipeline, task)

    run(main())


def test_grouping_never_exceeds_max_points() -> None:
    async def main() -> None:
        writer = FakeWriter()
        pipeline = WritePipeline(writer, max_points=10, linger=0, retry=FAST)
        futs = [pipeline.submit(batch(1 + 6 * i, 6)) for i in range(2)]
        task = asyncio.create_task(pipeline.run())
        await asyncio.gather(*futs)
        await drain(pipeline, task)
        assert max(len(c) for c in writer.calls) <= 10

    run(main())


def test_a_failed_group_acks_none_of_its_batches() -> None:
    async def main() -> None:
        writer = FakeWriter(script=[Retryable("HTTP 500")] * 3)
        writer.gate = asyncio.Event()
        pipeline = WritePipeline(writer, max_points=100, linger=0.01, retry=FAST)
        futs = [pipeline.submit(batch(1 + 3 * i, 3)) for i in range(3)]
        task = asyncio.create_task(pipeline.run())
        await asyncio.sleep(0.05)
        assert not any(f.done() for f in futs)
        writer.gate.set()
        await asyncio.gather(*futs)
        assert seqs_of(writer.written) == list(range(1, 10))
        await drain(pipeline, task)

    run(main())


def test_close_finishes_what_was_submitted() -> None:
    async def main() -> None:
        writer = FakeWriter(script=[Retryable("HTTP 500")])
        # close() skips the linger
        pipeline = WritePipeline(writer, max_points=4, linger=10.0, retry=FAST)
        task = asyncio.create_task(pipeline.run())
        futs = [pipeline.submit(batch(1 + 3 * i, 3)) for i in range(3)]
        await pipeline.close()
        await task
        assert all(f.done() for f in futs)
        assert seqs_of(writer.written) == list(range(1, 10))

    run(main())


def test_close_with_nothing_pending_returns() -> None:
    async def main() -> None:
        pipeline = WritePipeline(FakeWriter(), linger=0, retry=FAST)
        task = asyncio.create_task(pipeline.run())
        await asyncio.sleep(0)
        await drain(pipeline, task)
        assert pipeline.stats.writes == 0

    run(main())


# -- the backstop: one bad point or one bad group never stops the pipeline ------------------
class EncodingWriter(FakeWriter):
    """Encodes like the InfluxDB writers do before anything goes on the wire."""

    async def write(self, points: Sequence[Point]) -> None:
        encode(list(points))
        await super().write(points)


def test_a_point_that_cannot_be_encoded_is_dead_lettered_and_the_rest_written() -> None:
    async def main() -> None:
        writer = EncodingWriter()
        pipeline = WritePipeline(writer, linger=0, retry=FAST)
        task = asyncio.create_task(pipeline.run())
        good = batch(1, 3)
        poison = Point("particulate", {"gateway": "gw-1", "sensor": "x" * 63 + "\\"},
                       {"seq": 4, "epoch": EPOCH, "note": "\udc80"}, 1_004)
        bad = dataclasses.replace(good, points=(*good.points, poison))
        await asyncio.wait_for(pipeline.submit(bad), 2)
        assert seqs_of(writer.written) == [1, 2, 3]
        (dl,) = [p for p in writer.written if p.measurement == DEADLETTER_MEASUREMENT]
        assert dl.tags["reason"] == "unencodable"
        assert dl.tags["sensor"] == "x" * 63
        assert dl.fields["seq"] == 4
        assert dl.time_ns == 1_004
        assert "\\udc80" in str(dl.fields["raw"])
        assert pipeline.stats.unencodable_points == 1
        # ... and the pipeline goes on.
        await asyncio.wait_for(pipeline.submit(batch(10, 2)), 2)
        assert seqs_of(writer.written) == [1, 2, 3, 10, 11]
        await drain(pipeline, task)

    run(main())


class Exploding(FakeWriter):
    """Fails in a way no retry mends, for one batch's points only."""

    async def write(self, points: Sequence[Point]) -> None:
        if any(seq_of(p) == 666 for p in points):
            raise RuntimeError("a bug in the writer")
        await super().write(points)


def test_a_group_that_fails_unexpectedly_is_answered_and_the_pipeline_lives() -> None:
    async def main() -> None:
        writer = Exploding()
        pipeline = WritePipeline(writer, linger=0, retry=FAST)
        task = asyncio.create_task(pipeline.run())
        with pytest.raises(WriteFailed, match="a bug in the writer"):
            await asyncio.wait_for(pipeline.submit(batch(666, 1)), 2)
        assert pipeline.stats.failed_writes == 1
        assert not task.done()
        await asyncio.wait_for(pipeline.submit(batch(1, 2)), 2)
        assert seqs_of(writer.written) == [1, 2]
        await drain(pipeline, task)

    run(main())


def test_an_alert_feed_that_raises_is_counted_and_the_pipeline_lives() -> None:
    async def main() -> None:
        writer = FakeWriter()
        pipeline = WritePipeline(writer, linger=0, retry=FAST)

        def feed(_points: list[Point]) -> None:
            raise ValueError("rule bug")

        pipeline.on_written = feed
        task = asyncio.create_task(pipeline.run())
        for first in (1, 5):
            await asyncio.wait_for(pipeline.submit(batch(first, 2)), 2)
            await asyncio.sleep(0.01)
        assert pipeline.stats.alert_feed_errors == 2
        assert seqs_of(writer.written) == [1, 2, 5, 6]
        await drain(pipeline, task)

    run(main())


def test_dead_letters_are_counted_by_reason() -> None:
    async def main() -> None:
        pipeline = WritePipeline(FakeWriter(), linger=0, retry=FAST)
        task = asyncio.create_task(pipeline.run())
        await pipeline.submit(batch(1, 4, bad=[2, 3]))
        assert pipeline.stats.dead_letter_reasons == {"no_fields": 2}
        await drain(pipeline, task)

    run(main())


def test_a_refused_point_with_hostile_tags_still_makes_a_dead_letter_that_encodes() -> None:
    hostile = Point("particulate", {"gateway": "gw\u200b", "sensor": "\\" * 70},
                    {"seq": 2**70, "epoch": "e\udc80"}, 2**63)
    dl = delivery.refused_point(hostile, "x" * 5000)
    assert check(dl) is None
    assert dl.fields["seq"] == 0
    assert dl.time_ns == 0
    assert "sensor" not in dl.tags or not dl.tags["sensor"].endswith("\\")
