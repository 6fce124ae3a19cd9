"""`redisprobe report FILE`: the same analysis, offline, from a saved trace."""

from __future__ import annotations

from pathlib import Path

from redisprobe.render.console import print_json, stdout_console
from redisprobe.trace import load_trace


def run_report(path: Path, *, json: bool) -> int:
    """Re-render a trace by the command that made it; returns the number of findings."""
    header, events = load_trace(path)
    if header.command == "info":
        from redisprobe.commands.info import info_report
        from redisprobe.render.info import info_json, print_info

        info = info_report(events)
        if json:
            print_json(info_json(info))
        else:
            print_info(stdout_console(), info, None)
        return len(info.findings)
    from redisprobe.render.isolation import isolation_json, print_isolation
    from redisprobe.visibility import analyse

    report = analyse(events)
    if json:
        print_json(isolation_json(report, str(path)))
    else:
        print_isolation(stdout_console(), report, None)
    return len(report.findings) + (report.verdict != "visible")
