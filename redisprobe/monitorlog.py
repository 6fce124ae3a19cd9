"""Read a plain `redis-cli monitor` log as trace events, so users can analyse what they already captured."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from redisprobe import trace
from redisprobe.errors import TraceFormatError
from redisprobe.monitor_parse import parse_complete_lines

_BLOCK = 1 << 20


def looks_like_monitor_log(first_line: bytes) -> bool:
    head = first_line.lstrip(b"+").split(b" ", 1)[0]
    return first_line.strip() == b"OK" or (head.replace(b".", b"", 1).isdigit() and b" [" in first_line)


def read_monitor_log(path: Path, *, target: str = "") -> Iterator[trace.Event]:
    """Stream Monitor events from a redis-cli monitor log (LF or CRLF lines), block by block.

    Odd lines (a truncated last line, a stray message) are skipped and reported as one Note at the end,
    never silently.
    """

    def make(ts: float, db: int, peer: str, args: list[bytes]) -> trace.Monitor:
        return trace.Monitor(t=ts, db=db, peer=peer, args=args, target=target)

    errors: list[tuple[bytes, str]] = []
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise TraceFormatError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    with handle:
        rest = b""
        while True:
            block = handle.read(_BLOCK)
            data = rest + block
            if not block:
                if data.strip():
                    data += b"\n"
                else:
                    break
            cut = data.rfind(b"\n") + 1
            complete, rest = data[:cut], data[cut:]
            lines = complete.replace(b"\r\n", b"\n")
            if lines.startswith(b"OK\n"):
                lines = lines[3:]
            yield from parse_complete_lines(lines.replace(b"\n", b"\r\n"), make, errors)
            if not block:
                break
    if errors:
        yield trace.Note(t=0.0, level="warning",
                         text=f"{len(errors)} lines of {path} are not MONITOR lines and were skipped "
                              f"(first: {errors[0][1]})")
