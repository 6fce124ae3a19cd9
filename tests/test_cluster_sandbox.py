"""The sandbox's Redis Cluster: three primaries sharing every slot (and a replica each), put together with
CLUSTER ADDSLOTSRANGE and MEET; discovered from any node; gone after use; `redisprobe sandbox --topology cluster`."""

from __future__ import annotations

import signal
import subprocess
import sys

import psutil
import pytest
import redis
from redis.cluster import RedisCluster

from redisprobe.targets.sandbox import CLUSTER_SLOTS, sandbox
from redisprobe.targets.topology import discover, is_cluster, parse_cluster_nodes
from tests.clirun import cli_env, run_cli


@pytest.fixture(scope="module")
def cluster():
    with sandbox("cluster", replicas=1) as box:
        yield box


def test_three_primaries_share_every_slot_and_each_has_a_replica(cluster):
    client = redis.Redis(host="127.0.0.1", port=cluster.servers[4].port)  # any node will do: here a replica
    try:
        assert is_cluster(client)
        nodes = discover(client)
        text = client.execute_command("CLUSTER", "NODES").decode()
    finally:
        client.close()
    primaries = [n for n in nodes if n.role == "primary"]
    replicas = [n for n in nodes if n.role == "replica"]
    assert len(primaries) == 3 and len(replicas) == 3
    covered = sorted(slot for n in primaries for first, last in n.slots for slot in range(first, last + 1))
    assert covered == list(range(CLUSTER_SLOTS))
    assert sorted(r.primary_id for r in replicas) == sorted(p.node_id for p in primaries)
    assert {n.port for n in nodes} == {s.port for s in cluster.servers}
    # CLUSTER NODES (servers before 7.0) reads the same
    assert sorted((n.node_id, n.role, n.primary_id, n.slots) for n in parse_cluster_nodes(text)) == \
        sorted((n.node_id, n.role, n.primary_id, n.slots) for n in nodes)


def test_a_cluster_client_reads_and_writes_every_slot(cluster):
    client = RedisCluster(host="127.0.0.1", port=cluster.servers[0].port)
    try:
        for index in range(300):
            client.set(f"user:{index}", index)
        assert sum(int(client.get(f"user:{index}")) for index in range(300)) == sum(range(300))
        owners = {client.get_node_from_key(f"user:{index}").port for index in range(300)}
        assert len(owners) == 3  # the keys really spread over the three primaries
    finally:
        client.close()


def test_a_single_server_is_not_a_cluster(shared_sandbox):
    client = redis.Redis.from_url(shared_sandbox.urls[0])
    try:
        assert not is_cluster(client)
    finally:
        client.close()


def test_nothing_is_left_after_the_cluster_stops():
    with sandbox("cluster") as box:
        pids = [s.proc.pid for s in box.servers if s.proc is not None]
        workdir = box.servers[0].workdir.parent
        assert len(pids) == 3 and all(psutil.pid_exists(pid) for pid in pids)
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids)
    assert not workdir.exists()


def test_sandbox_command_prints_the_cluster_and_stops_on_ctrl_c():
    proc = subprocess.Popen([sys.executable, "-m", "redisprobe", "sandbox", "--topology", "cluster"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
    lines = []
    try:
        while proc.stdout is not None:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "running" in line:
                break
        servers = [c for c in psutil.Process(proc.pid).children(recursive=True) if "redis-server" in c.name()]
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = "".join(lines)
    assert text.count("primary: redis://127.0.0.1:") == 3 and "slots 0-5460" in text, text
    assert "sandbox (cluster) running" in text
    assert proc.returncode == 130, err
    assert len(servers) == 3
    psutil.wait_procs(servers, timeout=10)
    assert not any(s.is_running() and s.status() != psutil.STATUS_ZOMBIE for s in servers)


def test_replicas_without_a_cluster_is_one_line():
    result = run_cli("sandbox", "--replicas", "1")
    assert result.code == 2 and "--replicas goes with --topology cluster" in result.err
    assert len(result.err.strip().splitlines()) == 1
