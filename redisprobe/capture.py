"""A capture: MONITOR, keyspace events and CLIENT LIST (with pids) on one server, all into one trace.

The MONITOR reader is a process of its own that only spools bytes (so it keeps up with a loaded server);
this side copies the spooled lines into the trace unparsed (`trace.MonitorLines`): parsing waits until the
trace is read, so a capture takes no CPU from a busy server beyond what `redis-cli monitor` would.
Observers notice their own disconnections and write gaps; `stop()` drains MONITOR up to a fence and restores
any CONFIG we changed.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from redisprobe import trace
from redisprobe.observers.clients import ClientPoller
from redisprobe.observers.keyspace import KeyspaceObserver
from redisprobe.observers.monitor import MonitorCapture
from redisprobe.pidmap import PidMapper
from redisprobe.target import Target


class CaptureSession:
    """Every observer of one target, started and stopped together (stop is safe in `finally`)."""

    def __init__(self, target: Target, writer: trace.TraceWriter, *, watched: dict[int, str] | None = None,
                 enable_events: bool | None = None, label: str = "", client_interval: float = 0.2) -> None:
        self.target = target
        self.writer = writer
        self.label = label
        self._spool = Path(tempfile.mkdtemp(prefix="redisprobe-spool-"))
        self.monitor = MonitorCapture(target, self._spool, label=label)
        self.keyspace = KeyspaceObserver(target, writer.emit, enable=enable_events, label=label)
        self.mapper = PidMapper(watched or {})
        self.clients = ClientPoller(target, writer.emit, pid_mapper=self.mapper, interval=client_interval,
                                    label=label)
        self._started: list[object] = []

    def start(self) -> None:
        try:
            self.clients.start()
            self._started.append(self.clients)
            self.keyspace.start()
            self._started.append(self.keyspace)
            self.monitor.start()
            self._started.append(self.monitor)
        except BaseException:
            self.stop()
            raise

    def pump(self) -> None:
        """Move what MONITOR captured since the last call into the trace."""
        self.writer.emit_many(self.monitor.poll())

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
        for observer in (self.keyspace, self.clients, self.monitor):
            try:
                observer.stop()  # type: ignore[attr-defined]
            except KeyboardInterrupt as exc:
                interrupted = exc
            except Exception:
                pass
        shutil.rmtree(self._spool, ignore_errors=True)
        if interrupted is not None:
            raise interrupted

    def __enter__(self) -> CaptureSession:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
