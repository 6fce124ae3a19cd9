"""`redisprobe monitor`: watch a live server (any client, any language), attribute every command to a process,
and tell each watched key's life with the doctor's findings at the end (or on Ctrl-C)."""

from __future__ import annotations

import gc
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redisprobe import trace
from redisprobe.analysis.digest import Summary
from redisprobe.leftovers import temp_file
from redisprobe.producers.capture import CaptureSession, stop_sessions
from redisprobe.producers.observers.baseline_scan import take_baseline
from redisprobe.producers.processes.pidmap import PidSpec
from redisprobe.targets.resolve import fingerprints, make_header
from redisprobe.targets.topology import joined_gap
from redisprobe.targets.url import Target, connect_timeout

_SAY_ANALYSING = 1 << 20  # a trace bigger than this (bytes) takes a noticeable time to analyse: say so
INTERRUPT_BUDGET = 1.0
"""Seconds the end of a capture may take after Ctrl-C (draining MONITOR, restoring CONFIG) before it gives up."""


@dataclass
class MonitorOptions:
    duration: float | None = None
    key_patterns: tuple[str, ...] = ()
    enable_events: bool | None = None
    redact_values: bool = False
    notes: tuple[str, ...] = ()  # said at the start and kept in the trace (a cluster found, its nodes)
    topology: tuple[Any, ...] = ()  # cluster.TopologyWatcher: failovers and slot moves during the capture
    source: str = "monitor"  # monitor, wire or both: see redisprobe/producers/wire/source.py


@dataclass
class CaptureOutcome:
    trace_path: Path
    temporary: bool
    interrupted: bool
    lost: list[str]  # one line per kind of attribution lost (events off, CONFIG refused...)
    gave_up: list[str]  # what the end of the capture abandoned because the server did not answer in time


def capture(targets: list[Target], spec: PidSpec, options: MonitorOptions, out: Path | None,
            live: object | None = None, on_ready: Callable[[], None] | None = None,
            say: Callable[[str], None] | None = None, wire: Any = None) -> CaptureOutcome:
    """Capture until the duration passes or Ctrl-C; the trace is complete and observers stopped either way (a
    temporary trace is removed if the capture fails). `wire`: a started `WireSource`, parsed into the trace as
    the capture goes."""
    temporary = out is None
    path = out or temp_file("monitor", ".jsonl")
    try:
        return _capture(targets, spec, options, path, temporary, live, on_ready, say or (lambda line: None), wire)
    except BaseException:
        if temporary:
            path.unlink(missing_ok=True)
        raise


def _capture(targets: list[Target], spec: PidSpec, options: MonitorOptions, path: Path, temporary: bool,
             live: object | None, on_ready: Callable[[], None] | None, say: Callable[[str], None],
             wire: Any = None) -> CaptureOutcome:
    labels = {f"server{index}" if index else "server": t for index, t in enumerate(targets)}
    servers = fingerprints(labels)
    labels, same = _one_per_server(labels, servers)
    targets = list(labels.values())
    servers = {label: found for label, found in servers.items() if label in labels}
    header = make_header("monitor", labels, {
        "pids": {str(pid): label for pid, label in spec.labels.items()},
        "keys": list(options.key_patterns), "duration": options.duration, "redact_values": options.redact_values},
        servers=servers)
    writer = trace.TraceWriter(path, header, keep=False)
    for line in same:
        writer.note(line)
        say(line)
    pending: deque[trace.Recorded] = deque()
    if live is not None:
        writer.subscribe(pending.append, raw=True)  # the timeline parses only the lines it shows
    for warning in spec.warnings:
        writer.note(warning, level="warning")
    for note in options.notes:
        writer.note(note)
    if options.redact_values:
        from redisprobe.trace.redact import redacting

        writer.transform = redacting
    sessions = [CaptureSession(t, writer, watched=dict(spec.labels), enable_events=options.enable_events,
                               selectors=spec.selectors)
                for t in targets]
    if options.source == "wire":
        _without_monitor(sessions)
    interrupted = capturing = False
    looking: _Whereabouts | None = None
    deadline = None
    replicas = {labels[label].address for label, found in servers.items()
                if found.role == "slave" and found.redis_mode == "cluster"}
    for watcher in options.topology:  # each node's role before its first line: a replica's MONITOR is read by it
        writer.emit_many(watcher.start_events())
    try:
        for session in sessions:
            session.start()
        if wire is not None:  # CLIENT LIST has looked: it knows the db of connections open before the capture
            wire.attach(writer, pending.extend if live is not None else None, db_of=_client_db(sessions))
        for session in sessions:  # MONITOR is on: what exists now existed before anything it will show
            if session.target.address in replicas:
                continue  # a cluster replica holds its primary's keys: they are followed there
            found = take_baseline(session.target, options.key_patterns)
            writer.emit_many(found.events)
            writer.note(found.note, level=found.level)
            if found.level != "warning" or live is None:  # a warning reaches the live timeline by itself
                say(found.note)
        capturing = True
        # --duration is capture time: starting the observers can take seconds on a busy host
        deadline = time.monotonic() + options.duration if options.duration else None
        if on_ready is not None:
            on_ready()
        look_at = time.monotonic() + UNSEEN_AFTER
        while deadline is None or time.monotonic() < deadline:
            for watcher in options.topology:
                sessions += _follow(watcher, writer, spec, options, sessions)
            if looking is None and time.monotonic() >= look_at:
                looking = _Whereabouts(_unseen_listed(sessions, spec), spec, servers)
            for session in sessions:
                session.pump()
            if live is not None:
                _flush_live(live, pending)
            writer.check()
            time.sleep(0.05)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        # Each stop drains MONITOR and restores CONFIG, within a budget: a hung server neither stretches the
        # duration nor holds Ctrl-C (a second one gives up at once); what was given up on is said.
        unseen = _unseen_listed(sessions, spec) if capturing else []  # before stopping: the poller's last view
        if unseen and looking is None:  # a short capture: looked at now (bounded like the rest of a Ctrl-C)
            looking = _Whereabouts(unseen, spec, servers)
        gave_up, again = stop_sessions(sessions, budget=INTERRUPT_BUDGET if interrupted else connect_timeout())
        interrupted = interrupted or again
        for watcher in options.topology:
            watcher.close()
        if wire is not None:
            try:
                wire.finish()  # the rest of the wire spool, into the trace and the timeline
            except KeyboardInterrupt:
                interrupted = True
            interrupted = interrupted or wire.cut
        if live is not None:
            _flush_live(live, pending)
            live.finish()  # type: ignore[attr-defined]
        for line in gave_up:  # in the trace; said on stderr by the command, not in the timeline
            writer.note(f"gave up {line}", level="warning")
        if unseen and looking is not None:
            for line in looking.lines(unseen, wait=INTERRUPT_BUDGET if interrupted else UNSEEN_WAIT):
                writer.note(line, level="warning")
        lost = [s.keyspace.lost for s in sessions if s.keyspace.lost]
        writer.close()
    writer.check()
    return CaptureOutcome(trace_path=path, temporary=temporary, interrupted=interrupted, lost=lost,
                          gave_up=[f"gave up {line}" for line in gave_up])


def _follow(watcher: Any, writer: trace.TraceWriter, spec: PidSpec, options: MonitorOptions,
            sessions: list[CaptureSession]) -> list[CaptureSession]:
    """A cluster's changes recorded in the trace (events, and a warning each); a node that joined watched from now
    on (a primary with a gap since the last look)."""
    started = []
    for target, since in watcher.record(writer):
        session = CaptureSession(target, writer, watched=dict(spec.labels), enable_events=options.enable_events,
                                 selectors=spec.selectors)
        session.start()
        started.append(session)
        if since is None:
            continue  # a replica: its primary's keys are followed on the primary
        found = take_baseline(session.target, options.key_patterns)  # what it holds already is not a miss
        writer.emit_many(found.events)
        writer.note(found.note, level=found.level)
        writer.emit(joined_gap(target, since))
    return started


def _client_db(sessions: list[CaptureSession]) -> Callable[[str, str], int | None]:
    """The db CLIENT LIST showed for a client address on a watched server (by its label)."""
    def db_of(label: str, addr: str) -> int | None:
        for session in sessions:
            if session.target.label == label:
                seen = session.clients.client_for_addr(addr)
                return seen.db if seen is not None else None
        return None
    return db_of


def capture_from(targets: list[Target], spec: PidSpec, options: MonitorOptions, out: Path | None,
                 live: object | None = None, on_ready: Callable[[], None] | None = None,
                 say: Callable[[str], None] | None = None) -> CaptureOutcome:
    """`capture`, with the wire reader beside it when `options.source` is wire or both: its exchanges reach the
    trace as the capture goes (those parsed too late for the trace's time order are merged in at the end)."""
    if options.source == "monitor":
        return capture(targets, spec, options, out, live, on_ready, say)
    from redisprobe.producers.wire.source import WireSource, merge_into_trace

    wire = WireSource(targets, options.source)
    wire.start()
    try:
        try:
            outcome = capture(targets, spec, options, out, live, on_ready, say, wire=wire)
        finally:
            wire.stop()
        merge_into_trace(outcome.trace_path, wire.late_events())
    finally:
        wire.remove()
    return outcome


def _without_monitor(sessions: list[CaptureSession]) -> None:
    """`--source wire`: the sessions keep their keyspace and CLIENT LIST observers; MONITOR never starts."""
    from redisprobe.producers.wire.source import NoMonitor

    for session in sessions:
        session.monitor = NoMonitor()  # type: ignore[assignment]


def _unseen_listed(sessions: list[CaptureSession], spec: PidSpec) -> list[int]:
    """Listed pids that no connection to any watched server belonged to (itself or a child, by pid or label)."""
    pids: set[int] = set()
    labels: set[str] = set()
    for session in sessions:
        for seen in session.clients.clients_by_id().values():
            if seen.pid is not None:
                pids.add(seen.pid)
            if seen.label:
                labels.add(seen.label)
    return [pid for pid, label in spec.labels.items() if pid not in pids and label not in labels]


UNSEEN_AFTER = 1.0
"""Seconds into a capture after which listed processes with no connection seen yet are looked at (their sockets
read and their endpoints asked) in the background, so the answer is ready even for a Ctrl-C."""
UNSEEN_WAIT = 3.0


class _Whereabouts:
    """Where listed processes are connected instead, found in a background thread."""

    def __init__(self, pids: list[int], spec: PidSpec, servers: dict[str, trace.ServerFingerprint]) -> None:
        self.found: dict[int, str | None] = {}
        self._thread = threading.Thread(target=self._run, args=(pids, spec, servers), daemon=True,
                                        name="redisprobe-whereabouts")
        self._thread.start()

    def _run(self, pids: list[int], spec: PidSpec, servers: dict[str, trace.ServerFingerprint]) -> None:
        for pid in pids:
            self.found[pid] = _where_instead(pid, spec, servers)

    def lines(self, unseen: list[int], *, wait: float) -> list[str]:
        """The warning for each pid still unseen at the end (what was not looked at in time is left out)."""
        self._thread.join(wait)
        return [line for pid in unseen if (line := self.found.get(pid))]


def _where_instead(pid: int, spec: PidSpec, servers: dict[str, trace.ServerFingerprint]) -> str | None:
    """For a listed process the capture never saw: where it is connected instead (the "can't see" answer), or
    that it is no Redis client at all; None when it is connected to a watched server after all."""
    import psutil

    from redisprobe.producers.processes.connected import whereabouts

    watched = ", ".join(f"{s.host}:{s.port}" if s.port else s.host for s in servers.values()) or "the watched server"
    run_ids = {s.run_id for s in servers.values() if s.run_id}
    who = f"pid {pid} ({spec.labels[pid]})"
    if not psutil.pid_exists(pid):
        return f"{who} had no connection to {watched} during the capture and has exited"
    found = whereabouts(pid)
    if any(server.run_id in run_ids for server in found.redis.values()):
        return None  # connected to a watched server by another address: CLIENT LIST just never showed it
    if found.redis:
        places = ", ".join(f"{address} (run_id {server.run_id[:8]}…)" if server.run_id else address
                           for address, server in sorted(found.redis.items()))
        return f"{who} has no connection to {watched}; it is connected to {places}: it cannot see what is written here"
    if not found.readable:
        return (f"{who} had no connection to {watched} during the capture, and its own sockets could not be read "
                "(run as its user or with sudo to see where it is connected)")
    other = f" (its connections: {', '.join(found.other[:5])})" if found.other else " (no open connection)"
    return f"{who} is not a Redis client: no TCP or unix connection to any Redis server{other}"


def _one_per_server(labels: dict[str, Target], servers: dict[str, trace.ServerFingerprint]
                    ) -> tuple[dict[str, Target], list[str]]:
    """The targets with each server once (the same run_id under two spellings, e.g. 127.0.0.1 and localhost,
    is one server: a second MONITOR would count every command twice), and one line per target dropped."""
    kept: dict[str, Target] = {}
    first: dict[str, Target] = {}
    said: list[str] = []
    for label, target in labels.items():
        run_id = servers[label].run_id if label in servers else ""
        if run_id and run_id in first:
            said.append(f"{target.label} is the same server as {first[run_id].label} (run_id {run_id[:12]}): "
                        "captured once")
            continue
        if run_id:
            first[run_id] = target
        kept[label] = target
    return kept, said


def summarise_capture(outcome: CaptureOutcome, spec: PidSpec, key_patterns: tuple[str, ...],
                      say: Callable[[str], None]) -> tuple[Summary, bool]:
    """The summary of a finished capture, and whether Ctrl-C cut it short (then it has what was ready: clients,
    gaps, notes and counts, no key lives or findings). A temporary trace is removed either way."""
    from redisprobe.analysis.digest import SummaryInterrupted, summarise
    from redisprobe.trace import read_trace

    try:
        size = outcome.trace_path.stat().st_size
        try:
            # Ctrl-C may come the moment this line is out (a loaded host runs the reader of stderr first): it
            # already belongs to the analysis it announces.
            if size > _SAY_ANALYSING:
                say(f"analysing {size / 1e6:.1f} MB of capture (Ctrl-C prints what is ready)")
            _header, stream = read_trace(outcome.trace_path)
            # As in `report`: the summary builds millions of acyclic objects; with the cyclic collector back on, its
            # first pass over them would cost about 1.5 s per 400k commands. It stays off until the process exits.
            gc.disable()
            return summarise(stream, watched=spec.labels, key_patterns=key_patterns), False
        except SummaryInterrupted as cut:
            return cut.partial, True
        except KeyboardInterrupt:  # before the summary began: nothing was ready yet
            return Summary(clients=[], keys=[], findings=[], gaps=[], notes=[], stats={}), True
    finally:
        if outcome.temporary:
            outcome.trace_path.unlink(missing_ok=True)


def _flush_live(live: object, pending: deque[trace.Recorded]) -> None:
    batch = []
    while pending:
        batch.append(pending.popleft())
    live.feed(batch)  # type: ignore[attr-defined]
