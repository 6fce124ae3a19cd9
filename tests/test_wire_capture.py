"""Wire capture on a real server: the same load seen by MONITOR and by the wire gives the same commands, byte for
byte, in the same order per connection, and every reply is what the client library received; a connection open
before the capture is resynchronised and says so; without privilege the reader says so in one line."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from redisprobe import trace
from redisprobe.producers.observers.commandcount import monitor_hidden
from redisprobe.producers.observers.monitor_capture import MonitorCapture, _fence_of
from redisprobe.producers.wire.conversation import Exchange
from redisprobe.producers.wire.events import exchange_events
from redisprobe.producers.wire.sniffer import WireCapture
from redisprobe.targets.sandbox import Sandbox
from redisprobe.targets.url import parse_target

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a packet capture needs root or CAP_NET_RAW")

VALUES = [b"plain", b"with space", b'quote"and\\back', b"\x00\xff\r\nbinary", "日本".encode(), b""]


def raw_client(host: str, port: int, **kwargs: Any) -> redis.Redis:
    """One connection for commands and pipelines alike, replies as the server sent them (no response callbacks):
    what the wire must read."""
    pool = redis.BlockingConnectionPool(host=host, port=port, max_connections=1, **kwargs)
    client = redis.Redis(connection_pool=pool)
    client.response_callbacks.clear()
    client.ping()
    return client


def peer(client: redis.Redis) -> str:
    pool = client.connection_pool
    connection = pool.get_connection()
    try:
        host, port = connection._sock.getsockname()[:2]  # type: ignore[union-attr]
    finally:
        pool.release(connection)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def monitor_events(capture: MonitorCapture) -> list[trace.Monitor]:
    out: list[trace.Monitor] = []
    for item in capture.drain(timeout=30):
        if isinstance(item, trace.MonitorLines):
            out.extend(e for e in trace.expand_monitor_lines(item) if isinstance(e, trace.Monitor))
    return out


def shown_by_monitor(ex: Exchange, hidden: frozenset[str]) -> bool:
    """Would MONITOR show this command: run, not an admin command, not MonitorCapture's own fence or mark."""
    if ex.refused or _fence_of(ex.args) is not None:
        return False
    name = ex.args[0].decode("latin-1").lower()
    sub = f"{name}|{ex.args[1].decode('latin-1').lower()}" if len(ex.args) > 1 else ""
    return name not in hidden and sub not in hidden


def same_reply(got: Exchange, expected: object) -> bool:
    if isinstance(expected, redis.ResponseError):
        return got.error is not None and got.error.endswith(str(expected))
    return got.error is None and got.reply == expected


def test_pipelined_load_seen_by_monitor_and_wire_alike(private_server: Sandbox, tmp_path: Path) -> None:
    server = private_server.servers[0]
    host, port = server.host, server.port
    admin = redis.Redis(host=host, port=port)
    hidden = monitor_hidden(admin)
    monitor = MonitorCapture(parse_target(server.url), tmp_path / "monitor")
    monitor.start()  # before the wire: its connections are open mid-stream when the wire starts
    wire = WireCapture(port, tmp_path / "wire")
    wire.start()
    cli_monitor = subprocess.Popen(["redis-cli", "-h", host, "-p", str(port), "monitor"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        subscribers = [redis.Redis(host=host, port=port, protocol=protocol).pubsub() for protocol in (2, 3)]
        for subscriber in subscribers:
            subscriber.subscribe("wire:chan")
            assert subscriber.get_message(timeout=5)["type"] == "subscribe"  # type: ignore[index]

        client = raw_client(host, port)
        expected: list[tuple[list[bytes], object]] = []
        pipe = client.pipeline(transaction=False)
        sent: list[list[bytes]] = []
        for round_ in range(40):
            key = b"wire:k:%d" % (round_ % 7)
            value = VALUES[round_ % len(VALUES)]
            for args in ([b"SET", key, value], [b"GET", key], [b"INCR", b"wire:n"], [b"EXPIRE", key, b"100"],
                         [b"DEL", b"wire:k:%d" % ((round_ + 3) % 7)], [b"GET", b"wire:missing"]):
                pipe.execute_command(*args)
                sent.append(args)
        pipe.execute_command(b"INCR", b"wire:k:0")  # an error the server ran (MONITOR shows it)
        sent.append([b"INCR", b"wire:k:0"])
        pipe.execute_command(b"NOSUCHCOMMAND", b"x")  # refused before running: MONITOR never shows it
        sent.append([b"NOSUCHCOMMAND", b"x"])
        expected += list(zip(sent, pipe.execute(raise_on_error=False), strict=True))

        tx = client.pipeline(transaction=True)
        queued = [[b"SET", b"wire:tx", b"1"], [b"INCR", b"wire:tx"], [b"GET", b"wire:tx"], [b"DEL", b"wire:tx"]]
        for args in queued:
            tx.execute_command(*args)
        results = tx.execute()
        expected.append(([b"MULTI"], b"OK"))
        expected += list(zip(queued, results, strict=True))
        expected.append(([b"EXEC"], results))

        expected.append(([b"SELECT", b"2"], client.execute_command("SELECT", 2)))
        big = bytes(range(256)) * 12_000  # 3 MB: many segments each way
        for args in ([b"SET", b"wire:db2", b"x"], [b"GET", b"wire:db2"], [b"PUBLISH", b"wire:chan", b"hi"],
                     [b"SET", b"wire:big", big], [b"GET", b"wire:big"]):
            expected.append((args, client.execute_command(*args)))
        for subscriber in subscribers:
            assert subscriber.get_message(timeout=5) is not None
        client_peer = peer(client)
        time.sleep(0.2)
        seen_by_monitor = monitor_events(monitor)
    finally:
        cli_monitor.terminate()
        cli_monitor.wait(10)
        wire.stop()
        monitor.stop()
    result = wire.result()
    for subscriber in subscribers:
        subscriber.close()
    client.close()

    by_monitor: dict[str, list[tuple[int, list[bytes]]]] = defaultdict(list)
    for event in seen_by_monitor:
        by_monitor[event.peer].append((event.db, event.args))
    by_wire: dict[str, list[tuple[int | None, list[bytes]]]] = defaultdict(list)
    for ex in result.exchanges:
        if shown_by_monitor(ex, hidden):
            by_wire[ex.client].append((ex.db, ex.args))
    modes = {c.client: c.mode for c in result.connections}
    assert sorted(modes.values()).count("monitor") == 2, modes  # MonitorCapture's reader (joined mid-way), redis-cli
    assert list(modes.values()).count("pubsub") == 1, modes  # RESP2: messages are all it gets
    assert sum(c.subscribed for c in result.connections) == 1  # RESP3: still request/reply, messages are pushes
    skipped = {client for client, mode in modes.items() if mode == "monitor"}
    assert client_peer in by_monitor
    for who in set(by_monitor) | set(by_wire):
        if who in skipped:
            continue
        assert by_wire[who] == by_monitor[who], who

    mine = [ex for ex in result.exchanges if ex.client == client_peer]
    first = next((i for i, ex in enumerate(mine) if ex.args == expected[0][0]), None)
    assert first is not None, [ex.args for ex in mine][:8]
    mine = mine[first:]
    assert [ex.args for ex in mine] == [args for args, _ in expected]
    for ex, (args, reply) in zip(mine, expected, strict=True):
        assert same_reply(ex, reply), (args, ex, reply)
        assert ex.replied is not None and not ex.resynced
    refused = [ex for ex in mine if ex.refused]
    assert [ex.args for ex in refused] == [[b"NOSUCHCOMMAND", b"x"]]
    assert [ex.args[0] for ex in mine if ex.queued] == [b"SET", b"INCR", b"GET", b"DEL"]
    assert not result.gaps and result.kernel_drops == 0

    events = exchange_events(mine, target="t")  # the trace: Monitor events the fold reads, replies beside them
    monitors = [e for e in events if isinstance(e, trace.Monitor)]
    replies = [e for e in events if isinstance(e, trace.WireReply)]
    assert len(monitors) == len(mine) - 1 and len(replies) == len(mine)
    assert [r.refused for r in replies if r.refused] == [[b"NOSUCHCOMMAND", b"x"]]
    assert trace.decode_event(trace.encode(replies[0])) == replies[0]


def test_connection_open_before_the_capture_is_resynchronised(private_server: Sandbox, tmp_path: Path) -> None:
    server = private_server.servers[0]
    client = raw_client(server.host, server.port)
    client.execute_command("SELECT", 3)
    client.execute_command("SET", "wire:old", "before")
    subscriber = redis.Redis(host=server.host, port=server.port, protocol=2).pubsub()  # subscribed before too
    subscriber.subscribe("wire:old-chan")
    assert subscriber.get_message(timeout=5) is not None
    wire = WireCapture(server.port, tmp_path)
    wire.start()
    expected: list[tuple[list[bytes], object]] = []
    try:
        assert client.execute_command("PUBLISH", "wire:old-chan", "m") == 1
        expected.append(([b"PUBLISH", b"wire:old-chan", b"m"], 1))
        assert subscriber.get_message(timeout=5) is not None
        for args in ([b"GET", b"wire:old"], [b"SET", b"wire:old", b"after"], [b"INCR", b"wire:count"],
                     [b"GET", b"wire:old"], [b"SELECT", b"4"], [b"GET", b"wire:old"]):
            expected.append((args, client.execute_command(*args)))
        pipe = client.pipeline(transaction=False)
        for n in range(20):
            pipe.execute_command(b"SET", b"wire:p%d" % n, b"v%d" % n)
        expected += [([b"SET", b"wire:p%d" % n, b"v%d" % n], r) for n, r in enumerate(pipe.execute())]
        time.sleep(0.2)
    finally:
        wire.stop()
    result = wire.result()
    mine = [ex for ex in result.exchanges if ex.client == peer(client)]
    client.close()
    subscriber.close()
    assert [ex.args for ex in mine] == [args for args, _ in expected]
    for ex, (_args, reply) in zip(mine, expected, strict=True):
        assert same_reply(ex, reply) and ex.resynced
    assert [ex.db for ex in mine[:5]] == [None] * 5  # open before the capture: unknown until it SELECTs
    assert {ex.db for ex in mine[5:]} == {4}
    assert [c.mode for c in result.connections].count("pubsub") == 1  # its messages recognised, skipped
    events = exchange_events(mine[:1])
    assert "resynced" in events[-1].flags and "db-unknown" in events[-1].flags  # type: ignore[union-attr]


def test_kernel_drops_are_a_gap_with_a_count_and_the_connection_resynchronises(private_server: Sandbox,
                                                                                   tmp_path: Path) -> None:
    """The reader stopped (SIGSTOP) with a small buffer while a pipeline runs: the kernel drops packets."""
    server = private_server.servers[0]
    wire = WireCapture(server.port, tmp_path, rcvbuf=65536)  # room for the small packets, not the pipeline
    wire.start()
    client = raw_client(server.host, server.port)  # opened in the capture: in sync from its first byte
    try:
        assert client.execute_command("SET", "wire:before", "1") == b"OK"
        assert wire.proc is not None
        os.kill(wire.proc.pid, signal.SIGSTOP)
        try:
            pipe = client.pipeline(transaction=False)
            for n in range(3000):
                pipe.execute_command(b"SET", b"wire:drop:%d" % n, b"x" * 100)
            pipe.execute()
        finally:
            os.kill(wire.proc.pid, signal.SIGCONT)
        time.sleep(0.3)
        after = [([b"GET", b"wire:before"], client.execute_command("GET", "wire:before")),
                 ([b"INCR", b"wire:after"], client.execute_command("INCR", "wire:after")),
                 ([b"GET", b"wire:drop:7"], client.execute_command("GET", "wire:drop:7"))]
        time.sleep(1.5)  # the reader reports the kernel's counts every second
    finally:
        wire.stop()
    result = wire.result()
    mine = [ex for ex in result.exchanges if ex.client == peer(client)]
    client.close()
    assert result.kernel_drops > 0
    assert any("kernel dropped" in gap.reason and gap.until is not None and gap.until >= gap.t
               for gap in result.gaps)
    before = next(ex for ex in mine if ex.args == [b"SET", b"wire:before", b"1"])
    assert before.reply == b"OK" and not before.resynced
    tail = mine[-3:]
    assert [ex.args for ex in tail] == [args for args, _ in after]
    assert all(ex.resynced and same_reply(ex, reply) for ex, (_args, reply) in zip(tail, after, strict=True))


def test_without_privilege_the_reader_says_so_in_one_line(tmp_path: Path) -> None:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv is not installed")
    spool_dir = tmp_path / "nobody"
    spool_dir.mkdir()
    os.chmod(spool_dir, 0o777)
    os.chmod(tmp_path, 0o755)
    root = str(Path(__file__).resolve().parents[1])
    proc = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
                           sys.executable, "-m", "redisprobe.producers.wire.reader", "--port", "6379",
                           "--spool", str(spool_dir / "x.spool")],
                          capture_output=True, text=True, timeout=60, cwd=root,
                          env={**os.environ, "PYTHONPATH": root})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "CAP_NET_RAW" in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert not (spool_dir / "x.spool").exists()


@pytest.fixture
def ipv6_server(tmp_path: Path) -> Iterator[int]:
    """A server listening on ::1 only."""
    with socket.socket(socket.AF_INET6) as probe:
        probe.bind(("::1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "::1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(host="::1", port=port)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def test_ipv6_peers_read_as_monitor_writes_them_and_tls_is_named_unreadable(ipv6_server: int,
                                                                             tmp_path: Path) -> None:
    port = ipv6_server
    monitor = MonitorCapture(parse_target(f"redis://[::1]:{port}/0"), tmp_path / "monitor")
    monitor.start()
    wire = WireCapture(port, tmp_path / "wire", interface="lo")
    wire.start()
    try:
        client = raw_client("::1", port)
        replies = [client.execute_command("SET", "wire:v6", "x"), client.execute_command("GET", "wire:v6")]
        with socket.create_connection(("::1", port)) as tls:  # a TLS ClientHello, as a TLS client opens with
            tls.sendall(b"\x16\x03\x01\x00\x2f\x01\x00\x00\x2b\x03\x03" + bytes(32) + b"\x00\x00\x02\x00\x2f\x01\x00")
            tls_peer = "[{}]:{}".format(*tls.getsockname()[:2])
            time.sleep(0.2)
        client_peer = peer(client)
        assert client_peer.startswith("[::1]:")
        seen = [e for e in monitor_events(monitor) if e.peer == client_peer]
    finally:
        wire.stop()
        monitor.stop()
    result = wire.result()
    mine = [ex for ex in result.exchanges if ex.client == client_peer and ex.args[0] in (b"SET", b"GET")]
    assert [ex.args for ex in mine] == [e.args for e in seen if e.args[0] in (b"SET", b"GET")]
    assert [ex.reply for ex in mine] == replies == [b"OK", b"x"]
    assert f"connection {tls_peer} is TLS: its commands are unreadable" in result.notes
    assert not [ex for ex in result.exchanges if ex.client == tls_peer]
