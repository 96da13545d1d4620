"""Status messages in, each gateway's newest status out: versions, bad input counted, bounded;
and the fleet view's problem names from health rows."""

from __future__ import annotations

from cityedge.uplink import Topics
from cityedge.uplink.status import GatewayStatus, decode_status, encode_status, read_status
from collector.fleet import fleet
from collector.fleet_status import StatusBook

T = Topics("p")


def test_status_messages_carry_the_agent_version() -> None:
    assert read_status(encode_status("gw-1", "online", "1.0.0"), "gw-1") == GatewayStatus(
        "online", "1.0.0")
    assert read_status(encode_status("gw-1", "offline"), "gw-1") == GatewayStatus("offline")
    assert decode_status(encode_status("gw-1", "online", "1.0.0"), "gw-1") == "online"
    # A version that is not one is left out; the state still counts.
    bad = b'{"gateway": "gw-1", "state": "online", "agent_version": "<script>"}'
    assert read_status(bad, "gw-1") == GatewayStatus("online", None)
    assert read_status(b'{"gateway": "gw-1", "state": "online", "agent_version": 3}',
                       "gw-1") == GatewayStatus("online", None)
    assert read_status(encode_status("gw-2", "online"), "gw-1") is None
    assert read_status(b'{"gateway": "gw-1", "state": "lost"}', "gw-1") is None
    assert read_status(b"\xff", "gw-1") is None


def test_the_status_book_keeps_the_newest_and_counts_the_rest() -> None:
    book = StatusBook(T, max_gateways=2)
    book.handle("p/gw-1/status", encode_status("gw-1", "online", "1.0"))
    book.handle("p/gw-1/status", encode_status("gw-1", "offline", "1.1"))
    book.handle("p/<b>/status", b'{"gateway": "<b>", "state": "online"}')
    book.handle("p/gw-2/up", encode_status("gw-2", "online"))
    book.handle("q/gw-2/status", encode_status("gw-2", "online"))
    book.handle("p/gw-2/status", b"not json")
    assert book.snapshot() == {"gw-1": GatewayStatus("offline", "1.1")}
    assert book.ignored == {"bad_gateway_id": 1, "foreign_topic": 2, "bad_status": 1}
    for gw in ("gw-2", "gw-3"):
        book.handle(f"p/{gw}/status", encode_status(gw, "online"))
    assert list(book.snapshot()) == ["gw-2", "gw-3"] and book.ignored["forgotten"] == 1


def _row(gw: str, t: int, **fields: object) -> dict[str, object]:
    return {"time": t, "gateway": gw, "district": "d", "site": "s", **fields}


def test_the_fleet_names_each_gateways_problems() -> None:
    now = 1_000 * 10**9
    rows = [
        _row("a", now, outbox_full_pct=10.0, dropped_readings=0, clock_synced=True,
             clock_offset_ms=1999.0, agent_version="0.1.0"),
        _row("b", now, outbox_full_pct=80.0, dropped_readings=1, clock_synced=True,
             clock_offset_ms=-2001.0),
        _row("c", now - 200 * 10**9, clock_synced=False),
    ]
    states = fleet(rows, [], now, 120.0, {"a": GatewayStatus("online", "0.2.0"),
                                          "c": GatewayStatus("offline")})
    got = {g.gateway: (g.problems, g.status, g.agent_version) for g in states}
    assert got == {"a": ((), "online", "0.2.0"),
                   "b": (("filling", "dropping", "off_clock"), None, None),
                   "c": (("stale", "offline", "off_clock"), "offline", None)}
    assert [g.gateway for g in states] == ["c", "a", "b"]
