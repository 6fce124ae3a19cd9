"""Reads a saved trace back, strictly: a header first, then events as a stream of blocks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO

import msgspec

from redisprobe.errors import TraceFormatError
from redisprobe.trace.codec import _BLOCK_TAG, RAW_START, _expanded, _raw_decoder, _stored_decoder, expand_monitor_lines
from redisprobe.trace.schema import MAGIC, TRACE_FORMAT, Event, Header, MonitorLines, MonitorLinesV1


def read_trace(path: Path) -> tuple[Header, Iterator[Event]]:
    """Open a saved trace: the header now (so format problems surface at once), events as a stream.

    A truncated last line (the writer was killed mid-write) is skipped; any other bad line is an error
    naming the file and line.
    """
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise TraceFormatError(f"cannot read trace {str(path)!r}: {exc.strerror}") from None
    first = handle.readline()
    header = _read_header(path, first)

    def events() -> Iterator[Event]:
        with handle:
            yield from _events(path, handle)

    return header, events()


def _events(path: Path, handle: IO[bytes], size: int = 1 << 20) -> Iterator[Event]:
    """The events after the header: runs of JSON lines decoded a block at a time, and each raw MONITOR block (its
    `MonitorRaw` line, then that many bytes) expanded into its lines. A cut-short end (the writer was killed
    mid-write) keeps what is whole: the complete lines of a raw block, no torn JSON line."""
    buf = b""
    eof = False
    lineno = 1  # lines before `buf`

    def fill(at_least: int) -> bool:
        nonlocal buf, eof
        while len(buf) < at_least and not eof:
            chunk = handle.read(max(size, at_least - len(buf)))
            if chunk:
                buf += chunk
            else:
                eof = True
        return len(buf) >= at_least

    while True:
        fill(size)
        if not buf:
            return
        if buf.startswith(RAW_START):
            end = buf.find(b"\n")
            while end < 0 and fill(len(buf) + 1):
                end = buf.find(b"\n")
            if end < 0:
                return  # a torn header line: the writer was killed mid-write
            try:
                head = _raw_decoder.decode(buf[:end])
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise TraceFormatError(f"{path}:{lineno + 1}: malformed trace line: {exc}") from None
            whole = fill(end + 1 + head.size)
            data = buf[end + 1:end + 1 + head.size]
            if not whole:  # cut short: its complete lines only
                data = data[:data.rfind(b"\n") + 1]
            if data:
                yield from expand_monitor_lines(
                    MonitorLines(t=head.t, until=head.until, lines=data, target=head.target))
            if not whole:
                return
            lineno += 1 + data.count(b"\n")
            buf = buf[end + 1 + head.size:]
            continue
        cut = buf.find(b"\n" + RAW_START) + 1  # JSON lines up to the next raw block
        if not cut:
            cut = buf.rfind(b"\n") + 1
            while not cut and not eof:
                fill(len(buf) + 1)
                cut = buf.rfind(b"\n") + 1
        if not cut:  # a last line without its newline: a torn final write, or a whole event
            yield from _decode_lines(path, buf, lineno, last=True)
            return
        block, buf = buf[:cut], buf[cut:]
        yield from _decode_lines(path, block, lineno, last=False)
        lineno += block.count(b"\n")


def line_blocks(handle: IO[bytes], size: int = 1 << 20) -> Iterator[bytes]:
    """A file as blocks of whole lines (each ends with a newline), about `size` bytes at a time; then what follows
    the last newline, if it is more than whitespace (a line cut short, or the last one written without it)."""
    rest = b""
    while True:
        block = handle.read(size)
        if not block:
            if rest.strip():
                yield rest
            return
        data = rest + block
        cut = data.rfind(b"\n") + 1
        if cut:
            yield data[:cut]
        rest = data[cut:]


def _decode_lines(path: Path, data: bytes, lineno: int, *, last: bool) -> list[Event]:
    """The events of whole lines (one msgspec call for the block); line by line only to name a bad line.

    `last`: `data` is the end of the file without a final newline; if it does not decode it is a torn write,
    tolerated (a killed writer), and skipped.
    """
    records: list[Event | MonitorLinesV1]
    try:
        records = _stored_decoder.decode_lines(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        records = []
        for offset, line in enumerate(data.split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                records.append(_stored_decoder.decode(line))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                if last:
                    break  # the torn final write
                raise TraceFormatError(f"{path}:{lineno + offset}: malformed trace line: {exc}") from None
    if _BLOCK_TAG in data:
        return _expanded(records)
    return records  # type: ignore[return-value]


def _read_header(path: Path, first: bytes) -> Header:
    try:
        raw = msgspec.json.decode(first) if first.strip() else None
    except msgspec.DecodeError:
        raw = None
    if not isinstance(raw, dict) or raw.get("magic") != MAGIC:
        raise TraceFormatError(f"{path}: not a redisprobe trace (no header line)")
    version = raw.get("format")
    if not isinstance(version, int) or version > TRACE_FORMAT:
        raise TraceFormatError(
            f"{path}: trace format {version} is newer than this redisprobe understands ({TRACE_FORMAT});"
            " please upgrade redisprobe"
        )
    try:
        return msgspec.convert(raw, Header)
    except msgspec.ValidationError as exc:
        raise TraceFormatError(f"{path}:1: malformed trace header: {exc}") from None


def load_trace(path: Path) -> tuple[Header, list[Event]]:
    """The whole trace in memory (small traces: isolation, info)."""
    header, stream = read_trace(path)
    return header, list(stream)
