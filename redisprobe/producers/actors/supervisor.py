"""Spawns actor processes, pumps their event streams into the trace, and makes sure none outlives the run."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import msgspec

from redisprobe import trace
from redisprobe.producers import procs
from redisprobe.producers.actors.child import ActorSpec


@dataclass
class ActorRun:
    """One running actor and what it said."""

    spec: ActorSpec
    proc: subprocess.Popen[bytes]
    started: trace.ActorStarted | None = None
    exited: trace.ActorExited | None = None
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=5))
    threads: list[threading.Thread] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid


class Supervisor:
    """Runs a set of actors concurrently; `stop_all` in a `finally` guarantees no leftovers."""

    def __init__(self, writer: trace.TraceWriter) -> None:
        self.writer = writer
        self.runs: list[ActorRun] = []

    def start(self, spec: ActorSpec) -> ActorRun:
        proc = procs.spawn([sys.executable, "-m", "redisprobe.producers.actors.child"], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        run = ActorRun(spec=spec, proc=proc)
        assert proc.stdin is not None
        proc.stdin.write(msgspec.json.encode(spec) + b"\n")
        proc.stdin.flush()
        run.threads = [
            threading.Thread(target=self._pump_events, args=(run,), daemon=True),
            threading.Thread(target=self._pump_stderr, args=(run,), daemon=True),
        ]
        for thread in run.threads:
            thread.start()
        self.runs.append(run)
        return run

    def _pump_events(self, run: ActorRun) -> None:
        assert run.proc.stdout is not None
        for line in run.proc.stdout:
            try:
                event = trace.decode_event(line)
            except (msgspec.DecodeError, msgspec.ValidationError):
                run.stderr_tail.append(line.decode("utf-8", "replace").strip())
                continue
            if isinstance(event, trace.ActorStarted):
                run.started = event
            elif isinstance(event, trace.ActorExited):
                run.exited = event
            self.writer.emit(event)

    def _pump_stderr(self, run: ActorRun) -> None:
        assert run.proc.stderr is not None
        for line in run.proc.stderr:
            text = line.decode("utf-8", "replace").rstrip()
            if text:
                run.stderr_tail.append(text)

    def release(self, timeout: float = 60.0) -> None:
        """Start line: once every actor has connected (or died), tell them all to go at once."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(
                run.started is None and run.exited is None and run.proc.poll() is None for run in self.runs):
            time.sleep(0.01)
        for run in self.runs:
            if run.proc.stdin is not None and not run.proc.stdin.closed:
                try:
                    run.proc.stdin.write(b"go\n")
                    run.proc.stdin.close()
                except OSError:  # it died already: its exit is recorded by the pump
                    pass

    def wait_all(self, timeout: float, limit: float | None = None) -> None:
        """Wait for every actor to finish; past `timeout`, stop the stragglers (recorded as timed out, with the
        plan's time `limit` in seconds)."""
        self.release()
        deadline = time.monotonic() + timeout
        for run in self.runs:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                run.proc.wait(remaining)
            except subprocess.TimeoutExpired:
                procs.stop(run.proc)
                self._finish(run, timed_out=f"still running after the {limit or timeout:g}s time limit "
                                            "(max_seconds), so it was stopped")
                continue
            self._finish(run)

    def _finish(self, run: ActorRun, timed_out: str | None = None) -> None:
        for thread in run.threads:
            thread.join(5)
        if run.exited is None and timed_out is not None:
            run.exited = trace.ActorExited(t=time.time(), pid=run.pid, role=run.spec.role,
                                           returncode=run.proc.returncode, timed_out=True, detail=timed_out)
            self.writer.emit(run.exited)
        if run.exited is None:
            code = run.proc.returncode
            detail = run.stderr_tail[-1] if run.stderr_tail else f"exited with status {code}"
            if code is not None and code < 0:
                detail = f"killed by signal {-code}"
            run.exited = trace.ActorExited(t=time.time(), pid=run.pid, role=run.spec.role, returncode=code,
                                           crashed=True, detail=detail)
            self.writer.emit(run.exited)

    def stop_all(self, timeout: float = 3.0) -> None:
        """Stop every actor, politely first: all are asked at once and given `timeout` seconds together (short
        after Ctrl-C: an actor waiting on a hung server would hold it), then killed."""
        for run in self.runs:
            if run.proc.stdin is not None and not run.proc.stdin.closed:
                with contextlib.suppress(OSError):
                    run.proc.stdin.close()
        for run in self.runs:
            if run.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    run.proc.terminate()
        deadline = time.monotonic() + timeout
        for run in self.runs:
            procs.stop(run.proc, timeout=max(0.0, deadline - time.monotonic()))
        for run in self.runs:
            if run.exited is None:
                self._finish(run)

    def crashed(self) -> list[ActorRun]:
        return [run for run in self.runs if run.exited is not None and run.exited.crashed]
