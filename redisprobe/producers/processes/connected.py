"""What running processes are really connected to: `redisprobe info --pids`.

A config file says which Redis a process *should* use; the kernel says which one it *does*. For each listed
process (and its children: PM2, npm and shells sit above the real client) we take its established sockets,
ask each remote end whether it is Redis, find the process's own connection in that server's CLIENT LIST
(its db, client id, name, age), and compare the servers by run_id: two servers on the same port with the same
version are still two servers.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import msgspec
import psutil
import redis
import redis.exceptions as rex
from redis.backoff import NoBackoff
from redis.retry import Retry

from redisprobe.findings import Finding, to_builtins
from redisprobe.producers.observers.clients import lib_of, parse_client_list
from redisprobe.producers.processes.identity import identity_of
from redisprobe.producers.processes.pidmap import PidSpec, describe_process, format_addr, normalize_ip, split_addr
from redisprobe.producers.processes.sockettable import socket_inodes
from redisprobe.producers.processes.unixdiag import connected_table
from redisprobe.targets.topology import cluster_identity
from redisprobe.targets.url import Target, ping, redact

PROBE_NAME = "redisprobe:info"
# Well-known ports of other protocols: never sent a Redis PING (it would only land in their error logs).
NOT_REDIS_PORTS = frozenset({21, 22, 25, 53, 80, 110, 143, 389, 443, 465, 587, 993, 995, 1433, 1521, 2049, 3306,
                             5432, 5672, 8080, 8443, 9042, 9092, 9200, 11211, 27017})
_SS_USER = re.compile(r'\("(?P<name>[^"]*)",pid=(?P<pid>\d+),fd=(?P<fd>\d+)\)')


class LiveServer(msgspec.Struct, frozen=True, kw_only=True):
    """A Redis server as one connection reaches it; `run_id` is its identity, the rest can coincide."""

    run_id: str = ""
    host: str = ""  # as the process reaches it (an IP, or the unix socket path)
    port: int = 0
    version: str = ""
    role: str = ""  # master / slave
    dataset: str = ""  # the data it serves: a primary and its replicas share it, so do the nodes of one cluster


class LiveConnection(msgspec.Struct, frozen=True, kw_only=True):
    """One socket of a watched process to a Redis server, as that server sees it."""

    pid: int  # the process holding the socket: the listed pid or one of its children
    laddr: str  # the process's end, which the server lists as the client's `addr`
    raddr: str  # the server's end
    server: LiveServer
    db: int | None = None  # None when the connection was not found in CLIENT LIST
    client_id: int | None = None
    name: str = ""
    lib: str = ""
    age: int | None = None  # seconds since the connection was opened
    note: str = ""  # why db/client are unknown, when they are
    process: str = ""  # the identity of the pid holding it (a child's own, `batch-processor#1`, `celery worker`)


class LivePid(msgspec.Struct, frozen=True, kw_only=True):
    pid: int
    label: str
    name: str = ""  # its identity: how its owner knows it (PM2 app#instance, unit, `node api.js`)
    source: str = ""  # where the identity comes from: pm2, systemd, container, command
    cmdline: str = ""
    children: list[int] = []
    connections: list[LiveConnection] = []
    unreachable: list[str] = []  # Redis endpoints it talks to that we could not inspect, and why


class LiveReport(msgspec.Struct, frozen=True, kw_only=True):
    pids: list[LivePid]
    findings: list[Finding] = []
    warnings: list[str] = []
    unknown: list[str] = []  # listed processes that could not be checked, and what to pass: never "healthy"

    def to_json(self) -> Any:
        """Plain JSON data (dicts, lists, strings, numbers), ready for json.dumps."""
        return to_builtins(self)


@dataclass(frozen=True)
class _Socket:
    pid: int
    local: str  # formatted like Redis prints client addresses (`/path:0` for a unix socket)
    remote: str  # "ip:port" or the unix socket path
    unix_fd: int | None = None  # the server-side fd of a unix connection (CLIENT LIST `fd`)


@dataclass
class _Endpoint:
    """What one remote end said when asked whether it is Redis."""

    address: str
    is_redis: bool = False
    server: LiveServer = field(default_factory=LiveServer)
    clients: list[dict[str, str]] | None = None  # None: CLIENT LIST unavailable
    problem: str = ""  # a Redis endpoint we could not fully inspect, said for the user
    unanswered: bool = False  # refused or silent: whether it is Redis, and which, is unknown


def inspect_pids(spec: PidSpec, *, auth_url: Target | None, timeout: float = 1.5) -> LiveReport:
    """Inspect the listed processes' live Redis connections and compare where they lead."""
    warnings = list(spec.warnings)
    members: dict[int, list[int]] = {}
    for pid in spec.labels:
        try:
            children = [child.pid for child in psutil.Process(pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            warnings.append(f"pid {pid} ({spec.labels[pid]}) has exited")
            children = []
        members[pid] = [child for child in children if child not in spec.labels]
    sockets: dict[int, list[_Socket]] = {}
    unix_table = _unix_table() if _has_unix_sockets(members) else {}
    for pid, children in members.items():
        found: list[_Socket] = []
        for member in (pid, *children):
            found.extend(_inet_sockets(member, warnings if member == pid else None))
            found.extend(_unix_sockets(member, unix_table, auth_url.unix_path if auth_url else None))
        sockets[pid] = found
    addresses = sorted({sock.remote for found in sockets.values() for sock in found})
    with ThreadPoolExecutor(max_workers=min(16, max(1, len(addresses)))) as pool:
        endpoints = dict(zip(addresses, pool.map(lambda a: _probe(a, auth_url, timeout), addresses), strict=True))

    entries: list[LivePid] = []
    for pid, label in spec.labels.items():
        process = describe_process(pid, spec.labels)
        connections: list[LiveConnection] = []
        unreachable: list[str] = []
        for sock in sockets.get(pid, []):
            endpoint = endpoints[sock.remote]
            if not endpoint.is_redis:
                text = f"{sock.remote}: {endpoint.problem}"
                if endpoint.unanswered and text not in unreachable:
                    unreachable.append(text)
                continue
            if endpoint.problem and not endpoint.server.run_id:
                text = f"{sock.remote}: {endpoint.problem}"
                if text not in unreachable:
                    unreachable.append(text)
                continue
            connections.append(_connection(sock, endpoint))
        entries.append(LivePid(pid=pid, label=label, name=process.process, cmdline=process.cmdline,
                               source=process.identity.source if process.identity else "",
                               children=members.get(pid, []), connections=with_identities(connections),
                               unreachable=unreachable))
    for entry in entries:
        if not entry.connections and not entry.unreachable and psutil.pid_exists(entry.pid):
            warnings.append(f"pid {entry.pid} ({entry.label}) has no open connection to a Redis server right now "
                            "(idle pool, lazy connect, or not a Redis client)")
    return LiveReport(pids=entries, findings=_findings(entries), warnings=warnings, unknown=_unknown(entries))


def _unknown(entries: list[LivePid]) -> list[str]:
    """One line per listed process with a connection we could not check, with what would let us check it."""
    lines = []
    for entry in entries:
        for conn in entry.connections:  # reached, but its db could not be read: the db comparison is unknown
            if conn.db is None and "refused" in conn.note:
                lines.append(f"pid {conn.pid} ({entry.label}) -> {conn.raddr}: {conn.note}; pass --url with "
                             "credentials allowed to run CLIENT LIST")
        if not entry.unreachable:
            continue
        problems = "; ".join(entry.unreachable)
        if any("auth" in problem or "password" in problem for problem in entry.unreachable):
            fix = "pass --url with the user name and password this server wants (as the application's URL has them)"
        elif any("refused" in problem or "did not answer" in problem for problem in entry.unreachable):
            fix = ("check that this server accepts one more connection from here (maxclients, a firewall, a "
                   "paused server) and run again")
        else:
            fix = "pass --url with credentials allowed to run INFO and CLIENT LIST"
        lines.append(f"pid {entry.pid} ({entry.label}) could not be checked ({problems}): its server and db are "
                     f"unknown; {fix}")
    return lines


def with_identities(connections: list[LiveConnection]) -> list[LiveConnection]:
    """Each connection with the identity of the process holding it (a child has its own)."""
    names: dict[int, str] = {}
    for conn in connections:
        if conn.pid not in names:
            names[conn.pid] = identity_of(conn.pid).name
    return [msgspec.structs.replace(conn, process=names[conn.pid]) for conn in connections]


# -- sockets ---------------------------------------------------------------------------------------------------


def _inet_sockets(pid: int, warnings: list[str] | None) -> list[_Socket]:
    try:
        connections = psutil.Process(pid).net_connections(kind="inet")
    except psutil.AccessDenied:
        if warnings is not None and not any(f"pid {pid} " in w for w in warnings):
            warnings.append(f"cannot read the connections of pid {pid}: permission denied; run as its user or sudo")
        return []
    except psutil.Error:
        return []
    found = []
    for conn in connections:
        if conn.status != psutil.CONN_ESTABLISHED or not conn.raddr or not conn.laddr:
            continue
        if conn.raddr.port in NOT_REDIS_PORTS:
            continue
        local = format_addr(normalize_ip(conn.laddr.ip), conn.laddr.port)
        remote = format_addr(normalize_ip(conn.raddr.ip), conn.raddr.port)
        found.append(_Socket(pid=pid, local=local, remote=remote))
    return found


def _has_unix_sockets(members: dict[int, list[int]]) -> bool:
    for pid, children in members.items():
        for member in (pid, *children):
            with contextlib.suppress(psutil.Error):
                if psutil.Process(member).net_connections(kind="unix"):
                    return True
    return False


def _unix_table() -> dict[int, tuple[str, int, list[tuple[str, int, int]]]]:
    """inode -> (path, peer inode, [(process, pid, fd)]) for every connected unix stream socket, from `ss`.

    Only the kernel's sock_diag knows a unix socket's peer; `ss` asks it, and without `ss` we ask it ourselves.
    """
    ss = shutil.which("ss")
    if not ss:
        return connected_table()  # the same answer from the kernel's sock_diag, asked directly
    try:
        out = subprocess.run([ss, "-xpnH", "state", "established"], capture_output=True, text=True, timeout=5,
                             check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    table: dict[int, tuple[str, int, list[tuple[str, int, int]]]] = {}
    for line in out.splitlines():
        parts = line.split()
        # Netid Recv-Q Send-Q Local-path Local-inode Peer-path Peer-inode [users:(...)]  (state filtered: no State)
        if len(parts) < 7 or parts[0] != "u_str" or not parts[4].isdigit() or not parts[6].isdigit():
            continue
        users = [(m.group("name"), int(m.group("pid")), int(m.group("fd"))) for m in _SS_USER.finditer(line)]
        table[int(parts[4])] = (parts[3], int(parts[6]), users)
    return table


def _unix_sockets(pid: int, table: dict[int, tuple[str, int, list[tuple[str, int, int]]]],
                  auth_path: str | None) -> list[_Socket]:
    if not table:
        return []
    found = []
    for inode in socket_inodes(pid) or ():
        mine = table.get(inode)
        if mine is None:
            continue
        peer = table.get(mine[1])
        if peer is None or peer[0] in ("*", "") or not peer[2]:
            continue  # the peer end has no path: we are the listening side, or it is an anonymous pair
        owner, _server_pid, server_fd = peer[2][0]
        # Only servers: other daemons on unix sockets (dbus, docker, PM2's own RPC) are not PINGed.
        if not any(kind in owner for kind in ("redis", "valkey", "keydb")) and peer[0] != auth_path:
            continue
        found.append(_Socket(pid=pid, local=f"{peer[0]}:0", remote=peer[0], unix_fd=server_fd))
    return found


# -- asking each endpoint --------------------------------------------------------------------------------------


def _probe(address: str, auth: Target | None, timeout: float) -> _Endpoint:
    """Is `address` Redis, which one, and who is connected to it? Never raises."""
    endpoint = _Endpoint(address=address)
    options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout, "protocol": 2,
                               "retry": Retry(NoBackoff(), 0), "client_name": None}
    split = split_addr(address)
    if split is None:
        options["unix_socket_path"] = address
        use_auth = auth is not None and auth.unix_path == address
    else:
        options["host"], options["port"] = split
        # The password goes only where it belongs: the --url's port (any host: localhost vs 127.0.0.1).
        use_auth = auth is not None and auth.port == split[1] and auth.unix_path is None
        if use_auth and auth is not None and auth.tls:
            options["ssl"] = True
    if use_auth and auth is not None:
        options["username"], options["password"] = auth.username, auth.password
    client = redis.Redis(**options)
    try:
        try:
            ping(client)
        except rex.AuthenticationError as exc:
            endpoint.is_redis = True
            endpoint.problem = _auth_problem(exc, use_auth)
            return endpoint
        except rex.ResponseError as exc:
            if _is_auth_error(exc):
                endpoint.is_redis = True
                endpoint.problem = _auth_problem(exc, use_auth)
            return endpoint
        except (rex.RedisError, OSError) as exc:
            endpoint.problem = _unanswered(exc, timeout, split[1] if split else None)
            endpoint.unanswered = bool(endpoint.problem)
            return endpoint  # not Redis (skipped quietly), or refused or silent (its state unknown)
        endpoint.is_redis = True
        try:
            info = {**client.info("server"), **client.info("replication")}
        except (rex.RedisError, OSError) as exc:
            endpoint.problem = f"INFO refused ({_short(exc)}): cannot tell which server this is"
            return endpoint
        endpoint.server = LiveServer(run_id=str(info.get("run_id", "")), host=split[0] if split else address,
                                     port=split[1] if split else 0, version=str(info.get("redis_version", "")),
                                     role=str(info.get("role", "")), dataset=_dataset(client, info))
        try:
            endpoint.clients = parse_client_list(client.execute_command("CLIENT", "LIST"))
        except (rex.RedisError, OSError) as exc:
            endpoint.problem = f"CLIENT LIST refused ({_short(exc)}): db and client id unknown"
    finally:
        with contextlib.suppress(Exception):
            client.close()
    return endpoint


def _dataset(client: redis.Redis, info: dict[str, Any]) -> str:
    """Which data a server serves, so that a process on a replica and one on its primary, or two processes on two
    nodes of one cluster, are not taken for processes on different servers. A primary and its replicas share
    `master_replid` (unrelated servers never do); a cluster's nodes share the list of node ids they know."""
    if info.get("redis_mode") == "cluster":
        identity = cluster_identity(client)
        if identity:
            return f"cluster:{identity}"
    replid = str(info.get("master_replid", ""))
    return f"replid:{replid}" if replid else f"run_id:{info.get('run_id', '')}"


REDIS_PORTS = range(6379, 6400)
"""Ports where a server that does not answer is taken for a Redis we could not check (elsewhere, a silent peer
is more likely some other protocol waiting for its own greeting)."""


def _unanswered(exc: BaseException, timeout: float, port: int | None) -> str:
    """Why an endpoint the process is connected to would not let us ask it anything ("" when it answered as
    something that is not Redis: a protocol error, a closed connection)."""
    text = str(exc)
    if isinstance(exc, rex.TimeoutError | TimeoutError):
        if port is not None and port not in REDIS_PORTS:
            return ""
        return f"did not answer PING in {timeout:g}s: whether it is Redis, and which, is unknown"
    if "max number of clients" in text:
        return "refused our connection (max number of clients reached)"
    if isinstance(exc, ConnectionRefusedError) or "refused" in text.lower():
        return "refused our connection"
    return ""


def _is_auth_error(exc: BaseException) -> bool:
    text = str(exc)
    return any(marker in text for marker in ("NOAUTH", "Authentication required", "WRONGPASS", "invalid password"))


def _auth_problem(exc: BaseException, used_auth: bool) -> str:
    text = str(exc)
    if used_auth and ("WRONGPASS" in text or "invalid" in text):
        return "authentication failed: wrong user name or password in --url"
    return "auth required: pass --url with the password"


def _short(exc: BaseException) -> str:
    text = redact(str(exc)).strip().splitlines()
    body = text[0] if text else type(exc).__name__
    if isinstance(exc, rex.NoPermissionError) and not body.startswith("NOPERM"):
        body = f"NOPERM {body}"
    return body


def _connection(sock: _Socket, endpoint: _Endpoint) -> LiveConnection:
    base = {"pid": sock.pid, "laddr": sock.local, "raddr": sock.remote, "server": endpoint.server}
    if endpoint.clients is None:
        return LiveConnection(**base, note=endpoint.problem)
    for fields in endpoint.clients:
        if sock.unix_fd is not None:
            matched = fields.get("fd") == str(sock.unix_fd) and fields.get("addr", "").startswith(sock.remote)
        else:
            matched = split_addr(fields.get("addr", "")) == split_addr(sock.local)
        if matched:
            return LiveConnection(**base, db=int(fields.get("db", "0") or 0), client_id=int(fields["id"]),
                                  name=fields.get("name", ""), lib=lib_of(fields), age=int(fields.get("age", "0") or 0))
    return LiveConnection(**base, note="not in the server's CLIENT LIST: a proxy or NAT in between, or it just closed")


# -- findings --------------------------------------------------------------------------------------------------


def _findings(entries: list[LivePid]) -> list[Finding]:
    """different-server when the processes share no data (a replica shares its primary's, a cluster node its
    cluster's); different-db when they share a server's data but no db."""
    reaching = [entry for entry in entries if any(c.server.run_id for c in entry.connections)]
    if len(reaching) < 2:
        return []
    shared = {entry.pid: {_data_of(c.server) for c in entry.connections if c.server.run_id} for entry in reaching}
    common = set.intersection(*shared.values())
    if not common:
        return [_different_server(reaching)]
    findings = []
    for dataset in sorted(common):
        dbs = {entry.pid: {c.db for c in entry.connections if _data_of(c.server) == dataset and c.db is not None}
               for entry in reaching}
        known = {pid: found for pid, found in dbs.items() if found}
        if len(known) >= 2 and not set.intersection(*known.values()):
            findings.append(_different_db(reaching, dataset, known))
    return findings


def _data_of(server: LiveServer) -> str:
    return server.dataset or f"run_id:{server.run_id}"


def _evidence(entry: LivePid, conn: LiveConnection) -> str:
    who = f"pid {conn.pid} ({entry.label})" if conn.pid == entry.pid else \
        f"pid {conn.pid} (child of {entry.pid}, {entry.label})"
    where = conn.raddr if conn.server.port else f"unix:{conn.raddr}"
    client = f", client id {conn.client_id}" if conn.client_id is not None else ""
    db = f"db {conn.db}" if conn.db is not None else "db unknown"
    return (f"{who} -> {where}: run_id {conn.server.run_id[:12]}, {conn.server.version or '?'} "
            f"{conn.server.role or '?'}, {db}{client}")


def _different_server(reaching: list[LivePid]) -> Finding:
    servers: dict[str, LiveServer] = {}
    evidence = []
    for entry in reaching:
        for conn in entry.connections:
            if conn.server.run_id:
                servers.setdefault(conn.server.run_id, conn.server)
                evidence.append(_evidence(entry, conn))
    labels = " and ".join(entry.label for entry in reaching)
    summary = f"{labels} are connected to different Redis servers ({len(servers)} distinct run_ids), so they " \
              "cannot see each other's keys"
    ports = {server.port for server in servers.values()}
    versions = {server.version for server in servers.values()}
    if len(ports) == 1 and len(versions) == 1:
        port, version = next(iter(ports)), next(iter(versions))
        trap = f"same port {port}" if port else "same kind of socket"
        summary += f"; {trap} and same version {version}: only run_id tells them apart"
    return Finding(rule="different-server", severity="error", summary=summary, evidence=evidence)


def _different_db(reaching: list[LivePid], dataset: str, dbs: dict[int, set[int]]) -> Finding:
    evidence = []
    run_ids = set()
    for entry in reaching:
        for conn in entry.connections:
            if _data_of(conn.server) == dataset:
                evidence.append(_evidence(entry, conn))
                run_ids.add(conn.server.run_id)
    parts = [f"{entry.label} uses db {', '.join(str(db) for db in sorted(dbs[entry.pid]))}"
             for entry in reaching if entry.pid in dbs]
    where = f"same server (run_id {next(iter(run_ids))[:12]})" if len(run_ids) == 1 else \
        f"same data ({len(run_ids)} servers of one replication group)"
    summary = f"{where} but different databases: {'; '.join(parts)}"
    return Finding(rule="different-db", severity="error", summary=summary, evidence=evidence)


# -- where a process is connected, for `monitor --pids` ----------------------------------------------------------


@dataclass
class Whereabouts:
    """The endpoints one process (and its children) is connected to right now, told apart by asking them."""

    redis: dict[str, LiveServer]  # address -> the Redis server there (run_id may be empty: auth, refused)
    other: list[str]  # endpoints that are not Redis
    readable: bool = True  # False: its sockets could not be read (permission denied, exited)


def whereabouts(pid: int, *, auth_url: Target | None = None, timeout: float = 0.5) -> Whereabouts:
    """Where `pid` and its children are connected: which endpoints are Redis (and which server), which are not."""
    try:
        members = [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
    except psutil.Error:
        return Whereabouts(redis={}, other=[], readable=False)
    warnings: list[str] = []
    found: list[_Socket] = []
    table = _unix_table() if _has_unix_sockets({pid: members[1:]}) else {}
    for member in members:
        found.extend(_inet_sockets(member, warnings if member == pid else None))
        found.extend(_unix_sockets(member, table, auth_url.unix_path if auth_url else None))
    addresses = sorted({sock.remote for sock in found})
    with ThreadPoolExecutor(max_workers=min(8, max(1, len(addresses)))) as pool:
        endpoints = list(pool.map(lambda a: _probe(a, auth_url, timeout), addresses))
    redis_ends = {e.address: e.server for e in endpoints if e.is_redis or e.unanswered}
    other = [e.address for e in endpoints if not (e.is_redis or e.unanswered)]
    return Whereabouts(redis=redis_ends, other=other, readable=not warnings)
