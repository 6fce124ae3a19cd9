"""Connections that come and go between two CLIENT LIST samples, mapped to their process while the kernel shows them.

CLIENT LIST is sampled a few times a second; a job a worker forks (rq's work horse), a one-shot script or a
serverless handler connects, sends its commands and leaves in milliseconds (rq's horse: 7 to 30 ms, the job's own
connection inside it 3 ms and up), so its MONITOR lines would name no process. Two looks, each cheap:

- every `TICK`, the kernel's last allocated pid (/proc/loadavg): when it moved, the processes created since are
  checked for a listed parent (one small read each), and a new child's file descriptors are read every tick while
  it is young: a socket it opens makes the connection table be read at once, and the socket's inode then names the
  child even if it has exited by the time the table is read again;
- every `INTERVAL` (less often where reading the table costs more), the table of open connections to the watched
  server (sock_diag, else /proc/net/tcp) for new connections of anyone, each mapped at once to its process.

The watchers of one process (a cluster's nodes) share one thread (`peerhub.PeerHub`) that makes each look once for
all of them. What it finds is a `trace.PeerSeen`; when nothing could be learnt (the process had already gone, or is
not ours to see) the connection stays marked short-lived.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable

import psutil

from redisprobe import trace
from redisprobe.producers.observers.peerhub import PeerHub
from redisprobe.producers.observers.protocol import Sampler
from redisprobe.producers.processes.inetdiag import Connection
from redisprobe.producers.processes.pidmap import (
    PidMapper,
    ProcessInfo,
    describe_process,
    format_addr,
    normalize_ip,
)
from redisprobe.producers.processes.sockettable import parent_of, socket_inodes
from redisprobe.targets.url import Target

TICK = 0.005
"""Seconds between two looks for new children of the listed processes (rq's horse lives 7 ms and more)."""

YOUNG_TICK = 0.001
"""...and between two looks at young children's sockets while there are any (the job's own connection in rq's
horse is open for 3 ms and more)."""

MAX_YOUNG = 16
"""Young children watched at once (a process that forks without pause gets its first ones watched)."""

INTERVAL = 0.005
"""Seconds between two reads of the table of connections to the server, for connections of any process; on a host
whose table is big enough that a read costs more than a twentieth of that (in CPU time: waiting for a core on a
busy host costs nothing), proportionally more, so the reads never take more than about 2.5% of a core (a forked
job is caught by the young children's watch, not by these reads)."""

YOUNG = 1.0
"""Seconds a new child's file descriptors are read every tick (rq's horse lives tens of milliseconds; a
long-lived child, such as a prefork pool's, is left to the table reads after that)."""

PENDING_READS = 3
"""Table reads a socket found in a young child gets before it is given up on (it may connect elsewhere)."""

MAX_NEW_PIDS = 256
"""New pids checked one by one per tick; past that (a pid wrap, a fork storm) the listed processes' children
lists are read instead."""

_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")


class PeerWatcher(Sampler):
    """Names the processes of new connections to one server: listed processes' young children first."""

    BLIND_SPOT = "clients on other machines: it reads this machine's TCP table, so it names local processes only"

    def __init__(self, target: Target, emit: Callable[[trace.Event], None], mapper: PidMapper, *,
                 label: str = "", interval: float = INTERVAL, tick: float = TICK,
                 young_tick: float = YOUNG_TICK) -> None:
        super().__init__(emit, interval=interval, join_timeout=2)
        self.target = target
        self.mapper = mapper
        self.label = label or target.label
        self.tick = tick
        self.young_tick = young_tick
        self._ips: set[str] = set()
        self.port = target.port or 0
        self._own = os.getpid()
        self._joined = False
        self._known: dict[tuple[str, int], int] = {}  # local address -> inode, from the last table read
        self._young: dict[int, tuple[float, str, int | None]] = {}  # child pid -> (first seen, its listed
        # ancestor's label, its parent when first seen)
        self._gone: set[int] = set()  # listed pids that exited
        self._sockets: dict[int, tuple[int, str]] = {}  # socket inode -> (young child holding it, label)
        self._pending: dict[int, int] = {}  # socket inode seen in a young child -> table reads left
        self._looked: set[int] = set()  # socket inodes already seen in a young child's descriptors
        self._named: dict[int, ProcessInfo] = {}  # young child -> what it is (read while it was alive)

    def start(self) -> None:
        """Start watching (nothing to do for a unix socket, or without the kernel's table)."""
        if self.target.unix_path is not None or not os.path.exists(_TABLES[0]) or not self.port:
            return
        with contextlib.suppress(OSError):
            self._ips = {normalize_ip(str(info[4][0])) for info in
                         socket.getaddrinfo(self.target.host or "localhost", self.port, proto=socket.IPPROTO_TCP)}
        if not self._ips:
            return
        PeerHub.join(self)
        self._joined = True

    def stop(self) -> None:
        """Leave the shared thread (once this returns, nothing more is emitted). Idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        if self._joined:
            PeerHub.leave(self, self._join_timeout)

    def abort(self) -> None:
        self.stop()  # no connection to cut: the wait for the round under way is short

    @property
    def busy(self) -> bool:
        """Young children to follow, or their sockets to find in the table: look every `young_tick`."""
        return bool(self._young or self._pending)

    @property
    def waiting(self) -> bool:
        """A socket a young child opened is waiting to be found in the table: read it now."""
        return bool(self._pending)

    def seen(self, connections: list[Connection], read_at: float) -> None:
        """One read of the table, its connections to this watcher's port, ended at `read_at` (monotonic): name
        those new since the last read."""
        current = {local: inode for inode, local, remote in connections if remote[0] in self._ips}
        inodes = set(current.values())
        for inode in list(self._pending):
            self._pending[inode] -= 1
            if inode in inodes or self._pending[inode] <= 0:
                del self._pending[inode]
        for local in current.keys() - self._known.keys():
            self._name(local, current[local], read_at)
        self._known = current

    # -- the listed processes' young children ----------------------------------------------------------------

    def watch_children(self, now: float, born: tuple[int, int] | None, parents: dict[int, int | None]) -> None:
        """A tick: adopt the listed processes' children born since the last (`born`: the last pid before and now;
        `parents`: the new pids' parents, shared with the other watchers), read the young ones' sockets."""
        if born is not None and (self.mapper.watched or self._young):  # else no new pid can be one of ours
            self._adopt(self._new_children(*born, parents), now)
        if not self._young:
            return
        known = set(self._known.values())
        for pid, (born_at, label, _parent) in list(self._young.items()):
            alive = self._read_sockets(pid, label, known)
            if not alive or now - born_at > YOUNG:
                del self._young[pid]
            if not alive:
                self._forget(pid)

    def _forget(self, pid: int) -> None:
        """A young child has gone, and its sockets with it: what was kept about them goes too (a long capture of a
        worker that forks per job keeps no record per job)."""
        self._named.pop(pid, None)
        for inode in [inode for inode, (holder, _label) in self._sockets.items() if holder == pid]:
            del self._sockets[inode]
            self._looked.discard(inode)
            self._pending.pop(inode, None)

    def _new_children(self, before: int, last: int, parents: dict[int, int | None]
                      ) -> list[tuple[int, str, int | None]]:
        """(pid, label, parent) of the processes created since `before` whose parent is listed or a young child."""
        if 0 < last - before <= MAX_NEW_PIDS:
            for pid in range(before + 1, last + 1):
                if pid not in parents:
                    parents[pid] = parent_of(pid)
            return [(pid, label, parents[pid]) for pid in range(before + 1, last + 1)
                    if (label := self._family_label(parents[pid])) and pid != self._own]
        found = []
        for root, label in list(self.mapper.watched.items()):
            if root in self._gone:
                continue
            children = _children(root)
            if not children and not os.path.exists(f"/proc/{root}"):
                self._gone.add(root)
            found += [(pid, label, parent_of(pid)) for pid in children
                      if pid not in self._young and pid not in self._named]
        return found

    def _family_label(self, parent: int | None) -> str:
        if parent is None or parent == self._own:
            return ""
        label = self.mapper.watched.get(parent)
        if label:
            return label
        young = self._young.get(parent)
        return young[1] if young else ""

    def _adopt(self, children: list[tuple[int, str, int | None]], now: float) -> None:
        for pid, label, parent in children:
            if pid not in self._young and pid not in self._named and len(self._young) < MAX_YOUNG:
                self._young[pid] = (now, label, parent)

    def _read_sockets(self, pid: int, label: str, known: set[int]) -> bool:
        """Note the sockets a young child opened (not the ones it inherited); False once it has gone."""
        inodes = socket_inodes(pid)
        if inodes is None:
            return False
        for inode in inodes:
            if inode in self._looked or inode in known:
                continue
            self._looked.add(inode)
            self._sockets[inode] = (pid, label)
            self._pending[inode] = PENDING_READS
            if pid not in self._named:
                info = describe_process(pid, self.mapper.watched)
                kept = info.label or (label if self._still_in_family(pid, label) else "")
                self._named[pid] = ProcessInfo(pid=pid, process=info.process, cmdline=info.cmdline,
                                               label=kept, identity=info.identity)
        return True

    def _still_in_family(self, pid: int, label: str) -> bool:
        """Whether a child seen young still belongs to its listed ancestor when it opens a socket: a process a
        listed one's short-lived child started and left behind (`sh -c 'service &'`, a double fork) has been
        handed to init while the listed process lives on: another service, as the connection table would name
        it. When the listed process itself has gone, nothing says otherwise and the child keeps its label. A child
        that has already exited (rq's horse lives milliseconds) keeps it when the parent it had when first seen
        still lives: a process is handed to init only when its parent exits, so it died that parent's child."""
        parent = parent_of(pid)
        if parent is None and not os.path.exists(f"/proc/{pid}"):
            first_parent = self._young.get(pid, (0.0, "", None))[2]
            if first_parent is not None and first_parent > 1 and os.path.exists(f"/proc/{first_parent}"):
                return True
        for _level in range(64):
            if parent is None or parent <= 1:
                break
            if parent in self.mapper.watched or parent in self._young:
                return True
            parent = parent_of(parent)
        return not any(os.path.exists(f"/proc/{root}") for root, named in self.mapper.watched.items()
                       if named == label and root not in self._gone)

    # -- the table of connections ----------------------------------------------------------------------------

    def _name(self, local: tuple[str, int], inode: int, read_at: float) -> None:
        if inode and inode in (socket_inodes("self") or ()):
            return  # redisprobe's own (a topology look, a mark, a baseline): no scan of every process for it
        info = self._held_by_young(inode)
        if info is None:
            # A child of a listed process not caught young is still looked at first (a few file descriptor
            # tables), then every process
            pid = _held_by_child(inode, self.mapper.watched) if inode else None
            if pid is not None:
                info = describe_process(pid, self.mapper.watched)
            else:
                info = self.mapper.lookup(format_addr(*local), format_addr(self._ip_for(local), self.port),
                                          not_before=read_at)  # a scan since includes it
        if info is None or info.pid is None or info.pid == self._own or _is_ours(info.pid, self._own):
            return
        self.emit(trace.PeerSeen(t=time.time(), addr=format_addr(*local), pid=info.pid, process=info.process,
                                 cmdline=info.cmdline, label=info.label, target=self.label,
                                 shared_with=tuple(info.shared_with)))

    def _held_by_young(self, inode: int) -> ProcessInfo | None:
        """The young child that opened socket `inode`, as read while it was alive (it may have exited since)."""
        held = self._sockets.pop(inode, None) if inode else None
        if held is None:
            return None
        return self._named.get(held[0])

    def _ip_for(self, local: tuple[str, int]) -> str:
        """The server address a local address talks to (the same family)."""
        family_v6 = ":" in local[0]
        return next((ip for ip in sorted(self._ips) if (":" in ip) == family_v6), next(iter(self._ips)))


def _held_by_child(inode: int, watched: dict[int, str]) -> int | None:
    """The child of a listed process holding socket `inode`, if one does (the kernel's children lists)."""
    for parent in list(watched):
        for child in _children(parent):
            if inode in (socket_inodes(child) or ()):
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
