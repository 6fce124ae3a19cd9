"""`info --pids` on a terminal: every listed process's Redis connections side by side, differences in red."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.text import Text

from redisprobe.producers.processes.connected import LiveReport
from redisprobe.render.escape import shown, shown_key
from redisprobe.render.layout import Records
from redisprobe.render.verdicts import findings_block


def process_cell(label: str, pid: int, identity: str) -> str:
    """`api (pid 4242, node api.js)`: the user's label, the pid, and the identity when it says more."""
    more = f", {identity}" if identity and identity not in label else ""
    return f"{label} (pid {pid}{more})" if label else f"pid {pid}{more}"


def live_view(report: LiveReport) -> Group:
    headers = ("process", "server run_id (identity)", "server address", "version", "role", "db", "client id",
               "name", "library", "age (s)")
    rows: list[tuple[Any, ...]] = []
    run_ids = {c.server.run_id for p in report.pids for c in p.connections if c.server.run_id}
    dbs = {c.db for p in report.pids for c in p.connections if c.db is not None}
    for proc in report.pids:
        who = shown(process_cell(proc.label, proc.pid, proc.name))
        if not proc.connections:
            rows.append((who, Text("no Redis connection found", style="yellow"), *[""] * 8))
        for conn in proc.connections:
            server = conn.server
            child = shown(f"{proc.label} child {process_cell('', conn.pid, conn.process)}")
            rows.append((
                who if conn.pid == proc.pid else child,
                Text(server.run_id[:20], style="bold red" if len(run_ids) > 1 else ""),
                f"{server.host}:{server.port}" if server.port else server.host, server.version, server.role,
                Text("?" if conn.db is None else str(conn.db), style="bold red" if len(dbs) > 1 else ""),
                "" if conn.client_id is None else str(conn.client_id), shown_key(conn.name), shown_key(conn.lib),
                "" if conn.age is None else str(conn.age)))
        for problem in proc.unreachable:
            rows.append((who, Text(shown(problem), style="yellow"), *[""] * 8))
    table = Records(headers, rows, title="Redis connections of the listed processes")
    empty = "every listed process reaches the same server and db"
    if report.unknown:
        empty = "unknown: not every listed process could be checked"
    parts: list[Any] = [table, findings_block(report.findings, empty=empty)]
    if report.unknown and not report.findings:
        parts[-1] = Text(f"? {empty}", style="bold yellow")
    parts += [Text(f"? {shown(line)}", style="yellow") for line in report.unknown]
    parts += [Text(f"! {shown(w)}", style="yellow") for w in report.warnings]
    return Group(*parts)
