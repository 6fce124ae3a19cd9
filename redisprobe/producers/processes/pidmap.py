"""Which local process is behind a Redis client address, and the `--pids` spec that names the ones we watch.

The server only knows a client as `ip:port`; the kernel knows which process holds that socket. Joining the two
(while the connection lives: ports are reused quickly) is what turns "client 42 deleted the key" into
"pid 1234 (processor) deleted the key".
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import psutil

from redisprobe.errors import ProbeError
from redisprobe.producers.processes.identity import Identity, identity_of
from redisprobe.producers.processes.selectors import Selector, all_pm2_apps, parse_selector, pm2_daemon, resolve
from redisprobe.producers.processes.sockettable import connected_sockets, normalize_ip, parent_when_seen, socket_holders
from redisprobe.producers.processes.unixdiag import client_holders, unix_sockets
from redisprobe.targets.url import redact

CMDLINE_MAX = 200
ANCESTOR_LEVELS = 3  # PM2 / npm / sh wrappers put the real client a few levels below the listed pid

_SPEC_ITEM = re.compile(r"^(?:(?P<label>[^=,]*)=)?\s*(?P<pid>\d+)$")
JOINED = "joined:"  # a Note starting with this is a process that joined a label during the capture
_CMD_ITEM = re.compile(r"^(?:[^=,:]*=)?\s*cmd:")
# Command-line options that carry a password as the next argument (redis-cli -a, server configs...).
_SECRET_OPTIONS = {"-a", "--pass", "--password", "--requirepass", "--masterauth", "--auth"}


@dataclass(frozen=True)
class PidSpec:
    """The processes the user asked about: pid -> label, plus what we could not check about them."""

    labels: dict[int, str]
    warnings: list[str] = field(default_factory=list)
    selectors: tuple[Selector, ...] = ()  # asked again about processes that appear during a capture


@dataclass(frozen=True)
class ProcessInfo:
    """The local process holding one end of a connection."""

    pid: int
    process: str  # the process name
    cmdline: str  # joined, secrets redacted, truncated
    label: str = ""  # the watched label (of the pid or an ancestor), "" when the process was not listed
    shared_with: tuple[int, ...] = ()  # other pids holding the same socket (a fork sharing its parent's)
    identity: Identity | None = None


def parse_pid_spec(specs: Iterable[str], *, pm2_all: bool = False) -> PidSpec:
    """Parse `--pids` values: each is comma-separated `PID`, `pm2:APP`, `cmd:PATTERN`, `systemd:UNIT` or
    `container:NAME|ID`, each with an optional `LABEL=` before it; the label defaults to the process's identity.
    `pm2_all` (`--pm2`) adds every PM2 app.

    A pid that does not exist, or a selector that matches nothing, is a user error (one line); a pid whose
    connections we may not read is kept, with a warning, because its connections still show up from the
    server's side.
    """
    explicit: dict[int, str] = {}
    order: list[int] = []
    selectors: list[Selector] = []
    for spec in specs:
        for item in spec_items(spec):
            selector = parse_selector(item)
            if selector is not None:
                selectors.append(selector)
                continue
            match = _SPEC_ITEM.match(item)
            if not match:
                raise ProbeError(f"bad --pids item {item!r}: expected PID, LABEL=PID (e.g. api=1234), pm2:APP, "
                                 "cmd:PATTERN, systemd:UNIT or container:NAME")
            pid = int(match.group("pid"))
            label = (match.group("label") or "").strip()
            if pid <= 0:
                raise ProbeError(f"bad --pids item {item!r}: {pid} is not a process id")
            if match.group("label") is not None and not label:
                raise ProbeError(f"bad --pids item {item!r}: the label before '=' is empty")
            daemon = pm2_daemon(pid, label)
            if daemon is not None:
                selectors.append(daemon)
                continue
            _add_pid(pid, label, explicit, order)
    given = set(order)
    if pm2_all:
        selectors.append(all_pm2_apps())
    for pid, label in selected_pids(selectors):
        _add_pid(pid, label, explicit, order)

    labels: dict[int, str] = {}
    names: dict[int, str] = {}
    warnings: list[str] = []
    for pid in list(order):
        try:
            proc = psutil.Process(pid)
            names[pid] = identity_of(pid).name or _safe_name(proc) or f"pid{pid}"
        except psutil.NoSuchProcess:
            if pid not in given:  # a selected process that exited meanwhile (a short-lived worker): not an error
                order.remove(pid)
                continue
            raise ProbeError(f"--pids: no process with pid {pid}") from None
        warning = _access_warning(proc, explicit.get(pid) or names[pid])
        if warning:
            warnings.append(warning)
    # Default labels are identities; two listed `node api.js` processes must still be told apart.
    default_names = [names[pid] for pid in order if pid not in explicit]
    for pid in order:
        if pid in explicit:
            labels[pid] = explicit[pid]
        else:
            name = names[pid]
            labels[pid] = f"{name}:{pid}" if default_names.count(name) > 1 or name in explicit.values() else name
    return PidSpec(labels=labels, warnings=warnings, selectors=tuple(selectors))


def spec_items(spec: str) -> list[str]:
    """The comma-separated items of one `--pids` value; a `cmd:` pattern takes the rest of it (commas included:
    a regular expression may hold `{1,3}`)."""
    items: list[str] = []
    pieces = spec.split(",")
    for index, piece in enumerate(pieces):
        item = piece.strip()
        if _CMD_ITEM.match(item):
            items.append(",".join(pieces[index:]).strip())
            break
        if item:
            items.append(item)
    return items


def selected_pids(selectors: Iterable[Selector]) -> list[tuple[int, str]]:
    """(pid, label) for every process the selectors mean now; the label is "" where the identity will do."""
    chosen: list[tuple[int, str]] = []
    for selector in selectors:
        for pid in resolve(selector):
            chosen.append((pid, selector.label_for(pid) if selector.label else ""))
    return chosen


def _add_pid(pid: int, label: str, explicit: dict[int, str], order: list[int]) -> None:
    if pid in order:
        previous = explicit.get(pid, "")
        if label and previous and label != previous:
            raise ProbeError(f"--pids names pid {pid} twice, as {previous!r} and {label!r}")
        if label:
            explicit[pid] = label
        return
    order.append(pid)
    if label:
        explicit[pid] = label


def _safe_name(proc: psutil.Process) -> str:
    try:
        return proc.name()
    except (psutil.AccessDenied, psutil.ZombieProcess):
        return ""


def _access_warning(proc: psutil.Process, label: str) -> str | None:
    """Why we cannot list this process's sockets, or None when we can."""
    try:
        proc.net_connections(kind="inet")
    except psutil.AccessDenied:
        try:
            owner = f" (owned by {proc.username()})"
        except (psutil.Error, KeyError):
            owner = ""
        return (f"cannot read the connections of pid {proc.pid} ({label}){owner}: permission denied; "
                "run redisprobe as that user or with sudo to see them")
    except psutil.NoSuchProcess:
        return f"pid {proc.pid} ({label}) exited while being inspected"
    except psutil.ZombieProcess:
        return f"pid {proc.pid} ({label}) is a zombie: it has exited and holds no connections"
    return None


def split_addr(addr: str) -> tuple[str, int] | None:
    """`ip:port` or `[ipv6]:port` (as CLIENT LIST and MONITOR print them) -> normalised (ip, port).

    IPv4-mapped IPv6 (`::ffff:127.0.0.1`, what a dual-stack socket reports) becomes plain IPv4, so both sides
    of a connection compare equal. Unix-socket addresses (`/path:0`) give None.
    """
    host, sep, port_text = addr.rpartition(":")
    if not sep or not port_text.isdigit() or not host or host.startswith("/"):
        return None
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return normalize_ip(host), int(port_text)


def format_addr(host: str, port: int) -> str:
    """The inverse of `split_addr`, in Redis' own style."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def redact_cmdline(argv: list[str]) -> str:
    """A command line for display: URL passwords and `-a PASSWORD` style options hidden, then truncated."""
    shown: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            shown.append("***")
            hide_next = False
            continue
        option, eq, _value = arg.partition("=")
        if option in _SECRET_OPTIONS and option.startswith("--") and eq:
            shown.append(f"{option}=***")
            continue
        if arg in _SECRET_OPTIONS:
            hide_next = True
        shown.append(redact(arg))
    # Redact before truncating: a cut URL would no longer be recognised. Inline scripts fold onto one line.
    text = " ".join(" ".join(arg.split()) if "\n" in arg else arg for arg in shown)
    return text if len(text) <= CMDLINE_MAX else text[: CMDLINE_MAX - 1] + "…"


def label_for(pid: int, watched: Mapping[int, str], levels: int = ANCESTOR_LEVELS) -> str:
    """The watched label of `pid` or of one of its ancestors (up to `levels` up), else "". A process that has
    exited is followed up from the parent it had when a socket scan saw it (rq's work horse lives milliseconds)."""
    if pid in watched:
        return watched[pid]
    for ancestor in _ancestors(pid, levels):
        if ancestor in watched:
            return watched[ancestor]
    return ""


def _ancestors(pid: int, levels: int) -> list[int]:
    try:
        return [parent.pid for parent in psutil.Process(pid).parents()[:levels]]
    except psutil.Error:
        pass
    parent = parent_when_seen(pid)
    if parent is None or parent <= 1:
        return []
    try:
        return [parent, *(p.pid for p in psutil.Process(parent).parents()[:levels - 1])]
    except psutil.Error:
        return [parent]


def describe_process(pid: int, watched: Mapping[int, str] | None = None) -> ProcessInfo:
    """Identity, redacted command line and watched label of a pid; what cannot be read is left empty."""
    cmdline = ""
    identity = identity_of(pid)
    try:
        proc = psutil.Process(pid)
        try:
            cmdline = redact_cmdline(proc.cmdline())
        except (psutil.AccessDenied, psutil.ZombieProcess):
            cmdline = ""
        name = identity.name or _safe_name(proc)
    except psutil.NoSuchProcess:
        name = ""
    return ProcessInfo(pid=pid, process=name, cmdline=cmdline, label=label_for(pid, watched or {}),
                       identity=identity)


_latest_scan: tuple[float, dict[tuple[str, int], list[_Socket]], dict[int, list[int]] | None] | None = None
"""The last scan any mapper of this process made (when, the table, the holders); never changed once made."""

SHARED_RECHECK = 0.05
"""Seconds after which a socket seen held by several processes is looked at again (fork-exec windows pass)."""


@dataclass
class _Socket:
    pid: int
    raddr: tuple[str, int]


class PidMapper:
    """Client address -> local process, through the kernel's socket table (psutil).

    The table is cached briefly and re-read on a miss, so a batch of lookups costs one scan. Thread-safe.
    """

    def __init__(self, watched: Mapping[int, str] | None = None, *, max_age: float = 1.0,
                 min_refresh: float = 0.05, selectors: Iterable[Selector] = (),
                 on_join: Callable[[str], None] | None = None) -> None:
        self.watched: dict[int, str] = dict(watched or {})
        self.selectors = tuple(selectors)
        self.on_join = on_join  # told, in one line, about each process that joined a label during the capture
        self._started = time.time()
        self._created = time.monotonic()
        self.max_age = max_age
        self.min_refresh = min_refresh
        self._lock = threading.Lock()
        self._table: dict[tuple[str, int], list[_Socket]] = {}
        self._taken = 0.0  # monotonic time of the last scan
        self._holders: dict[int, list[int]] | None = None  # socket inode -> pids, from the last scan
        self._processes: dict[tuple[int, float], ProcessInfo] = {}

    def lookup(self, client_addr: str, server_addr: str | None = None, *,
               not_before: float | None = None, fd: int | str | None = None) -> ProcessInfo | None:
        """The process whose socket has local address `client_addr` (and remote `server_addr`, when given).

        `not_before` (time.monotonic()) says the connection surely existed then: a table scanned earlier is
        re-read on a miss. A unix-socket client (`/path:0`) is found through the server's file descriptor `fd`
        (CLIENT LIST `fd`) and the kernel's unix socket diagnostics. None when the client is not local or its
        owner is invisible to us.
        """
        local = split_addr(client_addr)
        if local is None:
            return self._lookup_unix(client_addr, fd, not_before)
        remote = split_addr(server_addr) if server_addr else None
        with self._lock:
            now = time.monotonic()
            if now - self._taken > self.max_age and not self._adopt_latest(now, self.max_age, None):
                self._scan()
            found = self._find(local, remote)
            stale = now - self._taken >= self.min_refresh or (not_before is not None and self._taken < not_before)
            if not found and stale and self._adopt_latest(now, self.min_refresh, not_before):
                found = self._find(local, remote)
            elif not found and stale:
                self._scan()
                found = self._find(local, remote)
        if not found:
            return None
        pids = sorted({sock.pid for sock in found})
        if len(pids) > 1:
            pids = self._still_holding(local, remote, pids)
        return self._info(pids)

    def _still_holding(self, local: tuple[str, int], remote: tuple[str, int] | None, pids: list[int]) -> list[int]:
        """Holders of one socket that still hold it a moment later: a child caught between fork and exec holds
        every socket of its parent for a few milliseconds (until exec closes them), which is no sharing."""
        time.sleep(SHARED_RECHECK)
        with self._lock:
            self._scan()
            again = {sock.pid for sock in self._find(local, remote)}
        kept = [pid for pid in pids if pid in again]
        return kept or pids[:1]

    def _lookup_unix(self, client_addr: str, fd: int | str | None, not_before: float | None) -> ProcessInfo | None:
        path, sep, _port = client_addr.rpartition(":")
        if not sep or not path.startswith("/") or fd is None or not str(fd).isdigit():
            return None
        with self._lock:
            if self._holders is None or (not_before is not None and self._taken < not_before) or \
                    time.monotonic() - self._taken > self.min_refresh:
                self._scan()
            sockets = unix_sockets()
            pids = client_holders(path, int(fd), sockets, self._holders or {}) if sockets else []
        return self._info(sorted(set(pids))) if pids else None

    def _info(self, pids: list[int]) -> ProcessInfo:
        pids = forked_holders(pids)
        info = self._describe(pids[0])
        if len(pids) > 1:
            info = ProcessInfo(pid=info.pid, process=info.process, cmdline=info.cmdline, label=info.label,
                               shared_with=tuple(pids[1:]), identity=info.identity)
        return info

    def refresh(self) -> None:
        """Re-read the socket table now (a caller that knows new connections just appeared)."""
        with self._lock:
            self._scan()

    def _find(self, local: tuple[str, int], remote: tuple[str, int] | None) -> list[_Socket]:
        candidates = self._table.get(local, [])
        if remote is None:
            return list(candidates)
        return [sock for sock in candidates if sock.raddr == remote]

    def _scan(self) -> None:
        global _latest_scan
        started = time.monotonic()  # a scan holds the connections made before it began, not all before it ended
        table: dict[tuple[str, int], list[_Socket]] = {}
        self._holders = socket_holders()
        for pid, local, remote in connected_sockets(self._holders):
            table.setdefault(local, []).append(_Socket(pid=pid, raddr=remote))
        self._table = table
        self._taken = started
        _latest_scan = (self._taken, table, self._holders)

    def _adopt_latest(self, now: float, age: float, not_before: float | None) -> bool:
        """Take another mapper's scan instead of scanning again, when it is as recent as one of our own would have
        to be (younger than `age`, and not before `not_before`): the table is the host's, and the nodes of a
        cluster (one mapper each) see a burst of new connections at once. Never a scan older than this mapper: a
        new mapper is asked about connections its caller has just seen, which an earlier caller's scan may lack."""
        latest = _latest_scan
        if latest is None or latest[0] <= self._taken or latest[0] < self._created or now - latest[0] >= age or \
                (not_before is not None and latest[0] < not_before):
            return False
        self._taken, self._table, self._holders = latest
        return True

    def _describe(self, pid: int) -> ProcessInfo:
        try:
            key = (pid, psutil.Process(pid).create_time())
        except psutil.Error:
            return describe_process(pid, self.watched)
        cached = self._processes.get(key)
        if cached is None:
            cached = self._processes[key] = self._join(describe_process(pid, self.watched), created=key[1])
        return cached

    def _join(self, info: ProcessInfo, created: float) -> ProcessInfo:
        """A process that appeared during the capture and matches a selector joins that selector's label (a
        PM2 restart, a new cluster instance); a child a listed process started meanwhile carries its label. Both
        are said once, and the child's own children then carry the label too."""
        if info.label:
            if info.pid not in self.watched and created >= self._started:
                self.watched[info.pid] = info.label
                if self.on_join is not None:
                    self.on_join(f"{JOINED} pid {info.pid} ({info.process or '?'}) is now watched as {info.label}: "
                                 "a child of a listed process, started during the capture")
            return info
        if not self.selectors:
            return info
        for selector in self.selectors:
            if selector.matches(info.pid, info.identity):
                label = selector.label_for(info.pid, info.identity)
                self.watched[info.pid] = label
                if self.on_join is not None:
                    self.on_join(joined_text(info, label, selector))
                return ProcessInfo(pid=info.pid, process=info.process, cmdline=info.cmdline, label=label,
                                   shared_with=info.shared_with, identity=info.identity)
        return info


def joined_text(info: ProcessInfo, label: str, selector: Selector) -> str:
    """The timeline's line for a process that joined a label mid-capture."""
    return f"{JOINED} pid {info.pid} ({info.process or '?'}) is now watched as {label}: it matches " \
           f"{selector.text} and appeared during the capture"


def forked_holders(pids: list[int]) -> list[int]:
    """The holders of one socket that can really share it, the way a socket is shared: by fork. Kept are the first
    holder that no other holder descends from, its descendants, and the holders forked by the same parent (siblings
    whose parent has closed its copy or exited). Any other holder is a reading raced by process churn (a pid reused
    between the file descriptor scan and the socket table read), not a shared connection, and is left out."""
    if len(pids) < 2:
        return pids
    ancestors: dict[int, set[int]] = {}
    parent: dict[int, int | None] = {}
    for pid in pids:
        try:
            chain = psutil.Process(pid).parents()
        except psutil.Error:
            chain = []
        ancestors[pid] = {p.pid for p in chain}
        parent[pid] = chain[0].pid if chain else None
    held = set(pids)
    root = next((pid for pid in pids if not ancestors[pid] & held), pids[0])
    tops = {root} | {pid for pid in pids if parent[pid] is not None and parent[pid] == parent[root]}
    kept = [pid for pid in pids if pid in tops or ancestors[pid] & tops]
    return [root, *(pid for pid in kept if pid != root)]
