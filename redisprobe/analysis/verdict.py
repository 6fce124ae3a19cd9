"""Why B can't see A's write, from the actors' own fingerprints and checks (pure functions of a trace).

The causes themselves are the doctor's (`analysis/rules/fingerprints.py` and the registered rules); this module
gives the verdict of a two-actor run (`isolation`, `info`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from redisprobe import trace
from redisprobe.analysis.rules.fingerprints import pair_findings
from redisprobe.findings import Finding


@dataclass
class VisibilityReport:
    verdict: str  # visible / not-visible
    actors: list[trace.ActorStarted]
    checks: list[trace.Check]
    findings: list[Finding]
    crashed: list[trace.ActorExited] = field(default_factory=list)


def analyse(events: list[trace.Event], *, doctor: list[Finding] | None = None, writer_role: str = "api",
            reader_role: str = "processor", replication_gap: int | None = None) -> VisibilityReport:
    """Verdict plus findings for a two-actor visibility run: the fingerprint comparison of the pair (with the
    replication gap only the live run measured), then the doctor's findings (`doctor`) for every other cause."""
    started = {e.role: e for e in events if isinstance(e, trace.ActorStarted)}
    checks = [e for e in events if isinstance(e, trace.Check)]
    crashed = [e for e in events if isinstance(e, trace.ActorExited) and e.crashed]
    ops = [e for e in events if isinstance(e, trace.Op)]
    visible = bool(checks) and all(check.ok for check in checks) and not crashed
    findings: list[Finding] = []
    writer, reader = started.get(writer_role), started.get(reader_role)
    if writer and reader:
        findings += pair_findings(writer, reader, checks, ops, replication_gap)
    named = {f.rule for f in findings}
    findings += [f for f in doctor or [] if f.rule not in named]
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
