"""`monitor --url` on a cluster with replicas watches every replica too: the replication stream a replica's MONITOR
repeats is recognised (nothing counted twice, no finding from it), and a READONLY reader that reads a replica
before its primary's write arrived is `replica-read`, with the replication offset gap and the reader's pid."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import redis
from redis.cluster import LoadBalancingStrategy, RedisCluster

from redisprobe.targets.sandbox import sandbox
from tests.clients import fail_over, replica_of, wait_promoted
from tests.clirun import cli_env, run_cli
from tests.monitorrun import finished_json, monitor_this_process


@pytest.fixture(scope="module")
def cluster():
    with sandbox("cluster", replicas=1) as box:
        yield box




def test_a_healthy_cluster_app_with_replicas_watched_gets_silence(cluster):
    proc = monitor_this_process(cluster.urls[4])  # a replica as the seed: every node is found from it
    client = RedisCluster(host="127.0.0.1", port=cluster.servers[0].port)
    reader = RedisCluster(host="127.0.0.1", port=cluster.servers[0].port,
                          load_balancing_strategy=LoadBalancingStrategy.ROUND_ROBIN_REPLICAS)
    try:
        for index in range(30):
            client.set(f"user:{index}", index, ex=60)
            client.incr(f"hits:{index}")
            client.expire(f"hits:{index}", 60)
            client.set(f"temp:{index}", "x", px=300)  # expires: the primary sends the replicas a DEL
        client.eval("return redis.call('SET', KEYS[1], 'v', 'EX', 60)", 1, "script:1")
        time.sleep(1)  # replicated
        for index in range(30):
            assert reader.get(f"user:{index}") == str(index).encode()  # READONLY reads of settled keys
        for index in range(30):
            client.delete(f"hits:{index}")
        time.sleep(2.5)  # an app stays connected: its connections show in CLIENT LIST samples
    finally:
        client.close()
        reader.close()
    doc, err = finished_json(proc)
    assert proc.returncode == 0, (err, doc["findings"])
    assert not doc["findings"]
    notes = " ".join(n["text"] if isinstance(n, dict) else str(n) for n in doc["notes"])
    assert "3 primaries and 3 replicas" in notes, notes
    primaries = {f"127.0.0.1:{s.port}" for s in cluster.servers[:3]}
    keys = [k for k in doc["keys"] if k["key"].startswith(("user:", "hits:", "temp:"))]
    assert len(keys) == 90, sorted(k["key"] for k in keys)  # each key once, on the primary that owns it
    assert all(any(p in k["server"] for p in primaries) for k in keys), {k["server"] for k in keys}
    assert all(k["created_by"]["pid"] == os.getpid() for k in keys), [k["created_by"] for k in keys]
    assert doc["stats"]["replicated"] > 0  # the replicas' repeated writes, counted apart from clients' commands
    deleted = [k for k in keys if k["key"].startswith("hits:")]
    assert all(k["removed"]["by"]["pid"] == os.getpid() for k in deleted), [k["removed"] for k in deleted]


READER = """
import sys
import time
import redis
client = redis.Redis(host="127.0.0.1", port=int(sys.argv[1]))
client.execute_command("READONLY")
print(client.get(sys.argv[2]), flush=True)
time.sleep(2)  # a service that goes on running
client.close()
"""


def _read_on_the_replica(cluster, *, lagging: bool) -> tuple[dict, subprocess.CompletedProcess[str], str]:
    seed = cluster.servers[0]
    writer = RedisCluster(host="127.0.0.1", port=seed.port)
    key = next(f"job:{i}:{'lag' if lagging else 'ok'}" for i in range(100)
               if writer.get_node_from_key(f"job:{i}:{'lag' if lagging else 'ok'}").port == seed.port)
    replica = replica_of(cluster, seed.port)
    proc = monitor_this_process(seed.url)
    paused = redis.Redis(port=replica)
    try:
        if lagging:  # the replication link stalls (READONLY reads are still answered): a lag of 1.5 s
            paused.execute_command("CLIENT", "PAUSE", 1500, "WRITE")
        writer.set(key, "done", ex=60)
        if not lagging:
            time.sleep(1)
        reader = subprocess.run([sys.executable, "-c", READER, str(replica), key], capture_output=True, text=True,
                                check=True, timeout=60)
    finally:
        writer.close()
        paused.close()
    doc, _err = finished_json(proc)
    return doc, reader, key


def test_a_read_on_a_lagging_replica_is_replica_read_with_the_offset_gap(cluster):
    doc, reader, key = _read_on_the_replica(cluster, lagging=True)
    assert reader.stdout.strip() == "None"  # the reader really missed it
    found = [f for f in doc["findings"] if f["rule"] == "replica-read"]
    assert len(found) == 1, doc["findings"]
    finding = found[0]
    assert key in finding["keys"]
    assert finding["culprit"]["pid"] not in (None, os.getpid())
    text = " ".join(finding["evidence"])
    assert "bytes behind" in text and "READONLY" in finding["summary"], finding
    assert "arrived" in text, finding  # the replica's own stream says when the write reached it


def test_a_read_on_a_replica_after_the_write_arrived_is_silent(cluster):
    doc, reader, _key = _read_on_the_replica(cluster, lagging=False)
    assert reader.stdout.strip() == "b'done'"
    assert not doc["findings"], doc["findings"]


def test_writes_lost_in_a_failover_end_their_keys_with_the_failover_named(tmp_path):
    with sandbox("cluster", replicas=1) as box:
        seed = box.servers[0]
        replica = replica_of(box, seed.port)
        client = RedisCluster(host="127.0.0.1", port=seed.port)
        keys = [f"order:{i}" for i in range(200) if client.get_node_from_key(f"order:{i}").port == seed.port][:4]
        kept, lost = keys[:2], keys[2:]
        saved = tmp_path / "failover.jsonl"
        proc = monitor_this_process(seed.url, duration=12, out=saved)
        stalled = redis.Redis(port=replica)
        try:
            for key in kept:
                client.set(key, "v", ex=120)
            time.sleep(1)  # replicated
            stalled.execute_command("CLIENT", "PAUSE", 1500, "WRITE")  # the link stalls: the next writes stay behind
            for key in lost:
                client.set(key, "v", ex=120)
            fail_over(replica, force=True)  # without waiting for the primary's last writes
            time.sleep(2.5)  # the capture looks at the cluster's shape every second
            client = RedisCluster(host="127.0.0.1", port=replica)  # the app reconnects after the failover
            got = {key: client.get(key) for key in keys}
            time.sleep(1)
        finally:
            client.close()
            stalled.close()
        doc, err = finished_json(proc, early=True)
    assert got == {kept[0]: b"v", kept[1]: b"v", lost[0]: None, lost[1]: None}, got
    found = [f for f in doc["findings"] if f["rule"] == "failover-lost-write"]
    assert len(found) == 1, (doc["findings"], err)
    finding = found[0]
    assert sorted(finding["keys"]) == sorted(lost)
    assert f"127.0.0.1:{replica}" in finding["summary"] and f"127.0.0.1:{seed.port}" in finding["summary"]
    assert not [f for f in doc["findings"] if f["rule"] != "failover-lost-write"], doc["findings"]
    ends = {k["key"]: k["removed"] for k in doc["keys"] if k["key"] in keys}
    assert all(ends[key] and ends[key]["how"] == "failover" for key in lost), ends
    assert all(not ends[key] for key in kept), ends  # followed on the new primary, still there
    # a kept key is listed once, under the node that owns it now, its life going on there (the read after)
    listed = [k for k in doc["keys"] if k["key"] in kept]
    assert sorted(k["key"] for k in listed) == sorted(kept), listed
    assert all(k["server"] == f"127.0.0.1:{replica}" for k in listed), [(k["key"], k["server"]) for k in listed]
    assert all(k["created_by"]["pid"] == os.getpid() and k["reads"] >= 1 for k in listed), listed
    assert all(any("failover" in line and str(replica) in line for line in k["events"]) for k in listed), listed
    shown = run_cli("report", str(saved), env={**cli_env(), "COLUMNS": "220"})
    rows = [line for line in shown.out.splitlines() if kept[0] in line]
    assert rows and all(f"127.0.0.1:{replica}" in row for row in rows), shown.out
    # the failover is in the trace as events: the saved trace gives the same answer
    events = [json.loads(line) for line in saved.read_text().splitlines() if line.startswith("{")]  # not raw MONITOR
    assert any(e.get("type") == "topology" and e.get("role") == "primary" and str(replica) in e["target"]
               and "failover" in e["text"] for e in events), [e for e in events if e.get("type") == "topology"]
    starting = [e for e in events if e.get("type") == "topology" and not e["text"]]
    assert len(starting) == 6 and all(e["clock_uncertainty"] > 0 for e in starting), starting  # each clock measured
    again = run_cli("report", str(saved), "--json")
    assert again.json()["findings"] == doc["findings"]


def test_the_live_timeline_shows_each_write_once_with_replicas_watched(cluster):
    proc = subprocess.Popen([sys.executable, "-m", "redisprobe", "monitor", "--url", cluster.urls[0], "--duration",
                             "6", "--enable-events", "--keys", "live:*"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
    assert proc.stderr is not None
    while "capturing" not in (line := proc.stderr.readline()):
        assert line
    client = RedisCluster(host="127.0.0.1", port=cluster.servers[0].port)
    try:
        for index in range(6):
            client.set(f"live:{index}", "v", ex=60)
        time.sleep(1)
    finally:
        client.close()
    out, err = proc.communicate(timeout=120)
    rows = [line for line in out.splitlines() if " SET " in line and "live:" in line]
    assert len(rows) == 6, (out, err)


def test_a_killed_primary_whose_replica_took_over_lost_the_writes_it_had_not_sent():
    with sandbox("cluster", replicas=1) as box:
        seed, victim = box.servers[0], box.servers[1]
        replica = replica_of(box, victim.port)
        client = RedisCluster(host="127.0.0.1", port=seed.port)
        keys = [f"cart:{i}" for i in range(200) if client.get_node_from_key(f"cart:{i}").port == victim.port][:4]
        kept, lost = keys[:2], keys[2:]
        proc = monitor_this_process(seed.url, duration=20)
        primary = redis.Redis(port=victim.port)
        try:
            for key in kept:
                client.set(key, "v", ex=120)
            time.sleep(1)  # replicated
            stopped = next(s for s in box.servers if s.port == replica).proc
            os.kill(stopped.pid, signal.SIGSTOP)  # the replica cannot reconnect in time
            try:
                primary.client_kill_filter(_type="replica")  # the link drops: the next writes stay on the primary
                for key in lost:
                    client.set(key, "v", ex=120)
                victim.proc.kill()  # the primary dies before its replica is back
            finally:
                os.kill(stopped.pid, signal.SIGCONT)
            wait_promoted(replica)
            time.sleep(2.5)  # the capture looks at the cluster's shape every second
            client.close()
            client = RedisCluster(host="127.0.0.1", port=seed.port)
            got = {key: client.get(key) for key in keys}
            time.sleep(1)
        finally:
            client.close()
            primary.close()
        doc, err = finished_json(proc, early=True)
    assert got == {kept[0]: b"v", kept[1]: b"v", lost[0]: None, lost[1]: None}, got
    found = [f for f in doc["findings"] if f["rule"] == "failover-lost-write"]
    assert len(found) == 1 and sorted(found[0]["keys"]) == sorted(lost), (doc["findings"], err)
    assert f"127.0.0.1:{replica} took over" in found[0]["summary"]
    assert [f["rule"] for f in doc["findings"]] == ["failover-lost-write"], doc["findings"]
    assert any(str(victim.port) in g["target"] for g in doc["gaps"])  # the dead node's hole is said
    listed = {k["key"]: k["server"] for k in doc["keys"] if k["key"] in kept}  # under the node that has them now
    assert listed == dict.fromkeys(kept, f"127.0.0.1:{replica}"), listed
