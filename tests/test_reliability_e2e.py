"""Faults on a real server, and what redisprobe says about each: the exit code, one line where it is an error,
a gap window that covers what was really lost (with how much, where the server tells), nothing left behind.

README's reliability table lists these faults and outcomes.
"""

from __future__ import annotations

import time

import psutil
import pytest
import redis

from tests.monitorrun import MonitorRun


def _children(pid: int, module: str) -> list[psutil.Process]:
    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if module in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def _wait(predicate, timeout: float = 30.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _named(client: redis.Redis, name: str) -> bool:
    return any(c.get("name") == name for c in client.client_list())


def _server_time(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1e6


def _load(client: redis.Redis, prefix: str, count: int) -> tuple[float, float]:
    """`count` SETs, pipelined; the server time just before the first and just after the last."""
    start = _server_time(client)
    pipe = client.pipeline(transaction=False)
    for index in range(count):
        pipe.set(f"{prefix}:{index}", "v")
        if len(pipe) >= 5000:
            pipe.execute()
    pipe.execute()
    return start, _server_time(client)


@pytest.fixture
def server(private_server):
    client = redis.Redis.from_url(private_server.urls[0])
    yield private_server.urls[0], client
    client.close()


def test_monitor_cut_by_output_buffer_limit_reports_the_true_window_and_the_lost_count(server):
    url, client = server
    client.config_set("client-output-buffer-limit", "normal 256kb 0 0")  # MONITOR clients are "normal" ones
    run = MonitorRun("--url", url, "--json", "--no-enable-events", "--keys", "none")
    try:
        reader = _children(run.proc.pid, "redisprobe.observers.monitor")[0]
        _load(client, "warm", 10)  # captured before the reader stalls
        time.sleep(1.5)  # at least one mark (server time + command count) reaches the spool
        reader.suspend()  # a reader that stopped reading: the server buffers MONITOR's output for it
        start, end = _load(client, "lost", 200_000)
        _wait(lambda: not _named(client, "redisprobe:observer:monitor"), what="the server to drop MONITOR")
        reader.resume()
        _wait(lambda: _named(client, "redisprobe:observer:monitor"), what="MONITOR to reconnect")
        time.sleep(0.5)
        doc = run.stop_json()
    finally:
        reader.resume() if reader.is_running() else None
        run.kill()
    gaps = [g for g in doc["gaps"] if g["source"] == "monitor"]
    assert len(gaps) == 1, doc["gaps"]
    gap = gaps[0]
    captured = doc["stats"]["commands"]
    # The commands MONITOR never delivered all ran within [start, end]: the gap starts at or before the last one
    # it did deliver (server time) and ends after the load; it does not start at the reader's receive time.
    assert start - 2.0 <= gap["from"] <= end, (gap, start, end)
    assert gap["until"] >= end, (gap, end)
    lost = 200_000 + 10 - captured
    assert lost > 1_000, captured  # the limit really cut it
    assert gap["lost"] is not None and abs(gap["lost"] - lost) <= max(200, lost * 0.02), (gap, lost)
    assert f"{gap['lost']:,}" in gap["reason"] or str(gap["lost"]) in gap["reason"], gap["reason"]
