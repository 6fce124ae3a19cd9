"""Topology changes during `monitor` on a cluster other than a failover: a slot migrated to another node (the keys
MIGRATE moved are one move, not a delete: their lives go on on the new node, nobody is blamed), a node that joins
(said, then watched: a key written there is followed there) and a node that is forgotten (said, never a silent
hole). One cluster for the module: each test leaves it whole (cluster_state:ok)."""

from __future__ import annotations

import json
import os
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from redisprobe.targets.sandbox import ServerProcess, find_server_binary, free_cluster_port, sandbox
from tests.clients import run_as_another_service
from tests.monitorrun import start_monitor


@pytest.fixture(scope="module")
def cluster():
    with sandbox("cluster") as box:
        yield box


@pytest.fixture
def stack():
    with ExitStack() as stack:
        yield stack


def _wait_in_trace(path: Path, text: str, timeout: float = 60) -> dict:
    """The first topology event of the trace being written whose text says `text` (the capture looks every
    second)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            for line in path.read_text().splitlines():
                event = json.loads(line) if line.startswith("{") else {}
                if event.get("type") == "topology" and text in event.get("text", ""):
                    return event
        time.sleep(0.1)
    raise AssertionError(f"no topology event saying {text!r} in {path}")


def _node_id(port: int) -> str:
    client = redis.Redis(port=port, decode_responses=True)
    try:
        return client.execute_command("CLUSTER", "MYID")
    finally:
        client.close()


def _set_slot_everywhere(ports: list[int], slot: int, owner_port: int) -> None:
    owner = _node_id(owner_port)
    for port in ports:  # the new owner first, as redis-cli --cluster does
        client = redis.Redis(port=port)
        try:
            client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", owner)
        finally:
            client.close()


def _known_everywhere(ports: list[int], node_id: str, timeout: float = 30) -> None:
    """Every node has heard of `node_id` (a MEET spreads by gossip): SETSLOT NODE is refused where it has not."""
    deadline = time.monotonic() + timeout
    for port in ports:
        client = redis.Redis(port=port, decode_responses=True)
        try:
            while node_id not in client.execute_command("CLUSTER", "NODES"):
                assert time.monotonic() < deadline, f"127.0.0.1:{port} never heard of {node_id}"
                time.sleep(0.05)
        finally:
            client.close()


def _cluster_ok(ports: list[int], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    for port in ports:
        client = redis.Redis(port=port, decode_responses=True)
        try:
            while not client.execute_command("CLUSTER", "INFO").startswith("cluster_state:ok"):
                assert time.monotonic() < deadline, f"127.0.0.1:{port} never said cluster_state:ok"
                time.sleep(0.05)
        finally:
            client.close()


RESHARD = """
import sys
import redis
source, target, slot = (int(arg) for arg in sys.argv[1:4])
others = [int(arg) for arg in sys.argv[4:]]
src, dst = redis.Redis(port=source, decode_responses=True), redis.Redis(port=target, decode_responses=True)
source_id, target_id = src.execute_command("CLUSTER", "MYID"), dst.execute_command("CLUSTER", "MYID")
dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
moved = 0
while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 2):  # two at a time: MIGRATE ... KEYS, then one
    if len(keys) > 1:
        src.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)
    else:
        src.execute_command("MIGRATE", "127.0.0.1", target, keys[0], 0, 5000)
    moved += len(keys)
for port in (target, source, *others):
    redis.Redis(port=port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
print("moved", moved)
"""


def test_a_slot_migrated_during_the_capture_is_said_and_its_keys_go_on_on_the_new_node(cluster, stack, tmp_path):
    ports = [server.port for server in cluster.servers]
    source, target = ports[0], ports[1]
    client = RedisCluster(host="127.0.0.1", port=source)
    stack.callback(client.close)
    tag = next(f"tenant{i}" for i in range(1000) if client.get_node_from_key(f"{{tenant{i}}}").port == source)
    keys = [f"{{{tag}}}:order:{index}" for index in range(3)]  # one slot of the first primary
    slot = client.keyslot(keys[0])
    saved = tmp_path / "reshard.jsonl"
    run = start_monitor(stack, f"redis://127.0.0.1:{source}/0", {"app": os.getpid()}, "--out", str(saved))
    for key in keys:
        client.set(key, "v", ex=120)
    client.get(keys[0])
    said = run_as_another_service(RESHARD, str(source), str(target), str(slot), str(ports[2]),
                                  output=tmp_path / "reshard.out")  # an operator's tool, not the app
    assert said.strip() == "moved 3", said
    moved = _wait_in_trace(saved, "slots moved")
    got = {key: client.get(key) for key in keys}  # the app follows MOVED to the new owner
    client.set(keys[0], "v2", ex=120)  # and goes on writing there
    doc = run.stop_json(settle=1.0)
    assert got == dict.fromkeys(keys, b"v"), got
    assert str(target) in moved["target"] or str(source) in moved["target"], moved
    notes = " ".join(n["text"] for n in doc["notes"])
    assert "slots moved" in notes, notes
    assert not doc["findings"], doc["findings"]
    listed = [k for k in doc["keys"] if k["key"] in keys]
    assert sorted(k["key"] for k in listed) == sorted(keys), [(k["key"], k["server"]) for k in listed]
    assert all(k["server"] == f"127.0.0.1:{target}" for k in listed), [(k["key"], k["server"]) for k in listed]
    assert all(not k["removed"] for k in listed), [k["removed"] for k in listed]  # moved, never deleted
    assert all(k["created_by"] and k["created_by"]["pid"] == os.getpid() for k in listed), listed
    first = next(k for k in listed if k["key"] == keys[0])
    assert first["writes"] >= 2 and first["reads"] >= 2, first  # one life: before and after the move
    assert any("migrated" in line and str(target) in line for line in first["events"]), first["events"]


def _cluster_server(tmp_path: Path) -> ServerProcess:
    port = free_cluster_port()
    workdir = tmp_path / "joiner"
    return ServerProcess(find_server_binary(), "127.0.0.1", port, workdir, extra=[
        "--cluster-enabled", "yes", "--cluster-config-file", str(workdir / "nodes.conf"),
        "--cluster-node-timeout", "2000"])


def test_a_node_that_joins_is_said_and_watched_and_one_forgotten_is_said(cluster, stack, tmp_path):
    ports = [server.port for server in cluster.servers]
    joiner = _cluster_server(tmp_path)
    stack.callback(joiner.stop)
    joiner.start()
    seed = redis.Redis(port=ports[0])
    stack.callback(seed.close)
    client = RedisCluster(host="127.0.0.1", port=ports[0])
    stack.callback(client.close)
    saved = tmp_path / "join.jsonl"
    run = start_monitor(stack, f"redis://127.0.0.1:{ports[0]}/0", {"app": os.getpid()}, "--out", str(saved))
    seed.execute_command("CLUSTER", "MEET", "127.0.0.1", joiner.port)
    _wait_in_trace(saved, f"node 127.0.0.1:{joiner.port} joined the cluster")
    _known_everywhere(ports, _node_id(joiner.port))
    # an empty slot of the first primary handed to the newcomer: a key written there now lives on it
    key = next(f"fresh:{index}" for index in range(1000)
               if client.get_node_from_key(f"fresh:{index}").port == ports[0]
               and not seed.execute_command("CLUSTER", "COUNTKEYSINSLOT", client.keyslot(f"fresh:{index}")))
    slot = client.keyslot(key)
    _set_slot_everywhere([joiner.port, *ports], slot, joiner.port)
    _wait_in_trace(saved, f"127.0.0.1:{joiner.port} now serves {slot}")
    client.set(key, "v", ex=120)
    assert client.get(key) == b"v"
    # and it leaves: its slot back to the first primary, then every node forgets it and it stops
    client.delete(key)
    _set_slot_everywhere([ports[0], joiner.port, *ports[1:]], slot, ports[0])
    gone = _node_id(joiner.port)
    for port in ports:
        other = redis.Redis(port=port)
        try:
            other.execute_command("CLUSTER", "FORGET", gone)
        finally:
            other.close()
    joiner.stop()
    _wait_in_trace(saved, f"node 127.0.0.1:{joiner.port} left the cluster")
    doc = run.stop_json()
    _cluster_ok(ports)
    notes = " ".join(n["text"] for n in doc["notes"])
    assert f"node 127.0.0.1:{joiner.port} joined the cluster as a primary" in notes, notes
    assert f"node 127.0.0.1:{joiner.port} left the cluster" in notes, notes
    listed = [k for k in doc["keys"] if k["key"] == key]
    assert len(listed) == 1 and listed[0]["server"] == f"127.0.0.1:{joiner.port}", listed  # watched once it joined
    assert listed[0]["created_by"]["pid"] == os.getpid() and listed[0]["reads"] == 1, listed
    assert listed[0]["removed"]["how"] == "del" and listed[0]["removed"]["by"]["pid"] == os.getpid(), listed
    assert not doc["findings"], doc["findings"]
    events = [json.loads(line) for line in saved.read_text().splitlines() if line.startswith("{")]  # not raw MONITOR
    assert any(e.get("type") == "topology" and e["role"] == "gone" and str(joiner.port) in e["target"]
               for e in events)


def test_a_migrate_between_two_servers_moves_a_key_and_a_copy_leaves_it(stack, tmp_path):
    """Outside a cluster MIGRATE sends the target a plain RESTORE: the key moved is still one life, on the target;
    with COPY the source keeps its own and the target's is a new one, made by whoever ran the MIGRATE."""
    source, target = stack.enter_context(sandbox("single")), stack.enter_context(sandbox("single"))
    src = redis.Redis.from_url(source.urls[0])
    stack.callback(src.close)
    run = start_monitor(stack, source.urls[0], {"app": os.getpid()}, "--url", target.urls[0])
    src.set("moving", "v", ex=120)
    src.set("copied", "v", ex=120)
    port = target.servers[0].port
    src.execute_command("MIGRATE", "127.0.0.1", port, "moving", 0, 5000)
    src.execute_command("MIGRATE", "127.0.0.1", port, "copied", 0, 5000, "COPY")
    dst = redis.Redis.from_url(target.urls[0])
    stack.callback(dst.close)
    assert dst.get("moving") == b"v" and dst.get("copied") == b"v" and src.get("copied") == b"v"
    doc = run.stop_json(settle=1.0)
    assert not doc["findings"], json.dumps(doc["findings"], indent=1) + json.dumps(doc["keys"], indent=1)
    where = {(k["key"], k["server"]): k for k in doc["keys"] if k["key"] in ("moving", "copied")}
    on_target, on_source = f"127.0.0.1:{port}", f"127.0.0.1:{source.servers[0].port}"
    assert sorted(where) == sorted([("moving", on_target), ("copied", on_source), ("copied", on_target)]), where
    moved = where[("moving", on_target)]
    assert not moved["removed"] and moved["created_with"].startswith("SET moving") and moved["reads"] == 1, moved
    assert moved["created_by"]["pid"] == os.getpid()
    copy = where[("copied", on_target)]
    assert copy["created_with"].startswith("MIGRATE") and copy["created_by"]["pid"] == os.getpid(), copy
    assert not where[("copied", on_source)]["removed"] and not copy["removed"]
