"""What a stranger on the broker can do to a terminal's board: nothing with a key, little
without one."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from cityedge.uplink.downlink import (
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    MAX_SCOPE_TAGS,
    MAX_SCOPE_VALUE_CHARS,
    MAX_TEXT_CHARS,
    Display,
    DownlinkError,
    decode_display,
    encode_display,
)
from cityedge.uplink.seal import derive_key
from edge_agent.display_file import write_display_file
from edge_agent.displays import (
    DEFAULT_TTL_NS,
    MAX_AHEAD_NS,
    MAX_SHOWING,
    MAX_TTL_NS,
    DisplayBoard,
    answered,
)

T0 = 1_780_000_000 * 10**9
S = 10**9
KEY = derive_key("gw-bus-7 password")
OTHER = derive_key("someone else's password")


def d(alert: str = "a1", seq: int = 1, action: str = "show", *, at: int = T0,
      ttl: int | None = 3600 * S, text: str = "종로구 미세먼지 주의보") -> Display:
    return Display(f"{alert}:{seq}", alert, action, "pm10_advisory", "advisory",  # type: ignore[arg-type]
                   text if action == "show" else "", at,
                   None if ttl is None or action == "clear" else at + ttl, {"district": "종로구"})


def board(key: bytes | None = KEY) -> DisplayBoard:
    return DisplayBoard("gw-bus-7", has_display=True, key=key)


# -- seals --------------------------------------------------------------------------------


def test_a_sealed_show_and_clear_are_applied() -> None:
    b = board()
    changed, ack = b.receive(encode_display(d(), KEY), T0)
    assert changed and ack.result == "shown"
    changed, ack = b.receive(encode_display(d(seq=2, action="clear", at=T0 + S), KEY), T0)
    assert changed and ack.result == "cleared" and b.current() == []


@pytest.mark.parametrize(("payload", "reason"), [
    (encode_display(d()), "unsealed"),
    (encode_display(d(), OTHER), "bad_seal"),
    (encode_display(d(), KEY).replace("주의보".encode(), "대피령".encode()), "bad_seal"),
    (encode_display(d(seq=2, action="clear"), OTHER), "bad_seal"),
    # Whatever is not a sealed message is unsealed, before its version or type is read.
    (b"not json", "unsealed"),
    (b"[1]", "unsealed"),
    (b'{"v": 2, "type": "alert_display", "id": "z"}', "unsealed"),
    (b'{"v": 1, "type": "reboot", "id": "z"}', "unsealed"),
])
def test_a_forged_show_or_clear_changes_nothing_and_is_counted(payload: bytes,
                                                               reason: str) -> None:
    b = board()
    b.receive(encode_display(d(alert="real", seq=1), KEY), T0)
    before = b.current()
    changed, ack = b.receive(payload, T0)
    assert not changed and ack.result == "rejected" and ack.detail.startswith(reason)
    assert b.current() == before
    assert b.rejected[reason] == 1
    assert not answered(ack)  # a stranger's message costs the gateway no publish


def test_a_forged_clear_of_a_sniffed_id_neither_clears_nor_blocks_the_genuine_message() -> None:
    b = board()
    b.receive(encode_display(d(seq=1), KEY), T0)
    forged_clear = encode_display(d(seq=2, action="clear"))  # the id the collector will use
    assert b.receive(forged_clear, T0)[1].result == "rejected"
    assert [x.alert_id for x in b.current()] == ["a1"]
    # The genuine clear with that id arrives later: it is not taken for a repeat.
    changed, ack = b.receive(encode_display(d(seq=2, action="clear"), KEY), T0)
    assert changed and ack.result == "cleared"


def test_without_a_key_nothing_is_checked_and_a_mac_is_ignored() -> None:
    b = board(key=None)
    assert b.receive(encode_display(d(seq=1)), T0)[1].result == "shown"
    assert b.receive(encode_display(d(alert="a2"), OTHER), T0)[1].result == "shown"


def test_decode_display_with_a_key_names_the_reason() -> None:
    with pytest.raises(DownlinkError) as info:
        decode_display(encode_display(d()), KEY)
    assert info.value.reason == "unsealed"
    assert decode_display(encode_display(d(), KEY), KEY) == d()


# -- bounds on the board and its file ----------------------------------------------------


def test_the_board_holds_at_most_max_showing_alerts() -> None:
    b = board(key=None)
    for i in range(MAX_SHOWING):
        assert b.receive(encode_display(d(alert=f"a{i}")), T0)[1].result == "shown"
    changed, ack = b.receive(encode_display(d(alert="one-more")), T0)
    assert not changed and ack.detail.startswith("board_full")
    assert b.rejected["board_full"] == 1
    # An alert already up is refreshed, and a clear makes room.
    assert b.receive(encode_display(d(alert="a0", seq=2, at=T0 + S)), T0)[0]
    assert b.receive(encode_display(d(alert="a0", seq=3, action="clear", at=T0 + 2 * S)), T0)[0]
    assert b.receive(encode_display(d(alert="one-more", seq=2)), T0)[1].result == "shown"
    assert len(b.showing) == MAX_SHOWING


def test_3000_fake_displays_leave_a_full_board_and_write_nothing_more() -> None:
    """Insecure mode (no key): the flood is capped, and rejected shows change nothing."""
    b = board(key=None)
    changes = sum(b.receive(encode_display(d(alert=f"fake{i}", text="대피하십시오")), T0)[0]
                  for i in range(3000))
    assert changes == MAX_SHOWING
    assert len(b.showing) == MAX_SHOWING
    assert b.rejected["board_full"] == 3000 - MAX_SHOWING


def test_a_show_without_expiry_gets_the_default_and_a_long_one_is_capped() -> None:
    b = board(key=None)
    b.receive(encode_display(d(alert="none", ttl=None)), None)
    b.receive(encode_display(d(alert="year", ttl=365 * 24 * 3600 * S)), None)
    assert b.showing["none"].expires_ns == T0 + DEFAULT_TTL_NS
    assert b.showing["year"].expires_ns == T0 + MAX_TTL_NS
    assert not b.expire(T0 + DEFAULT_TTL_NS - 1)
    assert b.expire(T0 + DEFAULT_TTL_NS) and list(b.showing) == ["year"]
    assert b.expire(T0 + MAX_TTL_NS) and b.current() == []


def test_a_show_from_the_future_is_refused_or_taken_down_once_the_clock_is_trusted() -> None:
    b = board(key=None)
    far = T0 + 80 * 365 * 24 * 3600 * S  # the year 2100
    _, ack = b.receive(encode_display(d(alert="a", at=far)), T0)
    assert ack.detail.startswith("from_future")
    assert b.receive(encode_display(d(alert="b", at=T0 + MAX_AHEAD_NS)), T0)[1].result == "shown"
    assert b.receive(encode_display(d(alert="c", at=far)), None)[1].result == "shown"  # untrusted
    assert b.expire(T0) and list(b.showing) == ["b"]


@pytest.mark.parametrize("change", [
    {"id": "x" * (MAX_ID_CHARS + 1)},
    {"alert_id": "x" * (MAX_ID_CHARS + 1)},
    {"rule": "r" * (MAX_NAME_CHARS + 1)},
    {"severity": "s" * (MAX_NAME_CHARS + 1)},
    {"text": "x" * (MAX_TEXT_CHARS + 1)},
    {"text": "\x1b[2J대피하십시오"},  # a terminal escape sequence
    {"id": "a\nb"},
    {"scope": {f"t{i}": "v" for i in range(MAX_SCOPE_TAGS + 1)}},
    {"scope": {"district": "구" * (MAX_SCOPE_VALUE_CHARS + 1)}},
    {"scope": {"district": "\x07"}},
])
def test_oversized_or_control_character_fields_are_refused(change: dict[str, object]) -> None:
    payload = encode_display(dataclasses.replace(d(), **change), KEY)  # type: ignore[arg-type]
    with pytest.raises(DownlinkError) as info:
        decode_display(payload, KEY)
    assert info.value.reason == "bad_field"
    b = board()
    assert b.receive(payload, T0)[1].detail.startswith("bad_field")
    assert b.rejected["bad_field"] == 1


def test_newlines_are_fine_in_text_at_the_limits() -> None:
    text = ("미세먼지\n" * (MAX_TEXT_CHARS // 5))[:MAX_TEXT_CHARS]
    assert decode_display(encode_display(d(text=text))).text == text


def test_a_full_board_of_maximal_entries_is_a_small_file(tmp_path: Path) -> None:
    b = board(key=None)
    wide = "\U0001f6a8"  # four bytes in UTF-8, the widest a character gets
    for i in range(MAX_SHOWING):
        big = Display(f"{i:x}".rjust(MAX_ID_CHARS, wide), f"{i:x}".rjust(MAX_ID_CHARS, wide),
                      "show", wide * MAX_NAME_CHARS, wide * MAX_NAME_CHARS,
                      wide * MAX_TEXT_CHARS, T0, T0 + 3600 * S,
                      {f"t{j}": wide * MAX_SCOPE_VALUE_CHARS for j in range(MAX_SCOPE_TAGS)})
        assert b.receive(encode_display(big), T0)[1].result == "shown"
    path = tmp_path / "display.json"
    write_display_file(path, b.snapshot(T0))
    size = path.stat().st_size
    # About 8 kB an entry at worst (all four-byte characters); was 0.8 MB after 3,000 fake
    # displays, and unbounded.
    assert size < 140_000, size
    assert len(json.loads(path.read_text())["showing"]) == MAX_SHOWING


def test_restore_keeps_at_most_max_showing_newest_first() -> None:
    b = board(key=None)
    entries = [dataclasses.asdict(d(alert=f"a{i}", at=T0 + i * S)) for i in range(MAX_SHOWING + 4)]
    b.restore({"showing": entries})
    assert len(b.showing) == MAX_SHOWING
    assert "a0" not in b.showing and f"a{MAX_SHOWING + 3}" in b.showing


def test_only_messages_that_pass_the_seal_check_are_answered() -> None:
    b = board()
    _, forged = b.receive(encode_display(d()), T0)
    _, wrong = b.receive(encode_display(d(), OTHER), T0)
    _, genuine = b.receive(encode_display(d(), KEY), T0)
    _, full = board(key=None).receive(b"not json", T0)
    assert not answered(forged) and not answered(wrong)
    assert answered(genuine) and answered(full)  # the collector's own: always answered


@pytest.mark.parametrize("change", [
    {"id": "a1:9"}, {"alert_id": "a9"}, {"action": "clear"}, {"rule": "pm25_advisory"},
    {"severity": "warning"}, {"text": "대피하십시오"}, {"time_ns": T0 + 1},
    {"expires_ns": T0 + 10**18}, {"expires_ns": None}, {"scope": {"district": "강남구"}},
    {"scope": {}}, {"v": 2}, {"type": "alert_display_ack"}, {"extra": 1},
], ids=repr)
def test_tampering_with_any_field_of_a_sealed_display_is_refused(
        change: dict[str, object]) -> None:
    doc = {**json.loads(encode_display(d(), KEY)), **change}
    payload = json.dumps(doc, ensure_ascii=False).encode()
    changed, ack = board().receive(payload, T0)
    assert not changed and ack.result == "rejected"
    if "v" not in change and "type" not in change:  # those fail before the seal is read
        assert ack.detail.startswith("bad_seal"), ack
