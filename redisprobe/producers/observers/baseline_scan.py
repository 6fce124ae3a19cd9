"""The baseline: which keys already existed when the capture began, so a read of one is not taken for a miss.

A capture starts in the middle of an application's life: most keys were made before anyone attached. Right after
MONITOR is on, we SCAN (for the `--keys` patterns, else every key) and pipeline TYPE and PTTL, read-only, bounded
in keys and in time. Each db becomes one `trace.Baseline`; a key the baseline does not cover keeps an unknown state.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import redis
import redis.exceptions as rex

from redisprobe import trace
from redisprobe.producers.processes.pidmap import format_addr, normalize_ip
from redisprobe.targets.url import Target

CONNECTION_NAME = "redisprobe:observer:baseline"
MAX_KEYS = 10_000
"""Keys a baseline records at most (over every db); beyond, the state of the others stays unknown."""
MAX_SECONDS = 2.0
"""Time a baseline takes at most: it must not delay the capture, and its events must stay within the trace's
re-ordering window."""
_SCAN_COUNT = 1000
_PIPELINE = 500
_DROPPED = (rex.RedisError, OSError)


@dataclass
class BaselineResult:
    events: list[trace.Baseline]
    note: str  # one line for the output: how many keys, complete or cut, and why
    level: str = "info"


def take_baseline(target: Target, patterns: tuple[str, ...] = (), *, max_keys: int = MAX_KEYS,
                  max_seconds: float = MAX_SECONDS, timeout: float | None = None) -> BaselineResult:
    """SCAN + TYPE/PTTL of the keys that exist now (never raises: a refusal is said in the note)."""
    where = target.label
    if target.unix_path:  # every unix-socket client is `unix:<path>` in MONITOR: our reads would look like theirs
        return BaselineResult([], f"no baseline of {where}: on a unix socket our SCAN could not be told from the "
                                  "application's commands; keys made before the capture have an unknown state",
                              "warning")
    client = None
    peer = ""
    started = time.time()
    try:
        client, peer = _connect(target, timeout or max_seconds + 1.0)
        dbs = sorted({*_dbs(client), target.db})  # the URL's db even when empty: the baseline says so
        return _scan_dbs(client, target, dbs, patterns, peer, max_keys, max_seconds, started)
    except _DROPPED as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        # An empty, incomplete baseline still names our connection, whose SCAN lines are then not the app's.
        events = [trace.Baseline(t=started, until=time.time(), db=target.db, keys=[], types=[], expires_at=[],
                                 patterns=list(patterns), complete=False, reason=text, peer=peer,
                                 target=target.label)] if peer else []
        return BaselineResult(events, f"no baseline of {where} ({text}): keys made before the capture have an "
                                      "unknown state", "warning")
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()


def _connect(target: Target, timeout: float) -> tuple[redis.Redis, str]:
    """One connection of our own (named when ACLs allow), and its address as MONITOR shows it.

    No PING: every command we send shows in the capture, so the first one (CLIENT INFO) is the check."""
    client = target.connect(name=CONNECTION_NAME, timeout=timeout, protocol=2, single_connection_client=True)
    try:
        return client, str(client.client_info().get("addr", ""))
    except rex.ResponseError:  # NOPERM on CLIENT SETNAME or CLIENT INFO: unnamed, and our address from the socket
        client.close()
    client = target.connect(timeout=timeout, protocol=2, single_connection_client=True)
    client.execute_command("SELECT", target.db)
    sock = client.connection._sock  # type: ignore[union-attr]
    host, port = sock.getsockname()[:2]
    return client, format_addr(normalize_ip(host), port)


def _dbs(client: object) -> list[int]:
    """The dbs that hold keys (INFO keyspace), in order."""
    keyspace = client.info("keyspace")  # type: ignore[attr-defined]
    found = []
    for name in keyspace:
        if str(name).startswith("db") and str(name)[2:].isdigit():
            found.append(int(str(name)[2:]))
    return sorted(found)


def _scan_dbs(client: object, target: Target, dbs: list[int], patterns: tuple[str, ...], peer: str,
              max_keys: int, max_seconds: float, started: float) -> BaselineResult:
    deadline = time.monotonic() + max_seconds
    events: list[trace.Baseline] = []
    total = matched = 0
    cut = ""
    for db in dbs:
        t = time.time() if events else started  # the first from before we connected: our handshake is ours too
        client.execute_command("SELECT", db)  # type: ignore[attr-defined]
        keys, cut = _scan(client, patterns, max_keys - total, deadline)
        covers = list(patterns)
        matched += len(keys)
        if patterns and not cut:  # room left: the other keys too, so a finding outside the patterns has them
            room = (max_keys - total - len(keys)) // 2  # half: later dbs' pattern keys come first
            everything, over = _scan(client, (), room + len(keys), deadline)
            if not over:
                covers = []
            keys = list(dict.fromkeys([*keys, *everything]))[:len(keys) + room]
        types, expires = _describe(client, keys, deadline)
        if len(types) < len(keys):
            keys = keys[:len(types)]
            cut = cut or "time"
        total += len(keys)
        events.append(trace.Baseline(t=t, until=time.time(), db=db, keys=keys, types=types, expires_at=expires,
                                     patterns=covers, complete=not cut, reason=_why(cut, max_keys,
                                                                                             max_seconds),
                                     peer=peer, target=target.label))
        if cut:
            break
    where = f"{target.label} ({', '.join(f'db {db}' for db in dbs)})" if dbs else target.label
    head = f"baseline of {where} at capture start:"
    took = time.time() - started
    if cut:
        what = f"{_keys(total)} matching {', '.join(patterns)}" if patterns else _keys(total)
        return BaselineResult(events, f"{head} {what} in {took:.2f}s, cut by {_why(cut, max_keys, max_seconds)}; "
                                      "keys it did not reach have an unknown state before the capture", "warning")
    if not patterns or all(not event.patterns for event in events):
        return BaselineResult(events, f"{head} {_keys(total)} existed (complete, {took:.2f}s)")
    return BaselineResult(events, f"{head} {_keys(matched)} matching {', '.join(patterns)} existed (complete, "
                                  f"{took:.2f}s), and {_keys(total - matched)} of the others (not all: the rest "
                                  "have an unknown state before the capture)")


def _keys(count: int) -> str:
    return f"{count:,} key" + ("" if count == 1 else "s")


def _why(cut: str, max_keys: int, max_seconds: float) -> str:
    if cut == "keys":
        return f"the {max_keys:,}-key bound"
    if cut == "time":
        return f"the {max_seconds:g}s time bound"
    return ""


def _scan(client: object, patterns: tuple[str, ...], room: int, deadline: float) -> tuple[list[bytes], str]:
    """Distinct keys (every key, or those matching a pattern) up to `room` of them; and why it stopped early."""
    found: dict[bytes, None] = {}
    for pattern in patterns or (None,):
        if pattern is not None and not any(ch in pattern for ch in "*?[\\"):
            if client.exists(pattern):  # type: ignore[attr-defined]  # a plain name: one lookup, no SCAN
                found[pattern.encode()] = None
            if len(found) > room:
                return list(found)[:room], "keys"
            continue
        cursor = 0
        while True:
            args: list[object] = ["SCAN", cursor, "COUNT", _SCAN_COUNT]
            if pattern is not None:
                args[2:2] = ["MATCH", pattern]
            cursor_raw, batch = client.execute_command(*args)  # type: ignore[attr-defined]
            for key in batch:
                found[key] = None
            if len(found) > room:
                return list(found)[:room], "keys"
            cursor = int(cursor_raw)
            if cursor == 0:
                break
            if time.monotonic() > deadline:
                return list(found), "time"
    return list(found), ""


def _describe(client: object, keys: list[bytes], deadline: float) -> tuple[list[str], list[float | None]]:
    """TYPE and PTTL of each key, pipelined; stops at the deadline (fewer entries than keys)."""
    types: list[str] = []
    expires: list[float | None] = []
    for start in range(0, len(keys), _PIPELINE):
        if time.monotonic() > deadline:
            break
        chunk = keys[start:start + _PIPELINE]
        conn = client.connection  # type: ignore[attr-defined]  # the scanning connection: its db, its peer
        commands = [(name, key) for key in chunk for name in ("TYPE", "PTTL")]
        conn.send_packed_command(conn.pack_commands(commands))
        replies = []
        for _ in commands:
            try:
                replies.append(conn.read_response())
            except rex.ResponseError as exc:
                replies.append(exc)
        now = time.time()
        for index in range(len(chunk)):
            kind, pttl = replies[2 * index], replies[2 * index + 1]
            types.append(kind.decode() if isinstance(kind, bytes) else "?" if isinstance(kind, Exception)
                         else str(kind))
            expires.append(now + pttl / 1000 if isinstance(pttl, int) and pttl >= 0 else None)
    return types, expires

