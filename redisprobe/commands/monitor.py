"""`redisprobe monitor`: watch a live server (any client, any language), attribute every command to a process,
and tell each watched key's life with the doctor's findings at the end (or on Ctrl-C)."""

from __future__ import annotations

import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from redisprobe import trace
from redisprobe.capture import CaptureSession, stop_sessions
from redisprobe.pidmap import PidSpec
from redisprobe.session import make_header
from redisprobe.target import Target, connect_timeout

INTERRUPT_BUDGET = 1.0
"""Seconds the end of a capture may take after Ctrl-C (draining MONITOR, restoring CONFIG) before it gives up."""


@dataclass
class MonitorOptions:
    duration: float | None = None
    key_patterns: tuple[str, ...] = ()
    enable_events: bool | None = None
    redact_values: bool = False


@dataclass
class CaptureOutcome:
    trace_path: Path
    temporary: bool
    interrupted: bool
    lost: list[str]  # one line per kind of attribution lost (events off, CONFIG refused...)
    gave_up: list[str]  # what the end of the capture abandoned because the server did not answer in time


def capture(targets: list[Target], spec: PidSpec, options: MonitorOptions, out: Path | None,
            live: object | None = None, on_ready: Callable[[], None] | None = None) -> CaptureOutcome:
    """Capture until the duration passes or Ctrl-C; the trace is complete and observers stopped either way."""
    temporary = out is None
    path = out or Path(tempfile.mkstemp(prefix="redisprobe-monitor-", suffix=".jsonl")[1])
    labels = {f"server{index}" if index else "server": t for index, t in enumerate(targets)}
    header = make_header("monitor", labels, {
        "pids": {str(pid): label for pid, label in spec.labels.items()},
        "keys": list(options.key_patterns), "duration": options.duration, "redact_values": options.redact_values})
    writer = trace.TraceWriter(path, header, keep=False)
    pending: deque[trace.Recorded] = deque()
    if live is not None:
        writer.subscribe(pending.append, raw=True)  # the timeline parses only the lines it shows
    for warning in spec.warnings:
        writer.note(warning, level="warning")
    if options.redact_values:
        from redisprobe.redact import redacting

        writer.transform = redacting
    sessions = [CaptureSession(t, writer, watched=dict(spec.labels), enable_events=options.enable_events)
                for t in targets]
    interrupted = False
    deadline = time.monotonic() + options.duration if options.duration else None
    try:
        for session in sessions:
            session.start()
        if on_ready is not None:
            on_ready()
        while deadline is None or time.monotonic() < deadline:
            for session in sessions:
                session.pump()
            if live is not None:
                _flush_live(live, pending)
            time.sleep(0.05)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        # Each stop drains MONITOR and restores CONFIG, within a budget: a hung server neither stretches the
        # duration nor holds Ctrl-C (a second one gives up at once); what was given up on is said.
        gave_up, again = stop_sessions(sessions, budget=INTERRUPT_BUDGET if interrupted else connect_timeout())
        interrupted = interrupted or again
        for line in gave_up:
            writer.note(f"gave up {line}", level="warning")
        if live is not None:
            _flush_live(live, pending)
            live.finish()  # type: ignore[attr-defined]
        lost = [s.keyspace.lost for s in sessions if s.keyspace.lost]
        writer.close()
    return CaptureOutcome(trace_path=path, temporary=temporary, interrupted=interrupted, lost=lost,
                          gave_up=[f"gave up {line}" for line in gave_up])


def _flush_live(live: object, pending: deque[trace.Recorded]) -> None:
    batch = []
    while pending:
        batch.append(pending.popleft())
    live.feed(batch)  # type: ignore[attr-defined]
