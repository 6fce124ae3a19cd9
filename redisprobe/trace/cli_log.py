"""Read a plain `redis-cli monitor` log as trace events, so users can analyse what they already captured.

A big log is parsed in a helper process while this one folds (parsing is a third of the work, and the fold
cannot start a line before it is parsed): the helper sends each parsed block as one msgpack frame.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import msgspec

from redisprobe import trace
from redisprobe.errors import TraceFormatError
from redisprobe.producers.procs import spawn, stop
from redisprobe.trace.monitor_text import parse_complete_lines

_BLOCK = 1 << 20

PARALLEL_FROM_BYTES = 8 << 20
"""Logs at least this big are parsed in a helper process (smaller ones are done before it would have started)."""

_FRAME = struct.Struct("<I")


class _End(msgspec.Struct, tag="end"):
    """The helper's last frame: how many lines it skipped, and why the first one was."""

    skipped: int
    first: str


MonitorRow = tuple[float, int, str, list[bytes]]
"""One MONITOR line: server time, db, peer, the exact argument bytes."""


class _Block(msgspec.Struct, tag="block"):
    rows: list[MonitorRow]


_Frame = _Block | _End


def looks_like_monitor_log(first_line: bytes) -> bool:
    head = first_line.lstrip(b"+").split(b" ", 1)[0]
    return first_line.strip() == b"OK" or (head.replace(b".", b"", 1).isdigit() and b" [" in first_line)


class MonitorLog:
    """A redis-cli monitor log (LF or CRLF lines), read block by block as (t, db, peer, args) rows.

    Odd lines (a truncated last line, a stray message) are skipped, counted and reported by `note()` once the
    rows are read, never silently. `parallel` (default: for logs of PARALLEL_FROM_BYTES or more) parses in a
    helper process.
    """

    def __init__(self, path: Path, *, parallel: bool | None = None) -> None:
        self.path = path
        try:
            size = path.stat().st_size
            with path.open("rb"):
                pass
        except OSError as exc:
            raise TraceFormatError(f"cannot read {str(path)!r}: {exc.strerror}") from None
        self.parallel = size >= PARALLEL_FROM_BYTES if parallel is None else parallel
        self.skipped = 0
        self.first_skipped = ""
        self._helper: subprocess.Popen[bytes] | None = None
        if self.parallel:  # started now: it parses the first block while this process loads the analysis
            self._helper = spawn([sys.executable, "-m", "redisprobe.trace.cli_log", str(path)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)

    def close(self) -> None:
        """Stop the helper if the rows were not read to the end (also done when they are)."""
        if self._helper is not None:
            helper, self._helper = self._helper, None
            stop(helper)
            for stream in (helper.stdout, helper.stderr):
                if stream is not None:
                    stream.close()

    def __enter__(self) -> MonitorLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def batches(self) -> Iterator[list[MonitorRow]]:
        if self.parallel:
            yield from self._in_helper()
            return
        errors: list[tuple[bytes, str]] = []
        try:
            with self.path.open("rb") as handle:
                yield from _parse_blocks(handle, errors)
        except OSError as exc:
            raise TraceFormatError(f"cannot read {str(self.path)!r}: {exc.strerror}") from None
        self.skipped, self.first_skipped = len(errors), errors[0][1] if errors else ""

    def note(self) -> trace.Note | None:
        if not self.skipped:
            return None
        return trace.Note(t=0.0, level="warning", text=f"{self.skipped} lines of {self.path} are not MONITOR lines "
                                                       f"and were skipped (first: {self.first_skipped})")

    def _in_helper(self) -> Iterator[list[MonitorRow]]:
        """Parse in `python -m redisprobe.trace.cli_log PATH`, fold here; the helper dies with us."""
        helper = self._helper
        if helper is None:
            raise TraceFormatError(f"{self.path}: the rows of this log were already read")
        decode = msgspec.msgpack.Decoder(_Frame).decode
        stream = helper.stdout
        assert stream is not None
        end: _End | None = None
        try:
            while True:
                head = stream.read(_FRAME.size)
                if len(head) < _FRAME.size:
                    break
                size = _FRAME.unpack(head)[0]
                body = stream.read(size)
                if len(body) < size:
                    break  # cut off mid-frame: the helper died
                frame = decode(body)
                if type(frame) is _Block:
                    yield frame.rows
                else:
                    end = frame  # type: ignore[assignment]
                    break
        finally:
            if end is None:
                stop(helper)
            else:
                helper.wait()
            stderr = helper.stderr.read().decode("utf-8", "replace") if helper.stderr else ""
            self.close()
        if end is None:
            last = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit status {helper.returncode}"
            raise TraceFormatError(f"cannot read {str(self.path)!r}: the parser stopped ({last})")
        self.skipped, self.first_skipped = end.skipped, end.first


def read_monitor_log(path: Path, *, target: str = "", parallel: bool | None = None) -> Iterator[trace.Event]:
    """The log as trace events: Monitor events, then a Note if lines were skipped."""
    with MonitorLog(path, parallel=parallel) as log:
        for rows in log.batches():
            for t, db, peer, args in rows:
                yield trace.Monitor(t=t, db=db, peer=peer, args=args, target=target)
    note = log.note()
    if note is not None:
        yield note


def _blocks(handle: IO[bytes]) -> Iterator[bytes]:
    """Whole lines, CRLF-terminated as MONITOR sends them, about _BLOCK bytes at a time (a last line without its
    newline is still a line; redis-cli's leading `OK` is not)."""
    started = False
    for block in trace.line_blocks(handle, _BLOCK):
        if not block.endswith(b"\n"):
            block += b"\n"
        lines = block.replace(b"\r\n", b"\n")
        if not started:
            started = True
            if lines.startswith(b"OK\n"):
                lines = lines[3:]
        yield lines.replace(b"\n", b"\r\n")


def _row(ts: float, db: int, peer: str, args: list[bytes]) -> MonitorRow:
    return (ts, db, peer, args)


def _parse_blocks(handle: IO[bytes], errors: list[tuple[bytes, str]]) -> Iterator[list[MonitorRow]]:
    for lines in _blocks(handle):
        rows = parse_complete_lines(lines, _row, errors)
        if rows:
            yield rows


def _helper(path: str) -> int:
    """The helper's side: parse block by block, one msgpack frame per block, then the `_End` frame."""
    import gc

    gc.disable()  # parsed rows are acyclic and short-lived here
    out = sys.stdout.buffer
    encode = msgspec.msgpack.Encoder().encode
    errors: list[tuple[bytes, str]] = []
    try:
        with open(path, "rb") as handle:
            for rows in _parse_blocks(handle, errors):
                payload = encode(_Block(rows))
                out.write(_FRAME.pack(len(payload)) + payload)
            payload = encode(_End(len(errors), errors[0][1] if errors else ""))
            out.write(_FRAME.pack(len(payload)) + payload)
            out.flush()
    except BrokenPipeError:
        return 1  # the reader went away (Ctrl-C): nothing more to do
    except OSError as exc:
        print(f"{exc.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(_helper(sys.argv[1]))
