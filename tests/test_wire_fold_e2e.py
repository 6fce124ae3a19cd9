"""The fold and the doctor read the replies `monitor --source wire` captures, end to end: real server, real client
processes, the real CLI.

- A read's nil reply is a miss even of a key the capture could not know about (made before it, beyond what the
  baseline scans), and a value reply means the key existed: never a miss. MONITOR, with no replies, must say
  'unknown' for the same reads and name nothing.
- An EXPIRE that replied 0 set no TTL, whatever the fold guessed.
- A write refused with OOM is named from its own error reply: command, key, connection and pid; so are the MOVED
  and CROSSSLOT replies a plain client gets from a cluster node.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import redis

from redisprobe import trace
from redisprobe.analysis import fold
from redisprobe.producers.observers.baseline_scan import MAX_KEYS
from redisprobe.targets.sandbox import Sandbox, sandbox
from tests.clients import Client
from tests.monitorrun import MonitorRun

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a packet capture needs root or CAP_NET_RAW")

PRODUCTS = MAX_KEYS + 500
"""Keys made before the capture: more than the baseline scans, so most reads of absent keys are of unknown state
to MONITOR."""


@pytest.fixture
def stack():
    with ExitStack() as stack:
        yield stack


def _client(stack: ExitStack, url: str) -> Client:
    client = Client(url)
    stack.callback(client.close)
    return client


def _monitor(stack: ExitStack, *args: str) -> MonitorRun:
    run = MonitorRun(*args)
    stack.callback(run.kill)
    return run


def _products(url: str) -> None:
    with redis.Redis.from_url(url) as admin:
        pipe = admin.pipeline(transaction=False)
        for n in range(PRODUCTS):
            pipe.set(f"product:sku-{n:05d}", f"price {n}")
        pipe.execute()


@pytest.mark.parametrize("source", ["wire", "both", "monitor"])
def test_a_nil_reply_is_a_miss_of_a_key_made_before_the_capture(private_server: Sandbox, stack: ExitStack,
                                                                source: str) -> None:
    """The catalog reads product:sku-N, the pricing job products:sku-N (a name nobody writes); every product was
    made before the capture. Only the replies tell the misses from hits."""
    url = private_server.urls[0]
    _products(url)
    catalog, pricing = _client(stack, url), _client(stack, url)
    run = _monitor(stack, "--url", url, "--source", source, "--pids", f"catalog={catalog.pid},pricing={pricing.pid}",
                   "--json", "--no-enable-events")
    for n in range(0, PRODUCTS, PRODUCTS // 12):
        assert catalog.send("GET", f"product:sku-{n:05d}") == f'"price {n}"'
        assert pricing.send("GET", f"products:sku-{n:05d}") == "null"
    doc = run.stop_json()
    found = [f for f in doc["findings"] if f["rule"] == "key-prefix-mismatch"]
    if source == "monitor":  # no replies: the reads of keys beyond the baseline are of unknown state
        assert doc["findings"] == [], doc["findings"]
        return
    assert len(found) == 1 and doc["findings"] == found, doc["findings"]
    assert found[0]["culprit"]["pid"] == pricing.pid, found[0]
    assert "products:sku-" in found[0]["summary"] and "product:sku-" in found[0]["summary"], found[0]["summary"]
    assert not [f for f in doc["findings"] if (f.get("culprit") or {}).get("pid") == catalog.pid]


def _trace(stack: ExitStack, url: str, out: Path, *extra: str) -> MonitorRun:
    return _monitor(stack, "--url", url, "--source", "wire", "--json", "--out", str(out), *extra)


def test_an_expire_that_replied_0_set_no_ttl(private_server: Sandbox, stack: ExitStack, tmp_path: Path) -> None:
    """A script deletes the key (the wire never sees inside a script); the EXPIRE after it replies 0. The fold must
    not record that TTL; with a reply of 1 on a key made before the capture, it must."""
    url = private_server.urls[0]
    _products(url)  # the baseline cannot cover every key: product:sku-00007 may be unknown to the fold
    out = tmp_path / "trace.jsonl"
    app = _client(stack, url)
    run = _trace(stack, url, out, "--no-enable-events")
    assert app.send("SET", "cart:1", "x", "EX", "1000") == "true"
    assert app.send("EVAL", "return redis.call('DEL', KEYS[1])", "1", "cart:1") == "1"
    assert app.send("EXPIRE", "cart:1", "5") == "false"
    assert app.send("EXPIRE", "product:sku-00007", "900") == "true"
    run.stop_json()
    _header, events = trace.load_trace(out)
    lifecycle = fold(events)
    [cart] = lifecycle.lives_of("cart:1")
    assert cart.expires_at is not None and cart.expires_at - cart.created_at > 900, "the EXPIRE 5 was folded in"
    assert cart.ttl_missed and cart.ttl_missed[0].reason == "the command replied 0"
    [product] = lifecycle.lives_of("product:sku-00007")
    assert product.expires_at is not None and product.ttl_last is not None and product.ttl_last.seconds == 900


def test_write_rejected_names_the_refused_command_and_pid_from_its_reply(private_server: Sandbox,
                                                                          stack: ExitStack) -> None:
    url = private_server.urls[0]
    admin = redis.Redis.from_url(url)
    stack.callback(admin.close)
    admin.config_set("maxmemory-policy", "noeviction")
    for n in range(40):
        admin.set(f"blob:{n}", "x" * 65536)
    admin.config_set("maxmemory", "1mb")
    writer, reader = _client(stack, url), _client(stack, url)
    run = _monitor(stack, "--url", url, "--source", "wire", "--pids", f"api={writer.pid},reader={reader.pid}",
                   "--json", "--no-enable-events")
    for n in range(5):
        assert "used memory > 'maxmemory'" in writer.send("SET", f"session:{n}", "data")
        reader.send("GET", f"session:{n}")
        time.sleep(0.05)
    doc = run.stop_json()
    [finding] = [f for f in doc["findings"] if f["rule"] == "write-rejected"]
    assert finding["culprit"]["pid"] == writer.pid, finding
    assert "sure" in finding["summary"], finding["summary"]
    evidence = "\n".join(finding["evidence"])
    assert "5 OOM error replies read off the wire" in evidence, evidence
    assert f"pid {writer.pid}" in evidence and "SET session:0 data -> refused: OOM" in evidence, evidence


@pytest.fixture(scope="module")
def cluster() -> Iterator[Sandbox]:
    with sandbox("cluster") as box:
        yield box


def test_redirects_and_crossslot_are_named_from_their_replies(cluster: Sandbox, stack: ExitStack) -> None:
    """A plain client on node 0 writes keys other nodes own (MOVED) and an MSET over two slots (CROSSSLOT)."""
    url = cluster.urls[0]
    node0 = redis.Redis.from_url(url)
    stack.callback(node0.close)
    elsewhere = [key for key in (f"order:{n}" for n in range(200)) if node0.cluster("keyslot", key) not in
                 _slots(node0, cluster.servers[0].port)][:3]
    app = _client(stack, url)
    run = _monitor(stack, "--url", url, "--source", "wire", "--pids", f"app={app.pid}", "--json",
                   "--no-enable-events")
    for key in elsewhere:
        assert app.send("SET", key, "paid").startswith('"error: ')  # redis-py drops the word MOVED
    assert "same slot" in app.send("MSET", "cart:1", "a", "cart:2", "b")
    doc = run.stop_json()
    by_rule = {f["rule"]: f for f in doc["findings"]}
    for rule, error, command in (("cluster-unaware-client", "MOVED", f"SET {elsewhere[0]} paid"),
                                 ("cross-slot", "CROSSSLOT", "MSET cart:1 a cart:2 b")):
        assert rule in by_rule, doc["findings"]
        finding = by_rule[rule]
        assert finding["culprit"]["pid"] == app.pid, finding
        evidence = "\n".join(finding["evidence"])
        assert "read off the wire" in evidence and f"{command} -> refused: {error}" in evidence, evidence
        assert f"pid {app.pid}" in evidence, evidence


def _slots(client: redis.Redis, port: int) -> set[int]:
    """The hash slots the node on `port` owns."""
    owned: set[int] = set()
    for start, end, *nodes in client.execute_command("CLUSTER", "SLOTS"):
        if int(nodes[0][1]) == port:
            owned.update(range(int(start), int(end) + 1))
    return owned


def test_a_connection_in_db_2_since_before_the_capture_is_folded_in_db_2(private_server: Sandbox, stack: ExitStack,
                                                                        tmp_path: Path) -> None:
    """Its SELECT went by before the wire looked: CLIENT LIST's db stands for it (not a guessed 0)."""
    url = private_server.urls[0]
    shop = Client(url.rsplit("/", 1)[0] + "/2")
    stack.callback(shop.close)
    out = tmp_path / "trace.jsonl"
    run = _trace(stack, url, out, "--no-enable-events")
    assert shop.send("SET", "order:1", "paid") == "true"
    run.stop_json()
    _header, events = trace.load_trace(out)
    [line] = [e for e in events if isinstance(e, trace.Monitor) and e.args[:2] == [b"SET", b"order:1"]]
    assert line.db == 2
    [reply] = [e for e in events if isinstance(e, trace.WireReply) and e.peer == line.peer and e.sent == line.t]
    assert reply.db == 2 and "db-unknown" not in reply.flags and "resynced" in reply.flags
