"""Log notifier: one line per alert event through Python logging (journald, files, stderr).

The cheapest notifier and the one that cannot fail: it never raises, so it
is a safe default and a record of what the other notifiers were asked to send.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Literal

from cityedge import yamlconfig
from collector.alerts.events import AlertEvent, iso
from collector.notifiers.base import NotifierContext, register

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}


@dataclass(frozen=True)
class LogConfig:
    level: Literal["debug", "info", "warning", "error"] = "warning"
    format: Literal["text", "json"] = "text"
    logger: str = "cityedge.alerts"


def format_event(event: AlertEvent, fmt: str) -> str:
    if fmt == "json":
        return json.dumps({"event_id": event.event_id, **event.as_dict()}, ensure_ascii=False)
    scope = " ".join(f"{k}={v}" for k, v in event.scope.items())
    flags = "".join(f" [{f}]" for f in ("late", "repeat", "silenced") if getattr(event, f))
    return (f"{iso(event.time_ns)} {event.state.upper()} {event.rule} ({event.severity})"
            f" value={event.value:g} {scope} id={event.event_id}{flags}: {event.message}")


class LogNotifier:
    name = "log"

    def __init__(self, config: LogConfig) -> None:
        self.config = config
        self.logger = logging.getLogger(config.logger)
        self.sent = 0

    @classmethod
    def from_options(cls, options: dict[str, Any], doc: yamlconfig.Located,
                     path: yamlconfig.KeyPath) -> LogNotifier:
        return cls(yamlconfig.bind(LogConfig, options, doc, path))

    def validate(self) -> None:
        return None  # everything is checked by the dataclass binding

    async def start(self, context: NotifierContext) -> None:
        return None

    async def send(self, event: AlertEvent) -> None:
        self.logger.log(LEVELS[self.config.level], "%s", format_event(event, self.config.format))
        self.sent += 1

    async def close(self) -> None:
        return None

    def stats(self) -> dict[str, int]:
        return {"sent": self.sent}


register("log", LogNotifier.from_options)
