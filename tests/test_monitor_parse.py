"""MONITOR lines parse back into exactly the bytes a client sent: unit shapes, then a real server as oracle."""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redisprobe.targets.sandbox import Sandbox, sandbox
from redisprobe.trace.monitor_text import (
    MonitorLine,
    MonitorParseError,
    parse_complete_lines,
    parse_monitor_chunk,
    parse_monitor_line,
)

# ---------------------------------------------------------------------------------------------- unit shapes


def test_plain_line_with_plus_and_crlf() -> None:
    line = parse_monitor_line(b'+1700000000.123456 [0 127.0.0.1:50412] "SET" "k" "v"\r\n')
    assert line == MonitorLine(1700000000.123456, 0, "127.0.0.1:50412", [b"SET", b"k", b"v"])


def test_without_plus_or_crlf_and_str_input() -> None:
    assert parse_monitor_line('1.5 [12 10.0.0.1:6000] "GET" "k"').args == [b"GET", b"k"]
    assert parse_monitor_line(b"1.5 [12 10.0.0.1:6000] \"GET\" \"k\"\n").db == 12


@pytest.mark.parametrize(
    ("escaped", "raw"),
    [
        (rb"\\", b"\\"),
        (rb"\"", b'"'),
        (rb"\n", b"\n"),
        (rb"\r", b"\r"),
        (rb"\t", b"\t"),
        (rb"\a", b"\a"),
        (rb"\b", b"\b"),
        (rb"\x00", b"\x00"),
        (rb"\xff", b"\xff"),
        (rb"\xC3\xA9", b"\xc3\xa9"),  # non-UTF-8 or UTF-8: bytes either way
        (rb"\x7f", b"\x7f"),
        (b"a b", b"a b"),
        (rb"\" \"", b'" "'),  # looks like a separator once unescaped
        (rb"a\\", b"a\\"),  # trailing backslash
        (rb"\\\\\"", b'\\\\"'),
        (rb"\\x41", b"\\x41"),  # an escaped backslash followed by text that looks like an escape
        (b"", b""),
    ],
)
def test_every_escape(escaped: bytes, raw: bytes) -> None:
    line = parse_monitor_line(b'+1.000001 [0 127.0.0.1:1] "SET" "' + escaped + b'" "' + escaped + b'"')
    assert line.args == [b"SET", raw, raw]
    chunk, rest = parse_monitor_chunk(b'+1.000001 [0 127.0.0.1:1] "SET" "' + escaped + b'" "' + escaped + b'"\r\n')
    assert chunk == [line] and rest == b""


@pytest.mark.parametrize(
    ("text", "peer"),
    [
        ('1.0 [0 lua] "set" "k" "v"', "lua"),
        ('1.0 [0 [::1]:6000] "GET" "k"', "[::1]:6000"),
        ('1.0 [0 [fe80::1%eth0]:6000] "GET" "k"', "[fe80::1%eth0]:6000"),
        ('1.0 [0 unix:/tmp/redis.sock] "GET" "k"', "unix:/tmp/redis.sock"),
        ('1.0 [0 unix:/tmp/dir with space/r.sock] "GET" "k"', "unix:/tmp/dir with space/r.sock"),
    ],
)
def test_peer_shapes(text: str, peer: str) -> None:
    line = parse_monitor_line(text)
    assert line.peer == peer
    assert line.args[-1] == b"k" or line.args == [b"set", b"k", b"v"]


def test_empty_args_and_many_args() -> None:
    assert parse_monitor_line('1.0 [0 a:1] "" "" ""').args == [b"", b"", b""]
    many = " ".join(f'"{i}"' for i in range(1000))
    assert parse_monitor_line(f"1.0 [0 a:1] {many}").args == [str(i).encode() for i in range(1000)]


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"+OK",
        b"-ERR unknown command",
        b"garbage",
        b'1.0 [0 a:1]',
        b'1.0 [0 a:1] SET k',
        b'1.0 [x a:1] "SET"',
        b'1.0 [0 a:1] "SET" "k',
        b'1.0 [0 a:1] "SET"  "k"',  # two spaces
        b'1.0 [0 a:1] "SET""k"',  # no space
        b'1.0 [0 a:1] "SET" "k" ',
        b'1.0 [0 a:1] "a"b"',
        b'1.0 [0 a:1] "a\\q"',  # an escape the server never writes
        b'1.0 [0 a:1] "a\\x4"',  # short hex
        b'1.0 [0 a:1] "a\\"',  # the closing quote is escaped
        b'1.0 [0 a:1] "a\nb"',  # a raw newline: sdscatrepr never leaves one
    ],
)
def test_malformed_lines_raise(bad: bytes) -> None:
    with pytest.raises(MonitorParseError) as info:
        parse_monitor_line(bad)
    assert isinstance(info.value, ValueError)
    assert "\n" not in str(info.value) and str(info.value)


def test_str_beyond_latin1_is_malformed() -> None:
    with pytest.raises(MonitorParseError):
        parse_monitor_line('1.0 [0 a:1] "€"')


def test_chunk_returns_partial_tail_and_handles_split_crlf() -> None:
    data = b'+1.0 [0 a:1] "A"\r\n+2.0 [1 b:2] "B" "\\n"\r\n+3.0 [0 a:1] "C'
    lines, rest = parse_monitor_chunk(data)
    assert [x.args for x in lines] == [[b"A"], [b"B", b"\n"]]
    assert rest == b'+3.0 [0 a:1] "C'
    lines, rest = parse_monitor_chunk(b'+1.0 [0 a:1] "A"\r')
    assert lines == [] and rest == b'+1.0 [0 a:1] "A"\r'
    lines, rest = parse_monitor_chunk(rest + b'\n')
    assert [x.args for x in lines] == [[b"A"]] and rest == b""
    assert parse_monitor_chunk(b"") == ([], b"")


def test_chunk_errors_are_collected_or_raised() -> None:
    good = b'+1.0 [0 a:1] "A"\r\n'
    data = good + b"garbage\r\n" + good + b'+1.0 [0 a:1] "\\q"\r\n' + good
    with pytest.raises(MonitorParseError, match="garbage"):
        parse_monitor_chunk(data)
    errors: list[tuple[bytes, str]] = []
    lines, rest = parse_monitor_chunk(data, errors=errors)
    assert len(lines) == 3 and rest == b""
    assert [e[0] for e in errors] == [b"garbage", b'+1.0 [0 a:1] "\\q"']


def test_chunk_without_backslashes_still_checks_every_quote() -> None:
    good = b'+1.0 [0 a:1] "SET" "k" "v"\r\n'
    errors: list[tuple[bytes, str]] = []
    lines, _ = parse_monitor_chunk(good * 3 + b'+2.0 [0 a:1] "SET" "k"v"\r\n' + good, errors=errors)
    assert [line.args for line in lines] == [[b"SET", b"k", b"v"]] * 4
    assert [e[0] for e in errors] == [b'+2.0 [0 a:1] "SET" "k"v"']
    # A quote outside the arguments (a unix socket path may hold one) is not a stray quote.
    lines, _ = parse_monitor_chunk(good + b'+3.0 [0 unix:/tmp/a"b.sock] "GET" "k"\r\n')
    assert lines[1].peer == 'unix:/tmp/a"b.sock' and lines[1].args == [b"GET", b"k"]


def test_chunk_never_skips_a_line_glued_by_a_bare_newline() -> None:
    # The fast path must not accept a block in which one line hides behind a bare LF.
    data = b'+1.0 [0 a:1] "A"\n+2.0 [0 a:1] "B"\r\n'
    errors: list[tuple[bytes, str]] = []
    lines, _ = parse_monitor_chunk(data, errors=errors)
    assert lines == [] and len(errors) == 1


def test_complete_lines_factory() -> None:
    made = parse_complete_lines(b'+1.5 [2 a:1] "X" "\\x01"\r\n', lambda ts, db, peer, args: (ts, db, peer, args))
    assert made == [(1.5, 2, "a:1", [b"X", b"\x01"])]


def test_chunk_speed_is_sane() -> None:
    """A loose floor (the measured figure is in benchmarks/README.md): catches an accidental slow path."""
    line = b'+1795923693.417633 [0 127.0.0.1:48136] "SET" "key:000000012345" "xxx"\r\n'
    data = line * 50_000
    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        lines, _ = parse_monitor_chunk(data)
        best = max(best, len(lines) / (time.perf_counter() - started))
    assert best > 50_000


# ------------------------------------------------------------------------------------ a real server as oracle


class RawMonitor:
    """The simplest possible MONITOR reader: a socket and the parser under test."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.sendall(b"MONITOR\r\n")
        self.buffer = b""
        while not self.buffer.startswith(b"+OK\r\n"):
            self.buffer += self.sock.recv(4096)
        self.buffer = self.buffer[5:]
        self.pending: deque[MonitorLine] = deque()

    def until(self, count: int, where: Callable[[MonitorLine], bool] | None = None,
              timeout: float = 10.0) -> list[MonitorLine]:
        """The next `count` lines that satisfy `where` (lines before them that do not are skipped)."""
        found: list[MonitorLine] = []
        deadline = time.monotonic() + timeout
        while True:
            while self.pending and len(found) < count:
                line = self.pending.popleft()
                if where is None or where(line):
                    found.append(line)
            if len(found) == count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(found)} of {count} MONITOR lines arrived: {found}")
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                self.buffer += self.sock.recv(1 << 16)
            lines, self.buffer = parse_monitor_chunk(self.buffer)
            self.pending.extend(lines)

    def close(self) -> None:
        self.sock.close()


def from_peer(peer: str, command: bytes | None = None) -> Callable[[MonitorLine], bool]:
    return lambda line: line.peer == peer and (command is None or line.args[0].upper() == command)


@dataclass
class Oracle:
    box: Sandbox
    unix_path: str
    client: redis.Redis
    peer: str
    monitor: RawMonitor
    extra: list[redis.Redis] = field(default_factory=list)


@pytest.fixture(scope="module")
def oracle() -> Iterator[Oracle]:
    """A server of its own (with a unix socket), one client, and a raw MONITOR connection already reading."""
    sockdir = Path(tempfile.mkdtemp(prefix="rp-mon-"))
    unix_path = str(sockdir / "redis.sock")
    try:
        with sandbox("single", extra=["--unixsocket", unix_path, "--unixsocketperm", "700"]) as box:
            server = box.servers[0]
            client = redis.Redis(host=server.host, port=server.port, single_connection_client=True,
                                 socket_timeout=10)
            peer = client.client_info()["addr"]
            monitor = RawMonitor(server.host, server.port)
            try:
                yield Oracle(box, unix_path, client, peer, monitor)
            finally:
                monitor.close()
                client.close()
    finally:
        shutil.rmtree(sockdir, ignore_errors=True)


_SPECIAL = [b'"', b"\\", b" ", b"\n", b"\r", b"\t", b"\a", b"\b", b"\x00", b"\xff", b'" "', b'\\"', b"\\x41",
            b"]", b"[0 lua]", b"\xc3\xa9", b"x"]
tricky_bytes = st.lists(st.one_of(st.sampled_from(_SPECIAL), st.binary(min_size=1, max_size=4)), max_size=8).map(
    b"".join
)
values = st.one_of(tricky_bytes, st.integers(-(2**63), 2**63 - 1).map(lambda i: str(i).encode()),
                   st.sampled_from([b"007", b"-0", b"+1", b"1.5", b" 1"]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(keys=st.lists(tricky_bytes, min_size=1, max_size=5), value=values)
def test_args_round_trip_through_a_real_server(oracle: Oracle, keys: list[bytes], value: bytes) -> None:
    # SET may store an integer-looking value int-encoded; MONITOR then prints it with %ld: still exact.
    oracle.client.execute_command("EXISTS", *keys)
    oracle.client.execute_command("SET", keys[0], value)
    exists, set_ = oracle.monitor.until(2, from_peer(oracle.peer))
    assert exists.args == [b"EXISTS", *keys]
    assert set_.args == [b"SET", keys[0], value]
    assert exists.db == 0 and exists.ts <= set_.ts


def test_select_shows_the_db(oracle: Oracle) -> None:
    client = redis.Redis(host=oracle.box.servers[0].host, port=oracle.box.servers[0].port, db=5,
                         single_connection_client=True, socket_timeout=10)
    try:
        peer = client.client_info()["addr"]
        client.set("in-db-5", "v")
        lines = oracle.monitor.until(1, from_peer(peer, b"SET"))
    finally:
        client.close()
    assert lines[0].db == 5 and lines[0].args == [b"SET", b"in-db-5", b"v"]
    assert abs(lines[0].ts - time.time()) < 60


def test_script_commands_come_after_the_eval_with_peer_lua(oracle: Oracle) -> None:
    script = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1])"
    oracle.client.eval(script, 1, "lua:key", b'v"\n\\')
    eval_line = oracle.monitor.until(1, from_peer(oracle.peer))[0]
    assert eval_line.args == [b"EVAL", script.encode(), b"1", b"lua:key", b'v"\n\\']
    # The script's commands follow at once, before anything else: nothing else runs while a script does.
    inner = oracle.monitor.until(2)
    assert [line.peer for line in inner] == ["lua", "lua"]
    assert [line.args for line in inner] == [[b"SET", b"lua:key", b'v"\n\\'], [b"GET", b"lua:key"]]


def test_multi_exec_queued_commands_show_at_exec_time_then_exec(oracle: Oracle) -> None:
    # Raw commands on the fixture's one connection (a redis-py pipeline would take another connection).
    before = time.time()
    assert oracle.client.execute_command("MULTI")
    oracle.client.execute_command("SET", "tx:a", "1")
    oracle.client.execute_command("INCR", "tx:b")
    time.sleep(0.01)  # so that queueing time and EXEC time differ measurably
    exec_sent = time.time()
    assert oracle.client.execute_command("EXEC") == [b"OK", 1]
    lines = oracle.monitor.until(4, from_peer(oracle.peer))
    assert [line.args[0] for line in lines] == [b"MULTI", b"SET", b"INCR", b"EXEC"]
    assert lines[1].args == [b"SET", b"tx:a", b"1"] and lines[2].args == [b"INCR", b"tx:b"]
    assert before - 1 <= lines[0].ts
    # Queued commands are shown when EXEC runs them, not when they were queued.
    assert lines[1].ts >= exec_sent - 0.005 and lines[0].ts <= lines[1].ts <= lines[2].ts <= lines[3].ts


def test_unix_socket_peer_is_the_server_socket_path(oracle: Oracle) -> None:
    client = redis.Redis(unix_socket_path=oracle.unix_path, socket_timeout=10)
    try:
        client.execute_command("SET", b"over unix", b"\x00")
        lines = oracle.monitor.until(1, from_peer(f"unix:{oracle.unix_path}", b"SET"))
    finally:
        with contextlib.suppress(redis.RedisError):
            client.close()
    assert lines[0].args == [b"SET", b"over unix", b"\x00"]
