"""Refusals sampler: what the server refused during a capture, from the server's own counters.

MONITOR never shows a command the server refused. Checked on Redis 7.0.15: a SET refused with OOM (maxmemory
with noeviction), with READONLY (a write to a replica), with MISCONF (stop-writes-on-bgsave-error after a failed
BGSAVE) or with NOPERM (an ACL user without the command) is absent from MONITOR, while the same server's accepted
commands, and a lua script's accepted writes, are there. A refused command does set CLIENT LIST's `cmd=`, and ACL
LOG's client-info names the connection; under MISCONF the server refuses PING too.

Such a refusal is often exactly why "B can't see A's key", so this observer samples, read-only, every `interval`
seconds and once at start and at stop: INFO errorstats and commandstats (`rejected_calls`, `failed_calls`), new
ACL LOG entries (the server names the client), and when refusals grew, CLIENT LIST's connections whose last
command is one refused more; plus the settings that explain a refusal (INFO memory/replication/persistence and
CONFIG GET). Whatever the server does not let us run is skipped with one note, never an error.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import redis
import redis.exceptions as rex
from redis.backoff import NoBackoff
from redis.retry import Retry

from redisprobe import trace
from redisprobe.analysis.connection_roles import OBSERVER_PREFIX
from redisprobe.producers.observers.clients import connect_observer, parse_client_list
from redisprobe.producers.observers.protocol import Sampler
from redisprobe.targets.url import Target, connect_timeout

CONNECTION_NAME = "redisprobe:observer:refusals"
CONFIG_SETTINGS = ("maxmemory", "maxmemory-policy", "replica-read-only", "stop-writes-on-bgsave-error",
                   "min-replicas-to-write")
INFO_SETTINGS = ("used_memory", "maxmemory", "maxmemory_policy", "role", "master_host", "master_port",
                 "rdb_last_bgsave_status", "rdb_last_bgsave_time_sec")
ACL_LOG_COUNT = 128
"""ACL LOG entries read per sample (the newest first); the server keeps acllog-max-len (128 by default)."""

_DROPPED = (rex.ConnectionError, rex.TimeoutError, OSError)


def info_counts(info: dict[str, Any]) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """INFO errorstats + commandstats (as redis-py parses them) -> (errors, rejected_calls, failed_calls);
    commands with neither count are left out."""
    errors: dict[str, int] = {}
    rejected: dict[str, int] = {}
    failed: dict[str, int] = {}
    for name, value in info.items():
        if not isinstance(value, dict):
            continue
        if name.startswith("errorstat_"):
            errors[name[len("errorstat_"):]] = _int(value.get("count"))
        elif name.startswith("cmdstat_"):
            command = name[len("cmdstat_"):]
            if _int(value.get("rejected_calls")):
                rejected[command] = _int(value.get("rejected_calls"))
            if _int(value.get("failed_calls")):
                failed[command] = _int(value.get("failed_calls"))
    return errors, rejected, failed


def acl_entry(raw: Any) -> dict[str, str]:
    """One ACL LOG entry as flat text fields; the client's `id`, `addr`, `name` and `user` from its client-info."""
    if isinstance(raw, list | tuple):  # a RESP2 flat list: key, value, key, value...
        raw = dict(zip(raw[::2], raw[1::2], strict=False))
    entry: dict[str, str] = {}
    for key, value in (raw or {}).items():
        key = _text(key)
        if key == "client-info":
            info = value if isinstance(value, dict) else (parse_client_list(_text(value)) or [{}])[0]
            for field in ("id", "addr", "name", "user", "cmd"):
                if field in info:
                    entry[f"client-{field}"] = _text(info[field])
        else:
            entry[key] = _text(value)
    return entry


def acl_identity(entry: dict[str, str]) -> tuple[str, ...]:
    """What the server groups repeated ACL LOG entries by (before 7.2 there is no entry-id)."""
    return (entry.get("reason", ""), entry.get("context", ""), entry.get("object", ""), entry.get("username", ""))


class RefusalSampler(Sampler):
    """Samples the server's refusal counters in a background thread; emits `trace.Refusals`.

    A sample is emitted at start, at stop, and whenever a count changed or ACL LOG has new entries, so a healthy
    capture adds two small events to the trace.
    """

    BLIND_SPOT = ("which client a refused command came from: the server only counts refusals (ACL LOG names the "
                  "NOPERM ones)")

    def __init__(self, target: Target, emit: Callable[[trace.Event], None], *, interval: float = 0.5,
                 label: str = "", timeout: float | None = None) -> None:
        self.target = target
        self.where = f"{label} ({target.label})" if label else target.label
        self.timeout = connect_timeout() if timeout is None else timeout
        super().__init__(emit, interval=interval, join_timeout=self.timeout + interval + 1.0)
        self._client: redis.Redis | None = None
        self._last: tuple[dict[str, int], dict[str, int], dict[str, int]] | None = None
        self._acl: dict[tuple[str, ...], int] | None = None  # identity -> count summed over its entries
        self._acl_own: dict[tuple[str, ...], int] = {}  # the same for our own observers' connections
        self._can = {"info": True, "config": True, "acl": True, "list": True}
        self._own_id: int | None = None
        self._own_errors: dict[str, int] = {}  # refusals of redisprobe's own commands, taken out of the counts
        self._own_rejected: dict[str, int] = {}
        self._later: list[tuple[str, str]] = []  # our refusals after this sample's INFO: out of the next one's

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> RefusalSampler:
        """The first sample now (the baseline), then sample in the background. Never raises for the server's
        sake: an unreachable or refusing server is a note (the other observers say what they lost)."""
        try:
            self._client, _named = connect_observer(self.target, CONNECTION_NAME, timeout=self.timeout,
                                                    retry=Retry(NoBackoff(), 0))
            with contextlib.suppress(rex.ResponseError):
                self._own_id = int(self._client.client_id())
            self._sample(final=False)
        except (rex.RedisError, OSError) as exc:
            self._note(f"cannot sample refused commands on {self.where} ({_reason(exc)}): writes the server "
                       "refuses (OOM, READONLY, MISCONF, NOPERM) go unseen")
            self._close()
            return self
        if self._can["info"]:
            self._spawn(self._run, "redisprobe-refusals")
        return self

    def _last_look(self, *, ended: bool) -> None:
        """One last sample (`stop`)."""
        if ended:
            with contextlib.suppress(rex.RedisError, OSError):
                self._sample(final=True)

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                self._sample(final=False)
            except _DROPPED:
                continue  # the client poller records the hole; counts are cumulative, nothing is lost
            except rex.RedisError as exc:
                self._note(f"refused-command sampling on {self.where} stopped: {_reason(exc)}")
                return
            if not self._can["info"]:
                return

    # -- one sample ------------------------------------------------------------------------------------------

    def _sample(self, *, final: bool) -> None:
        for code, command in self._later:
            _add(self._own_errors, code)
            _add(self._own_rejected, command)
        self._later.clear()
        info = self._call("info", "INFO", "server", "errorstats", "commandstats")
        if info is None:
            return
        now = time.time()
        acl = self._acl_news()  # after INFO: it also tells of our own observers' refusals, taken out of the counts
        errors, rejected, failed = info_counts(info)
        errors, rejected = _minus(errors, self._own_errors), _minus(rejected, self._own_rejected)
        counts = (errors, rejected, failed)
        previous = self._last
        grown = _grown(rejected, previous[1] if previous is not None else rejected)
        changed = previous is None or counts != previous or bool(acl)
        self._last = counts
        if not (changed or final):
            return
        settings = self._settings() if previous is None or final or grown or acl else {}
        suspects = self._suspects(grown) if grown else []
        self.emit(trace.Refusals(t=now, target=self.target.label, run_id=str(info.get("run_id", "")),
                                 errors=errors, rejected=rejected, failed=failed, acl=acl, suspects=suspects,
                                 settings=settings, final=final))

    def _acl_news(self) -> list[dict[str, str]]:
        """ACL LOG entries new since the last sample (a new entry, or more `count` on a grouped one)."""
        raw = self._call("acl", "ACL", "LOG", ACL_LOG_COUNT)
        if raw is None:
            return []
        totals: dict[tuple[str, ...], int] = {}
        own: dict[tuple[str, ...], int] = {}
        newest: dict[tuple[str, ...], dict[str, str]] = {}
        for entry in map(acl_entry, raw or ()):  # newest first
            identity = acl_identity(entry)
            ours = entry.get("client-name", "").startswith(OBSERVER_PREFIX) or \
                entry.get("client-id") == str(self._own_id)
            counted = own if ours else totals
            counted[identity] = counted.get(identity, 0) + _int(entry.get("count"), 1)
            if not ours:
                newest.setdefault(identity, entry)
        before, self._acl = self._acl, totals
        own_before, self._acl_own = self._acl_own, own
        if before is None:
            return []  # the baseline: what was logged before the capture is not this capture's
        for identity, total in own.items():  # refusals of redisprobe's own observers are not the app's
            added = total - own_before.get(identity, 0)
            if added > 0:  # most likely before this sample's INFO: out of its counts now
                _add(self._own_errors, "NOPERM", added)
                if identity[0] == "command":
                    _add(self._own_rejected, identity[2], added)
        news = []
        for identity, total in totals.items():
            added = total - before.get(identity, 0)
            if added > 0:
                news.append({**newest[identity], "new": str(added)})
        return news

    def _settings(self) -> dict[str, str]:
        settings: dict[str, str] = {}
        info = self._call("info", "INFO", "memory", "replication", "persistence")
        for key in INFO_SETTINGS:
            if info and key in info:
                settings[key] = _text(info[key])
        config = self._call("config", "CONFIG", "GET", *CONFIG_SETTINGS)
        if isinstance(config, list | tuple):  # RESP2 without redis-py's CONFIG GET callback: name, value...
            config = dict(zip(config[::2], config[1::2], strict=False))
        if isinstance(config, dict):
            settings.update({f"config:{_text(k)}": _text(v) for k, v in config.items()})
        if not self._can["acl"]:
            settings["acl-log"] = "unreadable"
        return settings

    def _suspects(self, commands: set[str]) -> list[dict[str, str]]:
        """Connections whose last command is one the server just refused more of (CLIENT LIST `cmd=`), sent
        since the previous sample (`idle=`: `cmd=` stays on a connection that went quiet long ago)."""
        raw = self._call("list", "CLIENT", "LIST")
        if raw is None:
            return []
        suspects = []
        for fields in parse_client_list(raw):
            if fields.get("cmd", "") in commands and not fields.get("name", "").startswith(OBSERVER_PREFIX) \
                    and fields.get("id") != str(self._own_id) and _int(fields.get("idle"), 0) <= self.interval + 1:
                suspects.append({key: fields.get(key, "") for key in ("id", "addr", "laddr", "name", "cmd", "db",
                                                                        "user", "age", "idle")})
        return suspects

    def _call(self, what: str, *args: Any) -> Any:
        """One command, or None when the server refuses it (then never again, with one note)."""
        if not self._can[what] or self._client is None:
            return None
        try:
            return self._client.execute_command(*args)
        except rex.ResponseError as exc:
            self._can[what] = False
            reason = _reason(exc)
            code = reason.split(" ", 1)[0]
            told = code == "NOPERM" and what != "acl" and self._can["acl"]  # ACL LOG will tell it: counted there
            if code.isupper() and not told:  # after this sample's INFO: out of the next sample's counts
                command = " ".join(_text(a) for a in args[:2]).lower()
                self._later.append((code, command.replace(" ", "|") if what != "info" else "info"))
            lost = {"info": "refused writes (OOM, READONLY, MISCONF, NOPERM) go uncounted",
                    "config": "the settings behind refusals come from INFO only",
                    "acl": "NOPERM refusals cannot be tied to a client by the server's ACL LOG",
                    "list": "refused commands cannot be tied to connections through CLIENT LIST"}[what]
            self._note(f"cannot run {' '.join(_text(a) for a in args[:2])} on {self.where} ({reason}): {lost}")
            return None

    def _note(self, text: str) -> None:
        self.emit(trace.Note(t=time.time(), level="info", text=text))


def _add(counts: dict[str, int], name: str, n: int = 1) -> None:
    counts[name] = counts.get(name, 0) + n


def _grown(now: dict[str, int], before: dict[str, int]) -> set[str]:
    return {command for command, count in now.items() if count > before.get(command, 0)}


def _minus(counts: dict[str, int], own: dict[str, int]) -> dict[str, int]:
    if not own:
        return counts
    out = {name: count - own.get(name, 0) for name, count in counts.items()}
    return {name: count for name, count in out.items() if count > 0}


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _text(value: Any) -> str:
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, rex.NoPermissionError) and not text.startswith("NOPERM"):
        text = f"NOPERM {text}"
    return text
