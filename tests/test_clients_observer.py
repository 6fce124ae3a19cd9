"""ClientPoller on real servers: clients mapped to their processes, changes, restarts, refusals, lookups."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import redis

from redisprobe import trace
from redisprobe.errors import ConnectionProblem
from redisprobe.producers import procs
from redisprobe.producers.observers.clients import CONNECTION_NAME, STAT_KEYS, ClientPoller, lib_of, parse_client_list
from redisprobe.producers.processes.pidmap import PidMapper
from redisprobe.targets.sandbox import Sandbox, sandbox
from redisprobe.targets.url import parse_target
from tests.sink import Sink

# One connection (SELECT sticks) driven line by line from stdin: "SELECT 3", "CLIENT SETNAME x", ...
CHILD = ("import sys, redis; r = redis.Redis.from_url(sys.argv[1], single_connection_client=True); "
         "r.client_setname('poll-child'); print(r.client_id(), flush=True)\n"
         "for line in sys.stdin: print(r.execute_command(*line.split()), flush=True)")


class Child:
    """A redis-py client in its own process, commanded through stdin."""

    def __init__(self, url: str) -> None:
        self.proc = procs.spawn([sys.executable, "-c", CHILD, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.client_id = int(self._line())

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "the child client died"
        return line.decode().strip()

    def do(self, command: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()
        return self._line()

    def close(self) -> None:
        procs.stop(self.proc)


@pytest.fixture
def child(redis_url: str) -> Iterator[Child]:
    spawned = Child(redis_url)
    try:
        yield spawned
    finally:
        spawned.close()


def test_parse_client_list() -> None:
    raw = (b"id=4 addr=127.0.0.1:33690 laddr=127.0.0.1:7811 fd=8 name= age=0 idle=0 flags=N db=0 cmd=client|list "
           b"user=default redir=-1 resp=2\r\n"
           b"id=9 addr=[::1]:5000 laddr=[::1]:6379 fd=9 name=api age=12 flags=x db=3 multi=2 cmd=exec "
           b"lib-name=ioredis lib-ver=5.3.2\n"
           b"\n"
           b"garbage line\n")
    first, second = parse_client_list(raw)
    assert first["id"] == "4" and first["name"] == "" and first["cmd"] == "client|list"
    assert lib_of(first) == ""
    assert second["addr"] == "[::1]:5000" and second["db"] == "3" and second["flags"] == "x"
    assert lib_of(second) == "ioredis 5.3.2"
    assert parse_client_list("id=1 name=a b=c odd")[0]["b"] == "c odd"


def test_clients_mapped_to_pids_and_changes_reported_once(redis_url: str, child: Child) -> None:
    sink = Sink()
    target = parse_target(redis_url)
    mapper = PidMapper({child.proc.pid: "api"})
    with ClientPoller(target, sink, pid_mapper=mapper, interval=0.05) as poller:
        first = sink.wait(lambda e: isinstance(e, trace.ClientSeen) and e.client_id == child.client_id)
        assert isinstance(first, trace.ClientSeen)
        assert first.pid == child.proc.pid and first.label == "api" and first.process.startswith("python")
        assert first.name == "poll-child" and first.db == 0 and first.lib == ""
        assert first.target == target.label
        time.sleep(0.5)  # many polls, no change: no new event
        assert len([e for e in sink.of(trace.ClientSeen) if e.client_id == child.client_id]) == 1
        assert child.do("SELECT 3") == "True"
        moved = sink.wait(lambda e: isinstance(e, trace.ClientSeen) and e.client_id == child.client_id
                          and e.db == 3)
        assert isinstance(moved, trace.ClientSeen) and moved.pid == child.proc.pid and moved.label == "api"
        child.do("CLIENT SETNAME renamed")
        sink.wait(lambda e: isinstance(e, trace.ClientSeen) and e.client_id == child.client_id
                  and e.name == "renamed")
        time.sleep(0.3)
        assert len([e for e in sink.of(trace.ClientSeen) if e.client_id == child.client_id]) == 3
        # The poller's own connection is listed too, under its name.
        assert any(e.name == CONNECTION_NAME for e in sink.of(trace.ClientSeen))
        assert poller.clients_by_id()[child.client_id].name == "renamed"
        addr = first.addr
        seen_at = first.t
        found = poller.client_for_addr(addr)
        assert found is not None and found.client_id == child.client_id
        child.close()
        deadline = time.monotonic() + 15
        while poller.client_for_addr(addr, at=time.time() + 5) is not None:
            assert time.monotonic() < deadline, "the closed connection is still listed"
            time.sleep(0.05)
        # Gone now, but still the answer for a time when it was connected.
        during = poller.client_for_addr(addr, at=seen_at)
        assert during is not None and during.client_id == child.client_id
        assert poller.client_for_addr(addr, at=seen_at - 3600) is None
        assert poller.client_for_addr("10.9.9.9:1") is None
    servers = sink.of(trace.ServerSeen)
    assert len(servers) == 2  # at start, and the final sample at stop
    assert servers[0].server.run_id and servers[0].server.run_id == servers[1].server.run_id
    assert set(STAT_KEYS) <= set(servers[0].stats)
    assert servers[0].server.version and servers[0].server.role == "master"
    assert sink.of(trace.Gap) == [] and sink.of(trace.Note) == []


def test_client_for_addr_with_reused_ports() -> None:
    poller = ClientPoller(parse_target("redis://127.0.0.1:1/0"), Sink(), pid_mapper=None, interval=0.2)
    raw_old = "id=5 addr=127.0.0.1:4000 laddr=127.0.0.1:6379 name=old age=0 db=0"
    raw_new = "id=6 addr=127.0.0.1:4000 laddr=127.0.0.1:6379 name=new age=0 db=0"
    poller._update_clients(parse_client_list(raw_old), 100.0, 0.0)
    poller._update_clients(parse_client_list(raw_old), 101.0, 0.0)
    poller._update_clients([], 102.0, 0.0)
    poller._update_clients(parse_client_list(raw_new), 110.0, 0.0)
    assert poller.client_for_addr("127.0.0.1:4000", at=100.5).name == "old"  # type: ignore[union-attr]
    assert poller.client_for_addr("127.0.0.1:4000", at=111.0).name == "new"  # type: ignore[union-attr]
    assert poller.client_for_addr("127.0.0.1:4000").name == "new"  # type: ignore[union-attr]
    assert poller.client_for_addr("127.0.0.1:4000", at=50.0) is None


def test_restart_gives_new_server_seen_and_a_gap(private_server: Sandbox) -> None:
    sink = Sink()
    server = private_server.servers[0]
    with ClientPoller(private_server.target("api"), sink, pid_mapper=PidMapper({}), interval=0.05) as poller:
        first = sink.wait(lambda e: isinstance(e, trace.ServerSeen))
        assert isinstance(first, trace.ServerSeen)
        old_ids = set(poller.clients_by_id())
        server.stop()
        server.start()
        second = sink.wait(lambda e: isinstance(e, trace.ServerSeen) and e.server.run_id != first.server.run_id)
        assert isinstance(second, trace.ServerSeen)
        gap = sink.wait(lambda e: isinstance(e, trace.Gap))
        assert isinstance(gap, trace.Gap) and gap.source == "clients" and gap.until is not None
        assert "restarted" in gap.reason
        assert poller.server is not None and poller.server.run_id == second.server.run_id
        assert old_ids and set(poller.clients_by_id(first.server.run_id)) == old_ids


def test_client_list_refused_degrades(private_server: Sandbox) -> None:
    admin = redis.Redis.from_url(private_server.urls[0])
    try:
        admin.execute_command("ACL", "SETUSER", "noclient", "on", ">pw", "~*", "&*", "+@all", "-client")
        admin.execute_command("ACL", "SETUSER", "blind", "on", ">pw", "~*", "&*", "+@all", "-client", "-info")
    finally:
        admin.close()
    port = private_server.servers[0].port
    sink = Sink()
    target = parse_target(f"redis://noclient:pw@127.0.0.1:{port}/0")
    with ClientPoller(target, sink, pid_mapper=None, interval=0.05) as poller:
        time.sleep(0.3)
        assert poller.active
        assert poller.lost is not None and "CLIENT LIST" in poller.lost and "NOPERM" in poller.lost
        assert poller.server is not None and poller.server.run_id
    warnings = [n for n in sink.of(trace.Note) if n.level == "warning"]
    assert len(warnings) == 1 and "pw" not in warnings[0].text
    assert sink.of(trace.ClientSeen) == []

    sink = Sink()
    target = parse_target(f"redis://blind:pw@127.0.0.1:{port}/0")
    with ClientPoller(target, sink, pid_mapper=None, interval=0.05) as poller:
        assert not poller.active
        assert poller.lost is not None and "INFO" in poller.lost and "CLIENT LIST" in poller.lost
    assert len(sink.of(trace.Note)) == 2


def test_unreachable_server_is_a_connection_problem() -> None:
    with sandbox("single") as box:
        target = box.target("api")
    with pytest.raises(ConnectionProblem, match="cannot connect"):
        ClientPoller(target, Sink(), pid_mapper=None, timeout=1).start()
