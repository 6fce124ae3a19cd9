"""What a capture must get right on a live server it joins mid-flight: the baseline of keys that existed before,
`--keys` narrowing only what is shown, a server given twice, notify-keyspace-events changed by someone else."""

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


# -- --keys narrows what is shown, never what the doctor sees -------------------------------------------------


def test_keys_pattern_keeps_a_finding_whose_cause_is_outside_it(url, stack):
    api = _client(stack, url, cli=True)
    run = _monitor(stack, url, {"api": api.pid}, "--keys", "batch:*")
    api.send("SET", "batch:7", "x", "EX", "1")
    api.send("EXPIRE", "batch_7", "30")  # the refresh names a key outside the pattern: the cause the user missed
    time.sleep(1.6)
    doc = run.stop_json()
    assert "ttl-refresh-missed" in _rules(doc), doc["findings"]
    assert {k["key"] for k in doc["keys"]} <= {"batch:7"}  # the shown lives stay narrowed


def test_keys_pattern_keeps_findings_on_keys_all_outside_it_and_says_so(url, stack):
    api, processor = _client(stack, url), _client(stack, url, cli=True)
    run = _monitor(stack, url, {"api": api.pid, "processor": processor.pid}, "--keys", "orders:*")
    api.send("RPUSH", "batch:1", "m1")
    api.send("EXPIRE", "batch:1", "60")
    processor.send("DEL", "batch:1")
    api.send("RPUSH", "batch:1", "m2")
    doc = run.stop_json()
    finding = next(f for f in doc["findings"] if f["rule"] == "deleted-by-client")
    assert "outside --keys" in finding["summary"]
    assert doc["keys"] == []


# -- one server given twice -----------------------------------------------------------------------------------


def test_the_same_server_given_twice_is_captured_once(private_server, stack):
    port = int(private_server.urls[0].rsplit(":", 1)[1].split("/")[0])
    api = _client(stack, f"redis://127.0.0.1:{port}", cli=True)
    spec = f"api={api.pid}"
    run = MonitorRun("--url", f"redis://127.0.0.1:{port}", "--url", f"redis://localhost:{port}", "--pids", spec,
                     "--json", "--enable-events")
    stack.callback(run.kill)
    api.send("SET", "order:1", "x")
    api.send("GET", "order:1")
    doc = run.stop_json()
    assert doc["stats"]["commands"] == 2, doc["stats"]
    assert any("same server" in n["text"] for n in doc["notes"]), doc["notes"]
    assert "different-server" not in _rules(doc)
