"""An incremental RESP2/RESP3 parser: one value from a buffer, or `Incomplete` until the rest has arrived.

Values as redis-py gives them without response callbacks: bytes for simple, bulk and verbatim strings, int, float,
bool, None, lists (RESP3 sets too), dicts (RESP3 maps), `RespError` for errors, `Push` for RESP3 out-of-band
pushes (pub/sub messages, invalidations), which answer no request.
"""

from __future__ import annotations

from typing import Any


class Incomplete(Exception):
    """The buffer ends inside the value: wait for more bytes (`need`: the buffer's length at which the value can
    be complete, when a length prefix tells; 0 when any more bytes may do)."""

    def __init__(self, need: int = 0) -> None:
        super().__init__()
        self.need = need


class Malformed(Exception):
    """These bytes are not RESP (a TLS record, a stream joined mid-value)."""


class RespError(str):
    """An error reply (`-ERR ...`, `!...`): its text."""


class Push(list):  # type: ignore[type-arg]
    """A RESP3 push (`>`): data the server sends on its own, not the answer to a request."""


_incomplete = Incomplete()
MAX_LENGTH = 512 << 20  # Redis's proto-max-bulk-len default: a longer "length" means we are not at a boundary


def _line(buf: bytes, pos: int) -> tuple[bytes, int]:
    end = buf.find(b"\r\n", pos)
    if end < 0:
        if len(buf) - pos > 65536:
            raise Malformed("no line end")
        raise _incomplete
    return buf[pos:end], end + 2


def _int(text: bytes) -> int:
    try:
        return int(text)
    except ValueError:
        raise Malformed(f"not an integer: {text[:20]!r}") from None


def parse(buf: bytes, pos: int = 0) -> tuple[Any, int]:
    """One value starting at `pos`, and the position after it."""
    if pos >= len(buf):
        raise _incomplete
    kind = buf[pos]
    line, pos = _line(buf, pos + 1)
    if kind == 0x24 or kind == 0x3D or kind == 0x21:  # $ = !
        size = _int(line)
        if size < 0:
            return None, pos
        if size > MAX_LENGTH:
            raise Malformed("bulk too long")
        end = pos + size
        if end + 2 > len(buf):
            raise Incomplete(end + 2)
        if buf[end:end + 2] != b"\r\n":
            raise Malformed("bulk not followed by CRLF")
        data = buf[pos:end]
        if kind == 0x21:
            return RespError(data.decode("utf-8", "replace")), end + 2
        if kind == 0x3D:
            data = data[4:]  # "txt:"
        return data, end + 2
    if kind == 0x2B:  # +
        return line, pos
    if kind == 0x3A or kind == 0x28:  # : (
        return _int(line), pos
    if kind == 0x2A or kind == 0x7E or kind == 0x3E:  # * ~ >
        count = _int(line)
        if count < 0:
            return None, pos
        if count > MAX_LENGTH:
            raise Malformed("array too long")
        items: list[Any] = Push() if kind == 0x3E else []
        for _ in range(count):
            item, pos = parse(buf, pos)
            items.append(item)
        return items, pos
    if kind == 0x2D:  # -
        return RespError(line.decode("utf-8", "replace")), pos
    if kind == 0x5F:  # _
        return None, pos
    if kind == 0x2C:  # ,
        try:
            return float(line), pos
        except ValueError:
            raise Malformed("not a double") from None
    if kind == 0x23:  # #
        return line == b"t", pos
    if kind == 0x25 or kind == 0x7C:  # % |
        count = _int(line)
        pairs: list[tuple[Any, Any]] = []
        for _ in range(count):
            key, pos = parse(buf, pos)
            value, pos = parse(buf, pos)
            pairs.append((key, value))
        if kind == 0x7C:  # attributes annotate the value that follows
            return parse(buf, pos)
        try:
            return dict(pairs), pos
        except TypeError:
            return pairs, pos
    raise Malformed(f"unknown RESP type byte {bytes([kind])!r}")


def parse_request(buf: bytes, pos: int = 0) -> tuple[list[bytes], int]:
    """One command as a client sends it: an array of bulk strings, or an inline line (`PING\r\n`).

    The hot loop of the offline parse: one `find` and one `int` per argument."""
    size = len(buf)
    if pos >= size:
        raise _incomplete
    if buf[pos] != 0x2A:  # inline
        line, end = _line(buf, pos)
        return line.split(), end
    find = buf.find
    end = find(b"\r\n", pos)
    if end < 0:
        raise _incomplete if size - pos < 32 else Malformed("no line end")
    try:
        count = int(buf[pos + 1:end])
        if count > 1 << 20:
            raise Malformed("request too long")
        pos = end + 2
        args: list[bytes] = []
        append = args.append
        for _ in range(count):
            if pos >= size:
                raise _incomplete
            if buf[pos] != 0x24:
                raise Malformed("request argument is not a bulk string")
            end = find(b"\r\n", pos)
            if end < 0:
                raise _incomplete if size - pos < 32 else Malformed("no line end")
            length = int(buf[pos + 1:end])
            start = end + 2
            stop = start + length
            if stop + 2 > size:
                raise Incomplete(stop + 2)
            if length < 0 or buf[stop:stop + 2] != b"\r\n":
                raise Malformed("argument not followed by CRLF")
            append(buf[start:stop])
            pos = stop + 2
    except ValueError:
        raise Malformed("not an integer") from None
    return args, pos


def looks_like_request(data: bytes) -> bool:
    """Whether a stream joined mid-way could start a command here (`*<n>\\r\\n$`)."""
    if not data.startswith(b"*"):
        return False
    line_end = data.find(b"\r\n", 1, 16)
    return line_end > 1 and data[1:line_end].isdigit() and data[line_end + 2:line_end + 3] in (b"$", b"")


REPLY_TYPES = frozenset(b"+-:$*_,#!=(%~>|")
