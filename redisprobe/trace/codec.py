"""Events as JSON lines: encoding, decoding, and MONITOR lines kept unparsed until they are read."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, cast

import msgspec

from redisprobe.trace.schema import (
    Event,
    Gap,
    Header,
    Monitor,
    MonitorLines,
    MonitorLinesV1,
    MonitorRaw,
    Op,
    Recorded,
    Stored,
)

_encoder = msgspec.json.Encoder()
_event_decoder = msgspec.json.Decoder(Event)
_stored_decoder = msgspec.json.Decoder(Stored)
_raw_decoder = msgspec.json.Decoder(MonitorRaw)
_BLOCK_TAG = b'"monitor-lines"'
RAW_START = b'{"type":"monitor-raw"'
"""How the line before a raw MONITOR block begins (msgspec writes a struct's tag first)."""


def encode(event: Header | Recorded) -> bytes:
    """One record as stored: a JSON line (with its newline); a MONITOR block, its `MonitorRaw` line and its bytes."""
    if type(event) is MonitorLines:
        return bytes(_encode_shown_many([event]))
    return _encoder.encode(event) + b"\n"


def decode_event(line: bytes | str) -> Event:
    """The inverse of `encode` for events (children stream these to their parent)."""
    return _event_decoder.decode(line)


def monitor_lines(data: bytes, target: str = "", default_t: float | None = None) -> MonitorLines:
    """Complete CRLF-terminated MONITOR lines as one trace record, times read off the first and last line only.

    `default_t` stands for a time no line gives (every line malformed); by default, now.
    """
    from redisprobe.trace.monitor_text import last_line_start, line_time

    first, last = line_time(data), line_time(data, last_line_start(data))
    t = first if first is not None else last if last is not None else \
        time.time() if default_t is None else default_t
    until = t if last is None else max(t, last)
    return MonitorLines(t=t, until=until, lines=bytes(data), target=target)


def expand_monitor_lines(block: MonitorLines) -> list[Monitor | Gap]:
    """One `Monitor` per line of the block; lines that do not parse become one `Gap` each run, where they were."""
    from redisprobe.trace.monitor_text import parse_complete_lines

    target = block.target

    def make(ts: float, db: int, peer: str, args: list[bytes]) -> Monitor:
        return Monitor(t=ts, db=db, peer=peer, args=args, target=target)

    data = block.lines
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    errors: list[tuple[bytes, str]] = []
    events: list[Monitor | Gap] = list(parse_complete_lines(data, make, errors))
    if errors:
        events = _expand_line_by_line(data, make, block)
    return events


def _expand_line_by_line(data: bytes, make: Any, block: MonitorLines) -> list[Monitor | Gap]:
    """The rare block with a bad line: parse line by line so that each run of bad lines is a Gap in its place."""
    from redisprobe.trace.monitor_text import MonitorParseError, parse_monitor_line

    out: list[Monitor | Gap] = []
    bad: list[str] = []
    last_t = block.t

    def close_run() -> None:
        out.append(Gap(t=last_t, until=last_t, source="monitor", target=block.target,
                       reason=f"{len(bad)} MONITOR line(s) from {block.target or 'the server'} could not be "
                              f"parsed; first: {bad[0]}"))
        bad.clear()

    for raw in data.split(b"\r\n")[:-1]:
        try:
            line = parse_monitor_line(raw)
        except MonitorParseError as exc:
            bad.append(str(exc))
            continue
        if bad:
            close_run()
        last_t = line.ts
        out.append(make(line.ts, line.db, line.peer, line.args))
    if bad:
        close_run()
    return out


def _expanded(records: Sequence[Recorded] | Sequence[Event | MonitorLinesV1]) -> list[Event]:
    out: list[Event] = []
    for record in records:
        if type(record) is MonitorLines:
            out.extend(expand_monitor_lines(record))
        elif type(record) is MonitorLinesV1:
            out.extend(expand_monitor_lines(MonitorLines(t=record.t, until=record.until, target=record.target,
                                                         lines=record.lines.encode("latin-1"))))
        else:
            out.append(record)  # type: ignore[arg-type]
    return out


def _encode_shown(record: Header | Recorded) -> bytes:
    """`encode`, with URL passwords hidden in what people write (notes, errors, targets, the command line).

    Commands are stored as the server saw them (MONITOR already hides AUTH and HELLO secrets)."""
    if type(record) is MonitorLines:
        return bytes(_encode_shown_many([record]))
    line = encode(record)
    if type(record) is Monitor or type(record) is Op:
        return line
    from redisprobe.targets.url import redact

    return redact(line.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")


def _encode_shown_many(records: Sequence[Header | Recorded]) -> bytearray:
    """`_encode_shown` of each record, one line each, into one buffer: a MONITOR block goes in as the bytes the
    server sent, after its `MonitorRaw` line (a megabyte each, escaped into no JSON string)."""
    out = bytearray()
    for record in records:
        kind = type(record)
        if kind is MonitorLines:
            block = cast(MonitorLines, record)
            raw = block.lines
            if raw and not raw.endswith(b"\r\n"):
                raw += b"\r\n"  # whole lines only: the next record starts a line
            _encoder.encode_into(MonitorRaw(t=block.t, until=block.until, target=block.target, size=len(raw)), out, -1)
            out += b"\n"
            out += raw
        elif kind is Monitor or kind is Op:
            _encoder.encode_into(record, out, -1)
            out += b"\n"
        else:
            out += _encode_shown(record)
    return out
