"""Read a plain `redis-cli monitor` log as trace events, so users can analyse what they already captured.

A big log is parsed in a helper process while this one folds (parsing is a third of the work, and the fold
cannot start a line before it is parsed): the helper sends each parsed block as one msgpack frame.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import msgspec

from redisprobe import trace
from redisprobe.errors import TraceFormatError
from redisprobe.monitor_parse import parse_complete_lines

_BLOCK = 1 << 20

PARALLEL_FROM_BYTES = 8 << 20
"""Logs at least this big are parsed in a helper process (smaller ones are done before it would have started)."""

_FRAME = struct.Struct("<I")


class _End(msgspec.Struct, tag="end"):
    """The helper's last frame: how many lines it skipped, and why the first one was."""

    skipped: int
    first: str


class _Block(msgspec.Struct, tag="block"):
    events: list[trace.Monitor]


_Frame = _Block | _End


def looks_like_monitor_log(first_line: bytes) -> bool:
    head = first_line.lstrip(b"+").split(b" ", 1)[0]
    return first_line.strip() == b"OK" or (head.replace(b".", b"", 1).isdigit() and b" [" in first_line)


def read_monitor_log(path: Path, *, target: str = "", parallel: bool | None = None) -> Iterator[trace.Event]:
    """Stream Monitor events from a redis-cli monitor log (LF or CRLF lines), block by block.

    Odd lines (a truncated last line, a stray message) are skipped and reported as one Note at the end,
    never silently. `parallel` (default: for logs of PARALLEL_FROM_BYTES or more) parses in a helper process.
    """
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise TraceFormatError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    with handle:
        if parallel is None:
            try:
                parallel = path.stat().st_size >= PARALLEL_FROM_BYTES
            except OSError:
                parallel = False
        if parallel:
            skipped, first = yield from _read_in_helper(path, target)
        else:
            skipped, first = yield from _read_here(handle, target)
    if skipped:
        yield trace.Note(t=0.0, level="warning",
                         text=f"{skipped} lines of {path} are not MONITOR lines and were skipped (first: {first})")


def _blocks(handle: IO[bytes]) -> Iterator[bytes]:
    """Whole lines, CRLF-terminated as MONITOR sends them, about _BLOCK bytes at a time."""
    rest = b""
    started = False
    while True:
        block = handle.read(_BLOCK)
        data = rest + block
        if not block:
            if data.strip():
                data += b"\n"
            else:
                return
        cut = data.rfind(b"\n") + 1
        complete, rest = data[:cut], data[cut:]
        lines = complete.replace(b"\r\n", b"\n")
        if not started:
            started = True
            if lines.startswith(b"OK\n"):
                lines = lines[3:]
        yield lines.replace(b"\n", b"\r\n")
        if not block:
            return


def _parse_blocks(handle: IO[bytes], target: str,
                  errors: list[tuple[bytes, str]]) -> Iterator[list[trace.Monitor]]:
    def make(ts: float, db: int, peer: str, args: list[bytes]) -> trace.Monitor:
        return trace.Monitor(t=ts, db=db, peer=peer, args=args, target=target)

    for lines in _blocks(handle):
        yield parse_complete_lines(lines, make, errors)


def _read_here(handle: IO[bytes], target: str) -> Iterator[trace.Event]:
    errors: list[tuple[bytes, str]] = []
    for events in _parse_blocks(handle, target, errors):
        yield from events
    return len(errors), errors[0][1] if errors else ""


def _read_in_helper(path: Path, target: str) -> Iterator[trace.Event]:
    """Parse in `python -m redisprobe.monitorlog PATH TARGET`, fold here; the helper dies with us."""
    import subprocess

    from redisprobe.procs import spawn, stop

    helper = spawn([sys.executable, "-m", "redisprobe.monitorlog", str(path), target],
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
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
                yield from frame.events
            else:
                end = frame  # type: ignore[assignment]
                break
    finally:
        if end is None:
            stop(helper)
        else:
            helper.wait()
        stderr = helper.stderr.read().decode("utf-8", "replace") if helper.stderr else ""
        stream.close()
        if helper.stderr:
            helper.stderr.close()
    if end is None:
        last = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit status {helper.returncode}"
        raise TraceFormatError(f"cannot read {str(path)!r}: the parser stopped ({last})")
    return end.skipped, end.first


def _helper(path: str, target: str) -> int:
    """The helper's side: parse block by block, one msgpack frame per block, then the `_End` frame."""
    import gc

    gc.disable()  # parsed events are acyclic and short-lived here
    out = sys.stdout.buffer
    encode = msgspec.msgpack.Encoder().encode
    errors: list[tuple[bytes, str]] = []
    try:
        with open(path, "rb") as handle:
            for events in _parse_blocks(handle, target, errors):
                if events:
                    payload = encode(_Block(events))
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
    raise SystemExit(_helper(sys.argv[1], sys.argv[2]))
