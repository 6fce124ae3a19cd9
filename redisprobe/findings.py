"""A doctor finding: which root cause (a rule registry id), how sure, and the evidence that names who did it."""

from __future__ import annotations

import base64

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
    keys_base64: list[str | None] | msgspec.UnsetType = msgspec.UNSET
    """Only when a listed key is not UTF-8: each key's exact bytes in base64 (null for the count line), so
    byte 0xff and the four characters `\\xff` never read alike. Absent otherwise."""


def listed_keys(raw: list[bytes]) -> tuple[list[str], list[str | None] | msgspec.UnsetType]:
    """A finding's `keys` (text) and, only when some key is not UTF-8, its `keys_base64`."""
    keys: list[str] = []
    exact = False
    for key in raw:
        try:
            keys.append(key.decode("utf-8"))
        except UnicodeDecodeError:
            keys.append(key.decode("utf-8", "backslashreplace"))
            exact = True
    if not exact:
        return keys, msgspec.UNSET
    return keys, [base64.b64encode(key).decode("ascii") for key in raw]


def to_builtins(obj: object) -> object:
    """Structs to plain JSON data (bytes become text)."""
    return msgspec.to_builtins(obj, enc_hook=json_fallback)


def json_fallback(value: object) -> object:
    """msgspec's enc_hook: what it cannot encode itself."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    raise NotImplementedError(type(value))
