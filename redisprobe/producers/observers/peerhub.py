"""One thread for every peer watcher of a process: the kernel's last pid and its TCP table are the host's, so the
nodes of a cluster (one watcher each) cost one look at each per tick, not one per node.

Every `tick` (every `young_tick` while a watcher follows a young child) the hub reads the last allocated pid once,
and each watcher looks for new children of its listed processes (the parents of the new pids are read once for
all of them); when the table is due (or a young child's socket is waiting in it), one sock_diag dump for every
watched port, whose connections go to each watcher by port. The watchers keep their own state: each names the
connections to its own server only.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING

from redisprobe.producers.processes.inetdiag import Connection, open_connections
from redisprobe.producers.processes.sockettable import _proc_net_inet

if TYPE_CHECKING:
    from redisprobe.producers.observers.peers import PeerWatcher

COST_FACTOR = 40
"""The table is read at most every `COST_FACTOR` times the CPU time one read takes (about 2.5% of a core)."""


class PeerHub:
    """The one thread of this process's peer watchers: started by the first that joins, ended with the last."""

    _lock = threading.Lock()
    _current: PeerHub | None = None

    def __init__(self) -> None:
        self.watchers: tuple[PeerWatcher, ...] = ()
        self._stopping = threading.Event()
        self._round = threading.Lock()  # held while the watchers are called: one that leaves waits for the round
        self._pid_counter = _LastPid()
        self._last_pid = self._pid_counter()
        self._netlink = True  # sock_diag answers (else /proc/net/tcp)
        self._thread = threading.Thread(target=self._run, name="redisprobe-peers", daemon=True)

    @classmethod
    def join(cls, watcher: PeerWatcher) -> None:
        with cls._lock:
            hub = cls._current
            if hub is None or not hub._thread.is_alive():  # (a forked child inherits no thread)
                hub = cls._current = PeerHub()
                hub.watchers = (watcher,)
                hub._thread.start()
            else:
                hub.watchers = (*hub.watchers, watcher)

    @classmethod
    def leave(cls, watcher: PeerWatcher, timeout: float) -> None:
        """Stop calling `watcher`; once this returns it is called no more (the last to leave ends the thread)."""
        with cls._lock:
            hub = cls._current
            if hub is None or watcher not in hub.watchers:
                return
            hub.watchers = tuple(w for w in hub.watchers if w is not watcher)
            last = not hub.watchers
            if last:
                cls._current = None
                hub._stopping.set()
        if hub._thread is threading.current_thread():
            return
        if last:
            hub._thread.join(timeout)
            if not hub._thread.is_alive():
                hub._pid_counter.close()
        elif hub._round.acquire(timeout=timeout):  # the round under way may still be naming its connections
            hub._round.release()

    def _run(self) -> None:
        due = 0.0
        while not self._stopping.wait(self._pause(due)):
            with self._round:
                watchers = self.watchers
                if not watchers:
                    continue
                now = time.monotonic()
                last = self._pid_counter()
                born = (self._last_pid, last) if last != self._last_pid else None
                self._last_pid = last
                parents: dict[int, int | None] = {}  # the new pids' parents, read once for every watcher
                for watcher in watchers:
                    watcher.watch_children(now, born, parents)
                if now < due and not any(watcher.waiting for watcher in watchers):
                    continue
                spent = time.thread_time()
                table = self._table({watcher.port for watcher in watchers})
                read_at = time.monotonic()
                # CPU time, not a busy host's waits for a core
                due = now + max(min(w.interval for w in watchers), COST_FACTOR * (time.thread_time() - spent))
                for watcher in watchers:
                    watcher.seen(table.get(watcher.port, []), read_at)

    def _pause(self, due: float) -> float:
        """Until the next look: a young child's tick, a listed process's tick, else until the table is due (with no
        process listed there are no children to catch being born)."""
        watchers = self.watchers
        if not watchers:
            return 0.005
        if any(watcher.busy for watcher in watchers):
            return min(watcher.young_tick for watcher in watchers)
        tick = min(watcher.tick for watcher in watchers)
        if any(watcher.mapper.watched for watcher in watchers):
            return tick
        return max(tick, due - time.monotonic())

    def _table(self, ports: set[int]) -> dict[int, list[Connection]]:
        """The open connections to each of `ports`, from one read of the kernel's table."""
        found = open_connections(*ports) if self._netlink else None
        if found is None:
            self._netlink = False
            found = list(_proc_net_inet(None, ports))
        by_port: dict[int, list[Connection]] = {}
        for connection in found:
            by_port.setdefault(connection[2][1], []).append(connection)
        return by_port


class _LastPid:
    """The last pid the kernel allocated in our pid namespace (the last field of /proc/loadavg), read through one
    open descriptor: 4 microseconds a look. 0 when unknown."""

    def __init__(self) -> None:
        try:
            self._fd: int | None = os.open("/proc/loadavg", os.O_RDONLY)
        except OSError:
            self._fd = None

    def __call__(self) -> int:
        if self._fd is None:
            return 0
        try:
            return int(os.pread(self._fd, 128, 0).split()[-1])
        except (OSError, ValueError, IndexError):
            return 0

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _after_fork_in_child() -> None:
    """A forked child has none of its parent's threads: its first watcher starts a hub of its own."""
    PeerHub._lock = threading.Lock()
    PeerHub._current = None


os.register_at_fork(after_in_child=_after_fork_in_child)
