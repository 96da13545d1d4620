"""A port's sensor_health counts: the decoder's are counted once, by the decoder
(DecoderStats), and summed over the decoders a port has had; the port counts only
what it does itself."""

from __future__ import annotations

import asyncio
import os
import tty
from pathlib import Path

from cityedge.uplink import Reading
from edge_agent.clock import Clock
from edge_agent.codec import make_decoder
from edge_agent.config import SensorConfig
from edge_agent.decoding import load_profile
from edge_agent.serial_port import SensorPort, decoder_counters

REPO = Path(__file__).resolve().parents[2]
# One frame with a flipped bit (rejected, its rest skipped), then a good one
# (tests/profiles/pms5003/bad_checksum_then_good_frame.yaml), behind some garbage.
BAD = bytes.fromhex("424D001C000C00120015000C0013001508370267006000070002000000000222")
GOOD = bytes.fromhex("424D001C0029003F004D002300340044 1CFC08A3019500260009000300000486"
                     .replace(" ", ""))
STREAM = b"\x00\x01\x02" + BAD + GOOD


async def _feed(port: SensorPort, master: int, data: bytes, frames_ok: int) -> None:
    os.write(master, data)
    for _ in range(200):
        if port.counters["frames_ok"] >= frames_ok:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the port read {dict(port.counters)}")


def test_the_decoders_counts_reach_sensor_health_once_and_add_up_over_reopens() -> None:
    profile = load_profile(REPO / "firmware_profiles" / "pms5003.yaml")
    master, slave = os.openpty()
    tty.setraw(slave)
    got: list[Reading] = []
    port = SensorPort(SensorConfig("pm-1", os.ttyname(slave), "pms5003"), profile,
                      Clock(True), got.extend)

    async def run() -> dict[str, int]:
        port.open()
        await _feed(port, master, STREAM, 1)
        once = dict(port.counters)
        port._close_port()  # the adapter unplugged and found again: a new decoder
        port.open()
        await _feed(port, master, STREAM, 2)
        port.close()
        return once

    try:
        once = asyncio.run(run())
    finally:
        os.close(master)
        os.close(slave)
    reference = make_decoder(profile)  # the same bytes through a decoder of its own
    reference.receive_data(STREAM)
    list(reference.events())
    expected = dict(decoder_counters(reference.stats))
    assert expected == {"bytes": 67, "frames_ok": 1, "rejected_bad_checksum": 1,
                        "bytes_skipped": 34}
    # The names sensor_health has always had, counted once; the port's own (its start
    # command, here) beside them.
    own = {"commands_sent", "reply_timeouts", "write_errors", "warmup_discarded",
           "recoveries", "port_errors", "port_reopens"}
    assert {k: v for k, v in once.items() if k not in own} == expected
    after = dict(port.counters)
    assert {k: v for k, v in after.items() if k not in own} == {k: 2 * v for k, v in
                                                                 expected.items()}
    assert after["commands_sent"] >= once["commands_sent"] >= 1
    assert len(got) == 2
