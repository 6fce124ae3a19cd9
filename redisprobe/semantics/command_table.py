"""What each Redis command does, declared once: one row of independent facts per command.

A row says which arguments are keys, what the command does to them (its `kind`: read, write, set, remove, pop...),
how it names a removal, whether it removes only a key it empties, where its blocking timeout is, how it sets a
TTL, its only-if-absent condition, and its option words. The fold, keyspace pairing, the live timeline, value
redaction, the scenario loader and the rules read these facts; none of them compares command names. A new command
is one row here (and its test).

The fold looks every MONITOR line up here, so the table is a plain dict keyed by the command name as bytes (lower
and upper case both stored: one dict hit for the common spellings, `.lower()` only for odd ones).
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
MIGRATE: Final = 22  # MIGRATE host port key|"" db timeout [COPY] [REPLACE] [AUTH..] [KEYS k..]: a key to another node
MIGRATED_IN: Final = 23  # RESTORE-ASKING: a key arriving from the source of a migration

KIND_NAMES = {
    OTHER: "other", READ: "read", WRITE: "write", WRITE_EXISTING: "write", SET: "set", OVERWRITE: "overwrite",
    REMOVE: "remove", POP: "pop", TRIM: "trim", MOVE_ELEMENT: "move-element", TTL: "ttl", RENAME: "rename",
    MOVE: "move", COPY: "copy", FLUSH: "flush", SWAPDB: "swapdb", SELECT: "select", SCAN: "scan",
    SCRIPT: "script", MULTI: "multi", EXEC: "exec", DISCARD: "discard", MIGRATE: "migrate",
    MIGRATED_IN: "migrated-in",
}

KeysFn = Callable[[list[bytes]], list[bytes]]


# -- TTL forms (how a command sets or drops a key's TTL) -------------------------------------------------------
TTL_KEEP: Final = ""  # leaves the TTL alone
TTL_CLEAR: Final = "clear"  # drops it (GETSET, MSET, SETNX, the *STORE destinations)
TTL_SET_OPTIONS: Final = "set-options"  # SET ... [EX s|PX ms|EXAT|PXAT|KEEPTTL]; none of them drops it
TTL_GETEX_OPTIONS: Final = "getex-options"  # GETEX ... [EX|PX|EXAT|PXAT|PERSIST]; none of them keeps it
TTL_PERSIST: Final = "persist"
TTL_ARG_S: Final = "arg-s"  # the TTL is args[2]: seconds (EXPIRE, SETEX)
TTL_ARG_MS: Final = "arg-ms"  # milliseconds (PEXPIRE, PSETEX)
TTL_ARG_AT_S: Final = "arg-at-s"  # an absolute time: unix seconds (EXPIREAT)
TTL_ARG_AT_MS: Final = "arg-at-ms"  # unix milliseconds (PEXPIREAT)
TTL_RESTORE: Final = "restore"  # RESTORE key ttl value: ms, 0 for none, absolute with ABSTTL
EXPIRE_FORMS: Final = frozenset({TTL_ARG_S, TTL_ARG_MS, TTL_ARG_AT_S, TTL_ARG_AT_MS})

# -- what a read's reply says of its key (`reply_says`) ---------------------------------------------------------
REPLY_VALUE: Final = "value"  # nil: no such key; anything else: it existed (GET, GETEX, DUMP)
REPLY_COUNT: Final = "count"  # 0: no such key (empty collections do not exist); more: it existed (LLEN, SCARD)
REPLY_MEMBERS: Final = "members"  # empty: no such key; not empty: it existed (HGETALL, SMEMBERS)
REPLY_TTL: Final = "ttl"  # -2: no such key; anything else: it existed (TTL, PTTL, EXPIRETIME)
REPLY_TYPE: Final = "type"  # "none": no such key (TYPE)
REPLY_FOUND: Final = "found"  # nil or empty says nothing (a missing field); anything else: it existed (HGET, MGET's
# per-key values)
REPLY_SAYS: Final = (REPLY_VALUE, REPLY_COUNT, REPLY_MEMBERS, REPLY_TTL, REPLY_TYPE, REPLY_FOUND)


class Command:
    """One command's facts (read on every MONITOR line: a slotted class, which compiled code reads directly).

    `kind` picks the fold's handler; the other facts are independent of it, so handlers and the other readers
    never need the name.
    """

    __slots__ = ("all_dbs", "block_option", "blocking", "cond", "count_at", "first", "keys_fn", "kind", "last", "name",
                 "options", "pairs", "pattern_at", "pushes", "removes", "reply_says", "single", "source_first",
                 "step", "tracking_word", "ttl_at", "ttl_form", "value_reply", "when_empty")

    def __init__(self, name: str, kind: int, first: int = 1, last: int = 1, step: int = 1,
                 keys_fn: KeysFn | None = None, single: bool = False) -> None:
        self.name = name  # upper-case, for display
        self.kind = kind
        self.first = first  # first key position (0 = no keys)
        self.last = last  # last key position; negative counts from the end (-1 = the last argument)
        self.step = step
        self.keys_fn = keys_fn  # for numkeys-style commands
        self.single = single  # exactly args[1] is the key (the fast path)
        self.removes = ""  # how a removal it makes is named in a key's life (del, unlink, getdel, pop, rename...)
        self.when_empty = False  # it removes the key only when it takes the last element (pops, HDEL, SREM...)
        self.blocking = 0  # where its timeout is (-1: the last argument, 1: args[1]); 0: it does not block
        self.block_option = b""  # the option whose value is its timeout in ms (XREAD ... BLOCK ms): it may block
        self.ttl_form = TTL_KEEP  # how it sets or drops the TTL (the TTL_* forms above)
        self.ttl_at = 2  # where an arg-* TTL is
        self.cond = ""  # "NX": it acts only when the key is absent (SETNX, MSETNX, RENAMENX)
        self.pairs = False  # key value key value... (MSET)
        self.source_first = False  # its first key is read, the others are written (SORT ... STORE dest)
        self.value_reply = False  # a non-nil reply means the key existed (GET): actors' replies correct the fold
        self.reply_says = ""  # what its reply (read off the wire) says of its key's existence: one of REPLY_SAYS
        self.count_at = 0  # where an optional element count is (LPOP key count)
        self.pushes = False  # adds args[2:] as elements (the list length is tracked to see pops empty it)
        self.all_dbs = False  # acts on every db (FLUSHALL)
        self.pattern_at = 0  # where its key pattern is (KEYS pattern); -1: after a MATCH option (SCAN)
        self.options: frozenset[bytes] = frozenset()  # its option words (kept when values are redacted)
        self.tracking_word = b""  # its subcommand that turns client-side caching ON or OFF (CLIENT TRACKING)

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

    @property
    def removing(self) -> bool:
        """It can remove a key (at once, or when it takes the last element)."""
        return bool(self.removes)


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


def _migrate_keys(args: list[bytes]) -> list[bytes]:
    """MIGRATE host port key db timeout, or MIGRATE host port "" db timeout ... KEYS k1 k2."""
    if len(args) < 6:
        return []
    if args[3]:
        return [args[3]]
    for index in range(6, len(args)):
        if args[index].upper() == b"KEYS":
            return args[index + 1:]
    return []


def _sort_keys(args: list[bytes]) -> list[bytes]:
    """SORT key ... [STORE dest]: the source, then the destination if any."""
    keys = args[1:2]
    for index in range(2, len(args) - 1):
        if args[index].upper() == b"STORE":
            keys.append(args[index + 1])
    return keys


# -- the table --------------------------------------------------------------------------------------------------

_ROWS: dict[str, Command] = {}
SET_OPTIONS: Final = frozenset({b"EX", b"PX", b"EXAT", b"PXAT", b"KEEPTTL", b"NX", b"XX", b"GET"})
EXPIRE_OPTIONS: Final = frozenset({b"NX", b"XX", b"GT", b"LT"})


def _row(kind: int, names: str, keys: tuple[int, int, int] | KeysFn = (1, 1, 1), **facts: object) -> None:
    """One row per name: its kind, where its keys are (first, last, step) or a key finder, and its other facts."""
    for name in names.split():
        if callable(keys):
            command = Command(name, kind, 1, 1, 1, keys)
        else:
            first, last, step = keys
            command = Command(name, kind, first, last, step, None, first == 1 and last == 1)
        for fact, value in facts.items():
            setattr(command, fact, value)
        _ROWS[name] = command


NONE: Final = (0, 0, 1)
ALL: Final = (1, -1, 1)

# reads
_row(READ, "GET", value_reply=True, reply_says=REPLY_VALUE)
_row(READ, "STRLEN GETRANGE SUBSTR TTL PTTL TYPE EXPIRETIME PEXPIRETIME HGET HGETALL HMGET HEXISTS HLEN HKEYS "
           "HVALS HSTRLEN HRANDFIELD HSCAN LRANGE LLEN LINDEX LPOS SMEMBERS SISMEMBER SMISMEMBER SCARD SRANDMEMBER "
           "SSCAN ZSCORE ZMSCORE ZRANK ZREVRANK ZCARD ZCOUNT ZLEXCOUNT ZRANDMEMBER ZSCAN XRANGE XREVRANGE XLEN XINFO "
           "XPENDING GETBIT BITCOUNT BITPOS BITFIELD_RO GEOPOS GEODIST GEOHASH GEORADIUS_RO GEORADIUSBYMEMBER_RO "
           "GEOSEARCH DUMP LCS")
_row(READ, "ZRANGE ZRANGEBYSCORE ZRANGEBYLEX ZREVRANGE ZREVRANGEBYSCORE ZREVRANGEBYLEX",
     options=frozenset({b"WITHSCORES", b"LIMIT", b"BYSCORE", b"BYLEX", b"REV"}))
_row(READ, "MGET EXISTS TOUCH SINTER SUNION SDIFF PFCOUNT", ALL)
_row(READ, "OBJECT", (2, 2, 1))
_row(READ, "SINTERCARD ZINTERCARD ZDIFF ZINTER ZUNION", _numkeys_at(1))
_row(READ, "XREAD XREADGROUP", _xread_keys, block_option=b"BLOCK")
_row(READ, "SORT_RO")


def _replies(says: str, names: str) -> None:
    """What the replies of these (already declared) commands say of their key."""
    for name in names.split():
        _ROWS[name].reply_says = says


_replies(REPLY_COUNT, "LLEN SCARD ZCARD HLEN XLEN")
_replies(REPLY_MEMBERS, "HGETALL SMEMBERS HKEYS HVALS")
_replies(REPLY_TTL, "TTL PTTL EXPIRETIME PEXPIRETIME")
_replies(REPLY_TYPE, "TYPE")
_replies(REPLY_VALUE, "DUMP")
_replies(REPLY_FOUND, "HGET HMGET LINDEX ZSCORE ZMSCORE MGET")
# writes in place (created when missing, the TTL kept)
_row(WRITE, "APPEND SETRANGE INCR INCRBY INCRBYFLOAT DECR DECRBY HSET HSETNX HMSET HINCRBY HINCRBYFLOAT SADD "
            "ZINCRBY XADD XGROUP XACK XCLAIM XAUTOCLAIM XSETID PFADD SETBIT BITFIELD GEOADD GEORADIUS "
            "GEORADIUSBYMEMBER")
_row(WRITE, "ZADD", options=frozenset({b"NX", b"XX", b"GT", b"LT", b"CH", b"INCR"}))
_row(WRITE, "LPUSH RPUSH", pushes=True)
_row(WRITE, "PFMERGE", ALL)
_row(WRITE_EXISTING, "LPUSHX RPUSHX", pushes=True)
_row(WRITE_EXISTING, "LINSERT", options=frozenset({b"BEFORE", b"AFTER"}))
_row(WRITE_EXISTING, "LSET")
# overwrites, with their TTL rules
_row(SET, "SET", ttl_form=TTL_SET_OPTIONS, options=SET_OPTIONS)
_row(SET, "SETNX", ttl_form=TTL_CLEAR, cond="NX")
_row(SET, "SETEX", ttl_form=TTL_ARG_S)
_row(SET, "PSETEX", ttl_form=TTL_ARG_MS)
_row(SET, "GETSET", ttl_form=TTL_CLEAR)
_row(SET, "MSET", (1, -1, 2), ttl_form=TTL_CLEAR, pairs=True)
_row(SET, "MSETNX", (1, -1, 2), ttl_form=TTL_CLEAR, pairs=True, cond="NX")
_row(OVERWRITE, "SUNIONSTORE SINTERSTORE SDIFFSTORE GEOSEARCHSTORE ZRANGESTORE", ttl_form=TTL_CLEAR)
_row(OVERWRITE, "RESTORE", ttl_form=TTL_RESTORE, options=frozenset({b"REPLACE", b"ABSTTL", b"IDLETIME", b"FREQ"}))
_row(OVERWRITE, "BITOP", (2, 2, 1), ttl_form=TTL_CLEAR)
_row(OVERWRITE, "ZUNIONSTORE ZINTERSTORE ZDIFFSTORE", _dest_and_numkeys, ttl_form=TTL_CLEAR)
_row(OVERWRITE, "SORT", _sort_keys, ttl_form=TTL_CLEAR, source_first=True,
     options=frozenset({b"BY", b"LIMIT", b"GET", b"ASC", b"DESC", b"ALPHA", b"STORE"}))
# removals
_row(REMOVE, "DEL", ALL, removes="del")
_row(REMOVE, "UNLINK", ALL, removes="unlink")
_row(REMOVE, "GETDEL", removes="getdel")
_row(POP, "LPOP RPOP SPOP ZPOPMIN ZPOPMAX", removes="pop", when_empty=True, count_at=2)
_row(POP, "BLPOP BRPOP BZPOPMIN BZPOPMAX", (1, -2, 1), removes="pop", when_empty=True, blocking=-1)
_row(POP, "LMPOP ZMPOP", _numkeys_at(1), removes="pop", when_empty=True,
     options=frozenset({b"LEFT", b"RIGHT", b"MIN", b"MAX", b"COUNT"}))
_row(POP, "BLMPOP BZMPOP", _numkeys_at(2), removes="pop", when_empty=True, blocking=1,
     options=frozenset({b"LEFT", b"RIGHT", b"MIN", b"MAX", b"COUNT"}))
_row(TRIM, "LREM LTRIM SREM ZREM HDEL ZREMRANGEBYSCORE ZREMRANGEBYRANK ZREMRANGEBYLEX XDEL XTRIM", removes="pop",
     when_empty=True)
_row(TRIM, "HGETDEL", removes="pop", when_empty=True, options=frozenset({b"FIELDS"}))  # Redis 8: read and remove
_row(MOVE_ELEMENT, "RPOPLPUSH LMOVE SMOVE", (1, 2, 1), removes="pop", when_empty=True,
     options=frozenset({b"LEFT", b"RIGHT"}))
_row(MOVE_ELEMENT, "BLMOVE BRPOPLPUSH", (1, 2, 1), removes="pop", when_empty=True, blocking=-1,
     options=frozenset({b"LEFT", b"RIGHT"}))
# TTLs
_row(TTL, "EXPIRE", ttl_form=TTL_ARG_S, options=EXPIRE_OPTIONS)
_row(TTL, "PEXPIRE", ttl_form=TTL_ARG_MS, options=EXPIRE_OPTIONS)
_row(TTL, "EXPIREAT", ttl_form=TTL_ARG_AT_S, options=EXPIRE_OPTIONS)
_row(TTL, "PEXPIREAT", ttl_form=TTL_ARG_AT_MS, options=EXPIRE_OPTIONS)
_row(TTL, "PERSIST", ttl_form=TTL_PERSIST)
_row(TTL, "GETEX", ttl_form=TTL_GETEX_OPTIONS, reply_says=REPLY_VALUE,
     options=frozenset({b"EX", b"PX", b"EXAT", b"PXAT", b"PERSIST"}))
# keys moving under another name or db
_row(RENAME, "RENAME", (1, 2, 1), removes="rename")
_row(RENAME, "RENAMENX", (1, 2, 1), removes="rename", cond="NX")
_row(MOVE, "MOVE", removes="move")
_row(COPY, "COPY", (1, 2, 1), options=frozenset({b"DB", b"REPLACE"}))
_row(MIGRATE, "MIGRATE", _migrate_keys, options=frozenset({b"COPY", b"REPLACE", b"AUTH", b"AUTH2", b"KEYS"}))
_row(MIGRATED_IN, "RESTORE-ASKING", ttl_form=TTL_RESTORE, options=frozenset({b"REPLACE", b"ABSTTL", b"IDLETIME",
                                                                             b"FREQ"}))
# the whole db or server, and the connection
_row(FLUSH, "FLUSHDB", NONE, removes="flush", options=frozenset({b"ASYNC", b"SYNC"}))
_row(FLUSH, "FLUSHALL", NONE, removes="flush", all_dbs=True, options=frozenset({b"ASYNC", b"SYNC"}))
_row(SWAPDB, "SWAPDB", NONE)
_row(SELECT, "SELECT", NONE)
_row(SCAN, "SCAN", NONE, pattern_at=-1, options=frozenset({b"MATCH", b"COUNT", b"TYPE"}))
_row(SCAN, "KEYS", NONE, pattern_at=1)
_row(SCRIPT, "EVAL EVALSHA EVAL_RO EVALSHA_RO FCALL FCALL_RO", _numkeys_at(2))
_row(MULTI, "MULTI", NONE)
_row(EXEC, "EXEC", NONE)
_row(DISCARD, "DISCARD", NONE)
_row(OTHER, "CLIENT", NONE, tracking_word=b"TRACKING")


def _build() -> dict[bytes, Command]:
    table: dict[bytes, Command] = {}
    for name, command in _ROWS.items():
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


_FORM_UNITS: Final = {TTL_ARG_S: ("s", False), TTL_ARG_MS: ("ms", False), TTL_ARG_AT_S: ("s", True),
                      TTL_ARG_AT_MS: ("ms", True)}


def ttl_change(args: list[bytes], now: float) -> TtlChange | None:
    """The TTL effect of a SET-family or TTL-family command at server time `now`; None for a malformed one.

    SET without EX/PX/EXAT/PXAT/KEEPTTL clears the TTL (so does GETSET, MSET): that is a documented trap.
    """
    spec = lookup(args[0])
    form = spec.ttl_form
    if form in _FORM_UNITS:
        if len(args) <= spec.ttl_at:
            return None
        unit, absolute = _FORM_UNITS[form]
        # EXPIRE k s [NX|XX|GT|LT]: a condition may follow (after SETEX's TTL comes the value)
        cond = args[3].upper().decode("latin-1") if spec.options is EXPIRE_OPTIONS and len(args) > 3 else ""
        return _timed(args[spec.ttl_at], unit, absolute, now, cond)
    if form == TTL_PERSIST:
        return CLEAR
    if form == TTL_RESTORE:
        if len(args) < 3:
            return None
        if args[2] == b"0":
            return CLEAR
        return _timed(args[2], "ms", any(a.upper() == b"ABSTTL" for a in args[4:]), now)
    if form in (TTL_SET_OPTIONS, TTL_GETEX_OPTIONS):
        index = 3 if form == TTL_SET_OPTIONS else 2
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
        return CLEAR if form == TTL_SET_OPTIONS else KEEP
    if form == TTL_CLEAR and spec.kind == SET:  # the *STORE destinations are cleared by the fold's overwrite
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
    spec = lookup(args[0])
    if spec.cond:
        return spec.cond
    if spec.ttl_form == TTL_SET_OPTIONS:
        for option in args[3:]:
            upper = option.upper()
            if upper == b"NX" or upper == b"XX":
                return upper.decode()
    return ""


def scan_pattern(args: list[bytes]) -> bytes | None:
    """The key pattern of SCAN ... MATCH or KEYS; None when there is none."""
    at = lookup(args[0]).pattern_at
    if at > 0:
        return args[at] if len(args) > at else None
    if at < 0:
        for index in range(2, len(args) - 1):
            if args[index].upper() == b"MATCH":
                return args[index + 1]
    return None


def flush_all_dbs(args: list[bytes]) -> bool:
    return lookup(args[0]).all_dbs


def move_target_db(args: list[bytes]) -> int | None:
    """MOVE key db -> db; COPY src dst DB n -> n (None when COPY stays in its db)."""
    spec = lookup(args[0])
    try:
        if spec.kind == MOVE:
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
    at = lookup(args[0]).count_at
    if at and len(args) > at:
        try:
            return max(int(args[at]), 0)
        except ValueError:
            return 1
    return 1


def push_count(args: list[bytes]) -> int | None:
    """How many elements LPUSH/RPUSH add (the list length is tracked to tell when pops empty it)."""
    return len(args) - 2 if lookup(args[0]).pushes else None


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
POP_EVENTS = frozenset({"lpop", "rpop", "spop", "zpopmin", "zpopmax"})
"""Keyspace events of a pop that took an element: the key was there (even if the trace never saw it made)."""

_LIST_FEEDS = frozenset({b"LPUSH", b"RPUSH", b"LPUSHX", b"RPUSHX", b"LINSERT", b"LMOVE", b"RPOPLPUSH", b"BLMOVE",
                         b"BRPOPLPUSH"})
BLOCKING_FEEDS: dict[str, frozenset[bytes]] = {
    **dict.fromkeys(("blpop", "brpop", "blmove", "brpoplpush", "blmpop"), _LIST_FEEDS),
    **dict.fromkeys(("bzpopmin", "bzpopmax", "bzmpop"), frozenset({b"ZADD", b"ZINCRBY"})),
    **dict.fromkeys(("xread", "xreadgroup"), frozenset({b"XADD"})),
}
"""A blocking command as CLIENT LIST names it (`cmd=blmove`) -> the commands that create what it waits for."""


def block_timeout(args: list[bytes], option: bytes) -> float | None:
    """Seconds an `option ms` command (XREAD BLOCK ms) may block: 0 is forever; None when it does not block."""
    for index in range(1, len(args) - 1):
        if args[index].upper() == option:
            try:
                return max(int(args[index + 1]), 0) / 1000
            except ValueError:
                return None
    return None


def removal_how(name: bytes) -> str:
    """`del` / `unlink` / `getdel` / `pop` / `rename` / `move` for a removing command (`del` for the others: an
    EXPIRE in the past, a SET that replaced the key)."""
    return lookup(name).removes or "del"


def tracking_switch(spec: Command, args: list[bytes]) -> bool | None:
    """Whether a command turns the connection's client-side caching on (True) or off (False); None when it does
    neither (`CLIENT TRACKING ON` / `OFF`)."""
    if not spec.tracking_word or len(args) < 3 or args[1].upper() != spec.tracking_word:
        return None
    return args[2].upper() == b"ON"


def option_words() -> frozenset[bytes]:
    """Every command's option words (value redaction keeps them: they explain a command, reveal no data)."""
    words: set[bytes] = set()
    for command in _ROWS.values():
        words |= command.options
    return frozenset(words)


__all__ = [
    "BLOCKING_FEEDS", "COMMANDS", "EVENT_CAUSES", "GENERIC_EVENTS", "KIND_NAMES", "POP_EVENTS", "SERVER_EVENTS",
    "TAKING", "Command", "TtlChange", "block_timeout", "copy_replaces", "flush_all_dbs", "keys_of", "lookup",
    "move_target_db", "option_words", "pop_count", "push_count", "removal_how", "scan_pattern", "set_condition",
    "tracking_switch", "ttl_change",
]
