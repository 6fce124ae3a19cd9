"""A doctor finding: which root cause (a rule registry id), how sure, and the evidence that names who did it."""

from __future__ import annotations

import msgspec

SEVERITIES = ("error", "warning", "info")


class Actor(msgspec.Struct, frozen=True, kw_only=True):
    """Who did something: a process behind a connection, or null for the server itself."""

    pid: int | None = None
    label: str = ""
    client_id: int | None = None
    addr: str = ""


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    rule: str
    severity: str  # error / warning / info
    summary: str  # one plain line
    evidence: list[str] = []  # each line points at an event: time, pid/label, client id, command
    keys: list[str] = []
    culprit: Actor | None = None  # the process responsible; None when the server did it (expiry, eviction)


def to_builtins(obj: object) -> object:
    """Structs to plain JSON data (bytes become text)."""
    return msgspec.to_builtins(obj, enc_hook=json_fallback)


def json_fallback(value: object) -> object:
    """msgspec's enc_hook: what it cannot encode itself."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    raise NotImplementedError(type(value))
