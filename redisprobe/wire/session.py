"""`monitor --source wire|both`: the wire reader beside a capture, its exchanges merged into the trace at the end.

`both`: MONITOR gives the commands as today, the wire adds what MONITOR cannot show (each reply, and the commands
the server refused), as `trace.WireReply` events. `wire`: MONITOR is not started at all (its cost to the server
is the point), the wire gives the commands as `trace.Monitor` events too. The spool is parsed once the capture has
stopped, so a loaded server pays only for the packet copies; the trace is then rewritten in time order.
"""

from __future__ import annotations

import contextlib
import heapq
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from redisprobe import trace
from redisprobe.errors import ProbeError
from redisprobe.leftovers import temp_dir
from redisprobe.target import Target
from redisprobe.wire.capture import WireCapture
from redisprobe.wire.events import exchange_events

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
    """One wire reader per watched port (targets on the same port share it)."""

    def __init__(self, targets: list[Target], source: str) -> None:
        self.source = source
        self._spool = temp_dir("wire")
        self.captures: list[tuple[WireCapture, list[Target]]] = []
        by_port: dict[int, list[Target]] = {}
        for target in targets:
            if target.port is not None:
                by_port.setdefault(target.port, []).append(target)
        for port, same_port in by_port.items():
            self.captures.append((WireCapture(port, self._spool, target=same_port[0].label), same_port))

    def start(self) -> None:
        try:
            for capture, _targets in self.captures:
                capture.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for capture, _targets in self.captures:
            capture.stop()

    def events(self, dbs: dict[tuple[str, str], int] | None = None) -> list[trace.Event]:
        """Every capture's spool parsed: replies (and, for `wire`, the commands), gaps, notes; by time. `dbs`: see
        `client_dbs`."""
        out: list[trace.Event] = []
        for capture, same_port in self.captures:
            result = capture.result()
            for event in exchange_events(result.exchanges, target=_labeller(same_port), dbs=dbs):
                if self.source == "wire" or type(event) is trace.WireReply:
                    out.append(event)
            out.extend(result.gaps)
            out.extend(trace.Note(t=result.started or 0.0, level="warning", text=f"wire: {note}")
                       for note in result.notes)
            capture.remove()
        out.sort(key=lambda e: e.t)
        return out

    def remove(self) -> None:
        for capture, _targets in self.captures:
            capture.remove()
        with contextlib.suppress(OSError):
            self._spool.rmdir()


def client_dbs(path: Path) -> dict[tuple[str, str], int]:
    """Each connection's db as CLIENT LIST first showed it, by (target, address): a connection open before the
    capture that never SELECTs has a db the wire cannot see (without it, its commands would all count as db 0)."""
    out: dict[tuple[str, str], int] = {}
    _header, events = trace.read_trace(path)
    for event in events:
        if type(event) is trace.ClientSeen:
            out.setdefault((event.target, event.addr), event.db)
    return out


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


def merge_into_trace(path: Path, extra: list[trace.Event]) -> None:
    """Rewrite a finished trace with `extra` (sorted by time) merged in, so the file stays nearly time-ordered."""
    if not extra:
        return
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
