"""Which arguments of a Redis command are keys, and what the command does to them.

The lifecycle fold looks every MONITOR line up here, so the table is a plain dict keyed by the command name as
bytes (lower and upper case both stored: one dict hit for the common spellings, `.lower()` only for odd ones).
Each command gets a `kind`, a small int the fold dispatches on, and a key-position rule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

# -- effect kinds (the fold has one handler per kind) -----------------------------------------------------------
OTHER: Final = 0  # no key effect we track (PING, CLIENT SETNAME, INFO...)
READ: Final = 1  # reads its keys; a read of a missing key is a miss
WRITE: Final = 2  # modifies in place, creates when missing, keeps the TTL (INCR, RPUSH, HSET...)
WRITE_EXISTING: Final = 3  # modifies only an existing key (LPUSHX, LSET, LINSERT)
SET: Final = 4  # SET / SETNX / SETEX / PSETEX / GETSET / MSET / MSETNX: overwrite, TTL per options
OVERWRITE: Final = 5  # a destination replaced wholesale, TTL dropped (SUNIONSTORE, BITOP, SORT ... STORE, RESTORE)
REMOVE: Final = 6  # DEL / UNLINK / GETDEL
POP: Final = 7  # takes elements, removes the key when it empties (LPOP, SPOP, ZPOPMIN, BLPOP, LMPOP...)
TRIM: Final = 8  # drops elements, removes the key when it empties (LREM, LTRIM, SREM, ZREM, HDEL...)
MOVE_ELEMENT: Final = 9  # pops from a source into a destination (RPOPLPUSH, LMOVE, BLMOVE, SMOVE)
TTL: Final = 10  # EXPIRE / PEXPIRE / EXPIREAT / PEXPIREAT / PERSIST / GETEX
RENAME: Final = 11  # RENAME / RENAMENX
MOVE: Final = 12  # MOVE key db
COPY: Final = 13  # COPY src dst [DB n] [REPLACE]
FLUSH: Final = 14  # FLUSHDB / FLUSHALL
SWAPDB: Final = 15
SELECT: Final = 16
SCAN: Final = 17  # SCAN ... MATCH / KEYS pattern
SCRIPT: Final = 18  # EVAL / EVALSHA / FCALL (+ _RO): the `lua` lines that follow are its effects
MULTI: Final = 19
EXEC: Final = 20
DISCARD: Final = 21

KIND_NAMES = {
    OTHER: "other", READ: "read", WRITE: "write", WRITE_EXISTING: "write", SET: "set", OVERWRITE: "overwrite",
    REMOVE: "remove", POP: "pop", TRIM: "trim", MOVE_ELEMENT: "move-element", TTL: "ttl", RENAME: "rename",
    MOVE: "move", COPY: "copy", FLUSH: "flush", SWAPDB: "swapdb", SELECT: "select", SCAN: "scan",
    SCRIPT: "script", MULTI: "multi", EXEC: "exec", DISCARD: "discard",
}

KeysFn = Callable[[list[bytes]], list[bytes]]


class Command:
    """How to read one command: its effect kind and where its keys are (read on every MONITOR line: a slotted
    class, which compiled code reads directly)."""

    __slots__ = ("first", "keys_fn", "kind", "last", "name", "single", "step")

    def __init__(self, name: str, kind: int, first: int = 1, last: int = 1, step: int = 1,
                 keys_fn: KeysFn | None = None, single: bool = False) -> None:
        self.name = name  # upper-case, for display
        self.kind = kind
        self.first = first  # first key position (0 = no keys)
        self.last = last  # last key position; negative counts from the end (-1 = the last argument)
        self.step = step
        self.keys_fn = keys_fn  # for numkeys-style commands
        self.single = single  # exactly args[1] is the key (the fast path)

    def keys(self, args: list[bytes]) -> list[bytes]:
        """The key arguments of `args` (args[0] is the command name)."""
        if self.keys_fn is not None:
            return self.keys_fn(args)
        positions = self.key_positions(len(args))
        return args[positions.start:positions.stop:positions.step]

    def key_positions(self, count: int) -> range:
        """Where the keys are in a command of `count` arguments, for commands with fixed key positions (those with
        a `keys_fn`, such as EVAL's numkeys, have none here)."""
        if self.keys_fn is not None or self.first == 0 or count <= self.first:
            return range(0)
        last = self.last if self.last >= 0 else count + self.last
        return range(self.first, min(last + 1, count), self.step)


# -- numkeys-style key finders ----------------------------------------------------------------------------------

def _numkeys_at(pos: int) -> KeysFn:
    """Commands like EVAL script numkeys k1 k2 ... / LMPOP numkeys k1 k2 ... LEFT."""

    def keys(args: list[bytes]) -> list[bytes]:
        try:
            count = int(args[pos])
        except (IndexError, ValueError):
            return []
        return args[pos + 1:pos + 1 + count] if count > 0 else []

    return keys


def _dest_and_numkeys(args: list[bytes]) -> list[bytes]:
    """ZUNIONSTORE dest numkeys k1 k2 ...: the destination first."""
    return args[1:2] + _numkeys_at(2)(args)


def _xread_keys(args: list[bytes]) -> list[bytes]:
    """XREAD/XREADGROUP ... STREAMS k1 k2 id1 id2."""
    for index, arg in enumerate(args):
        if arg.upper() == b"STREAMS":
            rest = args[index + 1:]
            return rest[:len(rest) // 2]
    return []


def _sort_keys(args: list[bytes]) -> list[bytes]:
    """SORT key ... [STORE dest]: the source, then the destination if any."""
    keys = args[1:2]
    for index in range(2, len(args) - 1):
        if args[index].upper() == b"STORE":
            keys.append(args[index + 1])
    return keys


# -- the table --------------------------------------------------------------------------------------------------

_SPECS: dict[str, tuple[int, int, int, int] | tuple[int, KeysFn]] = {}


def _add(kind: int, names: str, first: int = 1, last: int = 1, step: int = 1) -> None:
    for name in names.split():
        _SPECS[name] = (kind, first, last, step)


def _add_fn(kind: int, names: str, fn: KeysFn) -> None:
    for name in names.split():
        _SPECS[name] = (kind, fn)


_add(READ, "GET STRLEN GETRANGE SUBSTR TTL PTTL TYPE EXPIRETIME PEXPIRETIME HGET HGETALL HMGET HEXISTS HLEN HKEYS "
           "HVALS HSTRLEN HRANDFIELD HSCAN LRANGE LLEN LINDEX LPOS SMEMBERS SISMEMBER SMISMEMBER SCARD SRANDMEMBER "
           "SSCAN ZRANGE ZRANGEBYSCORE ZRANGEBYLEX ZREVRANGE ZREVRANGEBYSCORE ZREVRANGEBYLEX ZSCORE ZMSCORE ZRANK "
           "ZREVRANK ZCARD ZCOUNT ZLEXCOUNT ZRANDMEMBER ZSCAN XRANGE XREVRANGE XLEN XINFO XPENDING GETBIT BITCOUNT "
           "BITPOS BITFIELD_RO GEOPOS GEODIST GEOHASH GEORADIUS_RO GEORADIUSBYMEMBER_RO GEOSEARCH DUMP LCS")
_add(READ, "MGET EXISTS TOUCH SINTER SUNION SDIFF PFCOUNT", 1, -1)
_add(READ, "OBJECT", 2, 2)
_add_fn(READ, "SINTERCARD ZINTERCARD ZDIFF ZINTER ZUNION", _numkeys_at(1))
_add_fn(READ, "XREAD XREADGROUP", _xread_keys)
_add(WRITE, "APPEND SETRANGE INCR INCRBY INCRBYFLOAT DECR DECRBY LPUSH RPUSH HSET HSETNX HMSET HINCRBY "
            "HINCRBYFLOAT SADD ZADD ZINCRBY XADD XGROUP XACK XCLAIM XAUTOCLAIM XSETID PFADD SETBIT BITFIELD "
            "GEOADD GEORADIUS GEORADIUSBYMEMBER")
_add(WRITE, "PFMERGE", 1, -1)
_add(WRITE_EXISTING, "LPUSHX RPUSHX LINSERT LSET")
_add(SET, "SET SETNX SETEX PSETEX GETSET")
_add(SET, "MSET MSETNX", 1, -1, 2)
_add(OVERWRITE, "SUNIONSTORE SINTERSTORE SDIFFSTORE GEOSEARCHSTORE ZRANGESTORE RESTORE", 1, 1)
_add(OVERWRITE, "BITOP", 2, 2)
_add_fn(OVERWRITE, "ZUNIONSTORE ZINTERSTORE ZDIFFSTORE", _dest_and_numkeys)
_add_fn(OVERWRITE, "SORT", _sort_keys)
_add(READ, "SORT_RO")
_add(REMOVE, "DEL UNLINK", 1, -1)
_add(REMOVE, "GETDEL")
_add(POP, "LPOP RPOP SPOP ZPOPMIN ZPOPMAX")
_add(POP, "BLPOP BRPOP BZPOPMIN BZPOPMAX", 1, -2)
_add_fn(POP, "LMPOP ZMPOP", _numkeys_at(1))
_add_fn(POP, "BLMPOP BZMPOP", _numkeys_at(2))
_add(TRIM, "LREM LTRIM SREM ZREM HDEL ZREMRANGEBYSCORE ZREMRANGEBYRANK ZREMRANGEBYLEX XDEL XTRIM")
_add(MOVE_ELEMENT, "RPOPLPUSH LMOVE BLMOVE BRPOPLPUSH SMOVE", 1, 2)
_add(TTL, "EXPIRE PEXPIRE EXPIREAT PEXPIREAT PERSIST GETEX")
_add(RENAME, "RENAME RENAMENX", 1, 2)
_add(MOVE, "MOVE")
_add(COPY, "COPY", 1, 2)
_add(FLUSH, "FLUSHDB FLUSHALL", 0, 0)
_add(SWAPDB, "SWAPDB", 0, 0)
_add(SELECT, "SELECT", 0, 0)
_add(SCAN, "SCAN KEYS", 0, 0)
_add_fn(SCRIPT, "EVAL EVALSHA EVAL_RO EVALSHA_RO FCALL FCALL_RO", _numkeys_at(2))
_add(MULTI, "MULTI", 0, 0)
_add(EXEC, "EXEC", 0, 0)
_add(DISCARD, "DISCARD", 0, 0)


def _build() -> dict[bytes, Command]:
    table: dict[bytes, Command] = {}
    for name, spec in _SPECS.items():
        if len(spec) == 2:
            kind, fn = spec  # type: ignore[misc]
            command = Command(name, kind, 1, 1, 1, fn)
        else:
            kind, first, last, step = spec  # type: ignore[misc]
            command = Command(name, kind, first, last, step, None, first == 1 and last == 1)
        raw = name.encode()
        table[raw] = command
        table[raw.lower()] = command
    return table


COMMANDS: dict[bytes, Command] = _build()
_UNKNOWN = Command("?", OTHER, 0, 0)

# The commands that empty-and-remove a key on a `del` keyspace event, and those whose removal is a "take".
TAKING = frozenset({REMOVE, POP, MOVE_ELEMENT})


def lookup(name: bytes) -> Command:
    """The spec for a command name in any case (an unknown command is `OTHER` with no keys)."""
    spec = COMMANDS.get(name)
    if spec is None:
        spec = COMMANDS.get(name.lower(), _UNKNOWN)
    return spec


def keys_of(args: list[bytes]) -> list[bytes]:
    """The key arguments of a full command line."""
    return lookup(args[0]).keys(args) if args else []


# -- TTL arithmetic ---------------------------------------------------------------------------------------------

class TtlChange:
    """What a command does to a key's TTL.

    `action`: "set" (expires at `expires_at`), "clear" (persists), "keep" (no change), "past" (the key is
    deleted at once: TTL <= 0 or an absolute time already gone). `seconds` is the TTL as a duration at the
    command's time; `unit` "s" or "ms" as the client wrote it; `raw` the number it wrote; `cond` NX/XX/GT/LT/"".
    A plain slotted class, not a NamedTuple: every SET ... EX and EXPIRE line builds one, and compiled, a
    native class is far cheaper to build and read.
    """

    __slots__ = ("absolute", "action", "cond", "expires_at", "raw", "seconds", "unit")

    def __init__(self, action: str, expires_at: float | None = None, seconds: float | None = None, unit: str = "s",
                 raw: int | None = None, cond: str = "", absolute: bool = False) -> None:
        self.action = action
        self.expires_at = expires_at
        self.seconds = seconds
        self.unit = unit
        self.raw = raw
        self.cond = cond
        self.absolute = absolute

    def __repr__(self) -> str:
        return (f"TtlChange({self.action!r}, expires_at={self.expires_at!r}, seconds={self.seconds!r}, "
                f"unit={self.unit!r}, raw={self.raw!r}, cond={self.cond!r}, absolute={self.absolute!r})")


KEEP = TtlChange("keep")
CLEAR = TtlChange("clear")
_UNITS = {b"EX": ("s", False), b"PX": ("ms", False), b"EXAT": ("s", True), b"PXAT": ("ms", True)}
_EXACT_UNITS = {**_UNITS, **{k.lower(): v for k, v in _UNITS.items()}}
_EXPIRE_FORMS = {
    b"EXPIRE": ("s", False), b"PEXPIRE": ("ms", False), b"EXPIREAT": ("s", True), b"PEXPIREAT": ("ms", True),
}


def _timed(value: bytes, unit: str, absolute: bool, now: float, cond: str = "") -> TtlChange | None:
    try:
        raw = int(value)
    except ValueError:
        return None
    scale = 1.0 if unit == "s" else 0.001
    if absolute:
        at = raw * scale
        seconds = at - now
    else:
        seconds = raw * scale
        at = now + seconds
    return TtlChange("past" if seconds <= 0 else "set", at, seconds, unit, raw, cond, absolute)


def ttl_change(args: list[bytes], now: float) -> TtlChange | None:
    """The TTL effect of a SET-family or TTL-family command at server time `now`; None for a malformed one.

    SET without EX/PX/EXAT/PXAT/KEEPTTL clears the TTL (so does GETSET, MSET): that is a documented trap.
    """
    name = args[0].upper()
    if name in _EXPIRE_FORMS:
        if len(args) < 3:
            return None
        unit, absolute = _EXPIRE_FORMS[name]
        cond = args[3].upper().decode("latin-1") if len(args) > 3 else ""
        return _timed(args[2], unit, absolute, now, cond)
    if name == b"PERSIST":
        return CLEAR
    if name == b"SETEX" or name == b"PSETEX":
        if len(args) < 3:
            return None
        return _timed(args[2], "s" if name == b"SETEX" else "ms", False, now)
    if name == b"SET" or name == b"GETEX":
        index = 3 if name == b"SET" else 2
        while index < len(args):
            option = args[index].upper()
            if option in _UNITS and index + 1 < len(args):
                unit, absolute = _UNITS[option]
                return _timed(args[index + 1], unit, absolute, now)
            if option == b"KEEPTTL":
                return KEEP
            if option == b"PERSIST":
                return CLEAR
            index += 1
        return CLEAR if name == b"SET" else KEEP
    if name in (b"GETSET", b"MSET", b"MSETNX", b"SETNX"):
        return CLEAR
    return KEEP


def set_options(args: list[bytes], now: float) -> tuple[str, TtlChange | None]:
    """SET key value [NX|XX] [GET] [EX s|PX ms|EXAT|PXAT|KEEPTTL] in one pass: (condition, TTL change)."""
    count = len(args)
    if count == 5:  # SET k v EX n: the common spelling, no upper-casing
        exact = _EXACT_UNITS.get(args[3])
        if exact is not None:
            return "", _timed(args[4], exact[0], exact[1], now)
    cond = ""
    change: TtlChange | None = CLEAR
    index = 3
    while index < count:
        option = args[index].upper()
        if option == b"NX" or option == b"XX":
            cond = "NX" if option == b"NX" else "XX"
        elif option in _UNITS:
            if index + 1 >= count:
                return cond, None
            unit, absolute = _UNITS[option]
            change = _timed(args[index + 1], unit, absolute, now)
            index += 1
        elif option == b"KEEPTTL":
            change = KEEP
        index += 1
    return cond, change


def set_condition(args: list[bytes]) -> str:
    """"NX" / "XX" for SET with that option (SETNX and MSETNX are NX), "" otherwise."""
    name = args[0].upper()
    if name in (b"SETNX", b"MSETNX"):
        return "NX"
    if name == b"SET":
        for option in args[3:]:
            upper = option.upper()
            if upper == b"NX" or upper == b"XX":
                return upper.decode()
    return ""


def scan_pattern(args: list[bytes]) -> bytes | None:
    """The MATCH pattern of SCAN (or KEYS' pattern); None when SCAN has no MATCH."""
    name = args[0].upper()
    if name == b"KEYS":
        return args[1] if len(args) > 1 else None
    for index in range(2, len(args) - 1):
        if args[index].upper() == b"MATCH":
            return args[index + 1]
    return None


def flush_all_dbs(args: list[bytes]) -> bool:
    return args[0].upper() == b"FLUSHALL"


def move_target_db(args: list[bytes]) -> int | None:
    """MOVE key db -> db; COPY src dst DB n -> n (None when COPY stays in its db)."""
    name = args[0].upper()
    try:
        if name == b"MOVE":
            return int(args[2])
        for index in range(3, len(args) - 1):
            if args[index].upper() == b"DB":
                return int(args[index + 1])
    except (IndexError, ValueError):
        return None
    return None


def copy_replaces(args: list[bytes]) -> bool:
    return any(arg.upper() == b"REPLACE" for arg in args[3:])


def pop_count(args: list[bytes]) -> int:
    """How many elements LPOP/RPOP/SPOP/ZPOP* key [count] asks for (1 without a count)."""
    if len(args) > 2 and args[0].upper() in (b"LPOP", b"RPOP", b"SPOP", b"ZPOPMIN", b"ZPOPMAX"):
        try:
            return max(int(args[2]), 0)
        except ValueError:
            return 1
    return 1


def push_count(args: list[bytes]) -> int | None:
    """How many elements LPUSH/RPUSH add (the list length is tracked to tell when pops empty it)."""
    name = args[0].upper()
    if name in (b"LPUSH", b"RPUSH", b"LPUSHX", b"RPUSHX"):
        return len(args) - 2
    return None


# -- keyspace events: which command kinds can cause each --------------------------------------------------------

EVENT_CAUSES: dict[str, frozenset[int]] = {
    "del": frozenset({REMOVE, POP, TRIM, MOVE_ELEMENT, TTL, OVERWRITE, SET, SCRIPT}),
    "expire": frozenset({TTL, SET, OVERWRITE, SCRIPT}),
    "persist": frozenset({TTL, SET, SCRIPT}),
    "rename_from": frozenset({RENAME, SCRIPT}),
    "rename_to": frozenset({RENAME, SCRIPT}),
    "move_from": frozenset({MOVE, SCRIPT}),
    "move_to": frozenset({MOVE, SCRIPT}),
    "copy_to": frozenset({COPY, SCRIPT}),
}
GENERIC_EVENTS = frozenset({"del", "expire", "persist", "rename_from", "rename_to", "move_from", "move_to",
                            "copy_to", "restore"})
SERVER_EVENTS = frozenset({"expired", "evicted"})

# How each removal is named in a KeyLife (`removed.how`).
REMOVAL_HOW = {
    b"DEL": "del", b"UNLINK": "unlink", b"GETDEL": "getdel",
}


def removal_how(kind: int, name: bytes) -> str:
    """`del` / `unlink` / `getdel` / `pop` / `rename` / `move` for a removing command."""
    if kind == REMOVE:
        return REMOVAL_HOW.get(name.upper(), "del")
    if kind in (POP, TRIM, MOVE_ELEMENT):
        return "pop"
    if kind == RENAME:
        return "rename"
    if kind == MOVE:
        return "move"
    return "del"


__all__ = [
    "COMMANDS", "EVENT_CAUSES", "GENERIC_EVENTS", "KIND_NAMES", "SERVER_EVENTS", "TAKING", "Command", "TtlChange",
    "copy_replaces", "flush_all_dbs", "keys_of", "lookup", "move_target_db", "pop_count", "push_count",
    "removal_how", "scan_pattern", "set_condition", "ttl_change",
]
