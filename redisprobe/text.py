"""How commands, keys, times and durations read in evidence and timelines (one place for every wording)."""

from __future__ import annotations

import re
import time as _time
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from redisprobe.findings import Actor

ARG_MAX: Final = 48
ARGS_SHOWN: Final = 8
"""Evidence shows at most ARGS_SHOWN arguments of a command, each cut to ARG_MAX characters (scripts, blobs)."""

ARG_KEPT: Final = 4 * ARG_MAX + 4
"""Bytes kept of a longer value argument: enough for ARG_MAX characters however they are encoded, so evidence
reads exactly as from the whole value (keys and command names are never cut)."""


def text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


_CLI_NAMED = {ord("\\"): "\\\\", ord('"'): '\\"', ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t",
              ord("\a"): "\\a", ord("\b"): "\\b"}
_CLI_BYTE: Final = tuple(_CLI_NAMED.get(b) or (chr(b) if 0x20 <= b <= 0x7E else f"\\x{b:02x}") for b in range(256))
"""How redis-cli writes each byte inside its quotes (sdscatrepr): printable ASCII as itself, `\\` and `"`
escaped, the C escapes for control characters, `\\xHH` for everything else (UTF-8 included)."""

_PLAIN = re.compile(rb"[!#-\[\]-~]+").fullmatch
"""Printable ASCII without a space, a quote or a backslash: shown as it is, unquoted."""


def cli_repr(raw: bytes) -> str:
    """`raw` escaped exactly as redis-cli escapes it, without the surrounding quotes: plain ASCII text, so a
    terminal never acts on it and byte 0xff (`\\xff`) never reads like the text `\\xff` (`\\\\xff`)."""
    return "".join(map(_CLI_BYTE.__getitem__, raw))


def arg_text(raw: bytes) -> str:
    """One argument in evidence: as it is when it is plain ASCII, else quoted and escaped as redis-cli does;
    past ARG_MAX characters it is cut with `...`."""
    if _PLAIN(raw):
        if len(raw) <= ARG_MAX:
            return raw.decode("ascii")
        return raw[:ARG_MAX - 3].decode("ascii") + "..."
    body = cli_repr(raw)
    if len(body) > ARG_MAX:
        body = cli_repr_head(raw, ARG_MAX - 3) + "..."
    return f'"{body}"'


def cli_repr_head(raw: bytes, limit: int) -> str:
    """The first escaped characters of `raw`, at most `limit`, never cutting an escape sequence in two."""
    kept: list[str] = []
    size = 0
    for piece in map(_CLI_BYTE.__getitem__, raw[:limit]):
        if size + len(piece) > limit:
            break
        kept.append(piece)
        size += len(piece)
    return "".join(kept)


def command_text(args: list[bytes] | None) -> str:
    """The exact command, quoted where needed, long values and long argument lists shortened."""
    if not args:
        return ""
    words = [arg_text(args[0].upper())] + [arg_text(a) for a in args[1:ARGS_SHOWN]]
    if len(args) > ARGS_SHOWN:
        words.append(f"... (+{len(args) - ARGS_SHOWN} args)")
    return " ".join(words)




def secs(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds >= 1 and float(seconds).is_integer():
        return f"{int(seconds)}s"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    return f"{seconds:.3g}s"




def clock(t: float | None) -> str:
    """Wall-clock time with milliseconds (local time, as a user's logs show it)."""
    if t is None:
        return "--:--:--.---"
    second = int(t) if t >= 0 else None
    if second is None or second != _clock_last[0]:
        _clock_last[0] = second
        _clock_last[1] = _time.strftime("%H:%M:%S", _time.localtime(t))
    return _clock_last[1] + f".{int((t % 1) * 1000):03d}"


_clock_last: list[Any] = [None, ""]  # the last whole second formatted (history lines come in time order)


def evidence_line(t: float | None, actor: Actor | None, args: list[bytes] | None, effect: str = "",
                  db: int | None = None) -> str:
    """`12:00:01.234 pid 4242 (api) client 7 db 0: RPUSH batch:1 x -> created`."""
    from redisprobe.analysis.attribution import describe

    where = f" db {db}" if db is not None else ""
    command = command_text(args) if args else ""
    text = f"{clock(t)} {describe(actor)}{where}"
    if command:
        text += f": {command}"
        if effect:
            text += f" -> {effect}"
    elif effect:
        text += f": {effect}"
    return text


def actor_json(actor: Actor | None) -> dict[str, Any] | None:
    if actor is None:
        return None
    return {"pid": actor.pid, "label": actor.label, "client_id": actor.client_id, "addr": actor.addr}


