"""`redisprobe report FILE`: the same analysis, offline, from a saved trace or a plain redis-cli monitor log."""

from __future__ import annotations

import gc
from pathlib import Path

from redisprobe import trace
from redisprobe.analysis.digest import Summary
from redisprobe.errors import TraceFormatError
from redisprobe.render.console import print_json, stdout_console
from redisprobe.trace import read_trace

_CAPTURES = {"monitor", "ttl-race", "scenario", "run"}


def _first_line(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.readline()
    except OSError as exc:
        raise TraceFormatError(f"cannot read trace {str(path)!r}: {exc.strerror}") from None


def run_report(path: Path, *, json: bool, key_patterns: tuple[str, ...] = ()) -> int:
    """Re-render a trace by the command that made it; returns the number of findings."""
    from redisprobe.trace.cli_log import looks_like_monitor_log

    first = _first_line(path)
    # A short-lived process that builds millions of acyclic objects: the cyclic collector would only rescan
    # them (seconds for a big log), so it stays off until the process exits.
    gc.disable()
    if looks_like_monitor_log(first):
        from redisprobe.analysis.digest import summarise_monitor_log
        from redisprobe.trace.cli_log import MonitorLog

        with MonitorLog(path) as log:
            summary = summarise_monitor_log(log, key_patterns=key_patterns)
        return _show(summary, path, json=json)
    header, stream = read_trace(path)
    if header.command in _CAPTURES:
        pids = header.options.get("pids") or {}
        watched = {int(pid): str(label) for pid, label in pids.items()} if isinstance(pids, dict) else {}
        return _summary(stream, watched, path, json=json, key_patterns=key_patterns)
    events = list(stream)  # small traces (isolation, info): already open, read once
    if header.command == "info":
        from redisprobe.commands.info import info_report
        from redisprobe.render.info_table import info_json, print_info

        info = info_report(events)
        if json:
            print_json(info_json(info))
        else:
            print_info(stdout_console(), info, None)
        return len(info.findings)
    from redisprobe.analysis.doctor import Context, analyze
    from redisprobe.analysis.verdict import analyse
    from redisprobe.render.isolation_report import isolation_json, print_isolation

    watched = {e.pid: e.role for e in events if isinstance(e, trace.ActorStarted)}
    report = analyse(events, doctor=analyze(events, Context(watched=watched)).findings)  # what the live run said
    if json:
        print_json(isolation_json(report, str(path)))
    else:
        print_isolation(stdout_console(), report, None)
    return len(report.findings) + (report.verdict != "visible")


def _summary(events, watched: dict[int, str], path: Path, *, json: bool,  # type: ignore[no-untyped-def]
             key_patterns: tuple[str, ...]) -> int:
    from redisprobe.analysis.digest import SummaryInterrupted, summarise

    try:
        summary = summarise(events, watched=watched, key_patterns=key_patterns)
    except SummaryInterrupted as cut:  # Ctrl-C: what was ready (clients, gaps, counts), then exit 130
        _show(cut.partial, path, json=json)
        raise KeyboardInterrupt from None
    return _show(summary, path, json=json)


def _show(summary: Summary, path: Path, *, json: bool) -> int:
    from redisprobe.render.summary import print_summary

    if json:
        print_json({**summary.to_json(), "trace": str(path)})
    else:
        print_summary(stdout_console(), summary, trace_path=str(path))
    return len(summary.findings)
