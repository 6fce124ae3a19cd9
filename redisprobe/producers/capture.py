"""A capture: MONITOR, keyspace events and CLIENT LIST (with pids) on one server, all into one trace.

The MONITOR reader is a process of its own that only spools bytes (so it keeps up with a loaded server);
this side copies the spooled lines into the trace unparsed (`trace.MonitorLines`): parsing waits until the
trace is read, so a capture takes no CPU from a busy server beyond what `redis-cli monitor` would.
Observers notice their own disconnections and write gaps; `stop()` drains MONITOR up to a fence and restores
any CONFIG we changed.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections.abc import Sequence

from redisprobe import trace
from redisprobe.leftovers import temp_dir
from redisprobe.producers.observers.clients import ClientPoller
from redisprobe.producers.observers.keyspace import KeyspaceObserver
from redisprobe.producers.observers.monitor_capture import MonitorCapture
from redisprobe.producers.observers.peers import PeerWatcher
from redisprobe.producers.observers.protocol import Observer
from redisprobe.producers.observers.refusals import RefusalSampler
from redisprobe.producers.processes.pidmap import PidMapper
from redisprobe.producers.processes.selectors import Selector
from redisprobe.targets.url import Target


class CaptureSession:
    """Every observer of one target, started and stopped together (stop is safe in `finally`)."""

    def __init__(self, target: Target, writer: trace.TraceWriter, *, watched: dict[int, str] | None = None,
                 enable_events: bool | None = None, label: str = "", client_interval: float = 0.2,
                 selectors: Sequence[Selector] = ()) -> None:
        self.target = target
        self.writer = writer
        self.label = label
        self._spool = temp_dir("spool")
        self.monitor = MonitorCapture(target, self._spool, label=label)
        self.keyspace = KeyspaceObserver(target, writer.emit, enable=enable_events, label=label)
        self.mapper = PidMapper(watched or {}, selectors=selectors, on_join=writer.note)
        self.clients = ClientPoller(target, writer.emit, pid_mapper=self.mapper, interval=client_interval,
                                    label=label)
        self.refusals = RefusalSampler(target, writer.emit, label=label)  # what MONITOR cannot show
        self.peers = PeerWatcher(target, writer.emit, self.mapper, label=label)  # between CLIENT LIST samples
        self.observers: list[Observer] = [self.peers, self.refusals, self.keyspace, self.clients, self.monitor]
        """In the order they stop (MONITOR last: the others' last samples are taken while it still runs)."""
        self._started: list[Observer] = []
        self._drained = False

    def start(self) -> None:
        try:
            self.clients.start()
            self._started.append(self.clients)
            self.peers.start()
            self.keyspace.start()
            self._started.append(self.keyspace)
            self.refusals.start()  # its baseline before MONITOR: its own handshake stays out of the trace
            self.monitor.start()
            self._started.append(self.monitor)
        except BaseException:
            self.stop()
            raise

    def pump(self) -> None:
        """Move what the observers gathered since the last call into the trace (MONITOR's spooled lines; the
        others write from their own threads)."""
        for observer in self.observers:
            gathered = observer.pump()
            if gathered:
                self.writer.emit_many(gathered)

    def stop(self) -> None:
        """Drain MONITOR into the trace, then stop every observer (restoring CONFIG).

        Every observer is stopped even if a second Ctrl-C arrives meanwhile; that interrupt is re-raised after."""
        interrupted: BaseException | None = None
        if self.monitor in self._started:
            try:
                for batch in self.monitor.drain_batches():  # a backlog never sits in memory whole
                    self.writer.emit_many(batch)
            except KeyboardInterrupt as exc:
                interrupted = exc
            except Exception:  # a failed drain is already recorded as a gap by the capture
                pass
        self._drained = True
        for observer in self.observers:
            try:
                observer.stop()
            except KeyboardInterrupt as exc:
                interrupted = exc
            except Exception:
                pass
        shutil.rmtree(self._spool, ignore_errors=True)
        if interrupted is not None:
            raise interrupted

    def abandon(self) -> list[str]:
        """Give up on a `stop()` that is still waiting for the server: close every connection (which ends those
        waits), stop the reader, remove the spool; returns what was left undone, one line each."""
        where = self.target.label
        undone = []
        if self.monitor in self._started and not self._drained:
            undone.append(f"confirming that MONITOR on {where} delivered its last commands (the trace may miss them)")
        pending = self.keyspace.pending_restore
        if pending is not None:
            undone.append(f"restoring notify-keyspace-events on {where} to {pending!r}: the next redisprobe run "
                          f"that reaches it restores it (or run: CONFIG SET notify-keyspace-events {pending!r})")
        for observer in self.observers:
            with contextlib.suppress(Exception):
                observer.abort()
        shutil.rmtree(self._spool, ignore_errors=True)
        return undone

    def __enter__(self) -> CaptureSession:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_sessions(sessions: Sequence[CaptureSession], *, budget: float) -> tuple[list[str], bool]:
    """Stop every session at once (drain MONITOR, restore CONFIG, end the observers), waiting at most `budget`
    seconds; Ctrl-C meanwhile gives up at once. Returns what was given up on (one line each) and whether Ctrl-C
    came.

    A server that stopped answering must neither stretch `--duration` nor hold Ctrl-C: each wait for it is
    bounded by the connect timeout, and past `budget` the connections are closed and the rest abandoned.
    """
    workers = [threading.Thread(target=_quietly_stop, args=(session,), name="redisprobe-stop", daemon=True)
               for session in sessions]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + budget
    interrupted = False
    try:
        for worker in workers:
            while worker.is_alive() and time.monotonic() < deadline:
                worker.join(0.05)
    except KeyboardInterrupt:
        interrupted = True
    undone: list[str] = []
    for session, worker in zip(sessions, workers, strict=True):
        if worker.is_alive():
            undone += session.abandon()
    return undone, interrupted


def _quietly_stop(session: CaptureSession) -> None:
    with contextlib.suppress(Exception):
        session.stop()
