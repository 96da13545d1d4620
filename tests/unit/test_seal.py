"""Seals (cityedge/uplink/seal.py): one MAC rule for acks and displays; the sealed ack format."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cityedge.uplink import Ack, PayloadError, SeqRanges, decode_ack, encode_ack
from cityedge.uplink.seal import (
    MAC_FIELD,
    StaticKeyRing,
    canonical,
    derive_key,
    seal,
    verify,
)

KEY = derive_key("gateway password")
OTHER = derive_key("another password")
EPOCH = "0123456789abcdef"
ACK_DOC: dict[str, Any] = {"v": 1, "gateway": "gw-1", "epoch": EPOCH, "batch": 7,
                           "seqs": [[1, 500]], "time_ns": 1_780_000_000_000_000_000}


def test_derive_key_is_the_documented_hmac() -> None:
    """The registry stores derive_key(secret).hex() per gateway: this must never change."""
    assert derive_key("s3cret") == hmac.new(b"s3cret", b"cityedge/v1 seal key",
                                            hashlib.sha256).digest()
    assert len(KEY) == 32 and KEY != OTHER
    assert derive_key("게이트웨이") == hmac.new("게이트웨이".encode(), b"cityedge/v1 seal key",
                                               hashlib.sha256).digest()


def test_seal_is_hmac_over_purpose_and_canonical_json() -> None:
    sealed = seal(ACK_DOC, KEY, "ack")
    body = json.dumps(ACK_DOC, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    expected = hmac.new(KEY, b"ack\n" + body.encode(), hashlib.sha256).hexdigest()
    assert sealed == {**ACK_DOC, MAC_FIELD: expected}
    assert canonical(sealed) == body.encode()
    assert ACK_DOC.get(MAC_FIELD) is None  # the input is not changed


def test_round_trip_and_resealing_replaces_the_mac() -> None:
    sealed = seal(ACK_DOC, KEY, "ack")
    assert verify(sealed, KEY, "ack")
    assert verify(json.loads(json.dumps(sealed)), KEY, "ack")  # through the wire
    assert seal(seal(ACK_DOC, OTHER, "ack"), KEY, "ack") == sealed


def test_key_order_does_not_matter() -> None:
    sealed = seal(ACK_DOC, KEY, "ack")
    assert verify(dict(reversed(list(sealed.items()))), KEY, "ack")


@pytest.mark.parametrize("field", sorted(ACK_DOC))
def test_tampering_with_any_field_breaks_the_seal(field: str) -> None:
    sealed = seal(ACK_DOC, KEY, "ack")
    value = sealed[field]
    changed = ([[1, 2**62]] if field == "seqs" else value + 1 if isinstance(value, int)
               else value + "x")
    assert not verify({**sealed, field: changed}, KEY, "ack")
    removed = {k: v for k, v in sealed.items() if k != field}
    assert not verify(removed, KEY, "ack")


def test_adding_a_field_breaks_the_seal() -> None:
    assert not verify({**seal(ACK_DOC, KEY, "ack"), "extra": 1}, KEY, "ack")


def test_wrong_purpose_and_wrong_key_fail() -> None:
    sealed = seal(ACK_DOC, KEY, "ack")
    assert not verify(sealed, KEY, "display")
    assert not verify(sealed, OTHER, "ack")
    assert not verify(seal(ACK_DOC, KEY, "display"), KEY, "ack")


@pytest.mark.parametrize("mac", [None, 5, "", "00" * 32, "zz" * 32, "ab" * 31, "é" * 64, []])
def test_missing_or_malformed_macs_fail(mac: object) -> None:
    assert not verify({**ACK_DOC, MAC_FIELD: mac}, KEY, "ack")


def test_an_unknown_purpose_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="purpose"):
        seal(ACK_DOC, KEY, "reboot")
    assert not verify({**ACK_DOC, MAC_FIELD: "00" * 32}, KEY, "reboot")


def test_text_that_cannot_be_utf8_never_verifies() -> None:
    doc = {**ACK_DOC, "gateway": "\udc80", MAC_FIELD: "00" * 32}
    assert not verify(doc, KEY, "ack")


def test_static_keyring() -> None:
    ring = StaticKeyRing.from_secrets({"gw-1": "gateway password"})
    assert ring.key_for("gw-1") == KEY
    assert ring.key_for("gw-2") is None


# -- sealed acks ------------------------------------------------------------------------


FIVE = SeqRanges(((1, 5),))


def ack(seqs: SeqRanges = FIVE, time_ns: int | None = None) -> Ack:
    return Ack("gw-1", EPOCH, 7, seqs, time_ns)


def test_sealed_ack_round_trip() -> None:
    data = encode_ack(ack(time_ns=1_780_000_000_000_000_000), KEY)
    assert json.loads(data)[MAC_FIELD]
    assert decode_ack(data, KEY) == ack(time_ns=1_780_000_000_000_000_000)
    assert decode_ack(data) == ack(time_ns=1_780_000_000_000_000_000)  # insecure: mac ignored


@given(st.sets(st.integers(1, 10**6), max_size=40), st.integers(0, 2**62) | st.none())
def test_sealed_ack_round_trip_property(seqs: set[int], time_ns: int | None) -> None:
    a = ack(SeqRanges.of(seqs), time_ns)
    assert decode_ack(encode_ack(a, KEY), KEY) == a


@pytest.mark.parametrize(("data", "reason"), [
    (encode_ack(ack()), "unsealed"),
    (encode_ack(ack(), OTHER), "bad_seal"),
    (encode_ack(ack(), KEY).replace(b"[[1,5]]", b"[[1,4611686018427387904]]"), "bad_seal"),
    (encode_ack(ack(time_ns=1_780_000_000_000_000_000), KEY).replace(b"1780", b"4102"),
     "bad_seal"),
])
def test_an_ack_without_a_good_seal_is_refused_with_a_key(data: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as info:
        decode_ack(data, KEY)
    assert info.value.reason == reason


def test_a_display_seal_is_not_an_ack_seal() -> None:
    doc = json.loads(encode_ack(ack()))
    data = json.dumps(seal(doc, KEY, "display")).encode()
    with pytest.raises(PayloadError) as info:
        decode_ack(data, KEY)
    assert info.value.reason == "bad_seal"


@pytest.mark.parametrize("seqs", [[[0, 5]], [[-3, 5]], [[1, 2**63]]])
def test_ack_seqs_outside_the_rowid_range_are_refused(seqs: list[list[int]]) -> None:
    doc = {**json.loads(encode_ack(ack())), "seqs": seqs}
    with pytest.raises(PayloadError) as info:
        decode_ack(json.dumps(doc).encode())
    assert info.value.reason == "bad_field"


def test_an_ack_with_more_ranges_than_a_batch_has_readings_is_refused() -> None:
    doc = {**json.loads(encode_ack(ack())), "seqs": [[i, i] for i in range(1, 10_002, 2)]}
    with pytest.raises(PayloadError) as info:
        decode_ack(json.dumps(doc).encode())
    assert info.value.reason == "too_large"
