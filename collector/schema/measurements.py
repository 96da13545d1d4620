"""The measurements written by code rather than by firmware profiles: tags and fields,
each with its type, unit and meaning (sans-IO tables; docs/schema.md is made from them).

A field name with ``<...>`` in it is a family: one field per value seen, e.g.
``bad_acks_<reason>`` is ``bad_acks_unsealed`` and so on; those counters are
left out while zero. ``when`` says when a field is written at all (empty:
always).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from collector.alerts.points import ALERTS_MEASUREMENT
from collector.deadletter import DEADLETTER_MEASUREMENT
from collector.schema.groups import COLLECTOR_HEALTH, GATEWAY_HEALTH, OUTBOX_DROPS, SENSOR_HEALTH


@dataclass(frozen=True, slots=True)
class FieldDoc:
    name: str
    # InfluxDB's field type: float, integer, string or boolean.
    type: str
    unit: str
    meaning: str
    when: str = ""

    def matches(self, name: str) -> bool:
        if "<" not in self.name:
            return name == self.name
        pattern = re.sub(r"<[^>]+>", "[a-z0-9_]+", re.escape(self.name).replace(r"\<", "<")
                         .replace(r"\>", ">"))
        return re.fullmatch(pattern, name) is not None


@dataclass(frozen=True, slots=True)
class MeasurementDoc:
    name: str
    tags: tuple[tuple[str, str], ...]
    fields: tuple[FieldDoc, ...]
    written_by: str
    meaning: str

    def field_for(self, name: str) -> FieldDoc | None:
        exact = [f for f in self.fields if f.name == name]
        return exact[0] if exact else next((f for f in self.fields if f.matches(name)), None)


def _f(name: str, type_: str, unit: str, meaning: str, when: str = "") -> FieldDoc:
    return FieldDoc(name, type_, unit, meaning, when)


COUNT = "count"
INT, FLT, STR, BOOL = "integer", "float", "string", "boolean"

# Tags of every reading (collector/ingest.py reading_tags), sensor and health alike.
READING_TAGS: tuple[tuple[str, str], ...] = (
    ("district", "district (gu), e.g. 강남구; from the gateway registry"),
    ("site", "site name; from the gateway registry"),
    ("site_kind", "dust_zone, bus_stop or apartment; from the gateway registry"),
    ("gateway", "gateway id"),
    ("sensor", "sensor id on that gateway (agent: the gateway's own readings)"),
    ("model", "firmware profile of the sensor"),
)
# Fields of every reading: its identity and how its time was settled.
READING_FIELDS: tuple[FieldDoc, ...] = (
    _f("seq", INT, "", "the reading's number in its gateway's outbox (completeness: gaps in"
       " seq per epoch are readings that never landed)"),
    _f("epoch", STR, "", "the gateway outbox the seq belongs to (a new outbox starts again at 1)"),
    _f("time_corrected", BOOL, "", "taken under an unsynchronised clock, timed from the boot's"
       " anchor", "only when true"),
    _f("time_unverified", BOOL, "", "taken under an unsynchronised clock with no anchor: kept as"
       " stamped", "only when true"),
)

GATEWAY_HEALTH_DOC = MeasurementDoc(GATEWAY_HEALTH, READING_TAGS, (
    *READING_FIELDS,
    _f("outbox_readings", INT, COUNT, "readings waiting in the outbox"),
    _f("outbox_bytes", INT, "bytes", "their size"),
    _f("outbox_full_pct", FLT, "%", "outbox size against its max_bytes"),
    _f("outbox_time_left_s", FLT, "s", "until the outbox is full at the recent ingest rate"
       " (-1: not growing)"),
    _f("oldest_age_s", FLT, "s", "age of the oldest reading waiting (0: none)"),
    _f("backlog_readings", INT, COUNT, "readings stored but not sent yet"),
    _f("in_flight_batches", INT, COUNT, "batches sent and not acked"),
    _f("resent_batches", INT, COUNT, "batches sent again after an ack timeout, since start"),
    _f("refused_sends", INT, COUNT, "batches the uplink would not even queue"),
    _f("split_batches", INT, COUNT, "batches cut to fit the collector's payload limit"),
    _f("status_refused_connections", INT, COUNT, "status socket connections closed: over"
       " the cap, a reader that stopped reading, a failed request"),
    _f("dropped_readings", INT, COUNT, "readings a full outbox dropped, since start"),
    _f("store_failed_readings", INT, COUNT, "read but not stored (disk full, failing card)"),
    _f("disk_free_mb", FLT, "MB", "free space where the outbox is"),
    _f("checkpoint_failures", INT, COUNT, "commit windows whose checkpoint did not complete"),
    _f("displays_showing", INT, COUNT, "alert displays on the terminal"),
    _f("displays_rejected", INT, COUNT, "display messages refused"),
    _f("displays_rejected_<reason>", INT, COUNT, "the same by reason (unsealed, bad_seal,"
       " board_full, expired, ...)", "when counted"),
    _f("display_write_failures", INT, COUNT, "display file writes that failed"),
    _f("displays_dropped", INT, COUNT, "display messages past the queue"),
    _f("display_acks_dropped", INT, COUNT, "display acks not queued"),
    _f("uplink_incoming_dropped", INT, COUNT, "messages with no room in the incoming queue (an"
       " ack among them costs a resend)", "MQTT uplink"),
    _f("collector_refused", INT, COUNT, "batches the collector refused", "HTTP uplink"),
    _f("collector_refused_<reason>", INT, COUNT, "the same by reason", "HTTP uplink, when counted"),
    _f("uplink_failures", INT, COUNT, "requests that found no collector", "HTTP uplink"),
    _f("bad_acks", INT, COUNT, "acks dropped as unusable"),
    _f("bad_acks_<reason>", INT, COUNT, "the same by reason (unsealed, bad_seal, bad_json,"
       " other_outbox, ...)", "when counted"),
    _f("acks_unknown_batch", INT, COUNT, "acks naming a batch not handed out here"),
    _f("ack_seqs_ignored", INT, COUNT, "seqs an ack named outside its batch"),
    _f("delete_failures", INT, COUNT, "acked readings the outbox could not delete (resent)"),
    _f("boot_time_save_failures", INT, COUNT, "time anchors not saved (tried again)"),
    _f("time_answers_refused", INT, COUNT, "time answers from the collector refused"),
    _f("time_answers_refused_<reason>", INT, COUNT, "the same by reason (implausible,"
       " not_in_flight)", "when counted"),
    _f("link_up", BOOL, "", "the uplink is connected"),
    _f("clock_synced", BOOL, "", "the wall clock is NTP-synchronised"),
    _f("clock_anchor", STR, "", "what this boot's unsynchronised readings are timed from: ntp,"
       " collector or none"),
    _f("clock_offset_ms", FLT, "ms", "the collector's clock minus the gateway's, from the last"
       " ack (positive: the gateway is behind); good to the ack's one-way delay",
       "after the first ack"),
    _f("uplink_rtt_ms", FLT, "ms", "last batch's round trip, send to ack (includes the"
       " collector's InfluxDB write)", "after the first ack"),
    _f("cpu_temp_c", FLT, "degC", "CPU temperature (/sys/class/thermal/thermal_zone0)",
       "where the kernel reports it"),
    _f("uptime_s", FLT, "s", "since the agent started"),
    _f("agent_version", STR, "", "the cityedge version the agent runs (also in its status"
       " message)"),
    _f("config_reloads", INT, COUNT, "SIGHUP reloads applied, since start"),
    _f("config_reloads_refused", INT, COUNT, "SIGHUP reloads refused (the running config kept)"),
    _f("config_reloads_refused_<reason>", INT, COUNT, "the same by reason (invalid,"
       " needs_restart, unreadable)", "when counted"),
    _f("notify_failures", INT, COUNT, "notifications systemd did not get (NOTIFY_SOCKET)"),
    _f("status_socket_errors_<reason>", INT, COUNT, "the status socket's mode or group not"
       " set, or no socket (mode, group, unavailable)", "when counted"),
), "edge_agent/health.py, every health_interval", "the gateway's own state")

SENSOR_HEALTH_DOC = MeasurementDoc(SENSOR_HEALTH, READING_TAGS, (
    *READING_FIELDS,
    _f("port_open", BOOL, "", "the serial port is open"),
    _f("dropped_readings", INT, COUNT, "this sensor's readings a full outbox dropped"),
    _f("store_failed", INT, COUNT, "this sensor's readings not stored"),
    *(_f(name, INT, unit, meaning, "when counted") for name, unit, meaning in (
        ("bytes", "bytes", "received from the port"),
        ("frames_ok", COUNT, "frames decoded"),
        ("replies", COUNT, "command replies decoded"),
        ("rejected_<reason>", COUNT, "frames rejected by reason (bad_checksum, bad_length,"
         " out_of_range, ...: docs/profiles.md)"),
        ("bytes_skipped", "bytes", "bytes skipped looking for a frame"),
        ("commands_sent", COUNT, "commands written to the device"),
        ("reply_timeouts", COUNT, "commands not answered in time"),
        ("write_errors", COUNT, "commands that could not be written"),
        ("warmup_discarded", COUNT, "readings dropped while the device warms up"),
        ("recoveries", COUNT, "recovery commands after the device fell silent"),
        ("port_errors", COUNT, "port errors (each closes and reopens it)"),
        ("port_reopens", COUNT, "successful reopens"))),
), "edge_agent/health.py, every health_interval, per sensor",
    "counters since the agent started, per sensor")

OUTBOX_DROPS_DOC = MeasurementDoc(OUTBOX_DROPS, READING_TAGS, (
    *READING_FIELDS,
    _f("dropped", INT, COUNT, "readings lost in this gap"),
    _f("of_measurement", STR, "", "the measurement they were of"),
    _f("reason", STR, "", "outbox_full (dropped by the policy) or not_stored (read but never"
       " stored: full disk)"),
    _f("first_time_ns", INT, "ns", "time of the first reading lost"),
    _f("last_time_ns", INT, "ns", "time of the last reading lost"),
    _f("first_seq", INT, "", "seq of the first reading lost (0 for not_stored)"),
    _f("last_seq", INT, "", "seq of the last reading lost (0 for not_stored)"),
), "edge_agent/outbox/bookkeeping.py, at most once per sensor and measurement per health"
   " interval", "readings a full outbox dropped or a full disk kept from being stored")

_NOTIFY = "with alerts, per notifier"
COLLECTOR_HEALTH_DOC = MeasurementDoc(COLLECTOR_HEALTH, (
    ("collector", "the collector's MQTT client id (- without MQTT)"),), (
    _f("batches", INT, COUNT, "batches received, since start"),
    _f("readings", INT, COUNT, "readings received"),
    _f("writes", INT, COUNT, "InfluxDB writes"),
    _f("write_retries", INT, COUNT, "writes retried"),
    _f("dead_letters", INT, COUNT, "readings kept as dead letters"),
    _f("rejected_points", INT, COUNT, "points InfluxDB refused (dead-lettered)"),
    _f("dropped_points", INT, COUNT, "refused as older than the retention policy, dead letter"
       " too: nothing stored"),
    _f("pending_points", INT, COUNT, "points waiting to be written"),
    _f("last_write_ms", FLT, "ms", "duration of the last write"),
    _f("refused_batches", INT, COUNT, "batches refused"),
    _f("refused_<reason>", INT, COUNT, "the same by reason (bad_json, rate_limited,"
       " unknown_gateway, ...)", "when counted"),
    _f("dead_letters_<reason>", INT, COUNT, "dead letters by reason", "when counted"),
    _f("not_written_<reason>", INT, COUNT, "batches not acked (resent): series_limit,"
       " dead_letter_refused, write_budget", "when counted"),
    _f("http_connections_refused_<reason>", INT, COUNT, "HTTP connections refused",
       "HTTP source, when counted"),
    _f("mqtt_reconnects", INT, COUNT, "reconnects to the broker", "MQTT source"),
    _f("mqtt_overflowed", INT, COUNT, "batches past the incoming queue", "MQTT source"),
    _f("mqtt_read_pauses", INT, COUNT, "times reading paused at receive_maximum unanswered"
       " batches (backpressure)", "MQTT source"),
    _f("mqtt_unanswered_peak", INT, COUNT, "most batches held unanswered at once", "MQTT source"),
    _f("mqtt_acks_not_sent", INT, COUNT, "acks paho would not queue", "MQTT source"),
    _f("unencodable_points", INT, COUNT, "points that could not be encoded"),
    _f("failed_writes", INT, COUNT, "writes given up"),
    _f("write_over_budget", INT, COUNT, "groups past the write budget"),
    _f("alert_feed_errors", INT, COUNT, "readings the alert engine could not take"),
    _f("rate_limit_gateways", INT, COUNT, "gateways whose rate is tracked"),
    _f("rate_limit_forgotten", INT, COUNT, "gateways forgotten by the rate limiter"),
    _f("registry_gateways", INT, COUNT, "active gateways in the registry", "with a registry"),
    _f("registry_reloads", INT, COUNT, "registry reloads", "with a registry"),
    _f("registry_errors", INT, COUNT, "registry reloads that failed", "with a registry"),
    _f("site_overrides", INT, COUNT, "batches whose site tags the registry replaced",
       "with a registry"),
    _f("insecure", BOOL, "", "running without a registry", "without a registry"),
    *(_f(name, INT, COUNT, meaning, "with alerts") for name, meaning in (
        ("alert_events", "alert transitions"), ("alerts_open", "alerts open now"),
        ("alerts_leader", "1 while this collector evaluates the rules"),
        ("alert_takeovers", "times it took the lease"),
        ("alert_stepdowns", "times it lost the lease"),
        ("alert_standby_points", "readings fed while another collector leads"),
        ("alert_commands", "ack/silence commands applied"),
        ("alert_saves", "alert state saves"),
        ("alert_points_dropped", "alert points not written (queue full)"),
        ("alert_readings_too_old", "readings older than a clock-hour rule's backfill,"
                                   " stored but not judged"),
        ("alert_readings_future", "readings stamped more than max_future_skew ahead,"
                                  " stored but not judged"),
        ("alert_members_evicted", "quiet series forgotten by a rule to make room"
                                  " (max_members)"),
        ("alert_members_refused", "new series a rule did not watch: its table was full of"
                                  " busy members"),
        ("alert_gateways_forgotten", "gateways dropped from the directory (max_gateways)"),
        ("alert_point_write_errors", "alert point writes that failed"))),
    *(_f(f"airrohr_{name}", INT, COUNT, meaning, "with http.airrohr") for name, meaning in (
        ("pushes", "sensor.community pushes written and answered"),
        ("readings", "readings in those pushes (one per sensor)"),
        ("metadata_values", "metadata values (samples, signal, ...); interval and samples"
                            " are kept as fw_interval_ms, fw_samples on the readings"),
        ("auto_admitted", "pushes from devices the registry does not list"),
        ("auto_devices", "devices auto_register admitted (at most max_auto_admitted)"),
        ("lost", "pushes answered 429 or 503: the firmware never resends them"))),
    _f("airrohr_lost_<reason>", INT, COUNT, "those lost pushes by reason (rate_limited,"
       " write_timeout, busy, ...)", "with http.airrohr"),
    *(_f(f"influx_write_{name}", INT, COUNT, meaning, "with http.influx_write")
      for name, meaning in (
        ("writes", "line-protocol writes answered 204"),
        ("partial_writes", "writes answered 400 after the good lines were written"),
        ("lines", "lines written"))),
    _f("ops_page_refreshes", INT, COUNT, "the operations page's looks at InfluxDB", "with"
       " ops_page"),
    _f("ops_page_refresh_errors", INT, COUNT, "those that failed", "with ops_page"),
    _f("status_ignored_<reason>", INT, COUNT, "gateway status messages left out (bad_status,"
       " bad_gateway_id, foreign_topic, forgotten)", "with ops_page, when counted"),
    _f("lease_<counter>", INT, COUNT, "the etcd lease's counters (grants, campaigns, elected,"
       " lapses, states_fenced, ...)", "with alerts, lease: etcd"),
    _f("alert_outbox_<counter>", INT, COUNT, "notifications written ahead to etcd: pending,"
       " written, settled, refused_full, fenced, write_errors, restored, unreadable",
       "with alerts, lease: etcd"),
    _f("notify_<notifier>_<counter>", INT, COUNT, "delivered, retries, dropped, queued, fenced"
       " and the notifier's own (sent, failed, acked, ...)", _NOTIFY),
), "collector/service.py, every health_interval", "the collector's own counters, since start")

DEADLETTER_DOC = MeasurementDoc(DEADLETTER_MEASUREMENT, (
    ("gateway", "gateway that sent it"), ("reason", "why it was not stored as a reading"),
    ("sensor", "its sensor, when it named one"), ("measurement", "its measurement, when it"
                                                                 " named one")), (
    _f("seq", INT, "", "its seq (0 when it had none usable)"),
    _f("epoch", STR, "", "its outbox"),
    _f("detail", STR, "", "what was wrong"),
    _f("raw", STR, "", "the reading as sent (cut to 4096 characters)"),
), "collector/ingest.py and collector/delivery.py", "readings that failed validation or that"
   " InfluxDB refused")

ALERTS_DOC = MeasurementDoc(ALERTS_MEASUREMENT, (
    ("rule", "the rule's name"), ("severity", "the rule's severity"),
    ("state", "firing, resolved, acked, silenced, ... (docs/alerts.md)"),
    ("<scope>", "the alert's scope tags: district, site, gateway, ... as the rule groups")), (
    _f("value", FLT, "the rule's unit", "the value that made the transition", "when finite"),
    _f("message", STR, "", "the rule's message"),
    _f("alert_id", STR, "", "the alert's id (edge-collector alerts ack ID)"),
    _f("seq", INT, "", "the event's number for this alert"),
    _f("previous", STR, "", "the state before"),
    _f("started_ns", INT, "ns", "when the alert started"),
    _f("members", INT, COUNT, "scopes that make up the alert"),
    _f("notify", BOOL, "", "notifiers were told"),
    _f("late", BOOL, "", "made from late readings"),
    _f("repeat", BOOL, "", "a repeated notification"),
    _f("silenced", BOOL, "", "under a silence"),
    _f("fencing_token", INT, "", "the leader's fencing token (etcd's revision of its leader key)",
       "with lease: etcd"),
), "collector/alerts/points.py, at every transition", "alert transitions")

CODE_MEASUREMENTS: tuple[MeasurementDoc, ...] = (
    GATEWAY_HEALTH_DOC, SENSOR_HEALTH_DOC, OUTBOX_DROPS_DOC, COLLECTOR_HEALTH_DOC,
    DEADLETTER_DOC, ALERTS_DOC)
