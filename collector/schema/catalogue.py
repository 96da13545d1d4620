"""Every measurement cityedge writes, and where each is kept (sans-IO).

Sensor measurements come from the firmware profiles (their fields, units and
value types); the rest are written by the code named beside them. Each
measurement belongs to one retention group: ``raw`` readings (downsampled by
continuous queries), ``health`` (the gateways' and collectors' own readings)
or ``events`` (alerts, dead letters, outbox drops: rare, and kept longest).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from collector.schema.measurements import (
    CODE_MEASUREMENTS,
    READING_FIELDS,
    READING_TAGS,
    FieldDoc,
    MeasurementDoc,
)
from edge_agent.decoding.loader import load_profiles

SHIPPED_PROFILES = Path(__file__).resolve().parents[2] / "firmware_profiles"

# Fields whose extremes matter beside their mean, kept as <field>_max / <field>_min
# in the downsampled policies: the loudest minute of impact noise, the worst dust
# peak, the coldest and hottest hour.
EXTREMES: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "noise": {"lmax_dba": ("max",), "laeq_1min_dba": ("max",)},
    "particulate": {"pm2_5_ugm3": ("max",), "pm10_ugm3": ("max",)},
    "climate": {"temperature_c": ("min", "max")},
    "gas": {"co2_ppm": ("max",)},  # indoor air: the worst minute matters, not only the mean
}


@dataclass(frozen=True, slots=True)
class SensorField:
    name: str
    # The line protocol's type: "float" or "boolean".
    type: str
    unit: str
    # The profiles that report it.
    models: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SensorMeasurement:
    name: str
    fields: tuple[SensorField, ...]

    @property
    def numeric(self) -> tuple[SensorField, ...]:
        return tuple(f for f in self.fields if f.type != "boolean")


def sensor_measurements(profiles_dir: Path = SHIPPED_PROFILES) -> tuple[SensorMeasurement, ...]:
    """The measurements the profiles in ``profiles_dir`` write, their fields merged by name."""
    found: dict[str, dict[str, SensorField]] = {}
    for model, profile in sorted(load_profiles(profiles_dir).items()):
        for frame in profile.reading_frames:
            for spec in frame.fields:
                m = spec.measurement or profile.measurement
                # The agent sends every number as a float (README, "InfluxDB schema").
                kind = "boolean" if spec.type.is_bool else "float"
                old = found.setdefault(m, {}).get(spec.name)
                models = (*old.models, model) if old else (model,)
                found[m][spec.name] = SensorField(spec.name, kind, spec.unit, models)
    return tuple(SensorMeasurement(m, tuple(sorted(fs.values(), key=lambda f: f.name)))
                 for m, fs in sorted(found.items()))


def sensor_docs(measurements: tuple[SensorMeasurement, ...]) -> tuple[MeasurementDoc, ...]:
    """The profiles' measurements in the same terms as the code's (docs/schema.md)."""
    docs = []
    for m in measurements:
        fields = tuple(FieldDoc(f.name, f.type, f.unit, "from " + ", ".join(f.models))
                       for f in m.fields)
        docs.append(MeasurementDoc(
            m.name, (*READING_TAGS, ("<sensor tags>", "any tags the sensor's config adds")),
            (*READING_FIELDS, *fields), "the agent, one point per reading",
            "sensor readings (firmware_profiles/)"))
    return tuple(docs)


def all_measurements(profiles_dir: Path = SHIPPED_PROFILES) -> tuple[MeasurementDoc, ...]:
    """Every measurement cityedge writes: the profiles' first, then the code's."""
    return (*sensor_docs(sensor_measurements(profiles_dir)), *CODE_MEASUREMENTS)
