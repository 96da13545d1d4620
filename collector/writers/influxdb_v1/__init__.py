"""InfluxDB 1.x writer: HTTP /write with line protocol."""

from collector.writers.base import register
from collector.writers.influxdb_v1.writer import InfluxV1Config, InfluxV1Writer

register("influxdb_v1", InfluxV1Writer.from_options)

__all__ = ["InfluxV1Config", "InfluxV1Writer"]
