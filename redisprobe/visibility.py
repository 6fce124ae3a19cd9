"""Why B can't see A's write, from the actors' own fingerprints and checks (pure functions of a trace).

The causes themselves are the doctor's (`analysis/rules/fingerprints.py`); this module gives the verdict of a
two-actor run (`isolation`, `info`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from redisprobe import trace
from redisprobe.analysis.rules.fingerprints import pair_findings
from redisprobe.findings import Actor, Finding


@dataclass
class VisibilityReport:
    verdict: str  # visible / not-visible
    actors: list[trace.ActorStarted]
    checks: list[trace.Check]
    findings: list[Finding]
    crashed: list[trace.ActorExited] = field(default_factory=list)


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
        findings += pair_findings(writer, reader, checks, ops, replication_gap)
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
