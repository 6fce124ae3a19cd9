"""Causes read from the actors' own connections: each actor records the server it reached (run_id, role, replid,
db), so two actors that meant to share a server can be compared without any capture.

`pair_findings` compares one writer with one reader (the `isolation` and `info` commands name the pair); the
doctor's `replica-read` rule finds such pairs (`actor_replica_read`) in any trace that holds actors (a scenario,
`ttl-race`), so `report` names a replica read as `isolation` does.
"""

from __future__ import annotations

from redisprobe import trace
from redisprobe.analysis.rules.base import RuleInput
from redisprobe.findings import Actor, Finding
from redisprobe.semantics import command_table as C


def same_replication_group(a: trace.ServerFingerprint, b: trace.ServerFingerprint) -> bool:
    """A primary and its replica share `master_replid`; two unrelated servers never do. Two nodes of one cluster
    hold one dataset too, each key on the node of its slot; two clusters do not (an older trace, which does not
    say which cluster a node is in, gives the benefit of the doubt)."""
    if a.redis_mode == "cluster" and b.redis_mode == "cluster":
        return not (a.cluster_id and b.cluster_id) or a.cluster_id == b.cluster_id
    return bool(a.master_replid) and a.master_replid == b.master_replid


def pair_findings(writer: trace.ActorStarted, reader: trace.ActorStarted, checks: list[trace.Check],
                  ops: list[trace.Op], replication_gap: int | None) -> list[Finding]:
    """different-server, else different-db, replica-read and key-prefix-mismatch, for one writer and one reader."""
    ws, rs = writer.server, reader.server
    findings: list[Finding] = []
    elsewhere = different_server(writer, reader)
    if elsewhere is not None:
        return [elsewhere]
    if writer.db != reader.db:
        findings.append(Finding(
            rule="different-db", severity="error",
            summary=f"same server, different logical db: {writer.role} uses db {writer.db}, "
                    f"{reader.role} uses db {reader.db}",
            evidence=[f"{_who(writer)} -> db {writer.db} on {_where(ws)}",
                      f"{_who(reader)} -> db {reader.db} on {_where(rs)}"],
            culprit=_actor(reader)))
    replica = _replica_read(writer, reader, checks, ops, replication_gap)
    if replica is not None:
        findings.append(replica)
    return findings + _prefix_mismatch(writer, reader, ops, checks)


def different_server(writer: trace.ActorStarted, reader: trace.ActorStarted) -> Finding | None:
    """Two actors on two servers that hold different data (run_ids differ, not a primary and its replica, not
    nodes of one cluster); what they agree on (port, version, db) is what hid it."""
    ws, rs = writer.server, reader.server
    if ws.run_id == rs.run_id or same_replication_group(ws, rs):
        return None
    alike = [name for name, a, b in (("port", ws.port, rs.port), ("version", ws.version, rs.version),
                                     ("db", writer.db, reader.db)) if a == b]
    trap = f" even though {', '.join(alike)} agree" if alike else ""
    return Finding(
        rule="different-server", severity="error",
        summary=f"{writer.role} and {reader.role} talk to two different servers{trap}: their run_ids differ",
        evidence=[f"{_who(writer)} -> {_where(ws)}", f"{_who(reader)} -> {_where(rs)}"],
        culprit=_actor(reader))


def _replica_read(writer: trace.ActorStarted, reader: trace.ActorStarted, checks: list[trace.Check],
                  ops: list[trace.Op], replication_gap: int | None) -> Finding | None:
    ws, rs = writer.server, reader.server
    if rs.role != "slave" or ws.run_id == rs.run_id or rs.redis_mode == "cluster":
        return None  # a cluster actor given a replica sends each command to its slot's primary
    reader_checks = [c for c in checks if c.role == reader.role]
    lag = [c for c in reader_checks if c.first_miss and c.ok]
    failed_writes = [o for o in ops if o.role == reader.role and o.error and "READONLY" in o.error]
    evidence = [f"{_who(reader)} reads a replica: {_where(rs)}, replica of {rs.master_host}:{rs.master_port}",
                f"{_who(writer)} writes the primary: {_where(ws)}"]
    if replication_gap is not None:
        evidence.append(f"largest replication offset gap measured during the run: {replication_gap} bytes")
    evidence += [f"{c.key}: missed on the first read, seen after {c.waited * 1000:.0f} ms" for c in lag]
    evidence += [f"{o.role} pid {o.pid}: {_cmd(o)} -> {o.error}" for o in failed_writes]
    return Finding(
        rule="replica-read", severity="error" if failed_writes or any(not c.ok for c in reader_checks)
        else "warning",
        summary=f"{reader.role} reads from a replica: writes reach it asynchronously"
                + (" and it cannot write back (read-only)" if failed_writes else ""),
        evidence=evidence, culprit=_actor(reader))


def actor_replica_read(inp: RuleInput) -> list[Finding]:
    """An actor connected to a replica of the primary another actor writes: it reads what replication has
    brought so far, and its own writes are refused (READONLY). One finding per reading role."""
    lifecycle = inp.lifecycle
    findings = []
    named: set[str] = set()
    for reader in lifecycle.actors:
        if reader.server.role != "slave" or reader.role in named:
            continue
        writer = next((a for a in lifecycle.actors if a.role != reader.role and a.server.role != "slave"
                       and same_replication_group(a.server, reader.server)), None)
        if writer is None or writer.db != reader.db:
            continue
        finding = _replica_read(writer, reader, lifecycle.checks, lifecycle.op_errors, None)
        if finding is not None:
            named.add(reader.role)
            findings.append(finding)
    return findings


_CREATES = frozenset({C.SET, C.WRITE, C.OVERWRITE})
"""Command kinds that create the key they name."""


def _prefix_mismatch(writer: trace.ActorStarted, reader: trace.ActorStarted, ops: list[trace.Op],
                     checks: list[trace.Check]) -> list[Finding]:
    """Each actor declares its key prefix (like ioredis `keyPrefix`): when they differ, every miss of the reader
    is a name the writer spelled with its own prefix, however few the keys."""
    if writer.prefix == reader.prefix:
        return []
    written = [key.decode("utf-8", "backslashreplace") for o in ops if o.role == writer.role and o.args
               and C.lookup(o.args[0]).kind in _CREATES for key in C.keys_of(o.args)]
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
                    culprit=_actor(reader))]


def _actor(actor: trace.ActorStarted) -> Actor:
    return Actor(pid=actor.pid, label=actor.role, client_id=actor.client_id, addr=actor.addr)


def _who(actor: trace.ActorStarted) -> str:
    return f"{actor.role} (pid {actor.pid}, client {actor.client_id})"


def _where(server: trace.ServerFingerprint) -> str:
    return f"{server.host}:{server.port} run_id {server.run_id[:12]} ({server.role}, v{server.version})"


def _cmd(op: trace.Op) -> str:
    return " ".join(a.decode("utf-8", "backslashreplace") for a in op.args)


__all__ = ["actor_replica_read", "different_server", "pair_findings", "same_replication_group"]
