"""sensor.community (airrohr) firmware pushes, sans-IO: the body in, a cityedge batch out.

The airrohr firmware's "send to own API" option POSTs, every sending interval
(145 s by default), one JSON object to the configured host, port and path::

    {"esp8266id": "13597771", "software_version": "NRZ-2020-133", "sensordatavalues":[
     {"value_type":"SDS_P1","value":"12.30"},{"value_type":"SDS_P2","value":"7.10"},
     ...,{"value_type":"samples","value":"5118"},{"value_type":"signal","value":"-68"}]}

with ``Content-Type: application/json``, ``X-Sensor: esp8266-<chipid>`` (``esp32-``
on an ESP32, whose body says ``esp32id``), on newer firmware ``X-MAC-ID``, and
HTTP basic auth when a user and password are set. Values are strings; the
prefix of a value type names the sensor (``SDS_``, ``PMS_``, ``SPS30_``,
``BME280_``, ``DNMS_noise_``...). The trailing ``samples``, ``min_micro``,
``max_micro``, ``interval`` and ``signal`` describe the device's loop and
radio, not the air: they are counted, and ``interval`` (ms) and ``samples`` are
kept as the fields ``fw_interval_ms`` and ``fw_samples`` of every reading of the
push, so a gap in a series can be told from a longer interval.

The push becomes one cityedge batch (cityedge/uplink/payload.py), one reading
per sensor, mapped onto the measurements and fields of cityedge's own profiles
(``MAPPED``), so it passes the collector's own ingest (validation, registry
site tags) and alert engine unchanged. The payload has no time and no
identity, and the firmware never resends: each reading gets the arrival time
(``now_ns``, passed in) and, as identity, seq = arrival time + its index and
an epoch derived from the device id. A value that cannot be stored (not a
number, or a value type nobody maps) is returned in ``rejected`` for a dead
letter; nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from cityedge.uplink.payload import PayloadError
from cityedge.uplink.text import brief

# The X-Sensor header: SENSOR_BASENAME ("esp8266-" or "esp32-") and the chip id.
SENSOR_RE = re.compile(r"^(esp8266|esp32)-([0-9A-Za-z]{1,32})$")
# The firmware's data string is reserved at 1,023 characters (XLARGE_STR) and grows
# past it with many sensors; 64 KiB leaves room for any build without letting a
# client hand us megabytes.
MAX_BODY_BYTES = 64 * 1024
# Entries in sensordatavalues: every sensor the firmware supports at once is ~60.
MAX_VALUES = 256
# Loop and radio statistics the firmware appends to every push: not readings.
METADATA = frozenset({"samples", "min_micro", "max_micro", "interval", "signal"})
# Those kept, as fields of every reading of the push: the device's sending interval
# (ms) and its loop count, so a gap in a series shows against what was expected.
KEPT_METADATA = {"interval": "fw_interval_ms", "samples": "fw_samples"}

# Value-type prefix -> (sensor id, its model tag, measurement of its values).
SENSORS: dict[str, tuple[str, str, str]] = {
    "SDS_": ("sds011", "sds011", "particulate"),
    "PMS_": ("pms", "pms5003", "particulate"),
    "SPS30_": ("sps30", "sps30", "particulate"),
    "HPM_": ("hpm", "hpm", "particulate"),
    "NPM_": ("npm", "nextpm", "particulate"),
    "BME280_": ("bme280", "bme280", "climate"),
    "BMP280_": ("bmp280", "bmp280", "climate"),
    "BMP_": ("bmp180", "bmp180", "climate"),
    "DHT_": ("dht22", "dht22", "climate"),
    "HTU21D_": ("htu21d", "htu21d", "climate"),
    "SHT3X_": ("sht3x", "sht3x", "climate"),
    "DNMS_noise_": ("dnms", "dnms", "noise"),
}
# Value-type suffix -> (cityedge field, factor). Names as in firmware_profiles/:
# sds011/pms5003/sps30 (particulate), wxt530/climate_modbus (climate),
# noise_meter_modbus (noise). The firmware's pressure is in Pa, ours in hPa.
# DNMS reports LAeq, LA_min and LA_max over its sending interval (not a fixed
# minute), so LAeq is laeq_dba, not laeq_1min_dba; LA_max is lmax_dba as ours.
MAPPED: dict[str, tuple[str, float]] = {
    "P0": ("pm1_0_ugm3", 1.0),
    "P1": ("pm10_ugm3", 1.0),
    "P2": ("pm2_5_ugm3", 1.0),
    "P4": ("pm4_0_ugm3", 1.0),
    "temperature": ("temperature_c", 1.0),
    "humidity": ("humidity_pct", 1.0),
    "pressure": ("pressure_hpa", 0.01),
    "LAeq": ("laeq_dba", 1.0),
    "LA_min": ("lmin_dba", 1.0),
    "LA_max": ("lmax_dba", 1.0),
}
# The batch clock of a push: the collector's own, which is synchronised.
BOOT = "collector"


class AirrohrError(PayloadError):
    """The push as a whole cannot be used; ``reason`` is a short stable code."""


@dataclass(frozen=True, slots=True)
class RejectedValue:
    """One entry of sensordatavalues that cannot be a field: dead-lettered with ``seq``."""

    seq: int
    reason: str
    sensor: str | None
    measurement: str | None
    raw: str


@dataclass(frozen=True, slots=True)
class Push:
    gateway: str
    epoch: str
    payload: bytes  # a cityedge batch (v1 JSON) for collector.ingest
    rejected: tuple[RejectedValue, ...]
    metadata: int  # entries that were loop/radio statistics
    software_version: str


def gateway_of(x_sensor: str | None) -> str | None:
    """The registry id of a device: its X-Sensor header, when it is one the firmware sends."""
    if x_sensor is None or not SENSOR_RE.fullmatch(x_sensor.strip()):
        return None
    return x_sensor.strip()


def epoch_of(gateway: str) -> str:
    """A device's epoch: stable, 16 hex digits derived from its id."""
    return hashlib.sha256(f"airrohr:{gateway}".encode()).hexdigest()[:16]


def _number(text: object) -> float | None:
    if not isinstance(text, str) or len(text) > 32:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _split(value_type: str) -> tuple[tuple[str, str, str] | None, str]:
    for prefix, sensor in SENSORS.items():
        if value_type.startswith(prefix):
            return sensor, value_type[len(prefix):]
    return None, value_type


def _load(body: bytes, gateway: str) -> tuple[list[Any], str]:
    if len(body) > MAX_BODY_BYTES:
        raise AirrohrError("too_large", f"{len(body)} bytes > {MAX_BODY_BYTES}")
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise AirrohrError("bad_json", str(exc)[:200]) from None
    if not isinstance(doc, dict):
        raise AirrohrError("bad_json", "expected an object")
    kind, chip = SENSOR_RE.fullmatch(gateway).groups()  # type: ignore[union-attr]
    said = doc.get(f"{kind}id")
    if said != chip:
        raise AirrohrError("sensor_mismatch",
                           f"body says {kind}id={brief(said)}, X-Sensor says {chip!r}")
    values = doc.get("sensordatavalues")
    if not isinstance(values, list):
        raise AirrohrError("bad_field", "sensordatavalues: expected a list")
    if len(values) > MAX_VALUES:
        raise AirrohrError("too_large", f"{len(values)} values > {MAX_VALUES}")
    version = doc.get("software_version", "")
    return values, version if isinstance(version, str) else ""


def to_batch(body: bytes, gateway: str, now_ns: int) -> Push:
    """The push as one cityedge batch timed ``now_ns``; raises AirrohrError.

    ``gateway`` is ``gateway_of(X-Sensor)``; the body must name the same chip.
    """
    values, version = _load(body, gateway)
    fields: dict[str, dict[str, float]] = {}
    models: dict[str, tuple[str, str]] = {}
    problems: list[tuple[str, str | None, str | None, str]] = []
    metadata = 0
    kept: dict[str, int] = {}
    for entry in values:
        raw = json.dumps(entry, ensure_ascii=False)[:1024]
        value_type = entry.get("value_type") if isinstance(entry, dict) else None
        if not isinstance(value_type, str):
            problems.append(("bad_value_type", None, None, raw))
            continue
        if value_type in METADATA:
            metadata += 1
            number = _number(entry.get("value"))
            if value_type in KEPT_METADATA and number is not None and number.is_integer():
                kept[KEPT_METADATA[value_type]] = int(number)
            continue
        sensor, suffix = _split(value_type)
        mapped = MAPPED.get(suffix) if sensor is not None else None
        if sensor is None or mapped is None:
            problems.append(("unknown_value_type", sensor and sensor[0], sensor and sensor[2],
                             raw))
            continue
        sid, model, measurement = sensor
        number = _number(entry.get("value"))
        name, factor = mapped
        if number is None or name in fields.get(sid, {}):
            reason = "bad_value" if number is None else "duplicate_value"
            problems.append((reason, sid, measurement, raw))
            continue
        fields.setdefault(sid, {})[name] = round(number * factor, 6)
        models[sid] = (model, measurement)
    epoch = epoch_of(gateway)
    readings = [{"seq": now_ns + i, "sensor": sid, "m": models[sid][1], "t": now_ns,
                 "boot": BOOT, "mono": 0, "s": True, "f": {**f, **kept}}
                for i, (sid, f) in enumerate(sorted(fields.items()))]
    batch = {"v": 1, "gateway": gateway, "epoch": epoch, "batch": now_ns // 1_000_000_000,
             "sent_ns": now_ns, "clock": {"synced": True, "boot": BOOT, "mono_ns": 0},
             "sensors": {sid: {"model": m} for sid, (m, _) in sorted(models.items())},
             "readings": readings}
    rejected = tuple(RejectedValue(now_ns + len(readings) + i, reason, sensor, measurement, raw)
                     for i, (reason, sensor, measurement, raw) in enumerate(problems))
    return Push(gateway, epoch, json.dumps(batch, separators=(",", ":")).encode(), rejected,
                metadata, version)
