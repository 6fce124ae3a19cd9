"""What reaches a terminal is text a person can read, never instructions to the terminal.

Key names, arguments, client names, process command lines and server replies are chosen by whoever writes to
Redis: a raw ESC can clear the screen or retitle the window, a CR can overwrite a line, and one 1 MB key name
fills a screen a hundred thousand times. Key names and arguments (bytes) are escaped exactly as redis-cli
escapes them (printable ASCII as it is, `\\` and `"` escaped, `\\n` `\\r` `\\t` `\\a` `\\b`, `\\xHH` for every
other byte, UTF-8 included), so the result is plain ASCII and byte 0xff never reads like the text `\\xff`.
Free text we write (findings, with keys already in that form; process command lines; server errors) keeps its
printable Unicode and has control and invisible formatting characters escaped (`\\x1b`, `\\u202e`). Anything
long is cut, with its full length said.
"""

from __future__ import annotations

import re
from typing import Final

from redisprobe.text import cli_repr, cli_repr_head

KEY_LIMIT: Final = 120
"""Characters of a key name shown before it is cut."""

TOKEN_LIMIT: Final = 200
"""A run of characters without a space longer than this, inside a sentence, is cut (a key in evidence)."""

LINE_LIMIT: Final = 2000
"""A whole line of free text longer than this is cut."""

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\a": "\\a", "\b": "\\b"}
_LONG_TOKEN = re.compile(rf"\S{{{TOKEN_LIMIT + 1},}}")


def _escaped_char(ch: str) -> str:
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape(text: str) -> str:
    """`text` with every character a terminal would act on (or hide) written as an escape sequence."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escaped_char(ch) for ch in text)


def cut(text: str, limit: int, unit: str = "characters", length: int | None = None) -> str:
    """`text` cut to about `limit` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…({length if length is not None else len(text):,} {unit})"


def shown(text: str, limit: int = LINE_LIMIT) -> str:
    """Free text (a finding, an evidence line, a server's error) safe for a terminal: escaped, each very long
    word cut (a key inside a sentence), and the whole cut past `limit` characters."""
    text = escape(text)
    if len(text) > TOKEN_LIMIT:
        text = _LONG_TOKEN.sub(lambda m: cut(m.group(0), KEY_LIMIT), text)
    return cut(text, limit)


def shown_key(key: bytes | str, limit: int = KEY_LIMIT) -> str:
    """A key name (or any argument) for a table cell or a timeline row: escaped, cut with its length.

    Given bytes, they are escaped as redis-cli escapes them and the length is in bytes, as redis-cli counts.
    """
    if isinstance(key, bytes):
        text = cli_repr(key) if len(key) <= limit else ""
        if (text and len(text) <= limit) or not key:
            return text
        return f"{cli_repr_head(key, limit)}…({len(key):,} bytes)"
    return cut(escape(key), limit)


def shown_lines(text: str, limit: int = LINE_LIMIT) -> str:
    """Several lines of free text (joined with newlines by us): each line made safe, the breaks kept."""
    return "\n".join(shown(line, limit) for line in text.split("\n"))
