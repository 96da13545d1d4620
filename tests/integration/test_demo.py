"""The demo, run as README's ``./run demo`` runs it (in-process, shorter): every emitted
reading lands, and the dust episode at the bus stop reaches the webhook, the bus stop's
display downlink and its terminal within 2 s of the reading that raised it."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from simulators.demo import Demo, DemoOptions

pytestmark = pytest.mark.integration

BUS_STOP = "gw-bus-jongno-0147"


def test_the_demo_delivers_everything_and_its_dust_episode_reaches_people_within_2_s(
        tmp_path: Path) -> None:
    out = io.StringIO()
    demo = Demo(DemoOptions(duration=30, mqtt=None, influx=None, database="cityedge",
                            workdir=tmp_path, episode_at=6, episode_length=10),
                Console(file=out, width=160))
    assert demo.run() == 0
    got, emitted = demo.delivered
    assert emitted > 50 and got == emitted, out.getvalue()[-3000:]

    assert demo.watch is not None and demo.watch.bad_signatures == 0
    events = [(s.event["rule"], s.event["state"], s.event["scope"]) for s in demo.watch.timeline()]
    assert events == [("pm10_advisory_demo", "firing", {"district": "종로구"}),
                      ("pm10_advisory_demo", "resolved", {"district": "종로구"})], events
    fired, resolved = demo.watch.timeline()
    assert fired.event["value"] >= 150 and resolved.event["value"] < 100
    for seen, result in ((fired, "shown"), (resolved, "cleared")):
        assert set(seen.downlinks) == {BUS_STOP}  # only 종로구's bus stop has a terminal
        assert seen.after(seen.webhook_ns) < 2.0
        assert seen.after(seen.downlinks[BUS_STOP]) < 2.0
        ack, at = seen.acks[BUS_STOP]
        assert ack == result and seen.after(at) < 2.0
    assert "pm10_advisory_demo firing in 종로구: webhook" in out.getvalue()
