"""The log notifier (registers itself as "log")."""

from collector.notifiers.log.notifier import LogConfig, LogNotifier, format_event

__all__ = ["LogConfig", "LogNotifier", "format_event"]
