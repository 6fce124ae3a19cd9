"""`monitor --source wire|both`: the wire reader beside a capture, its exchanges streamed into the trace.

`both`: MONITOR gives the commands as today, the wire adds what MONITOR cannot show (each reply, and the commands
the server refused), as `trace.WireReply` events. `wire`: MONITOR is not started at all (its cost to the server
is the point), the wire gives the commands as `trace.Monitor` events too. The reader process only copies packets
to its spool; this process parses the spool while the capture runs (see `WireSource`), so events reach the trace
and the live timeline as they come, and the spool on disk is only the backlog not parsed yet.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from redisprobe import trace
from redisprobe.errors import ProbeError
from redisprobe.leftovers import temp_dir
from redisprobe.producers.wire.events import exchange_events
from redisprobe.producers.wire.offline import Reassembler
from redisprobe.producers.wire.reader import BUDGET_BYTES
from redisprobe.producers.wire.sniffer import WireCapture
from redisprobe.targets.url import Target

SOURCES = ("monitor", "wire", "both")


def check_source(source: str, targets: list[Target], *, redact_values: bool) -> None:
    """One line for a source that cannot work here, before anything starts."""
    if source not in SOURCES:
        raise ProbeError(f"--source must be one of {', '.join(SOURCES)}, not {source!r}")
    if source == "monitor":
        return
    if redact_values:
        raise ProbeError("--redact-values is not supported with --source wire or both yet (replies carry values)")
    for target in targets:
        if target.unix_path or not target.port:
            raise ProbeError(f"--source {source} needs a TCP address; {target.label} is a unix socket")
        if target.tls:
            raise ProbeError(f"--source {source} cannot read TLS connections ({target.label})")


class NoMonitor:
    """Stands in for a session's MONITOR capture under `--source wire`: MONITOR is never started."""

    def start(self) -> None: ...
    def poll(self, max_lines: int | None = None) -> list[trace.Recorded]: return []
    def drain_batches(self, timeout: float | None = None) -> Iterator[list[trace.Recorded]]: return iter(())
    def stop(self) -> None: ...
    def abort(self) -> None: ...


class WireSource:
    """One wire reader per watched port (targets on the same port share it), its spool parsed as it is written.

    `attach(writer, show)` starts the parse in a thread of this process: every `_PARSE_EVERY` seconds the new
    spool records are read (each segment deleted once read: the disk holds only the unparsed backlog, at most
    the reader's budget), and the exchanges complete so far become trace events, emitted into the trace as the
    capture goes on (and so into the live timeline). An event older than `LATE_AFTER` seconds when it is ready
    (the parse fell behind, or a blocking command answered late) would break the trace's near time order: it is
    kept aside instead (`late_events()`, spilled to disk in sorted runs) and merged in when the capture ends;
    `show` still gets it for the timeline. `finish()` stops the readers and parses what is left.
    """

    def __init__(self, targets: list[Target], source: str, *, budget_bytes: int = BUDGET_BYTES) -> None:
        self.source = source
        self._spool = temp_dir("wire")
        self.captures: list[tuple[WireCapture, list[Target]]] = []
        by_port: dict[int, list[Target]] = {}
        for target in targets:
            if target.port is not None:
                by_port.setdefault(target.port, []).append(target)
        for port, same_port in by_port.items():
            capture = WireCapture(port, self._spool, target=same_port[0].label, budget_bytes=budget_bytes)
            self.captures.append((capture, same_port))
        self._streams: list[_Stream] = []
        self._late = _LateEvents(self._spool)
        self._writer: trace.TraceWriter | None = None
        self._show: Callable[[list[trace.Event]], None] | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._failed: BaseException | None = None
        self._finished = False
        self.cut = False  # Ctrl-C stopped the parse of the backlog

    def start(self) -> None:
        try:
            for capture, _targets in self.captures:
                capture.start()
        except BaseException:
            self.stop()
            raise
        self._streams = [_Stream(capture, same_port, self.source) for capture, same_port in self.captures]

    def attach(self, writer: trace.TraceWriter, show: Callable[[list[trace.Event]], None] | None = None,
               db_of: Callable[[str, str], int | None] | None = None) -> None:
        """Parse as the capture goes, into `writer` (and `show`, for late events the writer will not pass on).
        `db_of(target, client address)`: the db CLIENT LIST shows for a connection open before the capture that
        never SELECTs on the wire (without it, its commands would all count as db 0); attach once it has looked."""
        self._writer, self._show = writer, show
        for stream in self._streams:
            stream.db_of = db_of
        self._thread = threading.Thread(target=self._run, name="redisprobe-wire-parse", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(OSError, AttributeError):  # Linux: a thread's own nice value; elsewhere as is
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _NICE)
        try:
            while not self._stopping.is_set():
                if not self._pump_all():
                    self._stopping.wait(_PARSE_EVERY)
        except BaseException as exc:  # said by `finish`, in the capture's thread
            self._failed = exc

    def _pump_all(self) -> bool:
        """One read of every spool; whether any had more waiting."""
        more = False
        for stream in self._streams:
            more = stream.pump(self._deliver) or more
        return more

    def _deliver(self, events: list[trace.Event]) -> None:
        if not events:
            return
        cutoff = time.time() - LATE_AFTER
        on_time = [e for e in events if e.t >= cutoff]
        if len(on_time) < len(events):
            late = [e for e in events if e.t < cutoff]
            self._late.add(late)
            if self._show is not None:
                self._show(late)
        if on_time:
            if self._writer is not None:
                self._writer.emit_many(on_time)
            else:
                self._late.add(on_time)

    def finish(self) -> None:
        """The capture is ending: stop the readers, parse the rest of their spools, close every connection."""
        if self._finished:
            return
        self._finished = True
        self.stop()
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        if self._failed is not None:
            raise self._failed
        try:
            while self._pump_all():
                pass
            for stream in self._streams:
                stream.finish(self._deliver)
        except KeyboardInterrupt:  # Ctrl-C while the backlog is parsed: what is left is a gap, said
            self.cut = True
            for stream in self._streams:
                self._deliver([stream.cut()])

    def stop(self) -> None:
        for capture, _targets in self.captures:
            capture.stop()

    def late_events(self) -> Iterator[trace.Event]:
        """The events kept aside (see the class), in time order: to merge into the finished trace."""
        self.finish()
        return self._late.ordered()

    def events(self) -> list[trace.Event]:
        """Everything, at once, in time order (when no trace writer was attached)."""
        return list(self.late_events())

    def remove(self) -> None:
        for stream in self._streams:
            stream.close()
        for capture, _targets in self.captures:
            capture.remove()
        self._late.remove()
        with contextlib.suppress(OSError):
            self._spool.rmdir()


LATE_AFTER = 3.0
"""Seconds: a wire event older than this when parsed is merged at the end, not written at once (the trace may be
out of time order by `trace.REORDER_WINDOW` at most)."""
_PARSE_EVERY = 0.1
_NICE = 10
"""The parse thread yields the CPU to the server (and to the reader process) on a loaded machine: the backlog
waits on disk, within the reader's budget, and is parsed when the load eases or at the end."""


class _Stream:
    """One capture's spool, followed and parsed incrementally."""

    def __init__(self, capture: WireCapture, targets: list[Target], source: str) -> None:
        self.capture = capture
        self.follower = capture.follower()
        self.reassembler = Reassembler(capture.port, capture.target)
        self.label = _labeller(targets)
        self.commands = source == "wire"  # `both`: MONITOR has the commands
        self.db_of: Callable[[str, str], int | None] | None = None
        self._gaps = 0
        self._notes = 0
        self.parsed_until = 0.0  # capture time of the last record parsed

    def pump(self, deliver: Callable[[list[trace.Event]], None]) -> bool:
        records = self.follower.read()
        if records:
            self.reassembler.records(records)
            self.parsed_until = records[-1][1]
            deliver(self._events())
        return self.follower.more

    def cut(self) -> trace.Gap:
        """The gap for the spool left unparsed (Ctrl-C at the end of the capture)."""
        return trace.Gap(t=self.parsed_until or time.time(), until=time.time(), source="wire",
                         target=self.capture.target,
                         reason="wire: Ctrl-C stopped the parse of the spool's backlog; what was captured after "
                                "this was not read")

    def finish(self, deliver: Callable[[list[trace.Event]], None]) -> None:
        self.reassembler.finish()
        deliver(self._events())
        self.follower.close()

    def _events(self) -> list[trace.Event]:
        out: list[trace.Event] = []
        for event in exchange_events(self.reassembler.take(), target=self.label, db_of=self.db_of):
            if self.commands or type(event) is trace.WireReply:
                out.append(event)
        result = self.reassembler.result
        out.extend(result.gaps[self._gaps:])
        self._gaps = len(result.gaps)
        started = result.started or time.time()
        out.extend(trace.Note(t=started, level="warning", text=f"wire: {note}") for note in result.notes[self._notes:])
        self._notes = len(result.notes)
        return out

    def close(self) -> None:
        self.follower.close()


_RUN = 200_000  # late events kept in memory; more are sorted and spilled to disk as a run


class _LateEvents:
    """Events kept aside until the end, in bounded memory: sorted runs on disk, merged when read."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.buffer: list[trace.Event] = []
        self.runs: list[Path] = []

    def add(self, events: list[trace.Event]) -> None:
        self.buffer.extend(events)
        if len(self.buffer) >= _RUN:
            self._spill()

    def _spill(self) -> None:
        self.buffer.sort(key=_time)
        path = self.directory / f"late-{len(self.runs)}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # commands carry values: ours only
        with os.fdopen(fd, "wb") as out:
            for start in range(0, len(self.buffer), 4096):
                out.write(b"".join(trace.encode(e) for e in self.buffer[start:start + 4096]))
        self.runs.append(path)
        self.buffer = []

    def ordered(self) -> Iterator[trace.Event]:
        self.buffer.sort(key=_time)
        if not self.runs:
            return iter(self.buffer)
        return heapq.merge(self.buffer, *(_read_run(path) for path in self.runs), key=_time)

    def remove(self) -> None:
        for path in self.runs:
            with contextlib.suppress(OSError):
                path.unlink()


def _time(event: trace.Event) -> float:
    return event.t


def _read_run(path: Path) -> Iterator[trace.Event]:
    with path.open("rb") as handle:
        for line in handle:
            yield trace.decode_event(line)


def _labeller(targets: list[Target]) -> Callable[[str], str]:
    """The label of the watched server an exchange went to, by its address (servers sharing a port differ by
    host: the split sandbox's 127.0.0.1 and 127.0.0.2)."""
    if len(targets) == 1:
        label = targets[0].label
        return lambda server: label
    by_host = {t.host: t.label for t in targets}

    def label_of(server: str) -> str:
        host = server.rsplit(":", 1)[0].strip("[]")
        return by_host.get(host, targets[0].label)

    return label_of


def merge_into_trace(path: Path, extra: Iterable[trace.Event]) -> None:
    """Rewrite a finished trace with `extra` (sorted by time) merged in, so the file stays nearly time-ordered."""
    extra = iter(extra)
    first = next(extra, None)
    if first is None:
        return
    extra = itertools.chain((first,), extra)
    with path.open("rb") as handle:
        header = handle.readline()
    _header, stream = trace.read_trace(path)
    merging = path.with_name(path.name + ".merging")
    fd = os.open(merging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(header)
            block: list[bytes] = []
            for event in heapq.merge(trace.time_ordered(stream), extra, key=lambda e: e.t):
                block.append(trace.encode(event))
                if len(block) >= 4096:
                    out.write(b"".join(block))
                    block.clear()
            out.write(b"".join(block))
        os.replace(merging, path)
    except BaseException:
        with contextlib.suppress(OSError):
            merging.unlink()
        raise
