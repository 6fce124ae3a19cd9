"""redisprobe: find out why one process can't see another's Redis keys, and who removed them."""

from __future__ import annotations

__version__ = "0.1.0"

from redisprobe.trace.monitor_text import MonitorLine, MonitorParseError, parse_monitor_line

__all__ = ["MonitorLine", "MonitorParseError", "__version__", "parse_monitor_line"]
