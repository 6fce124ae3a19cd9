"""CONFIG that redisprobe changed on a user's server, written down before the change and crossed out once undone.

A run restores what it changed on its way out, Ctrl-C included. A run killed with -9, or one that gave up on a
server that stopped answering, cannot: its entry stays here (a small JSON file in the user's state folder), and
the next run that reaches the same server (same address and run_id) restores the original value and says so.
An entry whose value was changed again since is dropped with a warning, never forced back.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:
    import redis

    from redisprobe.targets.url import Target

STATE_ENV = "REDISPROBE_STATE_DIR"
_FILE = "config-changes.json"


def state_dir() -> Path:
    """$REDISPROBE_STATE_DIR, else $XDG_STATE_HOME/redisprobe, else ~/.local/state/redisprobe."""
    chosen = os.environ.get(STATE_ENV)
    if chosen:
        return Path(chosen)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "redisprobe"


@dataclass(frozen=True)
class Change:
    """One CONFIG parameter set on one server by one redisprobe process."""

    id: str
    address: str  # host:port or unix socket path
    run_id: str  # the server instance: after a restart, the change is gone with it
    parameter: str
    original: str
    ours: str
    pid: int
    started: float  # the owner's start time (a reused pid is another process)
    at: float


def address_of(target: Target) -> str:
    if target.unix_path:
        return target.unix_path
    host = (target.host or "").lower()
    return f"{'127.0.0.1' if host in ('localhost', '::1', '') else host}:{target.port}"


@contextlib.contextmanager
def _ledger() -> Iterator[list[dict[str, Any]]]:
    """The entries, locked against other redisprobe processes; written back when the block ends."""
    folder = state_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / _FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    with os.fdopen(fd, "r+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            entries = json.loads(handle.read() or "[]")
        except ValueError:
            entries = []
        entries = [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []
        yield entries
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(entries, indent=1))


def record(target: Target, run_id: str, parameter: str, original: str, ours: str) -> str | None:
    """Write down a change about to be made; returns its id (None when the state folder is not writable: the
    change is still restored on the way out, only a killed run cannot be undone later)."""
    me = psutil.Process()
    change = Change(id=uuid.uuid4().hex, address=address_of(target), run_id=run_id, parameter=parameter,
                    original=original, ours=ours, pid=me.pid, started=me.create_time(), at=time.time())
    try:
        with _ledger() as entries:
            entries.append(asdict(change))
    except OSError:
        return None
    return change.id


def forget(change_id: str | None) -> None:
    """Cross out a change that was undone (or never made)."""
    if change_id is None:
        return
    with contextlib.suppress(OSError), _ledger() as entries:
        entries[:] = [e for e in entries if e.get("id") != change_id]


def _owner_gone(entry: dict[str, Any]) -> bool:
    try:
        process = psutil.Process(int(entry.get("pid", 0)))
        return abs(process.create_time() - float(entry.get("started", 0))) > 1.0 or \
            process.status() == psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, ValueError):
        return True
    except psutil.Error:
        return False


def undo_left_changes(target: Target, client: redis.Redis) -> list[str]:
    """Restore what a redisprobe process that is gone left changed on this server; one line per thing done."""
    import redis.exceptions as rex

    address = address_of(target)
    try:
        with _ledger() as entries:
            mine = [e for e in entries if e.get("address") == address and _owner_gone(e)]
            if not mine:
                return []
            entries[:] = [e for e in entries if e not in mine]
    except OSError:
        return []
    said: list[str] = []
    try:
        run_id = str(client.info("server").get("run_id", ""))
    except (rex.RedisError, OSError):
        with contextlib.suppress(OSError), _ledger() as entries:
            entries.extend(mine)  # try again next time
        return said
    for entry in mine:
        parameter, original, ours = str(entry["parameter"]), str(entry["original"]), str(entry["ours"])
        who = f"redisprobe pid {entry.get('pid')}, which ended without restoring it"
        if entry.get("run_id") and entry.get("run_id") != run_id:
            continue  # the server restarted since: the change went with the old instance
        try:
            current = _config_value(client.config_get(parameter))
            if not _same(parameter, current, ours):
                said.append(f"left {parameter} on {target.label} as it is ({current!r}): {who} had set it to "
                            f"{ours!r} over {original!r}, and it was changed again since")
                continue
            client.config_set(parameter, original)
        except (rex.RedisError, OSError) as exc:
            said.append(f"could not restore {parameter} on {target.label} to {original!r} ({who}): {exc}; run: "
                        f"CONFIG SET {parameter} {original!r}")
            continue
        said.append(f"restored {parameter} on {target.label} to {original!r} (set to {ours!r} by {who})")
    return said


def _same(parameter: str, one: str, other: str) -> bool:
    """Whether two values of `parameter` mean the same (the server spells notify-keyspace-events its own way)."""
    if parameter == "notify-keyspace-events":
        from redisprobe.producers.observers.keyspace import expand_flags

        return expand_flags(one) == expand_flags(other)
    return one == other


def _config_value(reply: Any) -> str:
    value = next(iter(reply.values()), "") if isinstance(reply, dict) else ""
    return value.decode() if isinstance(value, bytes) else str(value or "")
