"""The doctor on real servers: real processes run the commands, real MONITOR and keyspace events are recorded.

Each test starts child processes (a small redis-py "puppet" that runs the commands it is sent, or redis-cli),
records a raw MONITOR stream, keyevent notifications and CLIENT LIST samples (pids found with psutil from the
sockets, as the product does), and checks that the doctor names the right rule and the right pid.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
import redis

from redisprobe import trace
from redisprobe.analysis import Context, analyze
from redisprobe.findings import Finding, to_builtins
from redisprobe.producers import procs
from redisprobe.targets.sandbox import Sandbox
from redisprobe.trace.monitor_text import parse_monitor_line

POLL = 0.05
_OBSERVER = "redisprobe:observer"

_PUPPET = r"""
import json, sys, redis
url, name = sys.argv[1], sys.argv[2]
client = redis.Redis.from_url(url, single_connection_client=True)
client.client_setname(name)
print(json.dumps({"ready": client.client_id()}), flush=True)
def plain(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
for line in sys.stdin:
    args = json.loads(line)
    try:
        reply = plain(client.execute_command(*args))
    except redis.RedisError as exc:
        reply = {"error": str(exc)}
    print(json.dumps(reply), flush=True)
"""


class Puppet:
    """A child process with one connection that runs the commands we send it (its pid is what we check)."""

    def __init__(self, url: str, name: str, db: int = 0) -> None:
        url = f"{url.rsplit('/', 1)[0]}/{db}"  # the URL's db wins over a `db=` option: set it in the URL
        self.proc = procs.spawn([sys.executable, "-c", _PUPPET, url, name], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        self.client_id = json.loads(self.proc.stdout.readline())["ready"]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def __call__(self, *args: object) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps([str(a) for a in args]) + "\n").encode())
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        procs.stop(self.proc)


class Recorder:
    """MONITOR (raw socket), keyevent notifications and CLIENT LIST + psutil pids, as trace events."""

    def __init__(self, server: Sandbox) -> None:
        self.box = server
        self.url = server.urls[0]
        host, port = server.servers[0].host, server.servers[0].port
        self.host, self.port = host, port
        self.events: list[trace.Event] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        admin = redis.Redis(host=host, port=port)
        admin.config_set("notify-keyspace-events", "KEA")
        admin.close()
        self._monitor = socket.create_connection((host, port))
        self._monitor.sendall(b"MONITOR\r\n")
        self._pubsub = redis.Redis(host=host, port=port).pubsub(ignore_subscribe_messages=True)
        self._pubsub.psubscribe("__keyevent@*__:*")
        self._poller = redis.Redis(host=host, port=port, client_name=f"{_OBSERVER}:clients")
        self._threads = [threading.Thread(target=fn, daemon=True)
                         for fn in (self._read_monitor, self._read_keyspace, self._poll_clients)]
        for thread in self._threads:
            thread.start()
        self._wait_for_monitor()

    def _emit(self, event: trace.Event) -> None:
        with self._lock:
            self.events.append(event)

    def _wait_for_monitor(self) -> None:
        """PING from a throwaway connection until MONITOR shows it: from then on nothing is missed."""
        probe = redis.Redis(host=self.host, port=self.port)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            probe.ping()
            time.sleep(0.02)
            with self._lock:
                if any(isinstance(e, trace.Monitor) for e in self.events):
                    break
        probe.close()

    def _read_monitor(self) -> None:
        buffer = b""
        self._monitor.settimeout(0.1)
        while not self._stop.is_set():
            try:
                chunk = self._monitor.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\r\n")
            for line in lines:
                if line.startswith(b"+") and line != b"+OK":
                    parsed = parse_monitor_line(line)
                    self._emit(trace.Monitor(t=parsed.ts, db=parsed.db, peer=parsed.peer, args=parsed.args,
                                             target=self.url))

    def _read_keyspace(self) -> None:
        while not self._stop.is_set():
            try:
                message = self._pubsub.get_message(timeout=0.05)
            except (redis.RedisError, OSError):
                return
            if not message or message["type"] != "pmessage":
                continue
            channel = message["channel"].decode()  # __keyevent@0__:expired
            db = int(channel[len("__keyevent@"):channel.index("__:")])
            self._emit(trace.Keyspace(t=time.time(), db=db, event=channel.split("__:", 1)[1],
                                      key=message["data"], target=self.url))

    def _poll_clients(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            pids: dict[int, tuple[int, str]] = {}
            for child in me.children(recursive=True):
                try:
                    for conn in child.net_connections(kind="tcp"):
                        if conn.raddr and conn.raddr.port == self.port:
                            pids[conn.laddr.port] = (child.pid, child.name())
                except psutil.Error:
                    continue
            now = time.time()
            try:
                clients = self._poller.client_list()
            except (redis.RedisError, OSError):
                return
            for info in clients:
                if info.get("name", "").startswith(_OBSERVER) or "M" in info.get("flags", "") \
                        or info.get("cmd") in ("monitor", "psubscribe", "client|list"):
                    continue
                port = int(info["addr"].rsplit(":", 1)[1])
                pid, process = pids.get(port, (None, ""))
                self._emit(trace.ClientSeen(t=now, client_id=int(info["id"]), addr=info["addr"], db=int(info["db"]),
                                            name=info.get("name", ""), lib=info.get("lib-name", ""),
                                            age=int(info["age"]), flags=info.get("flags", ""), pid=pid,
                                            process=process, target=self.url))
            time.sleep(POLL)

    def settle(self, seconds: float = 3 * POLL) -> None:
        """Let every observer catch up (a CLIENT LIST poll sees each live connection)."""
        time.sleep(seconds)

    def stop(self) -> list[trace.Event]:
        if not self._stop.is_set():
            self.settle()
            self._stop.set()
            for thread in self._threads:
                thread.join(timeout=2)
            self._monitor.close()
            self._pubsub.close()
            self._poller.close()
        with self._lock:
            return sorted(self.events, key=lambda e: e.t)


@pytest.fixture
def rec(private_server: Sandbox) -> Iterator[Recorder]:
    recorder = Recorder(private_server)
    puppets: list[Puppet] = []
    recorder.puppets = puppets  # type: ignore[attr-defined]
    try:
        yield recorder
    finally:
        for made in puppets:
            made.close()
        recorder.stop()  # before the server goes away


def puppet(rec: Recorder, name: str, db: int = 0) -> Puppet:
    made = Puppet(rec.url, name, db)
    rec.puppets.append(made)  # type: ignore[attr-defined]
    rec.settle()  # a CLIENT LIST sample with its pid before it acts
    return made


def diagnose_real(rec: Recorder, watched: dict[int, str]) -> list[Finding]:
    events = rec.stop()
    assert any(isinstance(e, trace.ClientSeen) and e.pid in watched for e in events), "psutil found no pid"
    return analyze(events, Context(watched=watched)).findings


def the(findings: list[Finding], rule: str) -> Finding:
    mine = [f for f in findings if f.rule == rule]
    assert len(mine) == 1, [to_builtins(f) for f in findings]
    return mine[0]


def said(finding: Finding, *parts: str) -> bool:
    return any(all(p in line for p in parts) for line in finding.evidence)


def test_real_processor_deletes_a_batch_the_api_still_writes(rec: Recorder) -> None:
    api, processor = puppet(rec, "api"), puppet(rec, "processor")
    for i in range(6):
        api("RPUSH", "batch:1", f"item{i}")
        api("EXPIRE", "batch:1", 30)
        if i == 3:
            processor("LRANGE", "batch:1", 0, -1)
            processor("DEL", "batch:1")
        time.sleep(0.03)
    findings = diagnose_real(rec, {api.pid: "api", processor.pid: "processor"})
    finding = the(findings, "deleted-by-client")
    assert finding.culprit is not None and finding.culprit.pid == processor.pid
    assert finding.culprit.client_id == processor.client_id
    assert said(finding, f"pid {processor.pid} (processor)", "DEL batch:1")
    assert said(finding, f"pid {api.pid} (api)", "RPUSH batch:1", "recreated")
    assert {f.rule for f in findings} == {"deleted-by-client"}


def test_real_lua_script_deletion_is_attributed_to_its_caller(rec: Recorder) -> None:
    api, processor = puppet(rec, "api"), puppet(rec, "processor")
    script = "redis.call('del', KEYS[1]); return 1"
    for i in range(5):
        api("RPUSH", "batch:2", f"item{i}")
        api("EXPIRE", "batch:2", 30)
        if i == 2:
            processor("EVAL", script, 1, "batch:2")
        time.sleep(0.03)
    finding = the(diagnose_real(rec, {api.pid: "api", processor.pid: "processor"}), "deleted-by-client")
    assert finding.culprit is not None and finding.culprit.pid == processor.pid
    assert said(finding, f"pid {processor.pid}", "DEL batch:2")


def test_real_healthy_batch_consumed_after_it_went_quiet(rec: Recorder) -> None:
    api, processor = puppet(rec, "api"), puppet(rec, "processor")
    for i in range(4):
        api("RPUSH", "batch:3", f"item{i}")
        api("EXPIRE", "batch:3", 30)
        time.sleep(0.02)
    time.sleep(0.4)
    processor("LRANGE", "batch:3", 0, -1)
    processor("DEL", "batch:3")
    api("SET", "session:1", "x", "PX", 200)
    time.sleep(0.45)  # session:1 expires on time (active expiry fires `expired`)
    analysis = analyze(rec.stop(), Context(watched={api.pid: "api", processor.pid: "processor"}))
    assert analysis.findings == [], [to_builtins(f) for f in analysis.findings]
    [session] = analysis.lifecycle.lives_of("session:1")
    assert session.removed_how == "expired" and session.expired_on_time


def test_real_set_without_keepttl_clears_the_ttl(rec: Recorder) -> None:
    api, admin = puppet(rec, "api"), puppet(rec, "admin")
    api("SET", "token:1", "a", "EX", 100)
    admin("SET", "token:1", "b")
    assert admin("TTL", "token:1") == -1
    time.sleep(1.1)
    finding = the(diagnose_real(rec, {api.pid: "api", admin.pid: "admin"}), "ttl-cleared-by-set")
    assert finding.culprit is not None and finding.culprit.pid == admin.pid
    assert said(finding, f"pid {admin.pid} (admin)", "SET token:1 b", "TTL dropped")


def test_real_rate_limiter_recreated_without_ttl(rec: Recorder) -> None:
    api = puppet(rec, "api")
    api("INCR", "rl:1")
    api("PEXPIRE", "rl:1", 150)
    time.sleep(0.45)  # gone: the server's active expiry fires `expired`
    api("INCR", "rl:1")  # recreated, no TTL
    time.sleep(1.1)
    finding = the(diagnose_real(rec, {api.pid: "api"}), "recreated-without-ttl")
    assert finding.culprit is not None and finding.culprit.pid == api.pid
    assert said(finding, "INCR rl:1", "recreated, no TTL")


def test_real_flushdb_from_redis_cli(rec: Recorder) -> None:
    api = puppet(rec, "api")
    api("SET", "a", "1")
    api("RPUSH", "b", "x")
    cli = procs.spawn(["redis-cli", "-u", rec.url, "-r", "2", "-i", "0.25", "FLUSHDB"], stdout=subprocess.DEVNULL)
    assert cli.wait(timeout=10) == 0
    finding = the(diagnose_real(rec, {api.pid: "api", cli.pid: "redis-cli"}), "flushed")
    assert finding.culprit is not None and finding.culprit.pid == cli.pid
    assert set(finding.keys) == {"a", "b"} and said(finding, f"pid {cli.pid}", "FLUSHDB")


def test_real_reader_on_another_db(rec: Recorder) -> None:
    api, processor = puppet(rec, "api"), puppet(rec, "processor", db=1)
    api("SET", "order:1", "x")
    assert processor("GET", "order:1") is None
    finding = the(diagnose_real(rec, {api.pid: "api", processor.pid: "processor"}), "different-db")
    assert finding.culprit is not None and finding.culprit.pid == processor.pid
    assert said(finding, f"pid {processor.pid} (processor)", "db 1", "GET order:1")
    assert said(finding, "CLIENT LIST", "is on db 1")


def test_real_multi_never_executed(rec: Recorder) -> None:
    api = puppet(rec, "api")
    api("MULTI")
    assert api("SET", "k", "v") in ("QUEUED", False)  # redis-py's SET callback turns QUEUED into False
    rec.settle(0.7)
    finding = the(diagnose_real(rec, {api.pid: "api"}), "transaction-not-executed")
    assert finding.culprit is not None and finding.culprit.pid == api.pid
    assert said(finding, "MULTI", "no EXEC") and said(finding, "flags=x")


def test_real_stuck_multi_is_one_finding_however_many_later_multis(rec: Recorder) -> None:
    """A connection left inside MULTI: every later MULTI is refused ("can not be nested") but shows in MONITOR."""
    api = puppet(rec, "api")
    api("MULTI")
    api("SET", "k", "v")
    for _ in range(5):
        assert "nested" in api("MULTI")["error"]
        api("SET", "k", "v")
    rec.settle(0.7)
    finding = the(diagnose_real(rec, {api.pid: "api"}), "transaction-not-executed")
    assert finding.culprit is not None and finding.culprit.pid == api.pid
    assert said(finding, "MULTI", "no EXEC", "5 later MULTI")


def test_real_refresh_on_a_near_miss_name(rec: Recorder) -> None:
    api, keeper = puppet(rec, "api"), puppet(rec, "keeper")
    api("SET", "session:7", "x", "PX", 300)
    assert keeper("EXPIRE", "session_7", 10) == 0
    time.sleep(0.6)
    finding = the(diagnose_real(rec, {api.pid: "api", keeper.pid: "keeper"}), "ttl-refresh-missed")
    assert finding.culprit is not None and finding.culprit.pid == keeper.pid
    assert said(finding, "EXPIRE session_7 10", "no such key") and said(finding, "session:7 exists")


def test_real_expireat_in_the_past(rec: Recorder) -> None:
    api = puppet(rec, "api")
    api("SET", "promo", "on")
    api("EXPIREAT", "promo", int(time.time()) - 60)
    events = rec.stop()
    assert any(isinstance(e, trace.Keyspace) and e.event == "del" and e.key == b"promo" for e in events)
    finding = the(analyze(events, Context(watched={api.pid: "api"})).findings, "expire-in-past")
    assert finding.culprit is not None and finding.culprit.pid == api.pid


def test_real_eviction_under_maxmemory(rec: Recorder) -> None:
    admin = redis.Redis(host=rec.host, port=rec.port)
    used = int(admin.info("memory")["used_memory"])
    admin.config_set("maxmemory", used + 400_000)
    admin.config_set("maxmemory-policy", "allkeys-lru")
    admin.close()
    api = puppet(rec, "api")
    for i in range(20):
        api("SET", f"blob:{i}", "x" * 50_000)
    events = rec.stop()
    finding = the(analyze(events, Context(watched={api.pid: "api"})).findings, "evicted")
    assert finding.culprit is None and finding.keys and said(finding, "evicted blob:")
