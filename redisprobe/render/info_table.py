"""`info` side by side: the fields that explain "B can't see A", differences highlighted, run_id first."""

from __future__ import annotations

from rich.console import Console, Group, RenderableType
from rich.text import Text

from redisprobe.commands.info import InfoReport
from redisprobe.render.escape import shown
from redisprobe.render.isolation_report import side_by_side
from redisprobe.render.verdicts import findings_block

# (section, field, label): what people compare when "B can't see A", identity first.
FIELDS = (
    ("server", "run_id", "server run_id"),  # shown whole: it is the identity
    ("server", "redis_version", "version"),
    ("server", "tcp_port", "port"),
    ("server", "redis_mode", "mode"),
    ("server", "uptime_in_seconds", "uptime (s)"),
    ("server", "executable", "executable"),
    ("server", "config_file", "config file"),
    ("replication", "role", "role"),
    ("replication", "master_host", "master host"),
    ("replication", "master_port", "master port"),
    ("replication", "master_replid", "replication id"),
    ("replication", "master_repl_offset", "repl offset"),
    ("client", "db", "db"),
    ("client", "id", "client id"),
    ("client", "name", "client name"),
    ("client", "addr", "client addr"),
    ("client", "laddr", "server addr"),
    ("client", "age", "connected for (s)"),
    ("memory", "used_memory_human", "used memory"),
    ("memory", "maxmemory_human", "maxmemory (INFO)"),
    ("config", "maxmemory", "maxmemory"),
    ("config", "maxmemory-policy", "maxmemory-policy"),
    ("config", "notify-keyspace-events", "notify-keyspace-events"),
    ("config", "databases", "databases"),
    ("config", "timeout", "timeout"),
)
_VOLATILE = {"uptime (s)", "repl offset", "client id", "client name", "client addr", "connected for (s)",
             "used memory"}


def columns(report: InfoReport) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    pids = {a.role: a.pid for a in report.actors}
    for role, seen in report.inspections.items():
        rows = {label: seen.sections.get(section, {}).get(field, "") for section, field, label in FIELDS}
        keyspace = seen.sections.get("keyspace", {})
        rows["keyspace"] = "; ".join(f"{db}: {value}" for db, value in keyspace.items()) or "(empty)"
        out[f"{role} (pid {pids.get(role, seen.pid)})"] = rows
    return out


def print_info(console: Console, report: InfoReport, trace_path: str | None) -> None:
    parts: list[RenderableType] = [
        side_by_side(columns(report), title="What each actor's connection sees", expected_to_differ=_VOLATILE)]
    for crash in report.crashed:
        parts.append(Text(f"! {crash.role} (pid {crash.pid}) crashed: {shown(crash.detail)}", style="bold red"))
    parts.append(findings_block(report.findings, empty="same server (run_id) and same db for every actor"))
    if trace_path:
        parts.append(Text(f"trace written to {trace_path}", style="dim"))
    console.print(Group(*parts))


def info_json(report: InfoReport) -> dict[str, object]:
    actors = []
    for actor in report.actors:
        seen = report.inspections.get(actor.role)
        actors.append({
            "role": actor.role, "pid": actor.pid, "client_id": actor.client_id, "db": actor.db,
            "server": {"run_id": actor.server.run_id, "host": actor.server.host, "port": actor.server.port,
                       "version": actor.server.version, "role": actor.server.role},
            "sections": seen.sections if seen else {},
        })
    return {"actors": actors, "findings": report.findings,
            "crashed": [{"role": c.role, "pid": c.pid, "detail": c.detail} for c in report.crashed]}
