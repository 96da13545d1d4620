"""InfluxDB 2.x / Cloud writer: /api/v2/write with line protocol, through influxdb-client."""

from collector.writers.base import register
from collector.writers.influxdb_v2.writer import InfluxV2Config, InfluxV2Writer

register("influxdb_v2", InfluxV2Writer.from_options)

__all__ = ["InfluxV2Config", "InfluxV2Writer"]
