"""The reading record the gateway stores: what a sensor said, and when."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

FieldValue = int | float | bool | str


@dataclass(frozen=True, slots=True)
class Reading:
    """One decoded frame from one sensor, stamped by the gateway.

    ``time_ns`` is the wall clock (possibly wrong before NTP sync); ``boot`` and
    ``mono_ns`` let the collector correct it later, identically on every resend.
    """

    sensor: str
    measurement: str
    fields: Mapping[str, FieldValue]
    time_ns: int
    boot: str
    mono_ns: int
    # The kernel's NTP state when the reading was taken (filled in by the agent).
    synced: bool = True
