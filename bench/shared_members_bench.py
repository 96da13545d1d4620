"""What a shared-subscription group does with a member that died or hung, on this Mosquitto.

Two members (A and B) share ``$share/g/t/+/up``; A then goes away in one of three
ways, with one of three session settings, and a publisher sends one QoS 1 message a
50 ms for ``--seconds``. The table gives how long after A went away every message
reached B, and how many never reached anyone (they went to A's share). The session
settings:

- persistent: clean_start false, session expiry 7 days (the collector's setting before);
- expiry 0: clean_start true, session expiry 0 (the session ends with the connection);
- keepalive: matters only for a hung member: the broker drops a silent client after
  1.5 x keepalive.

    python bench/shared_members_bench.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from simulators.services import LocalServices  # noqa: E402


def member(port: int, name: str, *, group: str, expiry: int, keepalive: int,
           got: list[tuple[float, int]] | None) -> paho.Client:
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=name,
                    protocol=MQTTProtocolVersion.MQTTv5)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = expiry
    if got is not None:
        def on_message(_c: object, _u: object, m: paho.MQTTMessage) -> None:
            got.append((time.monotonic(), int(m.payload)))
        c.on_message = on_message
    c.connect("127.0.0.1", port, keepalive, clean_start=expiry == 0, properties=props)
    c.subscribe(f"$share/{group}/t/+/up", 1)
    return c


def trial(port: int, how: str, expiry: int, keepalive: int, seconds: float) -> tuple[float, int]:
    """(seconds after A went away until B got every message, messages nobody got)."""
    tag = f"{how}-{expiry}-{keepalive}-{time.monotonic_ns()}"
    got: list[tuple[float, int]] = []
    group = f"g{time.monotonic_ns()}"  # a group of its own: earlier trials' A stay in theirs
    b = member(port, f"b-{tag}", group=group, expiry=expiry, keepalive=keepalive, got=got)
    b.loop_start()
    a = member(port, f"a-{tag}", group=group, expiry=expiry, keepalive=keepalive, got=[])
    a.loop_start()
    time.sleep(0.5)
    a.loop_stop()  # A stops reading and answering: hung
    if how == "killed":
        a.socket().close()  # the kernel closes it, as for SIGKILL: no DISCONNECT
    gone = time.monotonic()
    pub = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"p-{tag}",
                      protocol=MQTTProtocolVersion.MQTTv5)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    sent = 0
    while time.monotonic() - gone < seconds:
        pub.publish("t/x/up", str(sent).encode(), qos=1)
        sent += 1
        time.sleep(0.05)
    time.sleep(1.0)
    pub.loop_stop()
    b.loop_stop()
    b.disconnect()
    a.socket().close()
    received = {n for _, n in got}
    missing = [n for n in range(sent) if n not in received]
    # Every message after the last one B missed reached B: that is when B took it all.
    last_missed = max(missing, default=-1)
    if last_missed >= sent - 5:
        return float("inf"), len(missing)  # A still took its share at the end
    after = next((t for t, n in got if n > last_missed), gone) - gone
    return after, len(missing)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    rows = []
    with LocalServices() as s:
        port = s.mosquitto.port
        for how in ("killed", "hung"):
            for name, expiry, keepalive in (("persistent, keepalive 30", 7 * 86400, 30),
                                            ("expiry 0, keepalive 30", 0, 30),
                                            ("expiry 0, keepalive 5", 0, 5)):
                after, lost = trial(port, how, expiry, keepalive, args.seconds)
                rows.append((how, name, after, lost))
    print(f"\nA shared-subscription member killed or hung; {args.seconds:g} s of messages,"
          " one per 50 ms\n")
    print(f"| {'A':<6} | {'session':<26} | {'B takes all after s':>19} | {'not to B':>8} |")
    print(f"|{'-' * 8}|{'-' * 28}|{'-' * 21}|{'-' * 10}|")
    for how, name, after, lost in rows:
        took = f"{after:.1f}" if after < args.seconds else f"never (> {args.seconds:g})"
        print(f"| {how:<6} | {name:<26} | {took:>19} | {lost:>8} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
