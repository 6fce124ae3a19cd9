"""PidMapper against real processes holding real connections, and the --pids spec."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import redis

from redisprobe.errors import ProbeError
from redisprobe.producers import procs
from redisprobe.producers.processes.pidmap import PidMapper, label_for, parse_pid_spec, redact_cmdline, split_addr
from redisprobe.targets.sandbox import ServerProcess, find_server_binary

# Holds its connection until the test closes its stdin.
CHILD = ("import sys, redis; r = redis.Redis.from_url(sys.argv[1]); r.client_setname(sys.argv[2]); "
         "print(r.client_id(), flush=True); sys.stdin.read()")


def wait_client(r: redis.Redis, predicate, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        for client in r.client_list():
            if predicate(client):
                return client
        if time.monotonic() > deadline:
            raise AssertionError("client never showed up in CLIENT LIST")
        time.sleep(0.05)


def spawn_python(url: str, name: str, *extra: str, script_dir: Path | None = None) -> subprocess.Popen[bytes]:
    """A redis-py client in a child process; from a script file when the test wants a short command line."""
    code = ["-c", CHILD]
    if script_dir is not None:
        script = script_dir / "child.py"
        script.write_text(CHILD)
        code = [str(script)]
    return procs.spawn([sys.executable, *code, url, name, *extra], stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def test_maps_a_redis_py_child_to_its_pid(redis_url: str, r: redis.Redis, tmp_path: Path) -> None:
    child = spawn_python(redis_url, "pidmap-py", "redis://alice:hunter2@example.invalid:6379/0", script_dir=tmp_path)
    try:
        assert child.stdout is not None
        client_id = int(child.stdout.readline())
        client = wait_client(r, lambda c: int(c["id"]) == client_id)
        mapper = PidMapper({child.pid: "api"})
        info = mapper.lookup(client["addr"], client["laddr"])
        assert info is not None
        assert info.pid == child.pid
        assert info.label == "api"
        assert info.process.startswith("python")
        assert "hunter2" not in info.cmdline and "alice:***@example.invalid" in info.cmdline
        assert info.shared_with == ()
        # Without the server address it still matches; with the wrong one it must not.
        assert mapper.lookup(client["addr"]).pid == child.pid  # type: ignore[union-attr]
        assert mapper.lookup(client["addr"], "127.0.0.1:1") is None
        # Unlisted process: found, but no label.
        assert PidMapper({}).lookup(client["addr"], client["laddr"]).label == ""  # type: ignore[union-attr]
    finally:
        procs.stop(child)


def test_maps_a_redis_cli_child_and_labels_through_its_parent(redis_url: str, r: redis.Redis) -> None:
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    # `sh` stays as the parent (it has more to run after redis-cli), like PM2 or npm above a node app.
    wrapper = procs.spawn(["sh", "-c", f"redis-cli -p {port} BLPOP pidmap:never 0; true"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = wait_client(r, lambda c: c.get("cmd") == "blpop" and _parent_is(c, r, wrapper.pid))
        info = PidMapper({wrapper.pid: "worker"}).lookup(client["addr"], client["laddr"])
        assert info is not None
        assert info.process == "redis-cli"
        assert psutil.Process(info.pid).ppid() == wrapper.pid
        assert info.label == "worker"
        assert "BLPOP pidmap:never 0" in info.cmdline
    finally:
        for proc in psutil.Process(wrapper.pid).children(recursive=True):
            proc.terminate()
        procs.stop(wrapper)


def _parent_is(client: dict, r: redis.Redis, parent: int) -> bool:
    info = PidMapper({}).lookup(client["addr"], client["laddr"])
    return info is not None and psutil.Process(info.pid).ppid() == parent


def test_a_new_mapper_never_takes_a_scan_made_before_it(redis_url: str) -> None:
    """Another mapper's scan from just before a connection was made lacks it: a new mapper asked about that
    connection must read the table itself (this made the pid of a client found in CLIENT LIST come back None)."""
    host, port = redis_url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    PidMapper({}).refresh()
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        local_ip, local_port = sock.getsockname()[:2]
        local = f"{local_ip}:{local_port}"
        info = PidMapper({os.getpid(): "me"}).lookup(local, f"{host}:{port}")
    assert info is not None and info.pid == os.getpid() and info.label == "me"


def test_maps_an_ipv6_client() -> None:
    if not Path("/proc/net/tcp6").exists():
        pytest.skip("no IPv6 on this host")
    port = _free_v6_port()
    if not port:
        pytest.skip("cannot bind ::1")
    workdir = Path(tempfile.mkdtemp(prefix="redisprobe-test-"))
    server = ServerProcess(find_server_binary(), "::1", port, workdir)
    cli = None
    try:
        server.start()
        cli = procs.spawn(["redis-cli", "-h", "::1", "-p", str(server.port), "BLPOP", "v6:never", "0"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        admin = redis.Redis(host="::1", port=server.port, socket_timeout=5)
        try:
            client = wait_client(admin, lambda c: c.get("cmd") == "blpop")
        finally:
            admin.close()
        assert client["addr"].startswith("[::1]:")
        info = PidMapper({cli.pid: "v6"}).lookup(client["addr"], client["laddr"])
        assert info is not None and info.pid == cli.pid and info.label == "v6"
    finally:
        if cli is not None:
            procs.stop(cli)
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _free_v6_port() -> int:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
            return int(probe.getsockname()[1])
    except OSError:
        return 0


def test_remote_or_unix_addresses_give_none() -> None:
    mapper = PidMapper({})
    assert mapper.lookup("/tmp/redis.sock:0", "/tmp/redis.sock:0") is None
    assert mapper.lookup("203.0.113.9:40000") is None
    assert mapper.lookup("lua") is None


def test_split_addr() -> None:
    assert split_addr("127.0.0.1:6379") == ("127.0.0.1", 6379)
    assert split_addr("[::1]:6379") == ("::1", 6379)
    assert split_addr("[::ffff:127.0.0.1]:80") == ("127.0.0.1", 80)
    assert split_addr("/var/run/redis.sock:0") is None
    assert split_addr("lua") is None


def test_redact_cmdline() -> None:
    assert redact_cmdline(["redis-cli", "-a", "s3cret", "-u", "redis://:pw@h:1/0"]) == \
        "redis-cli -a *** -u redis://:***@h:1/0"
    assert redact_cmdline(["x", "--requirepass=abc"]) == "x --requirepass=***"
    long = redact_cmdline(["node", "x" * 500, "redis://u:p@host"])
    assert len(long) <= 200 and long.endswith("…")
    assert "p@host" not in redact_cmdline(["node", "redis://u:p@host" + "y" * 300])


def test_parse_pid_spec_labels() -> None:
    sleeper = procs.spawn(["sleep", "60"])
    other = procs.spawn(["sleep", "60"])
    try:
        spec = parse_pid_spec([f"api={os.getpid()}", f"{sleeper.pid},{other.pid},"])
        assert spec.labels[os.getpid()] == "api"
        # Two unlabelled processes with the same name stay distinguishable.
        assert spec.labels[sleeper.pid] == f"sleep:{sleeper.pid}"
        assert spec.labels[other.pid] == f"sleep:{other.pid}"
        assert spec.warnings == []
        assert parse_pid_spec([str(sleeper.pid)]).labels == {sleeper.pid: "sleep"}
        assert parse_pid_spec([f" w = {sleeper.pid} ", f"w={sleeper.pid}"]).labels == {sleeper.pid: "w"}
    finally:
        procs.stop(sleeper)
        procs.stop(other)


@pytest.mark.parametrize("bad", ["abc", "api=", "=12", "api=x", "0", "-5", "1.5", "a=b=3"])
def test_parse_pid_spec_bad_syntax(bad: str) -> None:
    with pytest.raises(ProbeError) as err:
        parse_pid_spec([bad])
    assert "\n" not in str(err.value)


def test_parse_pid_spec_conflicting_labels() -> None:
    with pytest.raises(ProbeError, match="twice"):
        parse_pid_spec([f"a={os.getpid()},b={os.getpid()}"])


def test_parse_pid_spec_unknown_pid() -> None:
    missing = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    with pytest.raises(ProbeError, match=f"no process with pid {missing}"):
        parse_pid_spec([f"api={missing}"])


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_parse_pid_spec_permission_denied_is_a_warning() -> None:
    # A forked child turned into `nobody` cannot read our (root's) sockets: it gets a warning, not a crash.
    read_end, write_end = os.pipe()
    target = os.getpid()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            os.close(read_end)
            os.setgid(65534)
            os.setuid(65534)
            spec = parse_pid_spec([f"api={target}"])
            os.write(write_end, repr((spec.labels, spec.warnings)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as pipe:
            labels, warnings = eval(pipe.read().decode())  # our own child's repr of plain data
    finally:
        os.waitpid(child, 0)
    assert labels == {target: "api"}
    assert len(warnings) == 1 and "permission denied" in warnings[0] and str(target) in warnings[0]


def test_only_a_process_its_descendants_and_their_siblings_can_share_a_socket():
    """A socket is shared by fork: a holder outside the forking family is a reading raced by process churn."""
    import os
    import subprocess
    import sys

    from redisprobe.producers.processes.pidmap import forked_holders

    a = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    b = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    # a process of another family: its shell parent exits, so it is nobody's child here
    other = int(subprocess.run(["sh", "-c", "sleep 30 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True,
                               check=True).stdout)
    try:
        assert forked_holders([os.getpid(), a.pid, b.pid]) == [os.getpid(), a.pid, b.pid]  # a parent, its children
        assert forked_holders([a.pid, b.pid]) == [a.pid, b.pid]  # siblings forked by one parent that kept no copy
        assert forked_holders([b.pid, os.getpid()]) == [os.getpid(), b.pid]
        assert forked_holders([a.pid, other]) == [a.pid]  # no fork links them: not one socket
    finally:
        for child in (a, b):
            child.kill()
            child.wait()
        os.kill(other, 9)


def test_a_mapper_takes_another_mappers_recent_scan(redis_url: str, r: redis.Redis) -> None:
    """The nodes of a cluster have a mapper each and see a burst of new connections at once: the second mapper
    answers from the first one's scan instead of scanning every process again; a connection that scan cannot hold
    (made after it) is still found by a scan of its own."""
    children = []
    try:
        children.append(spawn_python(redis_url, "pidmap-shared-1"))
        assert children[0].stdout is not None
        first_id = int(children[0].stdout.readline())
        first_client = wait_client(r, lambda c: int(c["id"]) == first_id)
        first, second = PidMapper(), PidMapper()
        info = first.lookup(first_client["addr"], first_client["laddr"], not_before=time.monotonic())
        assert info is not None and info.pid == children[0].pid
        info = second.lookup(first_client["addr"], first_client["laddr"])
        assert info is not None and info.pid == children[0].pid
        assert second._taken == first._taken  # the first mapper's scan, not one of its own
        children.append(spawn_python(redis_url, "pidmap-shared-2"))
        assert children[1].stdout is not None
        later_id = int(children[1].stdout.readline())
        later_client = wait_client(r, lambda c: int(c["id"]) == later_id)
        info = second.lookup(later_client["addr"], later_client["laddr"], not_before=time.monotonic())
        assert info is not None and info.pid == children[1].pid
    finally:
        for child in children:
            child.kill()
            child.wait()


def test_a_child_that_exited_after_the_scan_keeps_its_listed_parent(redis_url: str, r: redis.Redis) -> None:
    """rq's work horse lives milliseconds: it may be gone when its connection is looked up. The parent it had when
    the socket scan saw it still names it the listed process's child."""
    child = spawn_python(redis_url, "pidmap-gone")
    try:
        assert child.stdout is not None
        client_id = int(child.stdout.readline())
        wait_client(r, lambda c: int(c["id"]) == client_id)
        PidMapper({os.getpid(): "tester"}).refresh()
    finally:
        procs.stop(child)
    assert not psutil.pid_exists(child.pid)
    assert label_for(child.pid, {os.getpid(): "tester"}) == "tester"
    assert label_for(child.pid, {12345678: "other"}) == ""


def test_a_young_child_gone_before_its_socket_was_named_stays_in_its_family(shared_sandbox) -> None:
    """The watcher saw a listed process's child young, then a socket of it; the child exits before its parent is
    read again. Its parent at birth lives on, so it died that parent's child: it keeps the label."""
    from redisprobe.producers.observers.peers import PeerWatcher
    from redisprobe.targets.url import parse_target

    child = procs.spawn([sys.executable, "-c", "pass"])
    child.wait()
    watcher = PeerWatcher(parse_target(shared_sandbox.urls[0]), lambda event: None,
                          PidMapper({os.getpid(): "worker"}))
    watcher._young[child.pid] = (time.monotonic(), "worker", os.getpid())
    assert watcher._still_in_family(child.pid, "worker")
    watcher._young[child.pid] = (time.monotonic(), "worker", 1)  # born to init: nothing says it was ours
    assert not watcher._still_in_family(child.pid, "worker")
