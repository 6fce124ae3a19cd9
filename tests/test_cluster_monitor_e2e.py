"""`monitor --url` on one node of a Redis Cluster watches every primary: keys are followed on the node that owns
their slot, a healthy cluster app gets silence, and a delete on another node than the one given is named with
its pid."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest
from redis.cluster import RedisCluster

from redisprobe.targets.sandbox import sandbox
from tests.clients import fail_over, not_our_child, replica_of
from tests.monitorrun import finished_json, monitor_this_process

DELETER = """
import sys
import time
from redis.cluster import RedisCluster
client = RedisCluster(host="127.0.0.1", port=int(sys.argv[1]))
client.delete(sys.argv[2])
time.sleep(2)  # a service that goes on running, not a one-shot script
client.close()
"""


@pytest.fixture(scope="module")
def cluster():
    with sandbox("cluster") as box:
        yield box




def test_a_healthy_cluster_app_is_followed_on_every_primary_and_gets_silence(cluster):
    proc = monitor_this_process(cluster.urls[1])
    client = RedisCluster(host="127.0.0.1", port=cluster.servers[0].port)
    try:
        for index in range(30):
            client.set(f"user:{index}", index, ex=60)
            assert client.get(f"user:{index}") == str(index).encode()
        time.sleep(2.5)  # an app stays connected: its connections show in CLIENT LIST samples
    finally:
        client.close()
    doc, err = finished_json(proc)
    assert proc.returncode == 0, (err, doc["findings"])
    keys = [k for k in doc["keys"] if k["key"].startswith("user:")]
    assert len(keys) == 30  # each key once, on its own node
    assert len({k["server"] for k in keys}) == 3
    assert all(k["created_by"]["pid"] == os.getpid() for k in keys), [k["created_by"] for k in keys]
    assert not doc["findings"]


def test_a_delete_on_another_node_is_named_with_its_pid(cluster):
    client = RedisCluster(host="127.0.0.1", port=cluster.servers[0].port)
    seed = cluster.servers[0]
    key = next(f"batch:{i}" for i in range(100) if client.get_node_from_key(f"batch:{i}").port != seed.port)
    proc = monitor_this_process(seed.url)
    try:
        client.rpush(key, "m1")
        client.expire(key, 60)
        deleter = not_our_child(DELETER, str(seed.port), key)  # our children are the listed app's own
        psutil.wait_procs([deleter], timeout=60)
        client.rpush(key, "m2")  # the writer comes back to a batch it did not know was gone
    finally:
        client.close()
    doc, err = finished_json(proc)
    assert proc.returncode == 1, err
    found = [f for f in doc["findings"] if f["rule"] == "deleted-by-client"]
    assert found and found[0]["culprit"]["pid"] == deleter.pid, doc["findings"]
    assert key in found[0]["keys"]
    owner = client.get_node_from_key(key)
    assert any(f"127.0.0.1:{owner.port}" in k["server"] for k in doc["keys"] if k["key"] == key)


READER = """
import sys
import time
from redis.cluster import RedisCluster
client = RedisCluster(host="127.0.0.1", port=int(sys.argv[1]))
for _ in range(5):  # a processor polling for the jobs the api saved
    for key in sys.argv[2:]:
        client.get(key)
    time.sleep(0.2)
time.sleep(1)
client.close()
"""


def test_two_clusters_that_look_alike_are_one_different_server_finding_naming_the_reader(cluster):
    with sandbox("cluster") as other:
        writer = RedisCluster(host="127.0.0.1", port=cluster.servers[0].port)
        jobs, orders = [f"job:{i}" for i in range(6)], [f"order:{i}" for i in range(6)]
        assert len({writer.get_node_from_key(key).port for key in jobs}) >= 2  # spread over the primaries
        proc = monitor_this_process(cluster.urls[0], other.urls[0], duration=8)
        try:
            for key in jobs + orders:
                writer.set(key, "payload", ex=60)
            astray = not_our_child(READER, str(other.servers[0].port), *jobs)  # given the other cluster's URL
            right = not_our_child(READER, str(cluster.servers[1].port), *orders)  # another node of the right one
            psutil.wait_procs([astray, right], timeout=60)
        finally:
            writer.close()
        doc, _err = finished_json(proc, early=True)
    assert [f["rule"] for f in doc["findings"]] == ["different-server"], doc["findings"]  # one, not one per node
    [found] = doc["findings"]
    assert found["culprit"]["pid"] == astray.pid, found
    assert sorted(found["keys"]) == sorted(jobs), found
    assert "another cluster" in found["summary"], found["summary"]


SCANNER = """
import sys
import time
import redis
from redis.cluster import RedisCluster
port, cluster_aware = int(sys.argv[1]), sys.argv[2] == "cluster"
client = RedisCluster(host="127.0.0.1", port=port) if cluster_aware else redis.Redis(host="127.0.0.1", port=port)
found = list(client.scan_iter(match="batch:*", count=1000))
print(len(found))
time.sleep(2)  # a service that goes on running
client.close()
"""


def _scan_while_batches_exist(cluster, cluster_aware: bool) -> tuple[dict, int, int]:
    seed = cluster.servers[0]
    proc = monitor_this_process(seed.url)
    writer = RedisCluster(host="127.0.0.1", port=seed.port)
    try:
        for index in range(20):
            writer.rpush(f"batch:{index}", "m")
            writer.expire(f"batch:{index}", 60)
        scanner = subprocess.run([sys.executable, "-c", SCANNER, str(seed.port),
                                  "cluster" if cluster_aware else "plain"],
                                 capture_output=True, text=True, check=True, timeout=60)
        time.sleep(1)
        for index in range(20):
            writer.delete(f"batch:{index}")
    finally:
        writer.close()
    doc, _err = finished_json(proc, early=True)
    return doc, int(scanner.stdout.strip())


def test_a_scan_sent_to_one_primary_is_scan_one_node(cluster):
    doc, found = _scan_while_batches_exist(cluster, cluster_aware=False)
    assert 0 < found < 20  # the plain client saw one node's share
    findings = [f for f in doc["findings"] if f["rule"] == "scan-one-node"]
    assert len(findings) == 1, doc["findings"]
    finding = findings[0]
    assert finding["culprit"]["pid"] not in (None, os.getpid())
    assert "batch:*" in finding["summary"] and "1 of the cluster's 3 primaries" in finding["summary"]
    assert any("slot" in line and "the scan never asked that node" in line for line in finding["evidence"])
    assert f"{20 - found} matching key(s)" in finding["summary"]


def test_a_cluster_client_scanning_every_primary_is_silent(cluster):
    doc, found = _scan_while_batches_exist(cluster, cluster_aware=True)
    assert found == 20
    assert not doc["findings"], doc["findings"]


def test_a_failover_during_the_capture_is_said_and_the_new_primary_followed():
    with sandbox("cluster", replicas=1) as box:
        seed = box.servers[0]
        old = box.servers[1]
        replica = replica_of(box, old.port)
        proc = monitor_this_process(seed.url, duration=14)  # a failover can take seconds on a loaded machine
        client = RedisCluster(host="127.0.0.1", port=seed.port)
        try:
            fail_over(replica)
            time.sleep(2.5)  # the capture looks at the cluster's shape every second
            keys = [f"order:{i}" for i in range(200) if client.keyslot(f"order:{i}") in range(5461, 10922)][:5]
            for key in keys:
                client.set(key, "v", ex=60)
            time.sleep(1.5)
        finally:
            client.close()
        doc, err = finished_json(proc, early=True)
    notes = " ".join(n["text"] if isinstance(n, dict) else str(n) for n in doc["notes"])
    assert f"failover: 127.0.0.1:{replica} is now a primary" in notes, (notes, err)
    # the replica was watched all along: its commands as a primary were captured from the first
    assert not any(g["source"] == "monitor" and str(replica) in g["target"] for g in doc["gaps"]), doc["gaps"]
    on_new = [k for k in doc["keys"] if k["key"] in keys]
    assert len(on_new) == len(keys) and all(str(replica) in k["server"] for k in on_new), on_new
