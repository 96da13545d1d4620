"""Frames decoded per second per profile by the generic decoder, a hand-written baseline beside.

    python bench/decoder_bench.py [--frames 20000] [--repeat 5]

For every shipped profile a stream of intact frames (made by the simulator's
encoder, or for Modbus the simulated slave's replies) is fed in 4096-byte
reads, as a port would deliver it, and timed until every frame has come out
as an event. The baseline, in the same run, is a PMS5003 decoder written by
hand the way a one-model driver would be: find "BM", check the length word
and the 16-bit sum, one ``struct.unpack_from`` for the twelve words, a dict.
It does less than the generic decoder (no events, no offsets, no range check,
no statistics), which is the point: it shows what the generality costs. What
matters is that cost at a gateway's rates, a few hundred frames a second at
most: docs/profiles.md ("Speed") has the figures.

Two more rows measure the Modbus path: the register map through pymodbus
(``ModbusDecoder``), and the same replies through the generic frame decoder
given a CRC-16/MODBUS profile, i.e. what hand-written Modbus would cost.
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge_agent.codec import make_decoder  # noqa: E402
from edge_agent.decoding import Decoded, Profile, Reply, load_profiles, parse_profile  # noqa: E402
from simulators.frames import encode_frame  # noqa: E402
from simulators.modbus_slave import encode_replies  # noqa: E402
from simulators.values import generator_for  # noqa: E402

CHUNK = 4096
_PMS = struct.Struct(">12H")
_NAMES = ("pm1_0_cf1_ugm3", "pm2_5_cf1_ugm3", "pm10_cf1_ugm3", "pm1_0_ugm3", "pm2_5_ugm3",
          "pm10_ugm3", "count_0_3um_per_0_1l", "count_0_5um_per_0_1l", "count_1_0um_per_0_1l",
          "count_2_5um_per_0_1l", "count_5_0um_per_0_1l", "count_10um_per_0_1l")


def baseline_pms5003(chunks: list[bytes]) -> int:
    """A hand-written PMS5003 reader: the bytes in, one dict per good frame."""
    buffer = bytearray()
    frames = 0
    for chunk in chunks:
        buffer += chunk
        position = 0
        while True:
            start = buffer.find(b"BM", position)
            if start < 0 or len(buffer) - start < 32:
                position = start if start >= 0 else len(buffer)
                break
            if buffer[start + 2] != 0 or buffer[start + 3] != 28:
                position = start + 1
                continue
            frame = bytes(buffer[start : start + 32])
            if sum(frame[:30]) & 0xFFFF != (frame[30] << 8 | frame[31]):
                position = start + 1
                continue
            dict(zip(_NAMES, _PMS.unpack_from(frame, 4), strict=True))
            frames += 1
            position = start + 32
        del buffer[:position]
    return frames


def generic(profile: Profile) -> Callable[[list[bytes]], int]:
    def run(chunks: list[bytes]) -> int:
        decoder = make_decoder(profile)
        frames = 0
        for chunk in [*chunks, b""]:
            decoder.receive_data(chunk)
            for event in decoder.events():
                if isinstance(event, Decoded | Reply):
                    frames += 1
        return frames

    return run


def stream_for(profile: Profile, count: int) -> tuple[list[bytes], int]:
    """``count`` readings' worth of bytes in port-sized reads, and the events they make."""
    values = generator_for(profile, seed=1)
    if profile.protocol == "modbus_rtu":
        replies = [encode_replies(profile, values()) for _ in range(count)]
        data = b"".join(b"".join(poll) for poll in replies)
        events = sum(len(poll) for poll in replies)
    else:
        data = b"".join(encode_frame(profile, values()) for _ in range(count))
        events = count
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)], events


def crc_profile(modbus: Profile) -> Profile:
    """The noise meter's reply as a plain CRC-16 frame profile: Modbus without pymodbus."""
    fields = "\n".join(
        f"  - {{name: {s.name}, offset: {3 + 2 * (s.address or 0)}, type: u16be,"
        f" scale: {s.scale}, unit: {s.unit}, valid: [{s.valid[0]}, {s.valid[1]}]}}"
        for s in modbus.fields if s.valid
    )
    return parse_profile(
        "model: handmade_modbus\nvendor: none\ndatasheet: none\nmeasurement: noise\n"
        "serial: {baudrate: 9600, bytesize: 8, parity: none, stopbits: 1}\n"
        'framing: {start: "01 03", length_field: {offset: 2, type: u8, add: 5}, max_length: 13}\n'
        "checksum: {algorithm: crc16_modbus, start: 0, end: -2, offset: -2, type: u16le}\n"
        f"fields:\n{fields}\n",
        "handmade modbus",
    )


def measure(run: Callable[[list[bytes]], int], chunks: list[bytes], expect: int,
            repeat: int) -> float:
    """The best of ``repeat`` runs: other load on the machine only ever adds time."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        got = run(chunks)
        times.append(time.perf_counter() - started)
        if got != expect:
            raise SystemExit(f"decoded {got} frames, expected {expect}")
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=20000, help="readings per profile")
    parser.add_argument("--repeat", type=int, default=7, help="runs per row (the best is shown)")
    args = parser.parse_args(argv)
    profiles = load_profiles(ROOT / "firmware_profiles")
    rows: list[tuple[str, int, float]] = []
    chunks, expect = stream_for(profiles["pms5003"], args.frames)
    base = measure(baseline_pms5003, chunks, expect, args.repeat)
    rows.append(("pms5003, hand-written struct baseline", expect, base))
    for model, profile in sorted(profiles.items()):
        chunks, expect = stream_for(profile, args.frames)
        label = f"{model} (pymodbus)" if profile.protocol == "modbus_rtu" else model
        rows.append((label, expect, measure(generic(profile), chunks, expect, args.repeat)))
    noise = profiles["noise_meter_modbus"]
    chunks, expect = stream_for(noise, args.frames)
    rows.append(("noise_meter_modbus as a CRC-16 frame profile", expect,
                 measure(generic(crc_profile(noise)), chunks, expect, args.repeat)))
    # The baseline again, last: the faster of its two measurements is the one shown,
    # so a slow moment of a shared machine does not flatter the generic decoder.
    chunks, expect = stream_for(profiles["pms5003"], args.frames)
    base = min(base, measure(baseline_pms5003, chunks, expect, args.repeat))
    rows[0] = (rows[0][0], rows[0][1], base)
    print(f"{'decoder':48} {'frames':>7} {'frames/s':>10} {'us/frame':>9} {'vs baseline':>12}")
    base_rate = args.frames / base
    for label, frames, seconds in rows:
        rate = frames / seconds
        print(f"{label:48} {frames:7d} {rate:10,.0f} {1e6 / rate:9.2f} {base_rate / rate:11.2f}x")
    print(f"Python {sys.version.split()[0]}; best of {args.repeat} runs; {CHUNK}-byte reads")
    return 0


if __name__ == "__main__":
    sys.exit(main())
