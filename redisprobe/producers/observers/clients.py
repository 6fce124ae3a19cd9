"""CLIENT LIST poller: who is connected, from which process, to which db, and which server answered.

MONITOR names a client only by `ip:port`, and ports are reused within seconds; so every connection is mapped
to its process the first time it is seen, while it still exists, and remembered by its CLIENT ID (unique for
the server's lifetime). INFO tells which server this is: a new run_id or an uptime going backwards is a restart.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import msgspec
import redis
import redis.exceptions as rex
from redis.backoff import NoBackoff
from redis.retry import Retry

from redisprobe import trace
from redisprobe.analysis.connection_roles import REPLICATION_LINK_FLAGS
from redisprobe.producers.observers.protocol import DROPPED, Sampler, starting
from redisprobe.producers.processes.pidmap import PidMapper, ProcessInfo
from redisprobe.targets.topology import cluster_identity
from redisprobe.targets.url import Target, connect_timeout, describe_redis_error, ping

CONNECTION_NAME = "redisprobe:observer:clients"
STAT_KEYS = ("evicted_keys", "expired_keys", "used_memory", "maxmemory", "connected_clients", "master_repl_offset")
MAX_RECORDS = 100_000  # gone connections kept for lookups; the oldest are dropped past this


def connect_observer(target: Target, name: str, *, timeout: float, **kwargs: Any) -> tuple[redis.Redis, bool]:
    """A checked client named `name`, or unnamed when ACLs refuse CLIENT SETNAME; True when the name took.

    An observer must not die because the user may not name connections.
    """
    client = target.connect(name=name, timeout=timeout, protocol=2, **kwargs)
    try:
        ping(client)
    except rex.ResponseError:  # NOPERM on CLIENT SETNAME during the handshake
        client.close()
        client = target.connect(timeout=timeout, protocol=2, **kwargs)
        ping(client)
        return client, False
    return client, True


def parse_client_list(raw: bytes | str) -> list[dict[str, str]]:
    """CLIENT LIST text -> one dict per client. Empty values (`name=`) are kept; fields the server version
    lacks (lib-name before 7.2) are simply absent; a stray token without `=` is glued to the previous value."""
    text = raw.decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else raw
    clients: list[dict[str, str]] = []
    for line in text.splitlines():
        fields: dict[str, str] = {}
        last: str | None = None
        for token in line.strip().split(" "):
            key, eq, value = token.partition("=")
            if eq and key:
                fields[key] = value
                last = key
            elif token and last is not None:
                fields[last] += " " + token
        if fields.get("id", "").isdigit():
            clients.append(fields)
    return clients


def lib_of(fields: dict[str, str]) -> str:
    """`lib-name lib-ver` as one string (Redis 7.2+; empty on older servers or clients that never said)."""
    return " ".join(part for part in (fields.get("lib-name", ""), fields.get("lib-ver", "")) if part)


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def fingerprint(info: dict[str, Any], target: Target) -> trace.ServerFingerprint:
    """Who answered, from INFO (any sections that include server and replication)."""
    return trace.ServerFingerprint(
        run_id=str(info.get("run_id", "")),
        host=target.host or target.unix_path or "",
        port=target.port or _int(info.get("tcp_port")),
        version=str(info.get("redis_version", "")),
        role=str(info.get("role", "")),
        uptime=_int(info.get("uptime_in_seconds")),
        master_repl_offset=_int(info.get("master_repl_offset")),
        master_host=str(info.get("master_host", "")),
        master_port=_int(info.get("master_port")),
        master_replid=str(info.get("master_replid", "")),
        redis_mode=str(info["redis_mode"]) if "redis_mode" in info else msgspec.UNSET,
    )


def server_stats(info: dict[str, Any]) -> dict[str, int]:
    return {key: _int(info[key]) for key in STAT_KEYS if key in info}


@dataclass
class _Record:
    seen: trace.ClientSeen
    run_id: str
    created: float  # earliest time the connection may have been opened (CLIENT LIST age is whole seconds)
    last_seen: float
    gone: float | None = None  # first poll that no longer listed it


class ClientPoller(Sampler):
    """Polls CLIENT LIST and INFO server every `interval` in a background thread.

    Emits `ClientSeen` when a client id first appears and when its addr/db/name/lib changes, `ServerSeen` at
    start, on a restart, and once more at stop (final stats), `Gap(source="clients")` while the server cannot
    be polled. `active` is False once nothing can be polled; `lost` says in one line what is missing.
    """

    BLIND_SPOT = ("connections opened and closed between two polls (the peer watcher and MONITOR's peer addresses "
                  "name them)")

    def __init__(self, target: Target, emit: Callable[[trace.Event], None], *, pid_mapper: PidMapper | None,
                 interval: float = 0.2, label: str = "", timeout: float | None = None) -> None:
        self.target = target
        self.pid_mapper = pid_mapper
        self.where = f"{label} ({target.label})" if label else target.label
        self.timeout = connect_timeout() if timeout is None else timeout
        super().__init__(emit, interval=interval, join_timeout=self.timeout + interval + 1.0)
        self.active = False
        self.lost: str | None = None
        self.server: trace.ServerFingerprint | None = None
        self.stats: dict[str, int] = {}
        self._records: dict[tuple[str, int], _Record] = {}  # guarded by `_lock`
        self._by_addr: dict[str, list[_Record]] = {}
        self._started = False
        self._client: redis.Redis | None = None
        self._can_list = True
        self._can_info = True
        self._last_ok = 0.0
        self._gap_start: float | None = None  # last good poll before the server became unreachable
        self._gap_reason = ""

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> ClientPoller:
        """First poll now (so lookups work at once), then poll in the background. Raises ConnectionProblem."""
        with self._lock:
            if self._started:
                return self
            self._started = True
        with starting(self.stop, self.target):
            self._client, _named = connect_observer(self.target, CONNECTION_NAME, timeout=self.timeout,
                                                    retry=Retry(NoBackoff(), 0))
            self._poll()
        if self._can_list or self._can_info:
            self.active = True
            self._spawn(self._run, "redisprobe-clients")
        return self

    def _last_look(self, *, ended: bool) -> None:
        """One last poll (final stats, late clients), or the gap still open when the run ended (`stop`)."""
        if self._gap_start is None and ended:
            with contextlib.suppress(rex.RedisError, OSError):
                self._poll(final=True)
        elif self._gap_start is not None:
            self.emit(trace.Gap(t=self._gap_start, source="clients", target=self.target.label,
                                reason=f"{self._gap_reason}; still unreachable when the run ended"))

    def _close(self) -> None:
        super()._close()
        self.active = False

    def __enter__(self) -> ClientPoller:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- lookups for the analysis ----------------------------------------------------------------------------

    def clients_by_id(self, run_id: str | None = None) -> dict[int, trace.ClientSeen]:
        """The latest view of every client seen on one server run (default: the current one)."""
        wanted = run_id if run_id is not None else (self.server.run_id if self.server else "")
        with self._lock:
            return {cid: rec.seen for (rid, cid), rec in self._records.items() if rid == wanted}

    def client_for_addr(self, addr: str, at: float | None = None) -> trace.ClientSeen | None:
        """The client that had `addr` at time `at` (default: now, else the most recent one).

        Ports are reused: among the connections that had this address, the one alive at `at` wins.
        """
        with self._lock:
            records = list(self._by_addr.get(addr, ()))
        if not records:
            return None
        if at is None:
            live = [rec for rec in records if rec.gone is None]
            return max(live or records, key=lambda rec: rec.created).seen
        alive = [rec for rec in records if rec.created <= at and (rec.gone is None or at <= rec.gone)]
        if alive:
            return max(alive, key=lambda rec: rec.created).seen
        # Opened between two polls: the first connection seen soon after `at` is the best guess.
        soon = [rec for rec in records if rec.created <= at + self.interval + 1.0 and
                (rec.gone is None or at <= rec.gone)]
        return min(soon, key=lambda rec: rec.created).seen if soon else None

    # -- polling ---------------------------------------------------------------------------------------------

    def _run(self) -> None:
        delay = self.interval
        while not self._stopping.wait(delay):
            try:
                self._poll()
            except DROPPED as exc:
                if self._gap_start is None:
                    self._gap_start = self._last_ok or time.time()
                    self._gap_reason = f"cannot poll CLIENT LIST ({describe_redis_error(exc, self.target)})"
                delay = min(max(delay * 2, self.interval), 2.0)
                continue
            except rex.RedisError as exc:  # something unexpected: say so rather than die silently
                self.emit(trace.Note(t=time.time(), level="warning",
                                     text=f"client poller on {self.where} stopped: {exc}"))
                self.emit(trace.Gap(t=time.time(), source="clients", target=self.target.label,
                                    reason=f"client poller stopped: {exc}"))
                break
            delay = self.interval
            if not (self._can_list or self._can_info):
                break
        if not self._stopping.is_set():
            self.active = False

    def _poll(self, *, final: bool = False) -> None:
        assert self._client is not None
        now = time.time()
        restarted = False
        if self._can_info:
            try:
                info = self._client.info("server")
            except rex.ResponseError as exc:
                self._can_info = False
                self._degrade(f"cannot run INFO on {self.where} ({_reason(exc)}): server restarts and "
                              "identity (run_id) go unrecorded")
            else:
                restarted = self._check_server(info, now, final=final)
        if self._gap_start is not None:
            reason = self._gap_reason
            if restarted:
                reason += "; the server restarted meanwhile (new run_id): its earlier clients are gone"
            self.emit(trace.Gap(t=self._gap_start, source="clients", reason=reason, until=now,
                                target=self.target.label))
            self._gap_start = None
        elif restarted:
            # A quick restart can fall between two polls (the pool reconnects silently): still a hole, since
            # clients of the old server that came after our last poll were never seen.
            self.emit(trace.Gap(t=self._last_ok, source="clients", until=now, target=self.target.label,
                                reason="the server restarted between two polls (new run_id): clients that "
                                       "connected to it just before are unseen"))
        if self._can_list:
            try:
                raw = self._client.execute_command("CLIENT", "LIST")
            except rex.ResponseError as exc:
                self._can_list = False
                self._degrade(f"cannot run CLIENT LIST on {self.where} ({_reason(exc)}): connections cannot "
                              "be tied to processes (pid, db, name per client)")
            else:
                # Every listed connection surely existed once the answer came (not when it was asked: on a loaded
                # host one made meanwhile is listed, and a socket table read in between would miss it).
                self._update_clients(parse_client_list(raw), time.time(), time.monotonic())
        self._last_ok = time.time()

    def _check_server(self, info: dict[str, Any], now: float, *, final: bool) -> bool:
        """Emit ServerSeen at the first poll, on a restart, and at the end; True on a restart."""
        run_id = str(info.get("run_id", ""))
        uptime = _int(info.get("uptime_in_seconds"))
        previous = self.server
        restarted = previous is not None and (run_id != previous.run_id or uptime < previous.uptime)
        if previous is None or restarted or final:
            assert self._client is not None
            with contextlib.suppress(rex.ResponseError):  # the stats are a bonus; the identity is in `server`
                info = {**info, **self._client.info("default")}
            self.server = fingerprint(info, self.target)
            if info.get("redis_mode") == "cluster":
                self.server = msgspec.structs.replace(self.server, cluster_id=cluster_identity(self._client)
                                                      or msgspec.UNSET)
            self.stats = server_stats(info)
            self.emit(trace.ServerSeen(t=now, target=self.target.label, server=self.server, stats=self.stats))
            if restarted:
                self._forget_run(previous.run_id if previous else "", now)
        else:
            self.server = msgspec.structs.replace(previous, uptime=uptime)
        return restarted

    def _forget_run(self, run_id: str, now: float) -> None:
        with self._lock:
            for (rid, _cid), rec in self._records.items():
                if rid == run_id and rec.gone is None:
                    rec.gone = now

    def _update_clients(self, clients: list[dict[str, str]], now: float, mono: float) -> None:
        run_id = self.server.run_id if self.server else ""
        listed: set[int] = set()
        for fields in clients:
            client_id = int(fields["id"])
            listed.add(client_id)
            with self._lock:
                record = self._records.get((run_id, client_id))
            if record is None:
                self._first_sight(run_id, client_id, fields, now, mono)
                continue
            record.last_seen = now
            old = record.seen
            addr, db, name, lib = fields.get("addr", ""), _int(fields.get("db")), fields.get("name", ""), lib_of(fields)
            if (addr, db, name, lib) != (old.addr, old.db, old.name, old.lib):
                seen = trace.ClientSeen(
                    t=now, client_id=client_id, addr=addr, db=db, name=name, lib=lib, age=_int(fields.get("age")),
                    flags=fields.get("flags", ""), cmd=fields.get("cmd", ""), pid=old.pid, process=old.process,
                    cmdline=old.cmdline, label=old.label, target=self.target.label, shared_with=old.shared_with)
                with self._lock:
                    record.seen = seen
                    if addr != old.addr:
                        self._by_addr.setdefault(addr, []).append(record)
                self.emit(seen)
        with self._lock:
            for (rid, cid), rec in self._records.items():
                if rid == run_id and rec.gone is None and cid not in listed:
                    rec.gone = now
            if len(self._records) > MAX_RECORDS:
                self._prune()

    def _first_sight(self, run_id: str, client_id: int, fields: dict[str, str], now: float, mono: float) -> None:
        addr = fields.get("addr", "")
        process: ProcessInfo | None = None
        if self.pid_mapper is not None:
            process = self.pid_mapper.lookup(addr, fields.get("laddr") or None, not_before=mono,
                                             fd=fields.get("fd"))
        age = _int(fields.get("age"))
        shared = process.shared_with if process else ()
        if shared and REPLICATION_LINK_FLAGS & set(fields.get("flags", "")):
            shared = ()  # a replica's link: a server's fork (an RDB for a replica) holds its sockets, nobody writes
        seen = trace.ClientSeen(
            t=now, client_id=client_id, addr=addr, db=_int(fields.get("db")), name=fields.get("name", ""),
            lib=lib_of(fields), age=age, flags=fields.get("flags", ""), cmd=fields.get("cmd", ""),
            pid=process.pid if process else None, process=process.process if process else "",
            cmdline=process.cmdline if process else "", label=process.label if process else "",
            target=self.target.label, shared_with=shared)
        record = _Record(seen=seen, run_id=run_id, created=now - age - 1.0, last_seen=now)
        with self._lock:
            self._records[(run_id, client_id)] = record
            self._by_addr.setdefault(addr, []).append(record)
        self.emit(seen)
        if process is not None and shared:
            pids = ", ".join(str(pid) for pid in (process.pid, *shared))
            self.emit(trace.Note(t=now, level="warning", text=(
                f"client {client_id} ({addr}) on {self.where} is one socket held by pids {pids}: a forked process "
                "shares its parent's connection, so replies can cross")))

    def _prune(self) -> None:
        gone = sorted((rec.gone, key) for key, rec in self._records.items() if rec.gone is not None)
        for _when, key in gone[: len(self._records) - MAX_RECORDS]:
            record = self._records.pop(key)
            same_addr = self._by_addr.get(record.seen.addr, [])
            with contextlib.suppress(ValueError):
                same_addr.remove(record)
            if not same_addr:
                self._by_addr.pop(record.seen.addr, None)

    def _degrade(self, text: str) -> None:
        self.lost = text if self.lost is None else f"{self.lost}; {text}"
        self.emit(trace.Note(t=time.time(), level="warning", text=text))


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, rex.NoPermissionError) and not text.startswith("NOPERM"):
        text = f"NOPERM {text}"
    return text
