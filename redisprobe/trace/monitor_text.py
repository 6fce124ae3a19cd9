"""Lossless parsing of MONITOR output back into the exact argument bytes each client sent.

The server prints every command as `+<sec>.<usec> [<db> <peer>] "arg" "arg" ...` with each argument escaped
by sdscatrepr: `\\\\`, `\\"`, `\\n`, `\\r`, `\\t`, `\\a`, `\\b`, and `\\xHH` for every other byte outside
0x20-0x7e. That escaping is unambiguous, so it can be inverted exactly (redis-py's `Monitor` does not: it joins
args with spaces and keeps the escapes).

`parse_monitor_chunk` is the hot path of the MONITOR observer: one `findall` per block of lines, and arguments
without any backslash (the common case) are split in C without a per-argument regex.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable
from typing import TypeVar

import msgspec

from redisprobe.gcpause import gc_paused

__all__ = [
    "MonitorLine", "MonitorParseError", "last_line_start", "line_time", "parse_complete_lines", "parse_monitor_chunk",
    "parse_monitor_line",
]

T = TypeVar("T")


class MonitorParseError(ValueError):
    """A line is not in the format MONITOR prints."""


class MonitorLine(msgspec.Struct, frozen=True, array_like=True):
    """One MONITOR line: server time (taken after the command ran), db, peer and the exact argument bytes.

    `peer` is `ip:port`, `[ipv6]:port`, `lua` (run by a script) or `unix:<server socket path>`.
    """

    ts: float
    db: int
    peer: str
    args: list[bytes]


# `+` (absent when a client library already stripped the RESP type), time, db, peer, then the quoted args.
# The peer is everything up to the first `] "`: an IPv6 peer is itself bracketed (`[::1]:5000`). A raw newline
# never occurs inside a line (sdscatrepr escapes it), so `.` deliberately does not match one.
_LINE_BODY = rb'\+?(\d+\.\d+) \[(\d+) (.+?)\] "(.*)"'
_LINE = re.compile(_LINE_BODY)
_CHUNK = re.compile(rb"^" + _LINE_BODY + rb"\r\n", re.MULTILINE)

# One quoted argument followed by its separator, with only the escapes sdscatrepr produces (unrolled loop).
_ESCAPE = rb'\\(?:[\\"nrtab]|x[0-9a-fA-F]{2})'
_ARG = re.compile(rb'"([^"\\]*(?:' + _ESCAPE + rb'[^"\\]*)*)"(?: |\Z)')

_TIME = re.compile(rb"\+?(\d+\.\d+) \[")

_unescape = codecs.escape_decode  # exact for the escapes `_ARG` admits: \\ \" \n \r \t \a \b \xHH

Factory = Callable[[float, int, str, list[bytes]], T]


def parse_monitor_line(line: bytes | str) -> MonitorLine:
    """Parse one MONITOR line (with or without the leading `+` and the trailing CRLF).

    A `str` is encoded as Latin-1 first, so characters U+0000-U+00FF stand for the bytes the server printed.
    """
    if isinstance(line, str):
        try:
            raw = line.encode("latin-1")
        except UnicodeEncodeError:
            raise MonitorParseError(f"not a MONITOR line (characters beyond U+00FF): {line[:80]!r}") from None
    else:
        raw = bytes(line)
    if raw.endswith(b"\r\n"):
        raw = raw[:-2]
    elif raw.endswith(b"\n"):
        raw = raw[:-1]
    parsed = _parse_one(raw, MonitorLine, {})
    if parsed is None:
        raise MonitorParseError(_explain(raw))
    return parsed


def line_time(data: bytes, start: int = 0) -> float | None:
    """The server time of the line starting at `start`, read without parsing the rest (None: not a MONITOR line)."""
    found = _TIME.match(data, start)
    return float(found.group(1)) if found else None


def last_line_start(data: bytes) -> int:
    """Where the last of `data`'s CRLF-terminated lines starts."""
    return data.rfind(b"\n", 0, len(data) - 1) + 1


def parse_monitor_chunk(
    data: bytes, *, errors: list[tuple[bytes, str]] | None = None
) -> tuple[list[MonitorLine], bytes]:
    """Parse every complete CRLF-terminated line of `data`; return them and the unparsed trailing partial line.

    A malformed line raises `MonitorParseError`, unless `errors` is given: then `(line, message)` is appended
    to it and parsing goes on (an observer must never crash on one odd line).
    """
    cut = data.rfind(b"\r\n") + 2
    if cut < 2:
        return [], data
    return parse_complete_lines(data[:cut], MonitorLine, errors), data[cut:]


def parse_complete_lines(data: bytes, make: Factory[T], errors: list[tuple[bytes, str]] | None = None) -> list[T]:
    """Parse `data`, which must end with CRLF, calling `make(ts, db, peer, args)` for each line.

    The fast path: one `findall` over the whole block; the block is accepted only if every newline in it
    ends a match (matches are anchored at line starts), so a single odd line sends the block to the careful
    per-line path and nothing is ever silently skipped. The cyclic GC is paused meanwhile: the objects made
    here are acyclic, and generation-0 collections triggered by hundreds of thousands of fresh lists cost
    about a third of the time.
    """
    if not data:
        return []
    found = _CHUNK.findall(data)
    if len(found) != data.count(b"\n"):
        return _parse_slowly(data, make, errors)
    out: list[T] = []
    append = out.append
    peers: dict[bytes, str] = {}
    dbs: dict[bytes, int] = {}
    with gc_paused():
        if b"\\" not in data:
            # No escape anywhere in the block (the usual case): split every line, then check all the quotes at
            # once. Each line holds at least two quotes per argument; equality means no line holds a stray one.
            arg_count = 0
            for ts, db, peer, body in found:
                name = peers.get(peer)
                if name is None:
                    name = peers[peer] = peer.decode("utf-8", "surrogateescape")
                number = dbs.get(db)
                if number is None:
                    number = dbs[db] = int(db)
                args = body.split(b'" "')
                arg_count += len(args)
                append(make(float(ts), number, name, args))
            if data.count(b'"') == 2 * arg_count:
                return out
            out.clear()  # a stray quote somewhere: redo the block line by line
        for ts, db, peer, body in found:
            name = peers.get(peer)
            if name is None:
                name = peers[peer] = peer.decode("utf-8", "surrogateescape")
            if b"\\" not in body:
                args = body.split(b'" "')
                # With no backslash there is no escaped quote: every quote must be part of a separator.
                if body.count(b'"') == 2 * len(args) - 2:
                    append(make(float(ts), int(db), name, args))
                    continue
            escaped = _parse_args(body)
            if escaped is not None:
                append(make(float(ts), int(db), name, escaped))
                continue
            line = b"+%s [%s %s] \"%s\"" % (ts, db, peer, body)
            if errors is None:
                raise MonitorParseError(_explain(line))
            errors.append((line, _explain(line)))
    return out


def _parse_slowly(data: bytes, make: Factory[T], errors: list[tuple[bytes, str]] | None) -> list[T]:
    """Line by line, for a block the fast path refused (it holds at least one malformed line)."""
    lines = data.split(b"\r\n")
    lines.pop()  # the empty string after the final CRLF
    out: list[T] = []
    peers: dict[bytes, str] = {}
    for raw in lines:
        parsed = _parse_one(raw, make, peers)
        if parsed is not None:
            out.append(parsed)
        elif errors is None:
            raise MonitorParseError(_explain(raw))
        else:
            errors.append((raw, _explain(raw)))
    return out


def _parse_one(raw: bytes, make: Factory[T], peers: dict[bytes, str]) -> T | None:
    """The general (escape-aware) path for one line without its CRLF; None when malformed."""
    m = _LINE.fullmatch(raw)
    if m is None:
        return None
    ts, db, peer, body = m.groups()
    args = _parse_args(body)
    if args is None:
        return None
    name = peers.get(peer)
    if name is None:
        name = peers[peer] = peer.decode("utf-8", "surrogateescape")
    return make(float(ts), int(db), name, args)


def _parse_args(body: bytes) -> list[bytes] | None:
    """The arguments between the first and the last quote, unescaped; None when the quoting is broken.

    `findall` skips what it cannot match, so the block is accepted only when the matches cover it exactly:
    every argument is its text, two quotes and one separating space (none after the last).
    """
    region = b'"' + body + b'"'
    texts = _ARG.findall(region)
    if sum(map(len, texts)) + 3 * len(texts) - 1 != len(region):
        return None
    return [_unescape(text)[0] if b"\\" in text else text for text in texts]


def _explain(raw: bytes) -> str:
    """Say what is wrong with a line, briefly, for an error message or a gap note."""
    shown = raw[:120]
    more = "..." if len(raw) > 120 else ""
    if not raw:
        return "empty MONITOR line"
    if _LINE.fullmatch(raw) is None:
        if raw.startswith((b"-", b"+OK")) or raw[:1] in (b"$", b"*", b":"):
            return f"not a MONITOR line (a RESP reply): {shown!r}{more}"
        return f"not a MONITOR line (expected '+<time> [<db> <peer>] \"arg\" ...'): {shown!r}{more}"
    return f"malformed arguments in MONITOR line (bad quoting or escape): {shown!r}{more}"
