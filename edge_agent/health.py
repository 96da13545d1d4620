"""The gateway's own readings about itself: ``gateway_health`` and one ``sensor_health`` per port.

Every counter the agent keeps reaches one of these (DESIGN, Trust: every
refusal and every drop counted and visible); docs/schema.md lists the fields.
They are stored in the outbox like any reading and travel the same path.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from cityedge.counters import by_reason
from cityedge.uplink import FieldValue, Reading
from cityedge.version import package_version
from edge_agent.config import AGENT_SENSOR
from edge_agent.outbox.space import free_bytes

if TYPE_CHECKING:
    from edge_agent.agent import Agent

Fields = dict[str, FieldValue]

# The SoC's temperature in millidegrees Celsius (a Raspberry Pi's zone 0 is the CPU);
# a machine without it gets no cpu_temp_c field.
THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")
# Batches whose send time is kept for the round trip: more than are ever in flight.
MAX_TIMED_BATCHES = 256


def cpu_temp_c(path: Path = THERMAL_ZONE) -> float | None:
    """The CPU's temperature in degC, or None where the kernel does not report one."""
    try:
        return round(int(path.read_text(encoding="ascii").strip()) / 1000, 1)
    except (OSError, ValueError):
        return None


class LinkTiming:
    """The last ack's round trip and the collector's clock against ours, sans-IO.

    ``rtt_ms``: from a batch's send to its ack, which includes the collector's
    InfluxDB write. ``offset_ms``: the collector's clock (stamped on the ack as
    it is sent) minus ours when it arrives, so positive when ours is behind;
    good to the ack's one-way delay. Both None until an ack has come.
    """

    def __init__(self) -> None:
        self._sent: dict[int, int] = {}
        self.rtt_ms: float | None = None
        self.offset_ms: float | None = None

    def sent(self, batch_id: int, mono_ns: int) -> None:
        self._sent[batch_id] = mono_ns
        while len(self._sent) > MAX_TIMED_BATCHES:
            del self._sent[next(iter(self._sent))]

    def acked(self, batch_id: int, mono_ns: int, wall_ns: int, collector_ns: int | None) -> None:
        sent = self._sent.pop(batch_id, None)
        if sent is not None:
            self.rtt_ms = round((mono_ns - sent) / 1e6, 1)
        if collector_ns is not None:
            self.offset_ms = round((collector_ns - wall_ns) / 1e6, 1)

    def fields(self) -> Fields:
        out: Fields = {}
        if self.rtt_ms is not None:
            out["uplink_rtt_ms"] = self.rtt_ms
        if self.offset_ms is not None:
            out["clock_offset_ms"] = self.offset_ms
        return out


class Health:
    """Builds the health readings from the agent's parts; keeps the ingest-rate mark."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self._rate_mark = (time.monotonic(), 0)

    def sensor_readings(self) -> list[Reading]:
        a = self.agent
        out = []
        for port in a.ports:
            wall, mono = a.clock.stamp(port.config.id + "/health")
            fields: Fields = {
                "port_open": port.is_open,
                "dropped_readings": a.outbox.dropped[port.config.id] if a.outbox else 0,
                "store_failed": a.store_failures[port.config.id],
                **dict(port.counters),
            }
            out.append(Reading(port.config.id, "sensor_health", fields, wall, a.clock.boot, mono))
        return out

    def _time_left(self, used: int, max_bytes: int, appended: int) -> float:
        """Seconds until the outbox is full at the ingest rate since the last health reading."""
        now = time.monotonic()
        last_t, last_bytes = self._rate_mark
        self._rate_mark = (now, appended)
        rate = (appended - last_bytes) / max(now - last_t, 1e-3)
        return round((max_bytes - used) / rate, 1) if rate > 0 else -1.0

    async def gateway_reading(self) -> Reading:
        a = self.agent
        assert a.outbox is not None
        depth = await a.io_call(a.outbox.depth)
        wall, mono = a.clock.stamp(AGENT_SENSOR)
        max_bytes = a.outbox.max_bytes or 1
        fields: Fields = {
            "outbox_readings": depth.readings,
            "outbox_bytes": depth.bytes,
            "outbox_full_pct": round(100 * depth.bytes / max_bytes, 2),
            "oldest_age_s": round((wall - depth.oldest_ns) / 1e9, 3) if depth.oldest_ns else 0.0,
            "dropped_readings": sum(a.outbox.dropped.values()),
            "store_failed_readings": sum(a.store_failures.values()),
            "disk_free_mb": round(free_bytes(a.outbox_path.parent) / 1024 / 1024, 1),
            "checkpoint_failures": a.outbox.checkpoint_failures,
            "outbox_time_left_s": self._time_left(depth.bytes, max_bytes,
                                                  a.outbox.appended_bytes),
            "backlog_readings": a.window.backlog_seqs,
            "in_flight_batches": a.window.in_flight,
            "resent_batches": a.window.resent_batches,
            "refused_sends": a.refused_sends,
            "split_batches": a.split_batches,
            "status_refused_connections": sum(a.tails.refused.values()),
            **a.display.health_fields(),
            **self._trust_fields(),
            "link_up": a.transport.ready(),
            "clock_synced": a.anchoring.synced_now,
            "clock_anchor": a.anchoring.anchor_source,
            "uptime_s": round(time.monotonic() - a.started_at, 1),
            "agent_version": package_version(),
            **a.link_timing.fields(),
            **(a.reloader.health_fields() if a.reloader is not None else {}),
            "notify_failures": a.notifier.failures,
            **by_reason("status_socket_errors", a.watch.status_errors),
        }
        temp = cpu_temp_c()
        if temp is not None:
            fields["cpu_temp_c"] = temp
        return Reading(AGENT_SENSOR, "gateway_health", fields, wall, a.clock.boot, mono)

    def _trust_fields(self) -> Fields:
        """Refused acks and time answers, by reason (DESIGN, Trust: every refusal counted)."""
        a = self.agent
        bad: Counter[str] = Counter(a.transport.bad_ack_reasons)
        if a.acks_other_outbox:
            bad["other_outbox"] = a.acks_other_outbox
        refused = a.anchoring.answers_refused
        return {
            "bad_acks": sum(bad.values()),
            **by_reason("bad_acks", bad),
            "acks_unknown_batch": a.window.acks_unknown_batch,
            "delete_failures": a.delete_failures,
            "boot_time_save_failures": a.anchoring.save_failures,
            **a.transport.health_fields(),
            "ack_seqs_ignored": a.window.ack_seqs_ignored,
            "time_answers_refused": sum(refused.values()),
            **by_reason("time_answers_refused", refused),
        }

