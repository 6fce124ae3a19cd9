"""Two watched servers (a cluster's nodes): one thread reads the kernel's tables for both watchers, each watcher
names the connections to its own server only, and the thread is gone once the last watcher stopped."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import psutil

from redisprobe import trace
from redisprobe.producers.observers.peers import PeerWatcher
from redisprobe.producers.processes.pidmap import PidMapper
from redisprobe.targets.sandbox import sandbox
from redisprobe.targets.url import parse_target
from tests.clients import not_our_child

HOLD = """
import sys, time, redis
client = redis.Redis.from_url(sys.argv[1])
client.ping()
time.sleep(1.5)
"""


def _named_until_it_ends(seen: list[trace.PeerSeen], process: psutil.Process | subprocess.Popen) -> None:
    """Wait (generously) until the watcher named `process`, then until it has ended."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(e.pid == process.pid for e in seen):
        time.sleep(0.05)
    psutil.wait_procs([process], timeout=30)


def _peer_threads() -> int:
    return sum(thread.name == "redisprobe-peers" and thread.is_alive() for thread in threading.enumerate())


def test_two_servers_one_table_reader_each_watcher_names_its_own_clients(shared_sandbox):
    with sandbox("single") as other:
        urls = [shared_sandbox.urls[0], other.urls[0]]
        seen: list[list[trace.PeerSeen]] = [[], []]
        watchers = [PeerWatcher(parse_target(url), lambda e, i=index: seen[i].append(e), PidMapper())
                    for index, url in enumerate(urls)]
        for watcher in watchers:
            watcher.start()
        try:
            assert _peer_threads() == 1
            clients = [not_our_child(HOLD, url) for url in urls]  # a watcher leaves our own children out
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not all(
                    any(e.pid == client.pid for e in found) for client, found in zip(clients, seen, strict=True)):
                time.sleep(0.05)
            psutil.wait_procs(clients, timeout=30)
        finally:
            for watcher in watchers:
                watcher.stop()
        assert _peer_threads() == 0
        for index, client in enumerate(clients):
            assert any(e.pid == client.pid for e in seen[index]), seen[index]
            assert not any(e.pid == clients[1 - index].pid for e in seen[index])  # the other server's client


def test_a_watcher_that_stops_leaves_the_others_watching(shared_sandbox):
    with sandbox("single") as other:
        seen: list[trace.PeerSeen] = []
        first = PeerWatcher(parse_target(other.urls[0]), lambda e: None, PidMapper())
        second = PeerWatcher(parse_target(shared_sandbox.urls[0]), seen.append, PidMapper())
        first.start()
        second.start()
        try:
            first.stop()
            assert _peer_threads() == 1
            client = not_our_child(HOLD, shared_sandbox.urls[0])
            _named_until_it_ends(seen, client)
        finally:
            second.stop()
        assert _peer_threads() == 0
        assert any(e.pid == client.pid for e in seen), seen


LEFT_BEHIND = """
import os, socket, sys, time
while os.getppid() == int(sys.argv[2]):  # connects only once the shell that started it has gone
    time.sleep(0.01)
client = socket.create_connection(("127.0.0.1", int(sys.argv[1])))  # at once: while the watcher deems it young
client.sendall(b"PING\\r\\n")
client.recv(64)
time.sleep(1.5)
"""


def test_a_service_a_listed_process_s_shell_left_behind_is_not_the_listed_process(shared_sandbox):
    """A listed process runs `sh -c 'service &'`: the watcher sees the service young, as the listed process's
    grandchild, but by the time it connects the shell has gone and init holds it while the listed process lives
    on: another service, whatever the watcher's timing."""
    inner = 'sleep 0.1; "$0" -c "$1" "$2" "$$" >/dev/null 2>&1 & echo $!; sleep 0.2'
    listed = subprocess.Popen(["sh", "-c", f"sh -c '{inner}' \"$0\" \"$1\" \"$2\"; sleep 3", sys.executable,
                               LEFT_BEHIND, str(shared_sandbox.servers[0].port)], stdout=subprocess.PIPE, text=True)
    seen: list[trace.PeerSeen] = []
    watcher = PeerWatcher(parse_target(shared_sandbox.urls[0]), seen.append, PidMapper({listed.pid: "app"}))
    watcher.start()
    try:
        assert listed.stdout is not None
        service = psutil.Process(int(listed.stdout.readline().strip()))
        _named_until_it_ends(seen, service)
    finally:
        watcher.stop()
        listed.kill()
        listed.wait()
    named = [e for e in seen if e.pid == service.pid]
    assert named and all(e.label == "" for e in named), named


class _CountingMapper(PidMapper):
    """A real pid mapper that counts its lookups (each may scan every process's file descriptors)."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    def lookup(self, client_addr, server_addr=None, **kwargs):  # type: ignore[no-untyped-def]
        self.asked.append(client_addr)
        return super().lookup(client_addr, server_addr, **kwargs)


def test_redisprobe_s_own_connections_are_neither_named_nor_looked_up(shared_sandbox):
    """A capture opens connections of its own all along (a look at the cluster's shape every second, marks, the
    baseline): they are told by this process's own descriptors, without a scan of every process."""
    import redis

    url = shared_sandbox.urls[0]
    seen: list[trace.PeerSeen] = []
    mapper = _CountingMapper()
    watcher = PeerWatcher(parse_target(url), seen.append, mapper)
    watcher.start()
    try:
        time.sleep(0.3)
        ours = []
        for _ in range(5):
            client = redis.Redis.from_url(url)
            client.ping()
            ours.append(client.client_info()["addr"])
            time.sleep(0.1)
            client.close()
        other = not_our_child(HOLD, url)
        _named_until_it_ends(seen, other)
    finally:
        watcher.stop()
    assert any(e.pid == other.pid for e in seen), seen  # the watcher works
    assert not [e for e in seen if e.addr in ours]
    assert not set(ours) & set(mapper.asked), mapper.asked
