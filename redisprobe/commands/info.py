"""`redisprobe info`: each actor reports what its own connection sees (INFO, CLIENT INFO, CONFIG)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from redisprobe import trace
from redisprobe.analysis.verdict import analyse
from redisprobe.findings import Finding
from redisprobe.producers.actors.child import ActorSpec
from redisprobe.producers.actors.supervisor import Supervisor
from redisprobe.targets.resolve import Targets, make_header


@dataclass
class InfoReport:
    actors: list[trace.ActorStarted]
    inspections: dict[str, trace.Inspect]  # role -> what it saw
    findings: list[Finding]
    crashed: list[trace.ActorExited]


def run_info(targets: Targets, out: Path | None) -> InfoReport:
    writer = trace.TraceWriter(out, make_header("info", targets.by_role))
    supervisor = Supervisor(writer)
    try:
        for role, target in targets.by_role.items():
            supervisor.start(ActorSpec(role=role, url=target.url, steps=[{"inspect": True}],
                                       guarded=not targets.owned))
        supervisor.wait_all(timeout=60)
    finally:
        supervisor.stop_all()
        writer.close()
    return info_report(writer.events)


def info_report(events: list[trace.Event]) -> InfoReport:
    """Fold an info trace: the identity rules of `isolation` apply to the fingerprints alone."""
    visibility = analyse(events)
    inspections = {e.role: e for e in events if isinstance(e, trace.Inspect)}
    findings = [f for f in visibility.findings if f.rule in {"different-server", "different-db", "replica-read"}]
    return InfoReport(actors=visibility.actors, inspections=inspections, findings=findings,
                      crashed=visibility.crashed)
