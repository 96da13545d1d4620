"""Where points go: one folder per database API, each registering a factory by name."""

from collector.writers import influxdb_v1, influxdb_v2  # noqa: F401  (register themselves)
from collector.writers.base import REGISTRY, Writer, register
from collector.writers.errors import DeliveryRejected, Retryable, Throttled, TooLarge, WriteError

__all__ = [
    "REGISTRY",
    "DeliveryRejected",
    "Retryable",
    "Throttled",
    "TooLarge",
    "WriteError",
    "Writer",
    "register",
]
