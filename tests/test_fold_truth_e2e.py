"""`redisprobe monitor --pids` on real servers for the fold's semantics found on real apps: a stuck transaction,
blocking pops, scripts, TTL units, same-millisecond writes, instances of one program racing for a key."""

from __future__ import annotations

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
