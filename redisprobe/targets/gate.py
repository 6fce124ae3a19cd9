"""The one gate every command passes before redisprobe sends it to a user's server.

On a server redisprobe does not own (`--url`), an actor may touch keys under `redisprobe:` only, and nothing that
acts on the whole server. Every command an actor sends goes through `Gate.refusal` (whatever step kind or program
sent it, at any nesting depth); scenario files are checked statically with the same rules before they start, so
a file that would be refused is skipped with the reason instead of failing half-way.

The rules are an allow-list: a command is let through only when it is known to touch nothing but its own
connection or its (namespaced) keys. Scripts run only when the scenario opts in and the user allows writes, and
then only when every command the script can run, and every key it can touch, can be read off its text.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from redisprobe.semantics.command_table import SCAN, lookup

NAMESPACE = b"redisprobe:"

# Commands without keys that act on the caller's own connection or only read server statistics.
CONNECTION_ONLY = frozenset({
    b"PING", b"ECHO", b"TIME", b"INFO", b"DBSIZE", b"SELECT", b"MULTI", b"EXEC", b"DISCARD", b"UNWATCH", b"HELLO",
    b"AUTH", b"QUIT", b"RESET", b"READONLY", b"READWRITE", b"ROLE", b"LASTSAVE", b"WAIT", b"COMMAND",
    b"CLIENT ID", b"CLIENT INFO", b"CLIENT GETNAME", b"CLIENT SETNAME", b"CLIENT SETINFO", b"CLIENT TRACKING",
    b"CLIENT TRACKINGINFO", b"CLIENT CACHING", b"CLIENT GETREDIR", b"CLIENT REPLY", b"CLIENT NO-TOUCH",
    b"OBJECT HELP", b"MEMORY USAGE", b"MEMORY STATS", b"MEMORY DOCTOR", b"CONFIG GET", b"SLOWLOG GET",
    b"SLOWLOG LEN", b"LATENCY LATEST", b"LATENCY HISTORY", b"XINFO HELP",
})
# Commands whose key arguments sit behind a subcommand (OBJECT ENCODING key, XINFO STREAM key, MEMORY USAGE key).
_CONTAINERS = frozenset({b"CLIENT", b"CONFIG", b"OBJECT", b"MEMORY", b"SLOWLOG", b"LATENCY", b"XINFO", b"XGROUP",
                         b"SCRIPT", b"FUNCTION", b"ACL", b"CLUSTER", b"DEBUG", b"MODULE", b"PUBSUB", b"COMMAND"})
_CHANNEL_COMMANDS = frozenset({b"PUBLISH", b"SPUBLISH", b"SUBSCRIBE", b"SSUBSCRIBE", b"UNSUBSCRIBE",
                               b"SUNSUBSCRIBE", b"PSUBSCRIBE", b"PUNSUBSCRIBE"})
_SCRIPT_BODIES = frozenset({b"EVAL", b"EVAL_RO"})
_SCRIPT_BY_SHA = frozenset({b"EVALSHA", b"EVALSHA_RO"})
_FUNCTIONS = frozenset({b"FCALL", b"FCALL_RO", b"FUNCTION"})
SCRIPT_COMMANDS = _SCRIPT_BODIES | _SCRIPT_BY_SHA | _FUNCTIONS | {b"SCRIPT"}
# Commands that move keys between servers: even a namespaced key would leave the user's server (or arrive on it
# from another, as a cluster's resharding does).
_MOVES = frozenset({b"MIGRATE", b"RESTORE-ASKING"})


def command_name(args: list[bytes]) -> bytes:
    """`SET`, or `CLIENT PAUSE` for a container command: the name the rules are written in."""
    name = args[0].upper()
    if name in _CONTAINERS and len(args) > 1:
        return name + b" " + args[1].upper()
    return name


@dataclass
class Gate:
    """What may be sent to a server redisprobe does not own.

    `scripts` is True when both the scenario (`allow_scripts = true`) and the user (`--allow-writes`) said yes.
    """

    scripts: bool = False
    namespace: bytes = NAMESPACE
    _loaded: dict[str, bytes] = field(default_factory=dict)  # sha1 -> a script body sent by EVAL or SCRIPT LOAD

    def refusal(self, args: list[bytes]) -> str | None:
        """Why `args` must not be sent (one sentence), or None when it may."""
        if not args:
            return None
        name = command_name(args)
        if name in CONNECTION_ONLY:
            return None
        base = args[0].upper()
        if base in SCRIPT_COMMANDS:
            return self._script_refusal(name, args)
        if base in _CHANNEL_COMMANDS:
            channels = args[1:2] if base in (b"PUBLISH", b"SPUBLISH") else args[1:]
            outside = [channel for channel in channels if not channel.startswith(self.namespace)]
            return _outside(name, outside, "channel") if outside else None
        if base in _MOVES:
            return (f"{_shown(name)} moves keys between servers; redisprobe does not send it to a server it does "
                    "not own")
        spec = lookup(base)
        if spec.kind == SCAN:
            return self._scan_refusal(name, args)
        if base in _CONTAINERS:
            keys = _container_keys(name, args)
        elif base == b"WATCH":
            keys = args[1:]
        else:
            keys = spec.keys(args) + _sort_patterns(base, args)
        if not keys:
            return (f"{_shown(name)} is administrative or acts on the whole server; redisprobe does not send it to "
                    "a server it does not own")
        outside = [key for key in keys if not key.startswith(self.namespace)]
        if outside:
            return _outside(name, outside, "key")
        return None

    def _scan_refusal(self, name: bytes, args: list[bytes]) -> str | None:
        from redisprobe.semantics.command_table import scan_pattern

        pattern = scan_pattern(args)
        if pattern is None or not pattern.startswith(self.namespace):
            return (f"{_shown(name)} without a pattern under {self.namespace.decode()} would read the names "
                    "of your keys")
        return None

    def _script_refusal(self, name: bytes, args: list[bytes]) -> str | None:
        if args[0].upper() in _FUNCTIONS:
            return (f"{_shown(name)}: functions live in the server's function library, outside redisprobe's "
                    "namespace; they run on the sandbox only")
        if not self.scripts:
            return (f"{_shown(name)} runs a script, which could touch any key: scripts run on your server only "
                    "when the scenario sets allow_scripts = true and you pass --allow-writes")
        if name == b"SCRIPT LOAD":  # loading runs nothing: the body is checked with each EVALSHA's own keys
            if len(args) > 2:
                self._loaded[hashlib.sha1(args[2]).hexdigest()] = args[2]
            return None
        if name.startswith(b"SCRIPT"):
            return f"{_shown(name)} acts on the whole server's script cache"
        numkeys_ok, keys, argv = _script_arguments(args)
        if not numkeys_ok:
            return f"{_shown(name)}: cannot read the number of keys"
        outside = [key for key in keys if not key.startswith(self.namespace)]
        if outside:
            return _outside(name, outside, "key")
        if args[0].upper() in _SCRIPT_BY_SHA:
            body = self._loaded.get(args[1].decode("latin-1").lower()) if len(args) > 1 else None
            if body is None:
                return (f"{_shown(name)} runs a script this run did not load, so what it touches cannot be "
                        "checked")
            return script_refusal(body, keys, argv, self.namespace)
        body = args[1] if len(args) > 1 else b""
        self._loaded[hashlib.sha1(body).hexdigest()] = body  # EVAL caches it: a later EVALSHA may name it
        return script_refusal(body, keys, argv, self.namespace)


def _container_keys(name: bytes, args: list[bytes]) -> list[bytes]:
    """Keys of the container commands that have any (OBJECT ENCODING k, MEMORY USAGE k, XINFO STREAM k...)."""
    if name.startswith((b"OBJECT ", b"XINFO ", b"XGROUP ")) or name == b"MEMORY USAGE":
        return args[2:3]
    return []


def _sort_patterns(base: bytes, args: list[bytes]) -> list[bytes]:
    """SORT's BY and GET patterns name other keys it reads (`#` is the element itself, `nosort` no key)."""
    if base not in (b"SORT", b"SORT_RO"):
        return []
    return [args[index + 1] for index in range(2, len(args) - 1)
            if args[index].upper() in (b"BY", b"GET") and args[index + 1] not in (b"#", b"nosort", b"NOSORT")]


def _outside(name: bytes, outside: list[bytes], what: str) -> str:
    shown = ", ".join(repr(k.decode("utf-8", "backslashreplace"))[1:-1][:60] for k in outside[:3])
    more = f" and {len(outside) - 3} more" if len(outside) > 3 else ""
    return (f"{_shown(name)} touches the {what} {shown}{more}, outside redisprobe's namespace "
            f"({NAMESPACE.decode()})")


def _shown(name: bytes) -> str:
    return name.decode("utf-8", "backslashreplace")[:40]


def _script_arguments(args: list[bytes]) -> tuple[bool, list[bytes], list[bytes]]:
    """EVAL body numkeys k... a...: (numkeys readable, keys, argv)."""
    try:
        count = int(args[2])
    except (IndexError, ValueError):
        return False, [], []
    if count < 0 or 3 + count > len(args):
        return False, [], []
    return True, args[3:3 + count], args[3 + count:]


# -- reading a Lua script ----------------------------------------------------------------------------------------

_CALL = re.compile(rb"\b(?:redis|server)\s*\.\s*p?call\s*\(")
_ANY_CALL_ACCESS = re.compile(rb"\b(?:redis|server)\s*(?:\.\s*p?call\b|\[)")
_DYNAMIC = re.compile(rb"\b(?:loadstring|load|dofile|getfenv|setfenv|rawget|rawset|_G|debug|setmetatable)\b")
_STRING = re.compile(rb"'((?:[^'\\\n]|\\.)*)'|\"((?:[^\"\\\n]|\\.)*)\"")
_INDEXED = re.compile(rb"^(KEYS|ARGV)\s*\[\s*(\d+)\s*\]$")
_NUMBER = re.compile(rb"^-?\d+(?:\.\d+)?$")
_UNKNOWN = object()
COMPUTED = b"<computed at run time>"


def script_refusal(body: bytes, keys: list[bytes], argv: list[bytes], namespace: bytes = NAMESPACE) -> str | None:
    """Why a Lua script must not run on a user's server, or None when every command it can send is known from
    its text (a literal command name; keys as KEYS[n], ARGV[n] or literals) and passes the gate."""
    code = _without_comments(body)
    if _DYNAMIC.search(code):
        return "the script uses Lua's dynamic features (load, _G, rawget...), so what it runs cannot be checked"
    calls = list(_CALL.finditer(code))
    if len(calls) != len(_ANY_CALL_ACCESS.findall(code)):
        return "the script calls Redis through something other than redis.call(...), which cannot be checked"
    for match in calls:
        raw_args = _call_arguments(code, match.end())
        if raw_args is None:
            return "a redis.call(...) in the script cannot be read"
        values = [_lua_value(arg, keys, argv) for arg in raw_args]
        if not values or not isinstance(values[0], bytes):
            return "the script computes a command name, so what it runs cannot be checked"
        if lookup(values[0]).keys_fn is not None and any(v is _UNKNOWN for v in values):
            return (f"in the script: {values[0].decode('latin-1').upper()} takes a number of keys computed at run "
                    "time, which cannot be checked")
        # an argument computed at run time stands as a name outside the namespace: a key there is refused
        reason = Gate(namespace=namespace).refusal([v if isinstance(v, bytes) else COMPUTED for v in values])
        if reason is not None:
            return f"in the script: {reason}"
    return None


def _without_comments(code: bytes) -> bytes:
    """The script with `--` comments blanked (strings kept: a `--` inside a string is not a comment)."""
    out = bytearray()
    index = 0
    while index < len(code):
        char = code[index:index + 1]
        if char in (b"'", b'"'):
            match = _STRING.match(code, index)
            end = match.end() if match else len(code)
            out += code[index:end]
            index = end
        elif code.startswith(b"--", index):
            end = code.find(b"\n", index)
            index = len(code) if end < 0 else end
        else:
            out += char
            index += 1
    return bytes(out)


def _call_arguments(code: bytes, start: int) -> list[bytes] | None:
    """The comma-separated arguments of a call whose `(` ends just before `start`, as source text."""
    depth = 0
    args: list[bytes] = []
    current = bytearray()
    index = start
    while index < len(code):
        char = code[index:index + 1]
        if char in (b"'", b'"'):
            match = _STRING.match(code, index)
            if match is None:
                return None
            current += match.group(0)
            index = match.end()
            continue
        if char in (b"(", b"[", b"{"):
            depth += 1
        elif char in (b")", b"]", b"}"):
            if depth == 0:
                args.append(bytes(current).strip())
                return [arg for arg in args if arg] if any(args) else []
            depth -= 1
        elif char == b"," and depth == 0:
            args.append(bytes(current).strip())
            current = bytearray()
            index += 1
            continue
        current += char
        index += 1
    return None


def _lua_value(expr: bytes, keys: list[bytes], argv: list[bytes]) -> object:
    """A literal string or number, KEYS[n] or ARGV[n] resolved against the call's arguments; else unknown."""
    match = _STRING.fullmatch(expr)
    if match:
        text = match.group(1) if match.group(1) is not None else match.group(2)
        if b"\\" in text:
            return _UNKNOWN
        return text
    if _NUMBER.match(expr):
        return expr
    indexed = _INDEXED.match(expr)
    if indexed:
        values = keys if indexed.group(1) == b"KEYS" else argv
        position = int(indexed.group(2))
        return values[position - 1] if 1 <= position <= len(values) else _UNKNOWN
    return _UNKNOWN
