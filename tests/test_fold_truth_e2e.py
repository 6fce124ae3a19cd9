"""`redisprobe monitor --pids` on real servers for the fold's semantics found on real apps: a stuck transaction,
blocking pops, scripts, TTL units, same-millisecond writes, instances of one program racing for a key."""

from __future__ import annotations

import time
from contextlib import ExitStack

import pytest

from tests.clients import Client
from tests.monitorrun import MonitorRun


@pytest.fixture
def url(private_server) -> str:
    return private_server.urls[0]


@pytest.fixture
def stack():
    with ExitStack() as stack:
        yield stack


def _client(stack: ExitStack, url: str, *, cli: bool = False) -> Client:
    client = Client(url, cli=cli)
    stack.callback(client.close)
    return client


def _monitor(stack: ExitStack, url: str, pids: dict[str, int], *extra: str) -> MonitorRun:
    spec = ",".join(f"{label}={pid}" for label, pid in pids.items())
    run = MonitorRun("--url", url, "--pids", spec, "--json", "--enable-events", *extra)
    stack.callback(run.kill)
    return run


def _rules(doc: dict) -> list[str]:
    return [f["rule"] for f in doc["findings"]]


def test_a_connection_stuck_inside_multi_is_one_finding(url, stack):
    wallet = _client(stack, url)
    run = _monitor(stack, url, {"wallet": wallet.pid})
    wallet.send("MULTI")
    for _ in range(6):  # each later MULTI is refused ("can not be nested") but MONITOR shows it
        wallet.send("INCRBY", "balance:1", "5")
        assert "nested" in wallet.send("MULTI").lower()
    doc = run.stop_json(settle=0.8)
    assert _rules(doc) == ["transaction-not-executed"], doc["findings"]
    finding = doc["findings"][0]
    assert finding["culprit"]["pid"] == wallet.pid
    assert any("6 later MULTI" in line for line in finding["evidence"]), finding["evidence"]


def test_px_under_a_second_then_a_wave_of_misses_is_ttl_unit_mismatch(url, stack):
    catalog = _client(stack, url)
    run = _monitor(stack, url, {"catalog": catalog.pid})
    for _round in range(2):
        for product in range(3):  # cache.wrap(key, fn, 30): GET, miss, SET ... PX 30 meant as 30 s
            catalog.send("GET", f"product:{product}")
            catalog.send("SET", f"product:{product}", "{}", "PX", "30")
        time.sleep(0.2)
    doc = run.stop_json(settle=0.5)
    assert _rules(doc) == ["ttl-unit-mismatch"], doc["findings"]
    finding = doc["findings"][0]
    assert finding["culprit"]["pid"] == catalog.pid
    assert "did you mean 30 seconds?" in finding["summary"], finding["summary"]
    assert any("missed: it had expired" in line for line in finding["evidence"]), finding["evidence"]


def test_a_sub_second_lock_nobody_reads_after_expiry_is_silent(url, stack):
    worker = _client(stack, url)
    run = _monitor(stack, url, {"worker": worker.pid})
    for job in range(3):
        worker.send("SET", f"lock:job:{job}", "token", "NX", "PX", "100")
        time.sleep(0.15)  # the lease lapses; the next taker just takes it again
        worker.send("SET", f"lock:job:{job}", "token2", "NX", "PX", "100")
        worker.send("DEL", f"lock:job:{job}")
    doc = run.stop_json(settle=0.5)
    assert doc["findings"] == []


def _flush_rounds(api: Client, flushers: list[Client], rounds: int = 3) -> None:
    for round_ in range(rounds):
        for view in range(3):
            api.send("RPUSH", "events:pending", f"view-{round_}-{view}")
        for flusher in flushers:  # every instance flushes on its own timer: the later one finds nothing
            flusher.send("LPOP", "events:pending", "50")
        time.sleep(0.1)


def test_two_listed_instances_of_one_app_racing_for_a_key_is_consumed_by_other(url, stack):
    api, first, second = _client(stack, url), _client(stack, url), _client(stack, url)
    spec = f"api={api.pid},tracker={first.pid},tracker={second.pid}"
    run = MonitorRun("--url", url, "--pids", spec, "--json", "--enable-events")
    stack.callback(run.kill)
    _flush_rounds(api, [first, second])
    doc = run.stop_json(settle=0.5)
    assert _rules(doc) == ["consumed-by-other"], doc["findings"]
    finding = doc["findings"][0]
    assert finding["culprit"]["pid"] == first.pid
    assert f"pid {second.pid} came away empty" in finding["summary"], finding["summary"]


def test_one_flushing_instance_of_two_is_silent(url, stack):
    api, first, second = _client(stack, url), _client(stack, url), _client(stack, url)
    spec = f"api={api.pid},tracker={first.pid},tracker={second.pid}"
    run = MonitorRun("--url", url, "--pids", spec, "--json", "--enable-events")
    stack.callback(run.kill)
    second.send("PING")
    _flush_rounds(api, [first])
    first.send("LPOP", "events:pending", "50")  # a flush with nothing to do
    doc = run.stop_json(settle=0.5)
    assert doc["findings"] == []


def test_two_listed_instances_each_draining_batches_of_one_key_is_consumed_by_other(url, stack):
    api, first, second = _client(stack, url), _client(stack, url), _client(stack, url)
    spec = f"api={api.pid},tracker={first.pid},tracker={second.pid}"
    run = MonitorRun("--url", url, "--pids", spec, "--json", "--enable-events")
    stack.callback(run.kill)
    for _round in range(2):
        for flusher in (first, second):  # out of phase: each finds events, neither comes away empty
            api.send("RPUSH", "events:pending", "view")
            flusher.send("LPOP", "events:pending", "50")
    doc = run.stop_json(settle=0.5)
    assert _rules(doc) == ["consumed-by-other"], doc["findings"]
    finding = doc["findings"][0]
    assert finding["culprit"]["pid"] in (first.pid, second.pid)
    assert "2 instances of tracker" in finding["summary"] and "each take batches" in finding["summary"]
