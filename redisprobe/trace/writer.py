"""Writes a trace as it happens: one JSON line per event, flushed, passwords hidden."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from redisprobe.errors import TraceFormatError
from redisprobe.trace.codec import _encode_shown, _encode_shown_many, _expanded
from redisprobe.trace.schema import Event, Header, MonitorLines, Note, Recorded


class TraceWriter:
    """Appends events to a file as they happen (flushed per event) and keeps them for this run's analysis.

    Thread-safe: actor pipes and observers emit from their own threads; one owner writes.
    """

    def __init__(self, path: Path | None, header: Header, *, keep: bool = True) -> None:
        self.path = path
        self.header = header
        self.events: list[Event] = []
        self._keep = keep
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = None
        self._listeners: list[Any] = []
        self._raw_listeners: list[Any] = []
        self.transform: Any = None  # e.g. value redaction, applied before anything is kept or written
        self.failed: TraceFormatError | None = None  # the write that failed (disk full...): see `check()`
        if path is not None:
            try:
                self._file = path.open("wb")
            except OSError as exc:
                raise TraceFormatError(f"cannot write the trace {str(path)!r}: {exc.strerror}") from None
            self._write(_encode_shown(header))
            self.check()

    def subscribe(self, listener: Any, *, raw: bool = False) -> None:
        """Call `listener(event)` for every event emitted from now on (under the writer's lock).

        `raw=True`: MONITOR lines come as the `MonitorLines` blocks they were emitted as, for a listener that
        parses only what it needs (the live timeline of a busy server).
        """
        (self._raw_listeners if raw else self._listeners).append(listener)

    def emit(self, event: Recorded) -> None:
        self.emit_many([event])

    def emit_many(self, records: Sequence[Recorded]) -> None:
        """Emit a batch with one flush: the MONITOR path sends thousands at once.

        `MonitorLines` blocks go to the file as they are; whoever needs events (the kept list, listeners, a
        transform) gets them parsed, so a capture with none of these never parses a line.
        """
        if not records:
            return
        stored: Sequence[Recorded] = records
        events: Sequence[Event] = records  # type: ignore[assignment]
        if any(type(r) is MonitorLines for r in records) and \
                (self._keep or self._listeners or self.transform is not None):
            events = _expanded(records)
        if self.transform is not None:  # what is stored is what is shown: redacted events, never raw lines
            stored = events = [self.transform(e) for e in events]
        with self._lock:
            if self._keep:
                self.events.extend(events)
            if self._file is not None:
                self._write(_encode_shown_many(stored))
            for listener in self._listeners:
                for event in events:
                    listener(event)
            for listener in self._raw_listeners:
                for record in stored:
                    listener(record)

    def _write(self, data: bytes | bytearray) -> None:
        """Write and flush; a failure (disk full, file too large) stops the writing and is kept for `check()`:
        observers write from their own threads, where raising would only end the thread."""
        assert self._file is not None
        try:
            self._file.write(data)
            self._file.flush()
        except OSError as exc:
            self.failed = TraceFormatError(f"cannot write the trace {str(self.path)!r}: {exc.strerror}")
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    def check(self) -> None:
        """Raise the one-line error of a write that failed, if one did (call from the main thread)."""
        if self.failed is not None:
            raise self.failed

    def note(self, text: str, level: str = "info") -> None:
        self.emit(Note(t=time.time(), level=level, text=text))

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
