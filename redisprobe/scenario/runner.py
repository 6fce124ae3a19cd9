"""Compile a scenario to a `pipeline.Plan`, run it on its own sandbox (or a given server), judge the expectations."""

from __future__ import annotations

import fnmatch
import itertools
import os
import string
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redisprobe import trace
from redisprobe.errors import ProbeError
from redisprobe.findings import Finding
from redisprobe.producers.actors.child import ActorSpec
from redisprobe.producers.plan import Execution, Plan
from redisprobe.scenario.model import Scenario, ScenarioResult
from redisprobe.targets.resolve import Targets

WRITER_ROLE = "api"
READER_ROLE = "processor"


def namespace(scenario: Scenario, run_id: str) -> str:
    """`{ns}`: every key a scenario writes lives under it."""
    return f"redisprobe:scenario:{scenario.name}:{run_id}:"


def _fill(value: Any, values: dict[str, Any]) -> Any:
    if isinstance(value, str) and "{" in value:
        return string.Formatter().vformat(value, (), values)
    return value


def with_db(url: str, db: int) -> str:
    """The same server URL with another logical db (the URL path picks it; a `?db=` option is dropped)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "db"] + [("db", str(db))]
        return urlunsplit(parts._replace(query=urlencode(query)))
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "db"])
    return urlunsplit(parts._replace(path=f"/{db}", query=query))


def compile_plan(scenario: Scenario, targets: Targets, run_id: str | None = None, *,
                 allow_writes: bool = False) -> Plan:
    """The actors (each `count` times) with their URLs and variables, the observers, the cleanup."""
    run_id = run_id or uuid.uuid4().hex[:8]
    ns = namespace(scenario, run_id)
    base: dict[str, Any] = {"ns": ns, "run": run_id}
    shared = dict(base)
    for key, value in scenario.vars.items():
        shared[key] = _fill(value, {**base, **scenario.vars, key: ""})
    actors: list[ActorSpec] = []
    for decl in scenario.actors:
        url = targets.by_role[decl.server].url
        if decl.db is not None:
            url = with_db(url, decl.db)
        for instance in range(decl.count):
            own = {**shared, "role": decl.role, "prefix": decl.prefix, "instance": instance}
            for key, value in decl.vars.items():
                own[key] = _fill(value, {**own, **decl.vars, key: ""})
            steps = [_program_defaults(_replica_urls(step, targets)) for step in decl.steps]
            actors.append(ActorSpec(role=decl.role, url=url, steps=steps, vars=own, prefix=decl.prefix,
                                    allow_scripts=scenario.allow_scripts and (targets.owned or allow_writes),
                                    cluster=targets.cluster and not decl.server.startswith("node")))
    ttl_pattern = _fill(scenario.ttl_pattern, shared) if scenario.ttl_pattern else None
    return Plan(command="run", actors=actors, max_seconds=scenario.max_seconds, observe=scenario.observe,
                ttl_pattern=ttl_pattern, cleanup_patterns=[f"{ns}*"],
                options={"scenario": scenario.name, "file": str(scenario.path), "catalog_id": scenario.catalog_id,
                         "run_id": run_id, "ns": ns, "topology": scenario.topology})


def _replica_urls(step: dict[str, Any], targets: Targets) -> dict[str, Any]:
    """A stall or failover step with the URL of the replica it names (the actor knows its own server only)."""
    for kind in ("stall", "failover"):
        if kind in step:
            return {**step, "url": targets.by_role[str(step[kind])].url}
    if isinstance(step.get("steps"), list):
        return {**step, "steps": [_replica_urls(inner, targets) for inner in step["steps"]]}
    return step


def _program_defaults(step: dict[str, Any]) -> dict[str, Any]:
    if "program" in step:
        return {"ns": "{ns}", **step}
    if "repeat" in step:
        return {**step, "steps": [_program_defaults(inner) for inner in step.get("steps", [])]}
    return step


def run_scenario(scenario: Scenario, *, url: str | None = None, out: Path | None = None,
                 enable_events: bool | None = None, allow_writes: bool = False) -> ScenarioResult:
    """Run one scenario end to end; a problem running it (not a failed expectation) becomes status `error`."""
    from redisprobe.producers.plan import execute
    from redisprobe.targets.resolve import open_targets

    started = time.monotonic()
    common = {"name": scenario.name, "path": str(scenario.path), "catalog_id": scenario.catalog_id}
    if scenario.pending:
        return ScenarioResult(**common, passed=False, failures=[], findings=[], seconds=0.0,
                              skipped=f"pending: {scenario.pending}")
    url = url or os.environ.get("REDIS_URL") or None  # as open_targets resolves it: never skip this check
    if url:
        reason = scenario.sandbox_only(allow_writes=allow_writes)
        if reason:
            return ScenarioResult(**common, passed=False, failures=[], findings=[], seconds=0.0,
                                  skipped=f"sandbox only ({reason}); not run on --url")
    try:
        with open_targets(url, topology=scenario.topology, server_args=list(scenario.server_args),
                          replicas=scenario.replicas) as targets:
            plan = compile_plan(scenario, targets, allow_writes=allow_writes)
            events = True if targets.owned else enable_events
            execution = execute(plan, targets, out, enable_events=events)
    except ProbeError as exc:
        return ScenarioResult(**common, passed=False, failures=[str(exc)], findings=[],
                              seconds=time.monotonic() - started, status="error")
    execution = diagnose(scenario, execution)
    result = evaluate(scenario, execution, str(plan.options["ns"]))
    result.seconds = time.monotonic() - started
    if execution.interrupted:  # what was seen so far, judged as such: not a pass, not a failure
        result.status, result.passed = "interrupted", False
        result.failures = ["interrupted (Ctrl-C) before the scenario finished", *result.failures]
    return result


ACTOR_OWN_EVENTS = (trace.ActorStarted, trace.Op, trace.Check, trace.Inspect, trace.ActorExited)


def diagnose(scenario: Scenario, execution: Execution) -> Execution:
    """The doctor's verdict on the time-ordered trace, as it would see it for real.

    Observers deliver events in arrival order (a MONITOR line can arrive after the keyspace event it caused)
    while the fold wants time order. And an actor marked `listed = false` plays a process nobody knows about:
    its own reports (start, ops, checks) are kept from the doctor, which sees it only through the server
    (MONITOR, CLIENT LIST, keyspace events), as it would see a stranger.
    """
    from redisprobe.producers.plan import diagnose_events

    unlisted = {decl.role for decl in scenario.actors if not decl.listed}
    events = execution.events
    ordered_already = all(a.t <= b.t for a, b in itertools.pairwise(events))
    if ordered_already and not unlisted:
        return execution
    ordered = events if ordered_already else sorted(events, key=lambda e: e.t)
    hidden = {e.pid for e in ordered if isinstance(e, trace.ActorStarted) and e.role in unlisted}
    seen = [_unlabelled(e) if isinstance(e, trace.ClientSeen) and e.pid in hidden else e
            for e in ordered if not (isinstance(e, ACTOR_OWN_EVENTS) and e.role in unlisted)]
    watched = {e.pid: e.role for e in seen if isinstance(e, trace.ActorStarted)}
    diagnosed = diagnose_events(seen, watched, execution.trace_path)
    return Execution(events=ordered, findings=diagnosed.findings, lives=diagnosed.lives, crashed=execution.crashed,
                     timed_out=execution.timed_out, interrupted=execution.interrupted,
                     gaps=execution.gaps, notes=execution.notes, trace_path=execution.trace_path)


def _unlabelled(event: trace.ClientSeen) -> trace.ClientSeen:
    """A CLIENT LIST sample of an unlisted actor as a real capture shows a stranger: no watched label."""
    import msgspec

    return msgspec.structs.replace(event, label="")


def findings_of(execution: Execution) -> list[Finding]:
    """The doctor's findings plus the visibility check's (from the actors' fingerprints), each rule once."""
    findings = list(execution.findings)
    checks = [e for e in execution.events if isinstance(e, trace.Check)]
    roles = {e.role for e in execution.events if isinstance(e, trace.ActorStarted)}
    if checks and WRITER_ROLE in roles and READER_ROLE in roles:
        from redisprobe.analysis.verdict import analyse

        have = {f.rule for f in findings}
        visibility = analyse(execution.events, doctor=execution.findings, writer_role=WRITER_ROLE,
                             reader_role=READER_ROLE)
        findings += [f for f in visibility.findings if f.rule not in have]
    return findings


def evaluate(scenario: Scenario, execution: Execution, ns: str) -> ScenarioResult:
    """Check each expectation against the run; every unmet one is one plain line in `failures`."""
    expect = scenario.expect
    failures: list[str] = []
    findings = findings_of(execution)
    rules = {f.rule for f in findings}
    for crash in execution.crashed:
        failures.append(f"actor {crash.role} (pid {crash.pid}) crashed: {crash.detail or f'exit {crash.returncode}'}")
    for late in execution.timed_out:
        failures.append(f"timed out: actor {late.role} (pid {late.pid}) was {late.detail}")
    checks = [e for e in execution.events if isinstance(e, trace.Check)]
    visible = bool(checks) and all(c.ok for c in checks) and not execution.crashed if checks else None
    if expect.visible is not None:
        if not checks:
            failures.append("visible is expected, but no actor has a wait step to judge it by")
        elif visible != expect.visible:
            if expect.visible:
                missed = [c for c in checks if not c.ok]
                detail = "; ".join(f"{c.role} (pid {c.pid}) waited {c.waited:.2f}s for {c.key} and never saw it"
                                   for c in missed[:3]) or "an actor crashed"
                failures.append(f"expected the writes to be visible, but {detail}")
            else:
                seen = "; ".join(f"{c.role} (pid {c.pid}) saw {c.key} after {c.waited:.2f}s" for c in checks[:3])
                failures.append(f"expected the writes not to be visible, but {seen}")
    for rule in expect.findings:
        if rule not in rules:
            got = ", ".join(sorted(rules)) or "none"
            failures.append(f"expected finding {rule!r}, got: {got}")
    for finding in findings:
        if finding.rule in expect.no_findings or expect.clean:
            what = "a clean run" if expect.clean else f"no {finding.rule!r}"
            failures.append(f"expected {what}, got {finding.rule} ({finding.severity}): {finding.summary}")
    lives = [life.to_json() for life in execution.lives]
    for want in expect.lifetime:
        pattern = _fill(want.key, {"ns": ns, "run": ns.rsplit(":", 2)[-2]})
        matched = [life for life in lives if fnmatch.fnmatchcase(life["key"], pattern)]
        if not matched:
            failures.append(f"lifetime of {want.key}: no key matched")
            continue
        if want.life is not None:
            chosen = []
            for key in dict.fromkeys(life["key"] for life in matched):
                of_key = sorted((life for life in matched if life["key"] == key),
                                key=lambda life: life.get("created_at") or (life.get("removed") or {}).get("at") or 0)
                index = want.life - 1 if want.life > 0 else want.life
                if -len(of_key) <= index < len(of_key):
                    chosen.append(of_key[index])
            if not chosen:
                failures.append(f"lifetime of {want.key}: no key had a life number {want.life}")
                continue
            matched = chosen
        ended = [life for life in matched if life.get("lifetime") is not None]
        if not ended:
            failures.append(f"lifetime of {want.key}: no life of it ended during the run "
                            f"({matched[0]['verdict']})")
            continue
        for life in ended:
            seconds = float(life["lifetime"])
            if want.min is not None and seconds < want.min:
                failures.append(f"{_short_key(life['key'], ns)} lived {seconds:.2f}s, expected at least "
                                f"{want.min:g}s ({life['verdict']})")
            if want.max is not None and seconds > want.max:
                failures.append(f"{_short_key(life['key'], ns)} lived {seconds:.2f}s, expected at most "
                                f"{want.max:g}s ({life['verdict']})")
    for want in expect.removed:
        pattern = _fill(want.key, {"ns": ns, "run": ns.rsplit(":", 2)[-2]})
        matched = [life for life in lives if fnmatch.fnmatchcase(life["key"], pattern)]
        removed = [life for life in matched if life.get("removed")]
        if not matched:
            failures.append(f"removal of {want.key}: no key matched")
        elif not removed:
            failures.append(f"removal of {want.key}: never removed ({matched[0]['verdict']})")
        else:
            for life in removed:
                how = life["removed"]["how"]
                if how != want.how:
                    failures.append(f"{_short_key(life['key'], ns)} was removed by {how} ({life['verdict']}), "
                                    f"expected {want.how}")
    notes = [f"observer gap ({g.source}): {g.reason}" for g in execution.gaps]
    notes += [n.text for n in execution.notes if n.level == "warning"]
    return ScenarioResult(name=scenario.name, path=str(scenario.path), catalog_id=scenario.catalog_id,
                          passed=not failures, failures=failures, findings=findings, seconds=0.0, lives=lives,
                          visible=visible, notes=notes)


def _short_key(key: str, ns: str) -> str:
    return "{ns}" + key[len(ns):] if key.startswith(ns) else key
