"""The MONITOR capture's own commands in the stream: fences (a drain reads up to one), marks (the server's command
count pinned to a place in the stream, so a gap says how many commands it lost) and the fence connection's name.

None of them is the user's: `_fence_of` picks them out of the MONITOR lines so they never reach a trace.
"""

from __future__ import annotations

FENCE_NAME = "redisprobe:observer:monitor-fence"
FENCE_PREFIX = b"redisprobe:fence:"
_FENCE_NAME = FENCE_NAME.encode()
_TOKEN_START = b"redisprobe:"
"""How both tokens begin: one search finds either (a longer word than their common "fence" is skipped over faster)."""
assert FENCE_PREFIX.startswith(_TOKEN_START) and _FENCE_NAME.startswith(_TOKEN_START)


def lost_commands(mark: object, processed: object) -> int | None:
    """How many commands the server ran between the last mark seen before a loss and the reconnection that MONITOR
    did not deliver: INFO's count at reconnection, less the count at the mark, the mark itself, and the lines
    delivered after it. None without a mark, or when the count went down (a restart resets it)."""
    if not isinstance(mark, tuple) or not isinstance(processed, int):
        return None
    at_mark, delivered = mark
    missed = processed - at_mark - 1 - delivered
    return missed if processed >= at_mark else None


def _token_lines(data: bytes) -> list[tuple[int, int]]:
    """(start, end after its CRLF) of each line of a block of complete lines that holds a fence token or the fence
    connection's name, in order."""
    found: list[tuple[int, int]] = []
    at = data.find(_TOKEN_START)  # one pass for both tokens
    while at >= 0:
        if data.startswith(FENCE_PREFIX, at) or data.startswith(_FENCE_NAME, at):
            begin = data.rfind(b"\r\n", 0, at) + 2
            begin = 0 if begin == 1 else begin  # no CRLF before it: the block's first line
            end = data.index(b"\r\n", at) + 2
            found.append((begin, end))
            at = data.find(_TOKEN_START, end)
        else:
            at = data.find(_TOKEN_START, at + len(_TOKEN_START))
    return found


def _fence_of(args: list[bytes]) -> bytes | None:
    """Our fence ECHOs and marks, and the fence connection naming itself again after a reconnect, are not the
    user's: the fence or mark token (b"" for the renaming), or None for a user's command."""
    if len(args) == 2 and args[1].startswith(FENCE_PREFIX) and args[0].upper() in (b"ECHO", b"PING"):
        return args[1]
    if len(args) == 3 and args[2] == _FENCE_NAME and args[0].upper() == b"CLIENT":
        return b""
    if len(args) in (3, 4) and args[-1].startswith(FENCE_PREFIX) and args[0].upper() == b"INFO":
        return args[-1]
    return None
