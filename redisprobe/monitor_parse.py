"""Lossless parsing of MONITOR output back into the exact argument bytes each client sent.

The server prints every command as `+<sec>.<usec> [<db> <peer>] "arg" "arg" ...` with each argument escaped
by sdscatrepr: `\\\\`, `\\"`, `\\n`, `\\r`, `\\t`, `\\a`, `\\b`, and `\\xHH` for every other byte outside
0x20-0x7e. That escaping is unambiguous, so it can be inverted exactly (redis-py's `Monitor` does not: it joins
args with spaces and keeps the escapes).

`parse_monitor_chunk` is the hot path of the MONITOR observer: one regex match per line, and arguments
without any backslash (the common case) are split in C without a per-argument regex.
"""

from __future__ import annotations

import codecs
import re

import msgspec

__all__ = ["MonitorLine", "MonitorParseError", "parse_monitor_chunk", "parse_monitor_line"]


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
# The peer is everything up to the first `] "`: an IPv6 peer is itself bracketed (`[::1]:5000`).
_LINE = re.compile(rb'\+?(\d+\.\d+) \[(\d+) (.+?)\] "(.*)"', re.DOTALL)

# One quoted argument followed by its separator, with only the escapes sdscatrepr produces (unrolled loop).
_ESCAPE = rb'\\(?:[\\"nrtab]|x[0-9a-fA-F]{2})'
_ARG = re.compile(rb'"([^"\\]*(?:' + _ESCAPE + rb'[^"\\]*)*)"(?: |\Z)')

_unescape = codecs.escape_decode  # exact for the escapes `_ARG` admits: \\ \" \n \r \t \a \b \xHH


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
    parsed = _parse(raw, {})
    if parsed is None:
        raise MonitorParseError(_explain(raw))
    return parsed


def parse_monitor_chunk(
    data: bytes, *, errors: list[tuple[bytes, str]] | None = None
) -> tuple[list[MonitorLine], bytes]:
    """Parse every complete CRLF-terminated line of `data`; return them and the unparsed trailing partial line.

    A malformed line raises `MonitorParseError`, unless `errors` is given: then `(line, message)` is appended
    to it and parsing goes on (an observer must never crash on one odd line).
    """
    lines = data.split(b"\r\n")
    rest = lines.pop()
    out: list[MonitorLine] = []
    append = out.append
    peers: dict[bytes, str] = {}
    match = _LINE.fullmatch
    make = MonitorLine
    for raw in lines:
        m = match(raw)
        if m is not None:
            ts, db, peer, body = m.groups()
            if b"\\" not in body:
                args = body.split(b'" "')
                # With no backslash there is no escaped quote: every quote must be part of a separator.
                if body.count(b'"') == 2 * len(args) - 2:
                    name = peers.get(peer)
                    if name is None:
                        name = peers[peer] = peer.decode("utf-8", "surrogateescape")
                    append(make(float(ts), int(db), name, args))
                    continue
        parsed = _parse(raw, peers)
        if parsed is not None:
            append(parsed)
        elif errors is None:
            raise MonitorParseError(_explain(raw))
        else:
            errors.append((raw, _explain(raw)))
    return out, rest


def _parse(raw: bytes, peers: dict[bytes, str]) -> MonitorLine | None:
    """The general (escape-aware) path for one line without its CRLF; None when malformed."""
    m = _LINE.fullmatch(raw)
    if m is None:
        return None
    ts, db, peer, body = m.groups()
    region = b'"' + body + b'"'
    args: list[bytes] = []
    pos = 0
    end = len(region)
    arg_match = _ARG.match
    while pos < end:
        am = arg_match(region, pos)
        if am is None:
            return None
        text = am.group(1)
        args.append(_unescape(text)[0] if b"\\" in text else text)
        pos = am.end()
    if region.endswith(b" "):  # `"a" ` would leave a dangling separator
        return None
    name = peers.get(peer)
    if name is None:
        name = peers[peer] = peer.decode("utf-8", "surrogateescape")
    return MonitorLine(float(ts), int(db), name, args)


def _explain(raw: bytes) -> str:
    """Say what is wrong with a line, briefly, for an error message or a gap note."""
    shown = raw[:120]
    more = "..." if len(raw) > 120 else ""
    if not raw:
        return "empty MONITOR line"
    m = _LINE.fullmatch(raw)
    if m is None:
        if raw.startswith((b"-", b"+OK")) or raw[:1] in (b"$", b"*", b":"):
            return f"not a MONITOR line (a RESP reply): {shown!r}{more}"
        return f"not a MONITOR line (expected '+<time> [<db> <peer>] \"arg\" ...'): {shown!r}{more}"
    return f"malformed arguments in MONITOR line (bad quoting or escape): {shown!r}{more}"
