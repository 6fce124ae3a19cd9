"""Built-in actor programs for behaviour too rich for plain steps: the batching api and its processor.

They mirror the incident redisprobe was born from: an api appends bursts of messages to batch keys and sets
a TTL on the first message, refreshing it on every later one; a processor scans for batches and processes
(reads, then deletes) those that have been quiet for a while. Parameters choose the refresh method and
inject the defects of the rule registry, so each root cause can be seen on a real server.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redisprobe.producers.actors.steps import StepRunner

REFRESH_METHODS = ("expire", "pexpire", "set-ex", "set-keepttl")


def _b(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def batch_api(runner: StepRunner, params: dict[str, Any]) -> None:
    """Append `messages` messages to each of `batches` batch lists, `spacing` seconds apart.

    Each batch is a list `{ns}batch:{n}` plus its last-message time in `{ns}batch:{n}:last`. The TTL is set
    with the first message and refreshed with every later one, by `refresh` (EXPIRE, PEXPIRE, SET EX or
    SET KEEPTTL). `bug` bends one of those steps the way its rule's injection describes.
    """
    ns = str(params["ns"])
    ttl = float(params.get("ttl", 2))
    messages = int(params.get("messages", 5))
    spacing = float(params.get("spacing", 0.2))
    batches = int(params.get("batches", 1))
    refresh = str(params.get("refresh", "expire"))
    bug = str(params.get("bug", ""))
    ttl_s = max(1, round(ttl))
    ttl_ms = int(ttl * 1000)
    for index in range(messages):
        for batch in range(batches):
            key = f"{ns}batch:{batch}".encode()
            last = key + b":last"
            first = index == 0
            runner.command([b"RPUSH", key, _b(f"message-{index}")])
            if bug == "ttl-refresh-missed" and not first:
                runner.command([b"EXPIRE", f"{ns}batch_{batch}".encode(), _b(ttl_s)])  # a near-miss name
            elif bug == "recreated-without-ttl" and not first:
                pass  # the TTL is set on the first message only
            elif bug == "ttl-unit-mismatch":
                runner.command([b"PEXPIRE", key, _b(ttl_s)])  # seconds given to a milliseconds command
            elif bug == "expire-in-past" and index == messages // 2:
                runner.command([b"EXPIREAT", key, _b(int(time.time()) - 3600)])  # a skewed client clock
            elif refresh == "pexpire":
                runner.command([b"PEXPIRE", key, _b(ttl_ms)])
            else:
                runner.command([b"EXPIRE", key, _b(ttl_s)])
            now_ms = _b(int(time.time() * 1000))
            if bug == "deleted-by-client" and first:
                time.sleep(spacing / 2)  # the api records the batch's time a moment after the push
            if bug == "ttl-cleared-by-set" and not first:
                runner.command([b"SET", last, now_ms])  # no EX / KEEPTTL: the TTL is dropped
            elif refresh == "set-keepttl" and not first:
                runner.command([b"SET", last, now_ms, b"KEEPTTL"])
            elif refresh == "pexpire":
                runner.command([b"SET", last, now_ms, b"PX", _b(ttl_ms)])
            else:
                runner.command([b"SET", last, now_ms, b"EX", _b(ttl_s)])
        time.sleep(spacing)


def batch_processor(runner: StepRunner, params: dict[str, Any]) -> None:
    """Scan for batches every `poll` seconds; process (read, then delete) those quiet for `quiet` seconds.

    `policy`: `quiet` (healthy), `read-only` (processes each ready batch once and leaves its removal to the
    TTL) or `missing-is-ready` (a batch with no last-message time is treated as ready at once: the incident).
    `match` overrides the SCAN pattern (a prefix mismatch), `db` selects another db. Runs for `duration` seconds.
    """
    ns = str(params["ns"])
    quiet = float(params.get("quiet", 0.5))
    poll = float(params.get("poll", 0.05))
    duration = float(params.get("duration", 3))
    policy = str(params.get("policy", "quiet"))
    pattern = _b(params.get("match") or f"{ns}batch:*")
    if "db" in params:
        runner.command([b"SELECT", _b(params["db"])])
    deadline = time.monotonic() + duration
    done: set[bytes] = set()
    while time.monotonic() < deadline:
        for key in _scan_all(runner, pattern):
            last, _ = runner.command([b"GET", key + b":last"], record=False)
            ready = (last is None and policy == "missing-is-ready") or (
                last is not None and time.time() * 1000 - int(last) >= quiet * 1000)
            if ready and policy == "read-only":
                if key not in done:
                    runner.command([b"LRANGE", key, b"0", b"-1"])
                    done.add(key)
            elif ready:
                runner.command([b"LRANGE", key, b"0", b"-1"])
                runner.command([b"DEL", key, key + b":last"])
        time.sleep(poll)


def _primaries(runner: StepRunner) -> list[Any]:
    """Where a keyless command goes: every primary for a cluster client (as its scan_iter and flushdb do), else
    the one connection (None)."""
    return list(runner.router.primaries()) if runner.router is not None else [None]


def _scan_all(runner: StepRunner, pattern: bytes, *, record: bool = False) -> list[bytes]:
    """Every key matching `pattern`: SCAN pages until the cursor comes back to 0 (a busy server needs many), on
    every primary of a cluster."""
    found: list[bytes] = []
    for node in _primaries(runner):
        cursor = b"0"
        while True:
            reply, _ = runner.command([b"SCAN", cursor, b"MATCH", pattern, b"COUNT", b"1000"], record=record,
                                      node=node)
            if not reply:
                break
            cursor = reply[0]
            found += [k for k in reply[1] if not k.endswith(b":last")]
            if cursor in (b"0", 0):
                break
    return found


def _batches_present(runner: StepRunner, ns: str, timeout: float = 15.0) -> None:
    """Wait (unrecorded polls) until the api has created a batch: acting on nothing proves nothing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not _scan_all(runner, f"{ns}batch:*".encode()):
        time.sleep(0.01)


def janitor(runner: StepRunner, params: dict[str, Any]) -> None:
    """Another process that touches the batches `delay` seconds after they appear: shortens TTLs, renames, or
    flushes."""
    ns = str(params["ns"])
    _batches_present(runner, ns)
    time.sleep(float(params.get("delay", 0.3)))
    action = str(params.get("action", "shorten"))
    if action == "flush":
        for node in _primaries(runner):
            runner.command([b"FLUSHDB"], node=node)
        return
    for key in _scan_all(runner, f"{ns}batch:*".encode(), record=True):
        if action == "shorten":
            runner.command([b"EXPIRE", key, _b(int(params.get("ttl", 1)))])
        elif action == "rename":
            archive = key.replace(b"batch:", b"archive:")
            if runner.router is not None:  # on a cluster, RENAME stays in one slot: the hash tag is the old name
                archive = key.partition(b"batch:")[0] + b"archive:{" + key + b"}"
            runner.command([b"RENAME", key, archive])
            runner.command([b"EXPIRE", archive, b"5"])


def filler(runner: StepRunner, params: dict[str, Any]) -> None:
    """Fill memory with long-lived values so a small maxmemory with volatile-ttl evicts the short-TTL batches.

    `hold`: then keep writing a small value every 5 ms for that many seconds, as an audit log or a cache that never
    stops growing does: under noeviction the last bytes fill up, and the server refuses every write after."""
    ns = str(params["ns"])
    _batches_present(runner, ns)
    time.sleep(float(params.get("delay", 0.3)))
    blob = b"x" * int(params.get("size", 65536))
    count = int(params.get("count", 64))
    for index in range(count):
        runner.command([b"SET", f"{ns}filler:{index}".encode(), blob, b"EX", b"30"], record=index == 0)
    deadline = time.monotonic() + float(params.get("hold", 0))
    index = count
    while time.monotonic() < deadline:
        runner.command([b"SET", f"{ns}filler:{index}".encode(), blob[:256], b"EX", b"30"], record=False)
        index += 1
        time.sleep(0.005)


PROGRAMS = {"batch-api": batch_api, "batch-processor": batch_processor, "janitor": janitor, "filler": filler}

NUMBER, INTEGER, STRING = "number", "integer", "string"
PARAMS: dict[str, dict[str, tuple[str, tuple[str, ...] | None]]] = {
    "batch-api": {
        "ns": (STRING, None), "ttl": (NUMBER, None), "messages": (INTEGER, None), "spacing": (NUMBER, None),
        "batches": (INTEGER, None), "refresh": (STRING, REFRESH_METHODS),
        "bug": (STRING, None),  # the values are the causes whose injection names this program (the rule registry)
    },
    "batch-processor": {
        "ns": (STRING, None), "quiet": (NUMBER, None), "poll": (NUMBER, None), "duration": (NUMBER, None),
        "policy": (STRING, ("quiet", "missing-is-ready", "read-only")), "match": (STRING, None), "db": (INTEGER, None),
    },
    "janitor": {"ns": (STRING, None), "delay": (NUMBER, None), "action": (STRING, ("shorten", "rename", "flush")),
                "ttl": (INTEGER, None)},
    "filler": {"ns": (STRING, None), "delay": (NUMBER, None), "size": (INTEGER, None), "count": (INTEGER, None),
               "hold": (NUMBER, None)},
}
"""Each program's parameters: name -> (type, allowed values or None); the scenario loader checks files with it."""
