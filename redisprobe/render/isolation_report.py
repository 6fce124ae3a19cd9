"""The isolation report: each actor's connection fingerprint side by side, then the verdict."""

from __future__ import annotations

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from redisprobe import trace
from redisprobe.analysis.verdict import VisibilityReport
from redisprobe.render.escape import shown, shown_key
from redisprobe.render.verdicts import findings_block


def fingerprint_rows(actor: trace.ActorStarted) -> dict[str, str]:
    server = actor.server
    return {
        "server run_id": server.run_id[:20],
        "address": server.host,
        "port": str(server.port),
        "version": server.version,
        "role": server.role,
        "db": str(actor.db),
        "client id": str(actor.client_id),
        "client name": actor.client_name,
        "key prefix": actor.prefix or "(none)",
    }


_EXPECTED_TO_DIFFER = {"client id", "client name", "pid", "client addr", "connected for (s)", "age"}


def side_by_side(columns: dict[str, dict[str, str]], *, title: str, identity: str = "server run_id",
                 expected_to_differ: set[str] = _EXPECTED_TO_DIFFER) -> Table:
    """Rows are fields, columns are actors; a cell that differs from the others is marked."""
    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("", style="bold")
    for name in columns:
        table.add_column(name)
    fields: list[str] = []
    for values in columns.values():
        fields += [f for f in values if f not in fields]
    for field in fields:
        values = [values.get(field, "") for values in columns.values()]
        differs = len(set(values)) > 1 and field not in expected_to_differ
        label = Text(field + (" (identity)" if field == identity else ""))
        cells = [Text(("≠ " if differs else "") + shown_key(value), style="bold red" if differs else "")
                 for value in values]
        table.add_row(label, *cells)
    return table


def isolation_view(report: VisibilityReport, trace_path: str | None) -> RenderableType:
    columns = {f"{a.role} (pid {a.pid})": fingerprint_rows(a) for a in report.actors}
    parts: list[RenderableType] = [side_by_side(columns, title="Each actor's connection")]
    checks = Table(title="What each side saw", title_justify="left")
    for name in ("actor", "waited for", "seen", "after"):
        checks.add_column(name)
    for check in report.checks:
        checks.add_row(f"{check.role} (pid {check.pid})", check.name,
                       Text("yes", style="green") if check.ok else Text("no", style="bold red"),
                       f"{check.waited * 1000:.0f} ms, {check.attempts} polls")
    parts.append(checks)
    for crash in report.crashed:
        parts.append(Text(f"! {crash.role} (pid {crash.pid}) crashed: {shown(crash.detail)}", style="bold red"))
    verdict = Text("verdict: ", style="bold")
    verdict.append(report.verdict, style="bold green" if report.verdict == "visible" else "bold red")
    parts += [verdict, findings_block(report.findings)]
    if trace_path:
        parts.append(Text(f"trace written to {trace_path}", style="dim"))
    return Group(*parts)


def print_isolation(console: Console, report: VisibilityReport, trace_path: str | None) -> None:
    console.print(isolation_view(report, trace_path))


def isolation_json(report: VisibilityReport, trace_path: str | None) -> dict[str, object]:
    return {
        "verdict": report.verdict,
        "actors": [{"role": a.role, "pid": a.pid, "client_id": a.client_id, "db": a.db,
                    "client_name": a.client_name, "prefix": a.prefix, "addr": a.addr,
                    "server": {"run_id": a.server.run_id, "host": a.server.host, "port": a.server.port,
                               "version": a.server.version, "role": a.server.role}} for a in report.actors],
        "checks": [{"role": c.role, "pid": c.pid, "key": c.key, "seen": c.ok, "waited": round(c.waited, 4),
                    "attempts": c.attempts} for c in report.checks],
        "crashed": [{"role": c.role, "pid": c.pid, "detail": c.detail} for c in report.crashed],
        "findings": report.findings,
        "trace": trace_path,
    }
