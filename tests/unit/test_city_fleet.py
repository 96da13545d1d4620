"""The fleet simulator's cores: the MQTT packets it writes and reads, and one gateway's
outbox and delivery window, fed bytes and time, no sockets."""

from __future__ import annotations

import pytest

from cityedge.uplink import Ack, SeqRanges, decode_batch, encode_ack
from simulators.city_fleet import city, first, wire
from simulators.city_fleet.fleet import profile_values
from simulators.city_fleet.gateway import SimGateway
from simulators.city_fleet.sites import APARTMENTS, BUS_STOPS, DUST_GATEWAYS, load

T0 = 1_790_000_000_000_000_000
S = 1_000_000_000


def test_the_city_has_the_briefs_mix_and_any_prefix_keeps_it() -> None:
    sites = city()
    kinds = [s.kind for s in sites]
    assert (kinds.count("apartment"), kinds.count("bus_stop"), kinds.count("dust_zone")) == (
        APARTMENTS, BUS_STOPS, DUST_GATEWAYS)
    assert len({s.gateway for s in sites}) == len(sites) == 3300
    assert 2400 < load(sites) < 2650
    assert {s.kind for s in first(10)} == {"apartment", "bus_stop", "dust_zone"}


@pytest.mark.parametrize("size", [0, 10, 200, 20_000])
def test_a_publish_reads_back_whole_and_byte_by_byte(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    data = wire.publish("cityedge/v1/gw-1/ack", payload, packet_id=513) + wire.puback(7)
    for chunks in ([data], [data[i:i + 1] for i in range(len(data))]):
        parser = wire.Parser()
        packets = [p for c in chunks for p in parser.feed(c)]
        assert [p.kind for p in packets] == [wire.PUBLISH, wire.PUBACK]
        msg = wire.read_publish(packets[0])
        assert (msg.topic, msg.payload, msg.qos, msg.packet_id) == (
            "cityedge/v1/gw-1/ack", payload, 1, 513)
        assert wire.packet_id_of(packets[1]) == 7


def test_a_packet_past_the_limit_or_a_five_byte_length_is_refused() -> None:
    with pytest.raises(wire.WireError):
        wire.Parser().feed(bytes([0x30]) + bytes([0xFF, 0xFF, 0xFF, 0x7F]))
    with pytest.raises(wire.WireError):
        wire.Parser().feed(bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]))


def gateway(**kw: object) -> SimGateway:
    return SimGateway(first(3)[0], profile_values, start_ns=T0, seed=3, **kw)  # type: ignore[arg-type]


def test_readings_leave_only_when_committed_and_an_ack_deletes_them() -> None:
    gw = gateway()
    gw.take_readings(T0 + 10 * S, 10 * S)
    assert gw.depth > 0 and gw.take_batches(0.0, T0, 0) == []  # nothing committed yet
    gw.commit()
    payloads = gw.take_batches(0.0, T0, 0)
    assert len(payloads) == 1
    batch = decode_batch(payloads[0], gw.id)
    assert [r.seq for r in batch.readings] == list(range(1, gw.depth + 1))
    assert batch.epoch == gw.epoch and batch.site["kind"] == gw.plan.kind
    ack = Ack(gw.id, gw.epoch, batch.batch_id, batch.all_seqs(), T0)
    assert gw.on_ack(encode_ack(ack), 0.05) == len(batch.readings)
    assert gw.depth == 0 and gw.stats.latencies_ms == [pytest.approx(50.0)]


def test_an_unacked_batch_is_resent_after_the_timeout_and_acks_for_others_change_nothing(
        ) -> None:
    gw = gateway(ack_timeout=5.0)
    gw.take_readings(T0 + 10 * S, 10 * S)
    gw.commit()
    first_send = decode_batch(gw.take_batches(0.0, T0, 0)[0])
    assert gw.take_batches(4.0, T0, 0) == []
    other = Ack(gw.id, "0" * 16, first_send.batch_id, first_send.all_seqs())
    assert gw.on_ack(encode_ack(other), 4.5) == 0 and gw.stats.bad_acks == 1
    again = decode_batch(gw.take_batches(5.0, T0, 0)[0])
    assert again.all_seqs() == first_send.all_seqs() and gw.stats.resent_batches == 1
    # A late ack of the first send still confirms it (the window keeps its id).
    late = Ack(gw.id, gw.epoch, first_send.batch_id, SeqRanges.of([1]))
    assert gw.on_ack(encode_ack(late), 5.1) == 1


def test_a_restart_keeps_the_outbox_and_a_full_outbox_drops_the_oldest_counted() -> None:
    gw = gateway(max_readings=5)
    gw.take_readings(T0 + 10 * S, 10 * S)
    assert gw.depth == 5 and gw.stats.dropped == gw.stats.readings - 5
    gw.commit()
    gw.restart()
    assert gw.depth == 5 and gw.stats.restarts == 1
    batch = decode_batch(gw.take_batches(0.0, T0, 0)[0])
    assert len(batch.readings) == 5


def test_a_skewed_clock_stamps_readings_and_batches_unsynchronised_and_ages_ignore_it() -> None:
    gw = gateway()
    gw.clock_skew_ns = 3600 * S
    gw.take_readings(T0 + 10 * S, 10 * S)
    gw.commit()
    batch = decode_batch(gw.take_batches(0.0, T0 + 10 * S, 10 * S)[0])
    assert not batch.clock_synced and batch.sent_ns == T0 + 3610 * S
    assert all(not r.synced and r.time_ns > T0 + 3600 * S for r in batch.readings)
    ack = Ack(gw.id, gw.epoch, batch.batch_id, batch.all_seqs())
    gw.on_ack(encode_ack(ack), 0.1, 11 * S)
    assert gw.stats.ages_ms and max(gw.stats.ages_ms) <= 11_000
