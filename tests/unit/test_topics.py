"""Topics: every MQTT topic in one place, and the parse back from topic to gateway id."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cityedge.uplink import Topics
from cityedge.uplink.payload import ID_RE
from cityedge.uplink.topics import DEFAULT_PREFIX, DEFAULT_SHARE_GROUP

gateway_ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.:-]{0,20}\Z")


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("up", "cityedge/v1/gw-1/up"),
        ("ack", "cityedge/v1/gw-1/ack"),
        ("status", "cityedge/v1/gw-1/status"),
        ("down", "cityedge/v1/gw-1/down"),
    ],
)
def test_default_topics(kind: str, expected: str) -> None:
    assert getattr(Topics(), kind)("gw-1") == expected


def test_default_prefix() -> None:
    assert Topics().prefix == DEFAULT_PREFIX == "cityedge/v1"


def test_custom_prefix() -> None:
    t = Topics("city/test")
    assert t.up("a") == "city/test/a/up"
    assert t.ack("a") == "city/test/a/ack"
    assert t.up_subscription(None) == "city/test/+/up"
    assert t.status_subscription() == "city/test/+/status"


@pytest.mark.parametrize(
    ("group", "expected"),
    [
        (DEFAULT_SHARE_GROUP, "$share/collectors/cityedge/v1/+/up"),
        ("east", "$share/east/cityedge/v1/+/up"),
        (None, "cityedge/v1/+/up"),
        ("", "cityedge/v1/+/up"),  # the config's empty string means a plain subscription
    ],
)
def test_up_subscription(group: str | None, expected: str) -> None:
    assert Topics().up_subscription(group) == expected


def test_up_subscription_defaults_to_shared() -> None:
    assert Topics().up_subscription() == "$share/collectors/cityedge/v1/+/up"


def test_status_subscription() -> None:
    assert Topics().status_subscription() == "cityedge/v1/+/status"


@pytest.mark.parametrize(
    ("topic", "gateway"),
    [
        ("cityedge/v1/gw-1/up", "gw-1"),
        ("cityedge/v1/gw-1/status", "gw-1"),
        ("cityedge/v1/a.b:c_d/ack", "a.b:c_d"),
        ("cityedge/v1//up", None),  # empty gateway
        ("cityedge/v1/gw-1", None),  # no kind
        ("cityedge/v1/gw-1/up/extra", None),
        ("cityedge/v2/gw-1/up", None),  # another prefix
        ("cityedge/v1", None),
        ("cityedge/v1/", None),
        ("other/cityedge/v1/gw-1/up", None),
        ("cityedge/v10/gw-1/up", None),  # prefix must end at a level boundary
        ("", None),
    ],
)
def test_gateway_of(topic: str, gateway: str | None) -> None:
    assert Topics().gateway_of(topic) == gateway


@given(gateway_ids, st.sampled_from(["up", "ack", "status", "down"]))
def test_gateway_of_round_trip(gateway: str, kind: str) -> None:
    assert ID_RE.match(gateway)
    topics = Topics()
    assert topics.gateway_of(getattr(topics, kind)(gateway)) == gateway


@given(gateway_ids)
def test_gateway_of_round_trip_custom_prefix(gateway: str) -> None:
    topics = Topics("a/b/c")
    assert topics.gateway_of(topics.up(gateway)) == gateway
    assert Topics().gateway_of(topics.up(gateway)) is None


@given(st.text(max_size=60))
def test_gateway_of_never_raises(topic: str) -> None:
    gw = Topics().gateway_of(topic)
    assert gw is None or (gw and "/" not in gw)


def test_topics_are_frozen() -> None:
    with pytest.raises(AttributeError):
        Topics().prefix = "x"  # type: ignore[misc]
