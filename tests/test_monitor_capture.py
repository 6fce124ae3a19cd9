"""MonitorCapture on real servers: exact args from any client, drain, gaps on disconnection, clear refusals,
and no reader process left behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import redis

from redisprobe import trace
from redisprobe.errors import ProbeError
from redisprobe.producers.observers.monitor_capture import FENCE_PREFIX, MonitorCapture
from redisprobe.targets.sandbox import Sandbox, free_port, sandbox
from redisprobe.targets.url import Target, parse_target

READER = "redisprobe.producers.observers.monitorreader"  # the MONITOR reader child's module

Event = trace.Monitor | trace.Gap | trace.MonitorLines
def flat(events: list[Event]) -> list[trace.Monitor | trace.Gap]:
    """The capture's blocks of lines as the trace reader turns them into events."""
    out: list[trace.Monitor | trace.Gap] = []
    for event in events:
        if isinstance(event, trace.MonitorLines):
            out.extend(trace.expand_monitor_lines(event))
        else:
            out.append(event)
    return out


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def prefix() -> bytes:
    """Keys of this test only (the shared server also serves other tests)."""
    return f"mc:{uuid.uuid4().hex[:8]}:".encode()


def ours(events: list[Event], prefix: bytes) -> list[trace.Monitor]:
    return [e for e in flat(events) if isinstance(e, trace.Monitor) and any(a.startswith(prefix) for a in e.args[1:])]


def gaps(events: list[Event]) -> list[trace.Gap]:
    return [e for e in flat(events) if isinstance(e, trace.Gap)]


def collect_until(capture: MonitorCapture, done: Callable[[list[Event]], bool], timeout: float = 15.0) -> list[Event]:
    """Poll until `done(everything so far)`; short sleeps, generous deadline."""
    seen: list[Event] = []
    deadline = time.monotonic() + timeout
    while not done(seen):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout}s; events: {seen[-10:]}")
        seen.extend(capture.poll())
        time.sleep(0.01)
    return seen


def kill_monitors(client: redis.Redis) -> int:
    """CLIENT KILL TYPE does not know monitors in Redis 7.0 (they count as `normal`): kill them by id."""
    killed = 0
    for info in client.client_list():
        if "O" in info["flags"]:
            with contextlib.suppress(redis.ResponseError):
                killed += client.client_kill_filter(_id=info["id"])
    return killed


def gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.02)
    return False


# ------------------------------------------------------------------------------------------- exact capture


def test_redis_py_and_redis_cli_commands_are_captured_exactly(redis_url: str, r: redis.Redis, spool: Path,
                                                             prefix: bytes) -> None:
    target = parse_target(redis_url)
    tricky = prefix + b'k "with" \\ spaces\n\x00\xff'
    value = b'\\x41 "\r\t\a\b\x7f' + bytes(range(256))
    cli_key = prefix.decode() + 'cli key "quoted" \\ é'
    with MonitorCapture(target, spool, label="api") as capture:
        r.set(tricky, value)
        r.execute_command("EXISTS", tricky, prefix + b"", prefix + b"x")
        subprocess.run(["redis-cli", "-u", redis_url, "SET", cli_key, "line1\nline2"], check=True,
                       capture_output=True, timeout=30)
        r.delete(tricky)
        events = capture.drain()
    got = [e.args for e in ours(events, prefix)]
    assert got == [
        [b"SET", tricky, value],
        [b"EXISTS", tricky, prefix, prefix + b"x"],
        [b"SET", cli_key.encode(), b"line1\nline2"],
        [b"DEL", tricky],
    ]
    monitors = ours(events, prefix)
    assert all(e.target == target.label and e.db == 0 for e in monitors)
    assert all(abs(e.t - time.time()) < 60 for e in monitors)
    assert not any(FENCE_PREFIX in a for e in flat(events) if isinstance(e, trace.Monitor) for a in e.args)
    assert all(isinstance(e, trace.MonitorLines) for e in events)
    assert capture.stats.lines >= 4 and capture.stats.bytes > 0


def test_drain_returns_everything_sent_before_it(redis_url: str, r: redis.Redis, spool: Path, prefix: bytes) -> None:
    target = parse_target(redis_url)
    with MonitorCapture(target, spool) as capture:
        pipe = r.pipeline(transaction=False)
        for i in range(5000):
            pipe.set(prefix + str(i).encode(), i)
        pipe.execute()
        events = capture.drain(timeout=30)
        assert [e.args[1] for e in ours(events, prefix)] == [prefix + str(i).encode() for i in range(5000)]
        assert gaps(events) == []
        # Nothing of ours is left; a later command shows in the next drain only.
        r.set(prefix + b"late", 1)
        assert [e.args for e in ours(capture.drain(), prefix)] == [[b"SET", prefix + b"late", b"1"]]


def test_poll_is_incremental(redis_url: str, r: redis.Redis, spool: Path, prefix: bytes) -> None:
    target = parse_target(redis_url)
    with MonitorCapture(target, spool) as capture:
        for round_ in range(3):
            mine = prefix + str(round_).encode() + b":"
            for i in range(200):
                r.get(mine + str(i).encode())
            seen = collect_until(capture, lambda evs, mine=mine: len(ours(evs, mine)) == 200)
            assert [e.args[1] for e in ours(seen, mine)] == [mine + str(i).encode() for i in range(200)]
            assert not ours(capture.poll(), prefix)  # handed out once only


def test_poll_max_lines(redis_url: str, r: redis.Redis, spool: Path, prefix: bytes) -> None:
    target = parse_target(redis_url)
    with MonitorCapture(target, spool) as capture:
        pipe = r.pipeline(transaction=False)
        for i in range(100):
            pipe.get(prefix + str(i).encode())
        pipe.execute()
        got: list[Event] = []
        deadline = time.monotonic() + 15
        while len(ours(got, prefix)) < 100 and time.monotonic() < deadline:
            batch = capture.poll(max_lines=7)
            assert len(flat(batch)) <= 7
            got.extend(batch)
            if not batch:
                time.sleep(0.01)
        assert [e.args[1] for e in ours(got, prefix)] == [prefix + str(i).encode() for i in range(100)]


def test_what_nobody_polled_waits_in_the_spool_not_in_memory(redis_url: str, r: redis.Redis, spool: Path,
                                                              prefix: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory stays flat: a poll reads the spool at most one block beyond what it hands out."""
    import redisprobe.producers.observers.monitor_capture as module

    monkeypatch.setattr(module, "_READ_BLOCK", 4096)
    with MonitorCapture(parse_target(redis_url), spool) as capture:
        pipe = r.pipeline(transaction=False)
        for i in range(3000):
            pipe.get(prefix + str(i).encode())
        pipe.execute()
        assert capture.spool is not None
        deadline = time.monotonic() + 15
        while capture.spool.stat().st_size < 3000 * 40 and time.monotonic() < deadline:
            time.sleep(0.01)
        got = capture.poll(max_lines=100)
        assert 0 < len(flat(got)) <= 100
        waiting = sum(len(item.data) for item in capture._pending if isinstance(item, module._Raw))
        assert waiting <= 4096 < capture.spool.stat().st_size // 10
        got += capture.drain(timeout=30)
    assert [e.args[1] for e in ours(got, prefix)] == [prefix + str(i).encode() for i in range(3000)]


def test_spool_files_rotate_and_what_was_read_is_removed(redis_url: str, r: redis.Redis, spool: Path,
                                                         prefix: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """Disk stays bounded too: the reader moves to a new spool file every so often, read files are deleted."""
    import redisprobe.producers.observers.monitor_capture as module

    monkeypatch.setattr(module, "_ROTATE_BYTES", 16 << 10)
    with MonitorCapture(parse_target(redis_url), spool) as capture:
        first = capture.spool
        assert first is not None
        pipe = r.pipeline(transaction=False)
        for i in range(5000):
            pipe.set(prefix + str(i).encode(), i)
        pipe.execute()
        events = capture.drain(timeout=30)
        assert capture.stats.rotations >= 5 and not first.exists()
        assert [p.name for p in spool.glob("*.spool*")] == [capture.spool.name]  # type: ignore[union-attr]
    assert [e.args[1] for e in ours(events, prefix)] == [prefix + str(i).encode() for i in range(5000)]
    assert not gaps(events) and not list(spool.glob("*.spool*"))


def test_a_restarted_reader_goes_on_in_the_current_spool_file(private_server: Sandbox, spool: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import redisprobe.producers.observers.monitor_capture as module

    monkeypatch.setattr(module, "_ROTATE_BYTES", 16 << 10)
    client = redis.Redis.from_url(private_server.urls[0])
    with MonitorCapture(private_server.target("api"), spool) as capture:
        client.mset({f"before:{i}": i for i in range(1000)})
        for i in range(1000):
            client.set(f"before:{i}", i)
        before = capture.drain(timeout=30)
        assert capture.stats.rotations >= 2 and capture.spool is not None and capture.spool.suffix != ".spool"
        assert capture.proc is not None
        os.kill(capture.proc.pid, signal.SIGKILL)
        collect_until(capture, lambda evs: bool(gaps(evs)), timeout=20)
        for i in range(1000):
            client.set(f"after:{i}", i)
        after = capture.drain(timeout=30)
        assert [p.name for p in spool.glob("*.spool*")] == [capture.spool.name]
    client.close()
    assert len([e for e in ours(before, b"before:") if e.args[0] == b"SET"]) == 1000
    assert [e.args[1] for e in ours(after, b"after:")] == [f"after:{i}".encode() for i in range(1000)]


def test_drain_batches_are_bounded_and_complete(redis_url: str, r: redis.Redis, spool: Path, prefix: bytes) -> None:
    with MonitorCapture(parse_target(redis_url), spool) as capture:
        pipe = r.pipeline(transaction=False)
        for i in range(3000):
            pipe.get(prefix + str(i).encode())
        pipe.execute()
        batches = list(capture.drain_batches(timeout=30, batch=500))
    assert batches and all(0 < len(flat(batch)) <= 500 for batch in batches)
    events = [e for batch in batches for e in batch]
    assert [e.args[1] for e in ours(events, prefix)] == [prefix + str(i).encode() for i in range(3000)]


def test_a_line_longer_than_the_reader_buffer(redis_url: str, r: redis.Redis, spool: Path, prefix: bytes) -> None:
    value = bytes(range(256)) * 8192  # 2 MiB, about 6 MiB once escaped: more than the 4 MiB receive buffer
    with MonitorCapture(parse_target(redis_url), spool) as capture:
        r.set(prefix + b"big", value)
        r.set(prefix + b"small", b"x")
        events = ours(capture.drain(timeout=30), prefix)
    assert [e.args for e in events] == [[b"SET", prefix + b"big", value], [b"SET", prefix + b"small", b"x"]]


def test_unix_socket_target() -> None:
    sockdir = Path(tempfile.mkdtemp(prefix="rp-mc-"))
    path = str(sockdir / "r.sock")
    try:
        with sandbox("single", extra=["--unixsocket", path, "--unixsocketperm", "700"]) as box, \
                MonitorCapture(parse_target(f"unix://{path}"), sockdir / "spool") as capture:
            client = redis.Redis(host=box.servers[0].host, port=box.servers[0].port)
            client.set("over-tcp", "1")
            client.close()
            unix = redis.Redis(unix_socket_path=path)
            unix.set("over-unix", b"\x01")
            unix.close()
            events = [e for e in flat(capture.drain()) if isinstance(e, trace.Monitor) and e.args[0] == b"SET"]
    finally:
        shutil.rmtree(sockdir, ignore_errors=True)
    assert [e.args for e in events] == [[b"SET", b"over-tcp", b"1"], [b"SET", b"over-unix", b"\x01"]]
    assert events[0].peer.startswith("127.0.0.1:") and events[1].peer == f"unix:{path}"


def make_tls_files(where: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost (openssl, EC keys: fast)."""
    ca_key, ca, key, csr, cert = (where / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    ext = where / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def run(*argv: str) -> None:
        subprocess.run(["openssl", *argv], check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(ca_key),
        "-out", str(ca), "-days", "1", "-subj", "/CN=redisprobe test CA")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key),
        "-out", str(csr), "-subj", "/CN=localhost")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(cert),
        "-days", "1", "-extfile", str(ext))
    return ca, cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca, cert, key = make_tls_files(tmp_path)
    tls_port = free_port()
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # trusted by redis-py here and by the reader child alike
    extra = ["--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
             "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"]
    with sandbox("single", extra=extra) as box, \
            MonitorCapture(parse_target(f"rediss://127.0.0.1:{tls_port}/0"), tmp_path / "spool") as capture:
        client = redis.Redis(host=box.servers[0].host, port=box.servers[0].port)
        client.set("seen over tls", b"\x00")
        client.close()
        events = [e for e in flat(capture.drain()) if isinstance(e, trace.Monitor) and e.args[0] == b"SET"]
    assert [e.args for e in events] == [[b"SET", b"seen over tls", b"\x00"]]


# ----------------------------------------------------------------------------------------------------- gaps


def test_killed_monitor_connection_gives_a_gap_and_capture_goes_on(private_server: Sandbox, spool: Path) -> None:
    client = redis.Redis.from_url(private_server.urls[0])
    with MonitorCapture(private_server.target("api"), spool) as capture:
        client.set("before", "1")
        first = capture.drain()
        assert [e.args for e in flat(first) if isinstance(e, trace.Monitor) and e.args[0] == b"SET"] == \
            [[b"SET", b"before", b"1"]]
        killed_at = time.time()
        assert kill_monitors(client) == 1
        events = collect_until(capture, lambda evs: bool(gaps(evs)))
        gap = gaps(events)[0]
        assert gap.source == "monitor" and "closed by the server" in gap.reason
        assert gap.until is not None and gap.t <= killed_at + 1 and gap.until >= gap.t
        assert capture.connected and capture.stats.reconnects == 1
        client.set("after", "2")
        after = capture.drain()
        assert [e.args for e in flat(after) if isinstance(e, trace.Monitor)] == [[b"SET", b"after", b"2"]]
    client.close()


def test_server_restart_gives_a_gap_and_capture_goes_on(private_server: Sandbox, spool: Path) -> None:
    server = private_server.servers[0]
    with MonitorCapture(private_server.target("api"), spool) as capture:
        server.stop()
        server.start()
        events = collect_until(capture, lambda evs: bool(gaps(evs)), timeout=20)
        assert gaps(events)[0].until is not None
        client = redis.Redis.from_url(private_server.urls[0])
        client.set("after-restart", "1")
        client.close()
        after = capture.drain()
        assert [e.args for e in flat(after) if isinstance(e, trace.Monitor) and e.args[0] == b"SET"] == \
            [[b"SET", b"after-restart", b"1"]]


def test_killed_reader_process_is_restarted_with_a_gap(private_server: Sandbox, spool: Path) -> None:
    with MonitorCapture(private_server.target("api"), spool) as capture:
        assert capture.proc is not None
        old = capture.proc.pid
        os.kill(old, signal.SIGKILL)
        events = collect_until(capture, lambda evs: bool(gaps(evs)), timeout=20)
        assert "reader process exited" in gaps(events)[0].reason
        assert capture.stats.reader_restarts == 1 and capture.proc.pid != old
        client = redis.Redis.from_url(private_server.urls[0])
        client.set("after-restart", "1")
        client.close()
        assert [e.args for e in flat(capture.drain()) if isinstance(e, trace.Monitor) and e.args[0] == b"SET"] == \
            [[b"SET", b"after-restart", b"1"]]


def test_ctrl_c_does_not_stop_the_reader_before_the_drain(redis_url: str, r: redis.Redis, spool: Path,
                                                         prefix: bytes) -> None:
    """Ctrl-C reaches the whole process group; the reader must leave stopping to its parent."""
    with MonitorCapture(parse_target(redis_url), spool) as capture:
        assert capture.proc is not None
        os.kill(capture.proc.pid, signal.SIGINT)
        r.set(prefix + b"after ctrl-c", 1)
        events = capture.drain()
        assert capture.proc.poll() is None and capture.stats.reader_restarts == 0
    assert [e.args[1] for e in ours(events, prefix)] == [prefix + b"after ctrl-c"]
    assert not gaps(events)


def test_malformed_spool_line_is_a_gap_not_a_crash(redis_url: str, r: redis.Redis, spool: Path,
                                                   prefix: bytes) -> None:
    with MonitorCapture(parse_target(redis_url), spool) as capture:
        r.set(prefix + b"a", 1)
        capture.drain()
        assert capture.spool is not None
        with capture.spool.open("ab") as handle:  # O_APPEND, like the reader: whole lines, no interleaving
            handle.write(b"this is not a MONITOR line\r\n")
        r.set(prefix + b"b", 2)
        events = capture.drain()
    assert [e.args[1] for e in ours(events, prefix)] == [prefix + b"b"]
    assert len(gaps(events)) == 1 and "could not be parsed" in gaps(events)[0].reason


def test_drain_while_the_server_is_down_says_so(private_server: Sandbox, spool: Path) -> None:
    server = private_server.servers[0]
    with MonitorCapture(private_server.target("api"), spool) as capture:
        server.stop()
        events = capture.drain(timeout=1)
        assert gaps(events) and "could not confirm" in gaps(events)[-1].reason
        server.start()


# ------------------------------------------------------------------------------------------------ refusals


def one_line_error(target: Target, spool: Path) -> str:
    with pytest.raises(ProbeError) as info:
        MonitorCapture(target, spool).start(timeout=10)
    message = str(info.value)
    assert "\n" not in message and message
    return message


def test_wrong_password_is_one_clear_line(private_server: Sandbox, spool: Path) -> None:
    client = redis.Redis.from_url(private_server.urls[0])
    client.config_set("requirepass", "right-secret")
    client.close()
    server = private_server.servers[0]
    before = descendants_now()
    message = one_line_error(parse_target(f"redis://:wrong-secret@{server.host}:{server.port}/0"), spool)
    assert "authentication failed" in message and "wrong-secret" not in message
    message = one_line_error(parse_target(f"redis://{server.host}:{server.port}/0"), spool)
    assert "authentication required" in message
    assert descendants_now() <= before
    with MonitorCapture(parse_target(f"redis://:right-secret@{server.host}:{server.port}/0"), spool) as capture:
        assert capture.connected


def test_refused_connection_is_one_clear_line(spool: Path) -> None:
    message = one_line_error(parse_target(f"redis://127.0.0.1:{free_port()}/0"), spool)
    assert "cannot connect" in message


def test_missing_monitor_permission_is_one_clear_line(private_server: Sandbox, spool: Path) -> None:
    client = redis.Redis.from_url(private_server.urls[0])
    client.acl_setuser("limited", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-monitor"])
    client.close()
    server = private_server.servers[0]
    before = descendants_now()
    message = one_line_error(parse_target(f"redis://limited:pw@{server.host}:{server.port}/0"), spool)
    assert "NOPERM" in message and "monitor" in message and "pw@" not in message
    assert descendants_now() <= before
    assert not list(spool.iterdir())  # the spool of a failed start is removed too


# ------------------------------------------------------------------------------------------ no leftovers


def descendants_now() -> set[int]:
    from conftest import descendants

    return descendants()


def test_reader_is_gone_after_stop_and_stop_is_idempotent(redis_url: str, spool: Path) -> None:
    capture = MonitorCapture(parse_target(redis_url), spool)
    capture.start()
    assert capture.proc is not None and capture.spool is not None
    pid, spool_file = capture.proc.pid, capture.spool
    assert psutil.Process(pid).is_running()
    cmdline = " ".join(psutil.Process(pid).cmdline())
    assert READER in cmdline and "127.0.0.1" not in cmdline  # nothing secret in argv
    assert spool_file.stat().st_mode & 0o077 == 0  # the spool holds values: ours only
    capture.stop()
    capture.stop()
    assert gone(pid) and pid not in descendants_now()
    assert not spool_file.exists()
    assert capture.poll() == [] and capture.drain() == []


def test_keep_spool(redis_url: str, spool: Path) -> None:
    with MonitorCapture(parse_target(redis_url), spool, keep_spool=True) as capture:
        pass
    assert capture.spool is not None and capture.spool.exists()


def test_reader_dies_with_a_killed_parent(redis_url: str, tmp_path: Path) -> None:
    """SIGKILL the process that owns the capture: its reader must not linger (PR_SET_PDEATHSIG)."""
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from redisprobe.producers.observers.monitor_capture import MonitorCapture
        from redisprobe.targets.url import parse_target
        capture = MonitorCapture(parse_target({redis_url!r}), Path({str(tmp_path / "spool")!r}))
        capture.start()
        print(capture.proc.pid, flush=True)
        time.sleep(120)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        reader = int(parent.stdout.readline())
        assert psutil.Process(reader).is_running()
        parent.kill()
        parent.wait(10)
        assert gone(reader)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


@pytest.fixture(autouse=True)
def no_reader_left() -> Iterator[None]:
    yield
    leftovers = []
    for pid in descendants_now():
        with contextlib.suppress(psutil.NoSuchProcess):
            if READER in " ".join(psutil.Process(pid).cmdline()):
                leftovers.append(pid)
    assert not leftovers, f"MONITOR readers left running: {leftovers}"


def test_only_the_lines_holding_a_fence_token_are_looked_at_one_by_one():
    from redisprobe.producers.observers.monitor_capture import FENCE_NAME, FENCE_PREFIX, _token_lines

    lines = [b'+1.0 [0 127.0.0.1:1] "ECHO" "' + FENCE_PREFIX + b'mark:1"',
             b'+1.1 [0 127.0.0.1:2] "SET" "k" "v"',
             b'+1.2 [0 127.0.0.1:2] "SET" "k" "' + FENCE_PREFIX + b'x" "' + FENCE_PREFIX + b'y"',
             b'+1.3 [0 127.0.0.1:3] "CLIENT" "SETNAME" "' + FENCE_NAME.encode() + b'"',
             b'+1.4 [0 127.0.0.1:2] "GET" "k"']
    data = b"".join(line + b"\r\n" for line in lines)
    found = [data[begin:end] for begin, end in _token_lines(data)]
    assert found == [lines[0] + b"\r\n", lines[2] + b"\r\n", lines[3] + b"\r\n"]


def test_a_fence_token_at_the_start_of_a_block_and_a_lookalike_near_it():
    from redisprobe.producers.observers.monitor_capture import FENCE_PREFIX, _token_lines

    first = b'+1.0 [0 127.0.0.1:1] "ECHO" "' + FENCE_PREFIX + b'm"\r\n'
    assert [first[b:e] for b, e in _token_lines(first)] == [first]
    lookalike = b'+1.0 [0 127.0.0.1:2] "SET" "fence" "a-fence-and-' + FENCE_PREFIX[:-1] + b'"\r\n'
    assert _token_lines(lookalike) == []
    assert _token_lines(b'"fence"\r\n' + first) == [(9, 9 + len(first))]


def test_a_status_line_after_a_users_exclamation_mark_is_still_found(tmp_path: Path):
    """The spool's status lines are found from the first "!" of a block: a user's "!" before one must not hide it."""
    capture = MonitorCapture(parse_target("redis://127.0.0.1:1/0"), tmp_path)
    block = (b'+1.0 [0 127.0.0.1:2] "SET" "k" "hi!"\r\n'
             b'!{"ev": "monitoring", "t": 2.0}\r\n'
             b'+3.0 [0 127.0.0.1:2] "SET" "k" "!"\r\n')
    capture._process(block)
    assert capture.connected
    out: list = []
    capture._take(out, None)
    assert [e.args for e in flat(out)] == [[b"SET", b"k", b"hi!"], [b"SET", b"k", b"!"]]
