"""The collector seals what it sends a gateway; the gateway takes only what it can verify.

The HTTP uplink end to end (HttpTransport against the real HttpSource, as in
test_http_pair), the MQTT source's ack and the downlink notifier's display,
each with and without the gateway's key.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import pytest

from cityedge.uplink import Ack, PayloadError, SeqRanges, decode_ack, encode_batch
from cityedge.uplink.downlink import DownlinkError, decode_display, encode_display
from cityedge.uplink.seal import KeyRing, StaticKeyRing, derive_key
from collector.alerts.events import AlertEvent
from collector.config import MqttSourceConfig
from collector.delivery import WritePipeline
from collector.notifiers import NotifierContext
from collector.notifiers.mqtt_downlink import DownlinkConfig, DownlinkNotifier, display_for
from collector.sources.http import HttpSource, HttpSourceConfig
from collector.sources.mqtt import MqttSource
from edge_agent.transports.http import HttpTransport, HttpUplinkConfig
from tests.unit.test_http_source import EPOCH, GatedWriter, batch

SECRET = "gw-1 token"
KEY = derive_key(SECRET)
RING = StaticKeyRing.from_secrets({"gw-1": SECRET})


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 10.0))


@asynccontextmanager
async def pair(keyring: KeyRing | None, key: bytes | None) -> AsyncIterator[HttpTransport]:
    writer = GatedWriter()
    pipeline = WritePipeline(writer, max_points=1000, linger=0)
    task = asyncio.create_task(pipeline.run())
    collector = HttpSource(HttpSourceConfig(port=0), pipeline, keyring=keyring)
    await collector.start()
    transport = HttpTransport(HttpUplinkConfig(url=collector.url, timeout=5), "gw-1",
                              max_in_flight=2, key=key)
    await transport.start()
    try:
        yield transport
    finally:
        await transport.close()
        await collector.close()
        await pipeline.close()
        await task


async def settle(transport: HttpTransport) -> None:
    while transport.in_flight:
        await asyncio.sleep(0.01)


@pytest.mark.parametrize(("keyring", "key", "bad"), [
    (RING, KEY, None),
    (None, None, None),  # insecure on both sides: as before
    (RING, None, None),  # a gateway without a key ignores the mac
    (None, KEY, "unsealed"),
    (StaticKeyRing({"gw-1": derive_key("an old token")}), KEY, "bad_seal"),
])
def test_http_acks_count_only_with_a_good_seal(keyring: KeyRing | None, key: bytes | None,
                                               bad: str | None) -> None:
    async def main() -> None:
        async with pair(keyring, key) as transport:
            assert transport.send(encode_batch(batch(1, 3)))
            await settle(transport)
            if bad is None:
                ack = await asyncio.wait_for(transport.next_ack(), 5)
                assert ack.seqs == SeqRanges(((1, 3),))
                assert transport.bad_acks == 0
            else:
                assert transport.bad_acks == 1
                assert transport.bad_ack_reasons == {bad: 1}
                assert transport.ready()  # the link is fine; the batch is resent later

    run(main())


NOW = 1_780_000_000 * 10**9


def test_the_mqtt_source_seals_each_ack_with_its_gateways_key() -> None:
    ack = Ack("gw-1", EPOCH, 4, SeqRanges(((1, 9),)))
    pipeline = WritePipeline(GatedWriter(), max_points=10, linger=0)
    sealed = MqttSource(MqttSourceConfig(), pipeline, keyring=RING).intake.ack_bytes(ack, NOW)
    got = decode_ack(sealed, KEY)
    assert (got.seqs, got.batch_id, got.time_ns) == (ack.seqs, 4, NOW)
    other = MqttSource(MqttSourceConfig(), pipeline, keyring=RING).intake.ack_bytes(
        Ack("gw-unknown", EPOCH, 1, SeqRanges(((1, 1),))), NOW)
    assert "mac" not in json.loads(other)  # no key in the ring: unsealed, as without one
    plain = MqttSource(MqttSourceConfig(), pipeline).intake.ack_bytes(ack, NOW)
    with pytest.raises(PayloadError) as info:
        decode_ack(plain, KEY)
    assert info.value.reason == "unsealed"


def event(state: str = "firing") -> AlertEvent:
    t = 1_780_000_000 * 10**9
    return AlertEvent(alert_id="a1b2c3d4e5f60718", seq=1, rule="pm10_advisory", state=state,
                      previous="pending", severity="advisory", time_ns=t, started_ns=t,
                      value=160.0, message="PM10 advisory", scope={"district": "종로구"},
                      notify=True, display="종로구 미세먼지 주의보")


def test_the_downlink_notifier_seals_per_gateway_and_counts_what_it_cannot() -> None:
    notifier = DownlinkNotifier(DownlinkConfig())
    notifier.context = NotifierContext(keyring=RING)
    display = display_for(event(), "종로구 미세먼지 주의보", 3600 * 10**9)
    sealed = encode_display(display, notifier._seal_key("gw-1"))
    assert decode_display(sealed, KEY) == display
    unsealed = encode_display(display, notifier._seal_key("gw-2"))
    assert notifier.stats()["unsealed"] == 1
    with pytest.raises(DownlinkError) as info:
        decode_display(unsealed, KEY)
    assert info.value.reason == "unsealed"
    notifier.context = NotifierContext()  # no keyring: insecure, nothing counted
    assert notifier._seal_key("gw-1") is None and notifier.stats()["unsealed"] == 1
