"""`--redact-values`: keep key names, sizes and hashes of values, never the values themselves."""

from __future__ import annotations

import hashlib

import msgspec

from redisprobe import trace
from redisprobe.semantics.command_table import lookup, option_words

# Option words (declared with each command) and numbers explain a command without revealing data; they stay.
_KEEP_WORDS = option_words()


def redact_value(value: bytes) -> bytes:
    digest = hashlib.sha256(value).hexdigest()[:12]
    return f"<redacted {len(value)} bytes sha256:{digest}>".encode()


def redact_args(args: list[bytes]) -> list[bytes]:
    """The command name, its keys, option words and numbers stay; every other argument becomes size + hash."""
    if not args:
        return args
    keys = {id(k) for k in lookup(args[0]).keys(args)}
    out = [args[0]]
    for arg in args[1:]:
        if id(arg) in keys or arg.upper() in _KEEP_WORDS or arg.lstrip(b"-").isdigit():
            out.append(arg)
        else:
            out.append(redact_value(arg))
    return out


def redacting(event: trace.Event) -> trace.Event:
    """A trace event with its values redacted (MONITOR lines, actor commands and their replies)."""
    if isinstance(event, trace.Monitor):
        return msgspec.structs.replace(event, args=redact_args(event.args))
    if isinstance(event, trace.Op):
        reply = event.reply if isinstance(event.reply, int | None) else "<redacted>"
        return msgspec.structs.replace(event, args=redact_args(event.args), reply=reply)
    return event
