"""Why B can't see A's write, from the actors' own fingerprints and checks (pure functions of a trace)."""

from __future__ import annotations

from dataclasses import dataclass, field

from redisprobe import trace
from redisprobe.findings import Actor, Finding


@dataclass
class VisibilityReport:
    verdict: str  # visible / not-visible
    actors: list[trace.ActorStarted]
    checks: list[trace.Check]
    findings: list[Finding]
    crashed: list[trace.ActorExited] = field(default_factory=list)


def same_replication_group(a: trace.ServerFingerprint, b: trace.ServerFingerprint) -> bool:
    """A primary and its replica share `master_replid`; two unrelated servers never do. Two nodes of a cluster
    hold one dataset too, each key on the node of its slot."""
    if a.redis_mode == "cluster" and b.redis_mode == "cluster":
        return True
    return bool(a.master_replid) and a.master_replid == b.master_replid


def _who(actor: trace.ActorStarted) -> str:
    return f"{actor.role} (pid {actor.pid}, client {actor.client_id})"


def _where(server: trace.ServerFingerprint) -> str:
    return f"{server.host}:{server.port} run_id {server.run_id[:12]} ({server.role}, v{server.version})"


def analyse(events: list[trace.Event], *, writer_role: str = "api", reader_role: str = "processor",
            replication_gap: int | None = None) -> VisibilityReport:
    """Verdict plus findings (rule ids from the rule registry) for a two-actor visibility run."""
    started = {e.role: e for e in events if isinstance(e, trace.ActorStarted)}
    checks = [e for e in events if isinstance(e, trace.Check)]
    crashed = [e for e in events if isinstance(e, trace.ActorExited) and e.crashed]
    ops = [e for e in events if isinstance(e, trace.Op)]
    visible = bool(checks) and all(check.ok for check in checks) and not crashed
    findings: list[Finding] = []
    writer, reader = started.get(writer_role), started.get(reader_role)
    if writer and reader:
        findings += _server_rules(writer, reader, checks, ops, replication_gap)
        findings += _prefix_rule(writer, reader, ops, checks)
    if not visible and not findings and not crashed:
        missed = [c for c in checks if not c.ok]
        findings.append(Finding(
            rule="not-visible-unexplained", severity="error",
            summary="the reader did not see the writes, and no known cause matched: capture with "
                    "`redisprobe monitor` to see who touched the keys",
            evidence=[f"{c.role} pid {c.pid} waited {c.waited:.2f}s for {c.key} ({c.attempts} polls)" for c in missed],
            keys=[c.key for c in missed]))
    order = {writer_role: 0, reader_role: 1}
    actors = sorted(started.values(), key=lambda a: (order.get(a.role, 2), a.role))
    return VisibilityReport(verdict="visible" if visible else "not-visible", actors=actors,
                            checks=checks, findings=findings, crashed=crashed)


def _server_rules(writer: trace.ActorStarted, reader: trace.ActorStarted, checks: list[trace.Check],
                  ops: list[trace.Op], replication_gap: int | None) -> list[Finding]:
    ws, rs = writer.server, reader.server
    findings: list[Finding] = []
    if ws.run_id != rs.run_id and not same_replication_group(ws, rs):
        alike = [name for name, a, b in (("port", ws.port, rs.port), ("version", ws.version, rs.version),
                                         ("db", writer.db, reader.db)) if a == b]
        trap = f" even though {', '.join(alike)} agree" if alike else ""
        findings.append(Finding(
            rule="different-server", severity="error",
            summary=f"{writer.role} and {reader.role} talk to two different servers{trap}: their run_ids differ",
            evidence=[f"{_who(writer)} -> {_where(ws)}", f"{_who(reader)} -> {_where(rs)}"],
            culprit=Actor(pid=reader.pid, label=reader.role, client_id=reader.client_id, addr=reader.addr)))
        return findings
    if writer.db != reader.db:
        findings.append(Finding(
            rule="different-db", severity="error",
            summary=f"same server, different logical db: {writer.role} uses db {writer.db}, "
                    f"{reader.role} uses db {reader.db}",
            evidence=[f"{_who(writer)} -> db {writer.db} on {_where(ws)}",
                      f"{_who(reader)} -> db {reader.db} on {_where(rs)}"],
            culprit=Actor(pid=reader.pid, label=reader.role, client_id=reader.client_id, addr=reader.addr)))
    if rs.role == "slave" and ws.run_id != rs.run_id:
        reader_checks = [c for c in checks if c.role == reader.role]
        lag = [c for c in reader_checks if c.first_miss and c.ok]
        failed_writes = [o for o in ops if o.role == reader.role and o.error and "READONLY" in o.error]
        evidence = [f"{_who(reader)} reads a replica: {_where(rs)}, replica of {rs.master_host}:{rs.master_port}",
                    f"{_who(writer)} writes the primary: {_where(ws)}"]
        if replication_gap is not None:
            evidence.append(f"largest replication offset gap measured during the run: {replication_gap} bytes")
        evidence += [f"{c.key}: missed on the first read, seen after {c.waited * 1000:.0f} ms" for c in lag]
        evidence += [f"{o.role} pid {o.pid}: {_cmd(o)} -> {o.error}" for o in failed_writes]
        findings.append(Finding(
            rule="replica-read", severity="error" if failed_writes or any(not c.ok for c in reader_checks)
            else "warning",
            summary=f"{reader.role} reads from a replica: writes reach it asynchronously"
                    + (" and it cannot write back (read-only)" if failed_writes else ""),
            evidence=evidence,
            culprit=Actor(pid=reader.pid, label=reader.role, client_id=reader.client_id, addr=reader.addr)))
    return findings


def _prefix_rule(writer: trace.ActorStarted, reader: trace.ActorStarted, ops: list[trace.Op],
                 checks: list[trace.Check]) -> list[Finding]:
    if writer.prefix == reader.prefix:
        return []
    written = [o.args[1].decode("utf-8", "backslashreplace") for o in ops
               if o.role == writer.role and len(o.args) > 1 and o.args[0].upper() in {b"SET", b"HSET", b"RPUSH"}]
    missed = [c for c in checks if c.role == reader.role and not c.ok]
    evidence = [f"{writer.role} (pid {writer.pid}) uses key prefix {writer.prefix!r}, "
                f"{reader.role} (pid {reader.pid}) uses {reader.prefix!r}"]
    for check in missed:
        near = next((w for w in written if w.endswith(check.key.rsplit(":", 1)[-1])), None)
        evidence.append(f"{reader.role} looked for {check.key}" + (f", {writer.role} wrote {near}" if near else ""))
    return [Finding(rule="key-prefix-mismatch", severity="error",
                    summary=f"the two sides name the same keys differently: prefix {writer.prefix!r} vs "
                            f"{reader.prefix!r}",
                    evidence=evidence, keys=[c.key for c in missed],
                    culprit=Actor(pid=reader.pid, label=reader.role, client_id=reader.client_id, addr=reader.addr))]


def _cmd(op: trace.Op) -> str:
    return " ".join(a.decode("utf-8", "backslashreplace") for a in op.args)
