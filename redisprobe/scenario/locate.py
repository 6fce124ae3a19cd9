"""Where a field of a (well-formed) TOML document is written: maps a path like ("actors", 1, "steps", 0) to a line.

tomllib gives values without positions; a bad field must still be reported as `file:line`. This is a small
scanner over the text that follows TOML's structure (tables, arrays of tables, dotted keys, inline tables,
arrays, strings and comments) and records the offset of every key and array element it passes.
"""

from __future__ import annotations

import contextlib
import re

Path_ = tuple[str | int, ...]

_BARE = re.compile(r"[A-Za-z0-9_-]+")


class Locator:
    def __init__(self, text: str) -> None:
        self.text = text
        self.where: dict[Path_, int] = {}
        self._aot: dict[Path_, int] = {}
        with contextlib.suppress(IndexError, ValueError):  # a locating problem must not hide the real error
            self._scan()

    def line(self, path: Path_) -> int | None:
        """The line (1-based) of the deepest known prefix of `path`; None when nothing of it is known."""
        for cut in range(len(path), 0, -1):
            offset = self.where.get(tuple(path[:cut]))
            if offset is not None:
                return self.text.count("\n", 0, offset) + 1
        return None

    # -- the document ---------------------------------------------------------------------------------------------

    def _scan(self) -> None:
        text = self.text
        pos = 0
        table: Path_ = ()
        while True:
            pos = self._skip(pos, newlines=True)
            if pos >= len(text):
                return
            if text[pos] == "[":
                start = pos
                array = text.startswith("[[", pos)
                pos += 2 if array else 1
                parts, pos = self._key(pos)
                end = text.find("\n", pos)
                pos = len(text) if end < 0 else end
                table = self._resolve(parts[:-1])
                leaf = (*table, parts[-1])
                if array:
                    index = self._aot.get(leaf, 0)
                    self._aot[leaf] = index + 1
                    self.where.setdefault(leaf, start)
                    table = (*leaf, index)
                else:
                    table = leaf
                self.where[table] = start
            else:
                start = pos
                parts, pos = self._key(pos)
                path = (*table, *parts)
                for cut in range(len(table) + 1, len(path) + 1):
                    self.where.setdefault(path[:cut], start)
                pos = self._skip(pos)
                if pos < len(text) and text[pos] == "=":
                    pos = self._value(self._skip(pos + 1), path)
                else:  # not TOML we understand: move on to the next line
                    end = text.find("\n", pos)
                    pos = len(text) if end < 0 else end

    def _resolve(self, parts: list[str]) -> Path_:
        path: Path_ = ()
        for part in parts:
            path = (*path, part)
            if path in self._aot:
                path = (*path, self._aot[path] - 1)
        return path

    def _key(self, pos: int) -> tuple[list[str], int]:
        """A dotted key: bare or quoted parts separated by dots."""
        text = self.text
        parts: list[str] = []
        while True:
            pos = self._skip(pos)
            if pos < len(text) and text[pos] in "\"'":
                quote = text[pos]
                end = pos + 1
                while end < len(text) and text[end] != quote and text[end] != "\n":
                    end += 2 if quote == '"' and text[end] == "\\" else 1
                parts.append(text[pos + 1:end])
                pos = end + 1
            else:
                match = _BARE.match(text, pos)
                if not match:
                    raise ValueError("no key")
                parts.append(match.group())
                pos = match.end()
            pos = self._skip(pos)
            if pos < len(text) and text[pos] == ".":
                pos += 1
                continue
            return parts, pos

    def _skip(self, pos: int, *, newlines: bool = False) -> int:
        """Past spaces and comments (and newlines when asked)."""
        text = self.text
        while pos < len(text):
            char = text[pos]
            if char in " \t\r" or (newlines and char == "\n"):
                pos += 1
            elif char == "#":
                end = text.find("\n", pos)
                pos = len(text) if end < 0 else end
            else:
                break
        return pos

    def _value(self, pos: int, path: Path_) -> int:
        """Record the parts of the value at `pos` under `path`; return the offset just after it."""
        text = self.text
        if pos >= len(text):
            return pos
        char = text[pos]
        for triple in ('"""', "'''"):
            if text.startswith(triple, pos):
                end = pos + 3
                while True:
                    found = text.find(triple, end)
                    if found < 0:
                        return len(text)
                    if triple == '"""' and _escaped(text, found):
                        end = found + 1
                        continue
                    end = found + 3
                    while end < len(text) and text[end] == triple[0]:
                        end += 1
                    return end
        if char == '"':
            end = pos + 1
            while end < len(text) and text[end] not in '"\n':
                end += 2 if text[end] == "\\" else 1
            return end + 1
        if char == "'":
            end = text.find("'", pos + 1)
            return len(text) if end < 0 else end + 1
        if char == "[":
            pos += 1
            index = 0
            while True:
                pos = self._skip(pos, newlines=True)
                if pos >= len(text) or text[pos] == "]":
                    return pos + 1
                self.where[(*path, index)] = pos
                pos = self._skip(self._value(pos, (*path, index)), newlines=True)
                index += 1
                if pos < len(text) and text[pos] == ",":
                    pos += 1
                    continue
                return pos + 1
        if char == "{":
            pos += 1
            while True:
                pos = self._skip(pos, newlines=True)
                if pos >= len(text) or text[pos] == "}":
                    return pos + 1
                start = pos
                parts, pos = self._key(pos)
                key_path = (*path, *parts)
                self.where.setdefault(key_path, start)
                pos = self._skip(pos)
                if pos < len(text) and text[pos] == "=":
                    pos = self._value(self._skip(pos + 1), key_path)
                pos = self._skip(pos, newlines=True)
                if pos < len(text) and text[pos] == ",":
                    pos += 1
                    continue
                return pos + 1
        end = pos
        while end < len(text) and text[end] not in ",]}\n#":
            end += 1
        return end


def _escaped(text: str, index: int) -> bool:
    backslashes = 0
    while index > 0 and text[index - 1] == "\\":
        backslashes += 1
        index -= 1
    return backslashes % 2 == 1
