"""`redisprobe info --pids`: live processes' Redis connections side by side, with identity findings."""

from __future__ import annotations

from redisprobe.producers.processes.connected import inspect_pids
from redisprobe.producers.processes.pidmap import parse_pid_spec
from redisprobe.render.console import print_json, stderr_console, stdout_console
from redisprobe.render.escape import shown
from redisprobe.render.live_connections import live_view
from redisprobe.targets.url import parse_target


def run_live_info(pids: list[str], url: str | None, *, json: bool, pm2: bool = False) -> int:
    """Inspect, print, and return the number of findings."""
    spec = parse_pid_spec(pids, pm2_all=pm2)
    err = stderr_console()
    for warning in spec.warnings:
        err.print(f"redisprobe: warning: {shown(warning)}", markup=False)
    report = inspect_pids(spec, auth_url=parse_target(url) if url else None)
    if json:
        print_json(report.to_json())
    else:
        stdout_console().print(live_view(report))
    return len(report.findings) or len(report.unknown)  # unknown is never healthy
