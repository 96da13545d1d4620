"""The operations room's web page (read-only): the fleet and the open alerts."""

from collector.opspage.server import OpsPage
from collector.opspage.state import open_alerts, page_state

__all__ = ["OpsPage", "open_alerts", "page_state"]
