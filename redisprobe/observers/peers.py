"""Connections that come and go between two CLIENT LIST samples, mapped to their process while the kernel shows them.

CLIENT LIST is sampled a few times a second; a job a worker forks (rq's work horse), a one-shot script or a
serverless handler connects, sends its commands and leaves in tens of milliseconds, so its MONITOR lines would
name no process. The kernel's TCP table is cheap to read: every `interval` this observer reads it for new
connections to the watched server and, for each, asks the pid map (every process's file descriptors) at once,
while the socket is still open. What it finds is a `trace.PeerSeen`; when nothing could be learnt (the process had
already gone, or is not ours to see) the connection stays marked short-lived.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable

import psutil

from redisprobe import trace
from redisprobe.pidmap import PidMapper, _proc_net_inet, describe_process, format_addr, normalize_ip
from redisprobe.target import Target

INTERVAL = 0.005
"""Seconds between two reads of the kernel's TCP table (rq's work horse connects, runs a job and exits in about
10 ms); on a host whose table is big enough that a read costs more than a twentieth of that, proportionally more,
so the watcher never takes more than about 5% of a core."""

COST_FACTOR = 20

_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")


class PeerWatcher:
    """Reads the kernel's TCP table for new connections to one server and names their processes."""

    def __init__(self, target: Target, emit: Callable[[trace.Event], None], mapper: PidMapper, *,
                 label: str = "", interval: float = INTERVAL) -> None:
        self.target = target
        self.emit = emit
        self.mapper = mapper
        self.label = label or target.label
        self.interval = interval
        self._joined = False
        self._ips: set[str] = set()
        self._port = target.port or 0
        self._known: set[tuple[str, int]] = set()
        self._own = os.getpid()

    def start(self) -> None:
        """Start watching (nothing to do for a unix socket, or without the kernel's table)."""
        if self.target.unix_path is not None or not os.path.exists(_TABLES[0]) or not self._port:
            return
        with contextlib.suppress(OSError):
            self._ips = {normalize_ip(str(info[4][0])) for info in
                         socket.getaddrinfo(self.target.host or "localhost", self._port, proto=socket.IPPROTO_TCP)}
        if not self._ips:
            return
        _SharedTable.join(self)
        self._joined = True

    def stop(self) -> None:
        if self._joined:
            _SharedTable.leave(self)
            self._joined = False

    def abort(self) -> None:
        self.stop()

    def seen(self, connections: list[tuple[int, tuple[str, int], tuple[str, int]]]) -> None:
        """One read of the table, the lines to this watcher's port: name the connections new since the last."""
        current = {local: inode for inode, local, remote in connections if remote[0] in self._ips}
        for local in current.keys() - self._known:
            self._name(local, current[local], self._own)
        self._known = set(current)

    def _name(self, local: tuple[str, int], inode: int, own: int) -> None:
        # A job forked by a listed process (rq's work horse) is gone in tens of milliseconds: look at the listed
        # processes' children first (a few file descriptor tables), then at every process
        pid = _held_by_child(inode, self.mapper.watched) if inode else None
        if pid is not None:
            info = describe_process(pid, self.mapper.watched)
        else:
            info = self.mapper.lookup(format_addr(*local), format_addr(self._ip_for(local), self._port),
                                      not_before=time.monotonic())
        if info is None or info.pid is None or info.pid == own or _is_ours(info.pid, own):
            return
        self.emit(trace.PeerSeen(t=time.time(), addr=format_addr(*local), pid=info.pid, process=info.process,
                                 cmdline=info.cmdline, label=info.label, target=self.label,
                                 shared_with=tuple(info.shared_with)))

    def _ip_for(self, local: tuple[str, int]) -> str:
        """The server address a local address talks to (the same family)."""
        family_v6 = ":" in local[0]
        return next((ip for ip in sorted(self._ips) if (":" in ip) == family_v6), next(iter(self._ips)))


class _SharedTable:
    """The one reader of the kernel's TCP table in this process, for every watcher: the table is the host's, so the
    nodes of a cluster (one watcher each) cost one read every `INTERVAL`, not one each."""

    _lock = threading.Lock()
    _current: _SharedTable | None = None

    def __init__(self) -> None:
        self.watchers: list[PeerWatcher] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="redisprobe-peers", daemon=True)

    @classmethod
    def join(cls, watcher: PeerWatcher) -> None:
        with cls._lock:
            if cls._current is None:
                cls._current = _SharedTable()
                cls._current._thread.start()
            cls._current.watchers = [*cls._current.watchers, watcher]

    @classmethod
    def leave(cls, watcher: PeerWatcher) -> None:
        with cls._lock:
            table = cls._current
            if table is None or watcher not in table.watchers:
                return
            table.watchers = [w for w in table.watchers if w is not watcher]
            if table.watchers:
                return
            cls._current = None
            table._stop.set()
        if table._thread is not threading.current_thread():
            table._thread.join(2)

    def _run(self) -> None:
        pause = INTERVAL
        while not self._stop.wait(pause):
            watchers = self.watchers
            if not watchers:
                continue
            began = time.monotonic()
            by_port = _connections_by_port({w._port for w in watchers})
            interval = min(w.interval for w in watchers)
            pause = max(interval, COST_FACTOR * (time.monotonic() - began))
            for watcher in watchers:
                watcher.seen(by_port.get(watcher._port, []))


def _connections_by_port(ports: set[int]) -> dict[int, list[tuple[int, tuple[str, int], tuple[str, int]]]]:
    """The kernel's connected TCP sockets to any of `ports`, read once, by remote port."""
    if len(ports) == 1:
        port = next(iter(ports))
        return {port: list(_proc_net_inet(port))}
    found: dict[int, list[tuple[int, tuple[str, int], tuple[str, int]]]] = {}
    for inode, local, remote in _proc_net_inet(None, ports):
        found.setdefault(remote[1], []).append((inode, local, remote))
    return found


def _held_by_child(inode: int, watched: dict[int, str]) -> int | None:
    """The child of a listed process holding socket `inode`, if one does (the kernel's children lists)."""
    target = f"socket:[{inode}]"
    for parent in list(watched):
        for child in _children(parent):
            try:
                fds = os.listdir(f"/proc/{child}/fd")
            except OSError:
                continue
            for fd in fds:
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{child}/fd/{fd}") == target:
                        return child
    return None


def _children(pid: int) -> list[int]:
    """Children of `pid` (and theirs), from /proc/PID/task/*/children."""
    found: list[int] = []
    todo = [pid]
    while todo and len(found) < 256:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children", encoding="ascii") as handle:
                    kids = [int(word) for word in handle.read().split()]
            except (OSError, ValueError):
                continue
            found += kids
            todo += kids
    return found


def _is_ours(pid: int, own: int) -> bool:
    """Our own observers (the MONITOR reader is our child)."""
    try:
        return psutil.Process(pid).ppid() == own
    except psutil.Error:
        return False
