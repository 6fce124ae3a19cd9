"""inspect_pids on real processes: where their live connections lead, and the findings that follow."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis

from redisprobe.producers import procs
from redisprobe.producers.processes.connected import LiveReport, inspect_pids
from redisprobe.producers.processes.pidmap import parse_pid_spec
from redisprobe.targets.sandbox import Sandbox, sandbox
from redisprobe.targets.url import parse_target

# Holds one connection (db from the URL) until stdin closes; extra args are host:port of raw TCP peers to hold.
CHILD = ("import socket, sys, redis; r = redis.Redis.from_url(sys.argv[1], single_connection_client=True); "
         "r.client_setname('live-child'); held = [socket.create_connection((a.rsplit(':', 1)[0], "
         "int(a.rsplit(':', 1)[1]))) for a in sys.argv[2:]]; print(r.client_id(), flush=True); sys.stdin.read()")


class Children:
    """Every process a test starts, stopped in the fixture's `finally`."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def python(self, url: str, *raw_peers: str) -> tuple[int, int]:
        proc = procs.spawn([sys.executable, "-c", CHILD, url, *raw_peers], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE)
        self.procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, "the python client died"
        return proc.pid, int(line)

    def cli(self, *args: str, wrap: bool = False) -> int:
        """redis-cli blocked on BLPOP (holding its connection); its pid, once it is connected."""
        argv = ["redis-cli", *args, "BLPOP", "live:never", "0"]
        if wrap:  # a shell that stays above redis-cli, like PM2 or npm above node
            argv = ["sh", "-c", " ".join(argv) + "; true"]
        proc = procs.spawn(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc.pid

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(proc.pid).children(recursive=True):
                    child.terminate()
            procs.stop(proc)


@pytest.fixture
def children() -> Iterator[Children]:
    spawned = Children()
    try:
        yield spawned
    finally:
        spawned.stop()


def wait_blocked(url: str, count: int, timeout: float = 15.0, **kwargs: object) -> None:
    """Until `count` clients are blocked in BLPOP on that server (redis-cli is connected)."""
    client = redis.Redis.from_url(url, **kwargs)  # type: ignore[arg-type]
    deadline = time.monotonic() + timeout
    try:
        while sum(1 for c in client.client_list() if c.get("cmd") == "blpop") < count:
            assert time.monotonic() < deadline, "redis-cli never blocked"
            time.sleep(0.05)
    finally:
        client.close()


def by_label(report: LiveReport) -> dict[str, object]:
    return {entry.label: entry for entry in report.pids}


def test_split_servers_are_different_servers(children: Children) -> None:
    with sandbox("split") as box:
        api_url, processor_url = box.role_urls["api"], box.role_urls["processor"]
        api_pid, api_client = children.python(api_url)
        port = str(box.servers[1].port)
        cli_pid = children.cli("-h", "127.0.0.2", "-p", port)
        wait_blocked(processor_url, 1)
        report = inspect_pids(parse_pid_spec([f"api={api_pid}", f"processor={cli_pid}"]), auth_url=None)
        rules = [f.rule for f in report.findings]
        assert rules == ["different-server"]
        finding = report.findings[0]
        assert finding.severity == "error"
        assert f"same port {port}" in finding.summary and "7." in finding.summary and "run_id" in finding.summary
        assert any(f"pid {api_pid} (api)" in line for line in finding.evidence)
        assert any(f"pid {cli_pid} (processor)" in line and "127.0.0.2" in line for line in finding.evidence)
        api, processor = report.pids
        assert [c.client_id for c in api.connections] == [api_client]
        assert api.connections[0].server.run_id != processor.connections[0].server.run_id
        assert api.connections[0].server.port == processor.connections[0].server.port
        assert processor.name == "redis-cli" and processor.connections[0].db == 0
        data = report.to_json()
        json.dumps(data)
        assert data["findings"][0]["rule"] == "different-server"


def test_same_server_different_db(shared_sandbox: Sandbox, children: Children) -> None:
    url = shared_sandbox.urls[0]
    port = str(shared_sandbox.servers[0].port)
    api_pid, _ = children.python(url)
    cli_pid = children.cli("-p", port, "-n", "3")
    wait_blocked(url.replace("/0", "/3"), 1)
    report = inspect_pids(parse_pid_spec([f"api={api_pid},processor={cli_pid}"]), auth_url=None)
    assert [f.rule for f in report.findings] == ["different-db"]
    summary = report.findings[0].summary
    assert "api uses db 0" in summary and "processor uses db 3" in summary


def test_same_server_same_db_is_healthy(shared_sandbox: Sandbox, children: Children) -> None:
    url = shared_sandbox.urls[0]
    port = str(shared_sandbox.servers[0].port)
    api_pid, api_client = children.python(url)
    wrapper_pid = children.cli("-p", port, wrap=True)
    wait_blocked(url, 1)
    report = inspect_pids(parse_pid_spec([f"api={api_pid}", f"worker={wrapper_pid}"]), auth_url=None)
    assert report.findings == []
    api, worker = report.pids
    (conn,) = api.connections
    assert conn.client_id == api_client and conn.name == "live-child" and conn.db == 0 and conn.age is not None
    assert conn.server.version and conn.server.role == "master" and conn.server.run_id
    # The worker's connection belongs to redis-cli, a child of the listed shell.
    (cli_conn,) = [c for c in worker.connections if c.client_id is not None]
    assert cli_conn.pid != wrapper_pid and cli_conn.pid in worker.children
    assert psutil.Process(cli_conn.pid).name() == "redis-cli"


def test_auth_required_and_auth_given(children: Children) -> None:
    with sandbox("single") as box:
        server = box.servers[0]
        admin = redis.Redis.from_url(box.urls[0])
        admin.config_set("requirepass", "s3cret")  # after start: the sandbox's readiness check has no password
        admin.close()
        url_with_pw = f"redis://:s3cret@127.0.0.1:{server.port}/0"
        api_pid, api_client = children.python(url_with_pw)
        spec = parse_pid_spec([f"api={api_pid}"])
        report = inspect_pids(spec, auth_url=None)
        (entry,) = report.pids
        assert entry.connections == []
        assert entry.unreachable == [f"127.0.0.1:{server.port}: auth required: pass --url with the password"]
        # The --url may name the host differently (localhost): its port is what ties it to the endpoint.
        report = inspect_pids(spec, auth_url=parse_target(f"redis://:s3cret@localhost:{server.port}/0"))
        (entry,) = report.pids
        assert [c.client_id for c in entry.connections] == [api_client]
        wrong = inspect_pids(spec, auth_url=parse_target(f"redis://:nope@127.0.0.1:{server.port}/0"))
        assert "wrong" in wrong.pids[0].unreachable[0]
        assert "s3cret" not in json.dumps(report.to_json()) and "nope" not in json.dumps(wrong.to_json())


def test_unix_socket_connections(children: Children, tmp_path: Path) -> None:
    sock = tmp_path / "redis.sock"
    with sandbox("single", extra=["--unixsocket", str(sock)]) as box:
        cli_pid = children.cli("-s", str(sock), "-n", "2")
        wait_blocked(box.urls[0].replace("/0", "/2"), 1)
        report = inspect_pids(parse_pid_spec([f"cli={cli_pid}"]), auth_url=None)
        (entry,) = report.pids
        if not entry.connections:
            pytest.skip("no `ss` with unix socket peers here")
        (conn,) = entry.connections
        assert conn.raddr == str(sock) and conn.db == 2 and conn.client_id is not None
        assert conn.server.host == str(sock) and conn.server.port == 0 and conn.server.run_id


def test_non_redis_endpoints_are_skipped(shared_sandbox: Sandbox, children: Children) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:  # an HTTP-ish peer: answers anything with a 400 and keeps the socket open
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            held.append(conn)
            conn.settimeout(2)
            with contextlib.suppress(OSError):
                if conn.recv(100):
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        http = f"127.0.0.1:{listener.getsockname()[1]}"
        api_pid, api_client = children.python(shared_sandbox.urls[0], http)
        started = time.monotonic()
        report = inspect_pids(parse_pid_spec([f"api={api_pid}"]), auth_url=None)
        assert time.monotonic() - started < 10
        (entry,) = report.pids
        assert [c.client_id for c in entry.connections] == [api_client]
        assert entry.unreachable == [] and report.findings == []
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()


def test_process_without_redis_connections_is_a_warning(children: Children) -> None:
    sleeper = procs.spawn(["sleep", "60"])
    children.procs.append(sleeper)
    report = inspect_pids(parse_pid_spec([f"idle={sleeper.pid}"]), auth_url=None)
    assert report.findings == []
    assert any(f"pid {sleeper.pid} (idle) has no open connection" in w for w in report.warnings)
