"""Which local process is behind a Redis client address, and the `--pids` spec that names the ones we watch.

The server only knows a client as `ip:port`; the kernel knows which process holds that socket. Joining the two
(while the connection lives: ports are reused quickly) is what turns "client 42 deleted the key" into
"pid 1234 (processor) deleted the key".
"""

from __future__ import annotations

import ipaddress
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import psutil

from redisprobe.errors import ProbeError
from redisprobe.target import redact

CMDLINE_MAX = 200
ANCESTOR_LEVELS = 3  # PM2 / npm / sh wrappers put the real client a few levels below the listed pid

_SPEC_ITEM = re.compile(r"^(?:(?P<label>[^=,]*)=)?\s*(?P<pid>\d+)$")
# Command-line options that carry a password as the next argument (redis-cli -a, server configs...).
_SECRET_OPTIONS = {"-a", "--pass", "--password", "--requirepass", "--masterauth", "--auth"}


@dataclass(frozen=True)
class PidSpec:
    """The processes the user asked about: pid -> label, plus what we could not check about them."""

    labels: dict[int, str]
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ProcessInfo:
    """The local process holding one end of a connection."""

    pid: int
    process: str  # the process name
    cmdline: str  # joined, secrets redacted, truncated
    label: str = ""  # the watched label (of the pid or an ancestor), "" when the process was not listed
    shared_with: tuple[int, ...] = ()  # other pids holding the same socket (a fork sharing its parent's)


def parse_pid_spec(specs: Iterable[str]) -> PidSpec:
    """Parse `--pids` values: each is comma-separated `PID` or `LABEL=PID`; the label defaults to the name.

    A pid that does not exist is a user error (one line); a pid whose connections we may not read is kept,
    with a warning, because its connections still show up from the server's side.
    """
    explicit: dict[int, str] = {}
    order: list[int] = []
    for spec in specs:
        for raw in spec.split(","):
            item = raw.strip()
            if not item:
                continue
            match = _SPEC_ITEM.match(item)
            if not match:
                raise ProbeError(f"bad --pids item {item!r}: expected PID or LABEL=PID (e.g. api=1234)")
            pid = int(match.group("pid"))
            label = (match.group("label") or "").strip()
            if pid <= 0:
                raise ProbeError(f"bad --pids item {item!r}: {pid} is not a process id")
            if match.group("label") is not None and not label:
                raise ProbeError(f"bad --pids item {item!r}: the label before '=' is empty")
            if pid in order:
                previous = explicit.get(pid, "")
                if label and previous and label != previous:
                    raise ProbeError(f"--pids names pid {pid} twice, as {previous!r} and {label!r}")
                if label:
                    explicit[pid] = label
                continue
            order.append(pid)
            if label:
                explicit[pid] = label

    labels: dict[int, str] = {}
    names: dict[int, str] = {}
    warnings: list[str] = []
    for pid in order:
        try:
            proc = psutil.Process(pid)
            names[pid] = _safe_name(proc) or f"pid{pid}"
        except psutil.NoSuchProcess:
            raise ProbeError(f"--pids: no process with pid {pid}") from None
        warning = _access_warning(proc, explicit.get(pid) or names[pid])
        if warning:
            warnings.append(warning)
    # Default labels are process names; two listed `node` processes must still be told apart.
    default_names = [names[pid] for pid in order if pid not in explicit]
    for pid in order:
        if pid in explicit:
            labels[pid] = explicit[pid]
        else:
            name = names[pid]
            labels[pid] = f"{name}:{pid}" if default_names.count(name) > 1 or name in explicit.values() else name
    return PidSpec(labels=labels, warnings=warnings)


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


def normalize_ip(host: str) -> str:
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


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
    """The watched label of `pid` or of one of its ancestors (up to `levels` up), else ""."""
    if pid in watched:
        return watched[pid]
    try:
        for parent in psutil.Process(pid).parents()[:levels]:
            if parent.pid in watched:
                return watched[parent.pid]
    except psutil.Error:
        pass
    return ""


def describe_process(pid: int, watched: Mapping[int, str] | None = None) -> ProcessInfo:
    """Name, redacted command line and watched label of a pid; what cannot be read is left empty."""
    name = cmdline = ""
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            name = _safe_name(proc)
            try:
                cmdline = redact_cmdline(proc.cmdline())
            except (psutil.AccessDenied, psutil.ZombieProcess):
                cmdline = ""
    except psutil.NoSuchProcess:
        pass
    return ProcessInfo(pid=pid, process=name, cmdline=cmdline, label=label_for(pid, watched or {}))


@dataclass
class _Socket:
    pid: int
    raddr: tuple[str, int]


class PidMapper:
    """Client address -> local process, through the kernel's socket table (psutil).

    The table is cached briefly and re-read on a miss, so a batch of lookups costs one scan. Thread-safe.
    """

    def __init__(self, watched: Mapping[int, str] | None = None, *, max_age: float = 1.0,
                 min_refresh: float = 0.05) -> None:
        self.watched: dict[int, str] = dict(watched or {})
        self.max_age = max_age
        self.min_refresh = min_refresh
        self._lock = threading.Lock()
        self._table: dict[tuple[str, int], list[_Socket]] = {}
        self._taken = 0.0  # monotonic time of the last scan
        self._processes: dict[tuple[int, float], ProcessInfo] = {}

    def lookup(self, client_addr: str, server_addr: str | None = None, *,
               not_before: float | None = None) -> ProcessInfo | None:
        """The process whose socket has local address `client_addr` (and remote `server_addr`, when given).

        `not_before` (time.monotonic()) says the connection surely existed then: a table scanned earlier is
        re-read on a miss. None when the client is not local, is a unix socket, or its owner is invisible to us.
        """
        local = split_addr(client_addr)
        if local is None:
            return None
        remote = split_addr(server_addr) if server_addr else None
        with self._lock:
            now = time.monotonic()
            if now - self._taken > self.max_age:
                self._scan()
            found = self._find(local, remote)
            stale = now - self._taken >= self.min_refresh or (not_before is not None and self._taken < not_before)
            if not found and stale:
                self._scan()
                found = self._find(local, remote)
        if not found:
            return None
        pids = sorted({sock.pid for sock in found})
        info = self._describe(pids[0])
        if len(pids) > 1:
            info = ProcessInfo(pid=info.pid, process=info.process, cmdline=info.cmdline, label=info.label,
                               shared_with=tuple(pids[1:]))
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
        table: dict[tuple[str, int], list[_Socket]] = {}
        for pid, laddr, raddr in _connected_sockets():
            local = (normalize_ip(laddr.ip), laddr.port)
            remote = (normalize_ip(raddr.ip), raddr.port)
            table.setdefault(local, []).append(_Socket(pid=pid, raddr=remote))
        self._table = table
        self._taken = time.monotonic()

    def _describe(self, pid: int) -> ProcessInfo:
        try:
            key = (pid, psutil.Process(pid).create_time())
        except psutil.Error:
            return describe_process(pid, self.watched)
        cached = self._processes.get(key)
        if cached is None:
            cached = self._processes[key] = describe_process(pid, self.watched)
        return cached


def _connected_sockets() -> Iterator[tuple[int, Any, Any]]:
    """(pid, laddr, raddr) of every connected inet socket whose owner we can see."""
    try:
        for conn in psutil.net_connections(kind="inet"):
            if conn.pid is not None and conn.laddr and conn.raddr:
                yield conn.pid, conn.laddr, conn.raddr
        return
    except psutil.AccessDenied:  # macOS without root: the system-wide table is closed, our own processes are not
        pass
    for proc in psutil.process_iter():
        try:
            connections = proc.net_connections(kind="inet")
        except psutil.Error:
            continue
        for conn in connections:
            if conn.laddr and conn.raddr:
                yield proc.pid, conn.laddr, conn.raddr
