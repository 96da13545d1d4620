"""The display downlink's wire format and the terminal's board that answers it (sans-IO)."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cityedge.uplink.downlink import (
    Display,
    DisplayAck,
    DownlinkError,
    decode_ack,
    decode_display,
    encode_ack,
    encode_display,
)
from edge_agent.displays import DisplayBoard

T0 = 1_764_000_000 * 10**9
S = 10**9


def show(alert: str = "a1", seq: int = 1, at: int = T0, ttl: int | None = 3600 * S,
         text: str = "강남구 미세먼지 주의보") -> bytes:
    return encode_display(Display(f"{alert}:{seq}", alert, "show", "pm10_advisory", "advisory",
                                  text, at, None if ttl is None else at + ttl,
                                  {"district": "강남구"}))


def clear(alert: str = "a1", seq: int = 2, at: int = T0 + 60 * S) -> bytes:
    return encode_display(Display(f"{alert}:{seq}", alert, "clear", "pm10_advisory", "advisory",
                                  "", at, None))


def test_show_then_clear_is_acked_and_changes_the_board() -> None:
    board = DisplayBoard("gw-bus-7", has_display=True)
    changed, ack = board.receive(show(), T0 + S)
    assert changed and ack == DisplayAck("a1:1", "gw-bus-7", "shown")
    assert [d.text for d in board.current()] == ["강남구 미세먼지 주의보"]
    changed, ack = board.receive(clear(), T0 + 61 * S)
    assert changed and ack.result == "cleared" and board.current() == []


def test_a_resent_event_is_acted_on_once_and_acked_again() -> None:
    board = DisplayBoard("gw", has_display=True)
    board.receive(show(), T0)
    board.receive(clear(), T0)
    changed, ack = board.receive(show(), T0)  # the show, resent after its clear
    assert not changed and ack.result == "shown" and board.current() == []
    assert board.counts["repeated"] == 1


def test_an_older_event_crossing_a_newer_one_is_acked_not_applied() -> None:
    board = DisplayBoard("gw", has_display=True)
    board.receive(clear(at=T0 + 60 * S), T0)
    changed, ack = board.receive(show(seq=1, at=T0), T0)  # never seen, but older than the clear
    assert not changed and ack.result == "shown" and board.current() == []


def test_a_repeat_refreshes_the_text_and_expiry() -> None:
    board = DisplayBoard("gw", has_display=True)
    board.receive(show(seq=1, ttl=60 * S), T0)
    board.receive(show(seq=3, at=T0 + 50 * S, ttl=60 * S, text="경보"), T0 + 50 * S)
    assert not board.expire(T0 + 100 * S)
    assert [d.text for d in board.current()] == ["경보"]
    assert board.expire(T0 + 110 * S) and board.current() == []


def test_expiry_boundary_and_untrusted_clock() -> None:
    board = DisplayBoard("gw", has_display=True)
    _, ack = board.receive(show(ttl=10 * S), T0 + 10 * S)  # expires exactly now: too late
    assert ack.result == "rejected" and ack.detail.startswith("expired")
    _, ack = board.receive(show(seq=5, ttl=10 * S), T0 + 10 * S - 1)
    assert ack.result == "shown"
    other = DisplayBoard("gw", has_display=True)
    _, ack = other.receive(show(ttl=10 * S), None)  # clock not trusted: not checked on arrival
    assert ack.result == "shown"


def test_a_gateway_without_a_display_rejects_with_the_reason() -> None:
    _, ack = DisplayBoard("gw", has_display=False).receive(show(), T0)
    assert ack.result == "rejected" and ack.detail.startswith("no_display")


@pytest.mark.parametrize(("payload", "reason"), [
    (b"not json", "bad_json"),
    (b"\xff\xfe", "bad_json"),
    (b"[1]", "bad_json"),
    (b'{"v": 2, "type": "alert_display", "id": "x"}', "unsupported_version"),
    (b'{"v": 1, "type": "reboot", "id": "x"}', "wrong_type"),
    (b'{"v": 1, "type": "alert_display", "id": "x"}', "bad_field"),
    (show().replace(b'"show"', b'"blink"'), "bad_field"),
    (show().replace(b'"time_ns":', b'"time_ns":-'), "bad_field"),
    (show(text="x" * 501), "bad_field"),
])
def test_unusable_messages_are_rejected_naming_the_id_and_reason(payload: bytes,
                                                                 reason: str) -> None:
    with pytest.raises(DownlinkError) as info:
        decode_display(payload)
    assert info.value.reason == reason
    changed, ack = DisplayBoard("gw", has_display=True).receive(payload, T0)
    assert not changed and ack.result == "rejected" and ack.detail.startswith(reason)
    if payload.startswith(b'{"v": 1, "type": "alert_display", "id": "x"'):
        assert ack.id == "x"


@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_downlink_error(data: bytes) -> None:
    for decode in (decode_display, decode_ack):
        with contextlib.suppress(DownlinkError):
            decode(data)
    _, ack = DisplayBoard("gw", has_display=True).receive(data, T0)
    assert ack.result in ("shown", "cleared", "rejected")


def test_ack_round_trip_and_bad_acks() -> None:
    ack = DisplayAck("i", "g", "cleared", "")
    assert decode_ack(encode_ack(ack)) == ack
    assert json.loads(encode_ack(DisplayAck("i", "게이트", "shown")))["gateway"] == "게이트"
    with pytest.raises(DownlinkError):
        decode_ack(b'{"v": 1, "type": "alert_display_ack", "id": "i", "result": "maybe"}')


def test_restore_puts_back_what_a_previous_run_showed() -> None:
    board = DisplayBoard("gw", has_display=True)
    board.receive(show(), T0)
    snapshot = json.loads(json.dumps(board.snapshot(T0), ensure_ascii=False))
    again = DisplayBoard("gw", has_display=True)
    again.restore(snapshot)
    assert again.current() == board.current()
    changed, _ = again.receive(show(seq=0, at=T0 - S), T0)  # older than what is up
    assert not changed


SURROGATE = "\\udc80"  # JSON's escape for a lone surrogate: valid JSON, not valid UTF-8


@pytest.mark.parametrize("payload", [
    b"[" * 5000,  # nested deeper than the JSON parser's recursion allows
    b'{"v": 1, "type": "alert_display", "id": "' + SURROGATE.encode() + b'"}',
    show(text="ok").replace(b'"text":"ok"', b'"text":"' + SURROGATE.encode() + b'"'),
    show().replace(b'"district":', b'"' + SURROGATE.encode() + b'":'),
])
def test_hostile_payloads_are_rejected_and_the_ack_can_still_be_sent(payload: bytes) -> None:
    _, ack = DisplayBoard("gw", has_display=True).receive(payload, T0)
    assert ack.result == "rejected"
    assert decode_ack(encode_ack(ack)).result == "rejected"  # encodable, whatever came in


def test_an_ack_with_an_unencodable_string_is_a_downlink_error() -> None:
    with pytest.raises(DownlinkError):
        decode_ack(b'{"v":1,"type":"alert_display_ack","id":"i","result":"shown","gateway":"'
                   + SURROGATE.encode() + b'"}')
    with pytest.raises(DownlinkError):
        decode_ack(b"[" * 5000)


# Short texts: what matters is which characters and types arrive, not their length
# (the size caps have their own tests); unbounded texts over every category made
# generation slow enough for Hypothesis's health check to fail under load.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    # A few characters of each kind that matters (a lone surrogate, Korean, escapes,
    # controls) instead of every code point: cheap to draw, under any load.
    | st.text(st.sampled_from(["a", "\udc80", "\ud800", "강", "\\", '"', "\n", "\x00",
                               "\u2028"]), max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.text(st.sampled_from(["a", "v", "\udc80", "강"]), max_size=5), inner, max_size=3),
    max_leaves=8)


@given(st.dictionaries(st.sampled_from(["v", "type", "id", "alert_id", "action", "rule",
                                        "severity", "text", "time_ns", "expires_ns", "scope",
                                        "result", "gateway", "detail"]), json_values,
                       max_size=8))
def test_any_json_decodes_or_raises_downlink_error_and_is_answered(doc: dict) -> None:  # type: ignore[type-arg]
    for base in ({"v": 1, "type": "alert_display"}, {"v": 1, "type": "alert_display_ack"}, {}):
        payload = json.dumps({**base, **doc}).encode()  # ensure_ascii: surrogates as escapes
        for decode in (decode_display, decode_ack):
            with contextlib.suppress(DownlinkError):
                decode(payload)
        _, ack = DisplayBoard("gw", has_display=True).receive(payload, T0)
        encode_ack(ack)


@pytest.mark.parametrize("entry", [
    {"time_ns": "10"}, {"expires_ns": "x"}, {"action": "clear"}, {"text": None}, "not a dict",
])
def test_restore_refuses_a_bad_file_and_leaves_the_board_as_it_was(entry: object) -> None:
    board = DisplayBoard("gw", has_display=True)
    board.receive(show(), T0)
    good = board.snapshot(T0)["showing"][0]
    bad = {**good, "alert_id": "a2", **entry} if isinstance(entry, dict) else entry
    again = DisplayBoard("gw", has_display=True)
    with pytest.raises(DownlinkError):
        again.restore({"showing": [good, bad]})
    assert again.current() == []
