"""Run a plan: actors on a target with every observer attached, then hand the trace to the doctor.

`isolation`, `ttl-race` and scenario files are all plans; this is their one code path.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redisprobe import trace
from redisprobe.findings import Finding
from redisprobe.producers.actors.child import ActorSpec
from redisprobe.producers.actors.supervisor import Supervisor
from redisprobe.targets.resolve import Targets, make_header
from redisprobe.targets.url import Target, connect_timeout


@dataclass
class Plan:
    """What to run: actors (each with a role, steps and variables), how long at most, what to watch."""

    command: str
    actors: list[ActorSpec]
    max_seconds: float = 60.0
    observe: bool = True  # MONITOR + keyspace + CLIENT LIST on the api's server
    ttl_pattern: str | None = None  # keys whose PTTL to sample
    options: dict[str, Any] = field(default_factory=dict)
    cleanup_patterns: list[str] = field(default_factory=list)  # redisprobe:... keys to remove afterwards


@dataclass
class Execution:
    events: list[trace.Event]
    findings: list[Finding]
    lives: list[Any]  # KeyLife
    crashed: list[trace.ActorExited]
    gaps: list[trace.Gap]
    notes: list[trace.Note]
    trace_path: str | None
    timed_out: list[trace.ActorExited] = field(default_factory=list)  # stopped at the plan's max_seconds
    interrupted: bool = False  # Ctrl-C: everything is what was seen until then


def execute(plan: Plan, targets: Targets, out: Path | None, *, enable_events: bool | None = True,
            on_event: Callable[[trace.Event], None] | None = None) -> Execution:
    """Run the plan's actors with observers attached; always stop everything and clean up, then diagnose."""
    header = make_header(plan.command, targets.by_role, plan.options)
    writer = trace.TraceWriter(out, header)
    if on_event is not None:
        writer.subscribe(on_event)
    supervisor = Supervisor(writer)
    observed = targets.by_role.get("api") or next(iter(targets.by_role.values()))
    watched: dict[int, str] = {}
    captures: list[Any] = []
    samplers: list[Any] = []
    watchers: list[Any] = []  # a cluster's TopologyWatcher: failovers, slot moves, nodes that join or leave
    interrupted = False
    try:
        if plan.observe:
            from redisprobe.producers.capture import CaptureSession

            for target in _watched(targets, observed, writer, watchers):
                captures.append(CaptureSession(target, writer, watched=watched, enable_events=enable_events))
                captures[-1].start()
        if plan.ttl_pattern:
            from redisprobe.producers.observers.ttl_sampler import TtlSampler

            samplers = [TtlSampler(target, writer.emit, plan.ttl_pattern).start()
                        for target in _observed(targets, observed)]  # a cluster: each primary holds some keys
        for spec in plan.actors:
            spec.guarded = spec.guarded or not targets.owned  # the user's server: every command passes the gate
            run = supervisor.start(spec)
            if spec.listed:
                watched[run.pid] = spec.role
                for capture in captures:
                    capture.mapper.watched[run.pid] = spec.role
        supervisor.release()
        deadline = time.monotonic() + plan.max_seconds
        while any(run.proc.poll() is None for run in supervisor.runs) and time.monotonic() < deadline:
            for watcher in watchers:
                captures += _follow(watcher, writer, watched, enable_events)
            for capture in captures:
                capture.pump()
            writer.check()
            time.sleep(0.05)
        supervisor.wait_all(timeout=max(0.0, deadline - time.monotonic()) + 1, limit=plan.max_seconds)
        if samplers:
            time.sleep(0.1)
    except KeyboardInterrupt:  # the report of what was seen so far follows; the command exits 130
        interrupted = True
    finally:
        supervisor.stop_all(timeout=0.5 if interrupted else 3.0)
        for watcher in watchers:
            watcher.close()
        for sampler in samplers:
            sampler.stop(timeout=0.2 if interrupted else 5.0)
        if captures:
            from redisprobe.producers.capture import stop_sessions

            undone, again = stop_sessions(captures, budget=1.0 if interrupted else connect_timeout())
            interrupted = interrupted or again
            for line in undone:
                writer.note(f"gave up {line}", level="warning")
        try:
            undone = _cleanup(targets, plan.cleanup_patterns, timeout=_CLEANUP_AFTER_CTRL_C if interrupted else None)
        except KeyboardInterrupt:  # a second Ctrl-C: give up at once (the keys carry a TTL)
            interrupted, undone = True, [f"removing this run's keys ({', '.join(plan.cleanup_patterns)}): "
                                         "Ctrl-C; they expire by their TTL"]
        for line in undone:
            writer.note(f"gave up {line}", level="warning")
        writer.close()
    writer.check()
    execution = diagnose_events(writer.events, watched, str(out) if out else None)
    if interrupted:  # actors stopped by the Ctrl-C did not crash
        execution.interrupted, execution.crashed, execution.timed_out = True, [], []
    return execution


def _observed(targets: Targets, first: Target) -> list[Target]:
    """What the capture watches: the api's server, and on a sandbox cluster every primary (a key lives on the node
    that owns its slot)."""
    nodes = [target for role, target in targets.by_role.items() if role.startswith("node")]
    if not targets.cluster:
        return [first]
    return nodes or [first]


def _watched(targets: Targets, first: Target, writer: trace.TraceWriter, watchers: list[Any]) -> list[Target]:
    """What the captures watch: the api's server; on a cluster every primary, and with the sandbox's replicas every
    node (a failover is followed, and what a replica had when it took over is known), each node's role recorded
    first; `watchers` gets the cluster's watcher."""
    if not targets.cluster or not any(role.startswith("replica") for role in targets.by_role):
        return _observed(targets, first)
    from redisprobe.targets.topology import expand_cluster

    found, notes, cluster_watchers = expand_cluster([first])
    for note in notes:
        writer.note(note)
    for watcher in cluster_watchers:  # each node's role before its first line: a replica's MONITOR is read by it
        writer.emit_many(watcher.start_events())
    watchers += cluster_watchers
    return found


def _follow(watcher: Any, writer: trace.TraceWriter, watched: dict[int, str],
            enable_events: bool | None) -> list[Any]:
    """The cluster's changes recorded (events, and a warning each); a node that joined watched from now on (a
    primary with a gap since the last look: its commands until then were not captured)."""
    from redisprobe.producers.capture import CaptureSession
    from redisprobe.targets.topology import joined_gap

    started = []
    for target, since in watcher.record(writer):
        started.append(CaptureSession(target, writer, watched=watched, enable_events=enable_events))
        started[-1].start()
        if since is not None:
            writer.emit(joined_gap(target, since))
    return started


def diagnose_events(events: list[trace.Event], watched: dict[int, str], trace_path: str | None) -> Execution:
    """The doctor's findings for a run's events, exactly as `report` finds them in the trace the run wrote: the
    doctor orders the events as they arrived (observers write from their own threads: nearly sorted only)."""
    from redisprobe.analysis.doctor import Context, analyze

    analysis = analyze(events, Context(watched=watched))
    lives = list(analysis.lifecycle.lives())
    events = sorted(events, key=lambda e: e.t)
    return Execution(
        events=events, findings=analysis.findings, lives=lives,
        crashed=[e for e in events if isinstance(e, trace.ActorExited) and e.crashed],
        timed_out=[e for e in events if isinstance(e, trace.ActorExited) and e.timed_out],
        gaps=[e for e in events if isinstance(e, trace.Gap)],
        notes=[e for e in events if isinstance(e, trace.Note)], trace_path=trace_path)


_CLEANUP_AFTER_CTRL_C = 0.5
"""Seconds the key clean-up may wait for a server after Ctrl-C (Ctrl-C stops within about a second)."""


def _cleanup(targets: Targets, patterns: list[str], *, timeout: float | None = None) -> list[str]:
    """Remove what the run wrote on a user's server (a sandbox is discarded whole anyway), each wait bounded by
    `timeout` (default the connect timeout). Returns what was given up on: those keys expire by their TTL."""
    if targets.owned or not patterns:
        return []
    import redis

    undone = []
    for target in {t.url: t for t in targets.by_role.values()}.values():
        client = target.connect(timeout=timeout)
        try:
            for pattern in patterns:
                assert pattern.startswith("redisprobe:")
                keys = list(client.scan_iter(match=pattern, count=1000))
                if keys and targets.cluster:  # one DEL of keys in several slots is refused (CROSSSLOT)
                    for key in keys:
                        client.delete(key)
                elif keys:
                    client.delete(*keys)
        except (redis.RedisError, OSError) as error:
            undone.append(f"removing this run's keys ({', '.join(patterns)}) on {target.label}: "
                          f"{type(error).__name__}; they expire by their TTL")
        finally:
            client.close()
    return undone
