"""`redisprobe ttl-race`: every injected root cause is named with the culprit; the healthy run is clean.

The sandbox runs (each on a server of its own) go side by side in one module fixture (tests/sidebyside.py); each
test asserts its own run's result."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import pytest

from redisprobe.analysis.rules.registry import injectable
from tests.clirun import Result, run_cli
from tests.sidebyside import selected, side_by_side

# Which actor the evidence must point at (None: the server did it, expiry or eviction).
CULPRIT_ROLE = {
    "deleted-by-client": "processor", "consumed-by-other": "processor", "ttl-refresh-missed": "api",
    "ttl-cleared-by-set": "api", "recreated-without-ttl": "api", "ttl-shortened": "janitor",
    "ttl-unit-mismatch": "api", "expire-in-past": "api", "evicted": None, "flushed": "janitor",
    "renamed-away": "janitor", "different-db": "processor", "key-prefix-mismatch": "processor",
    "write-rejected": "filler",
}


def _pids_by_role(doc: dict) -> dict[str, set[int]]:
    roles: dict[str, set[int]] = {}
    for life in doc["batches"]:
        for line in life.get("events", []):
            for role in CULPRIT_ROLE.values():
                if role and f"({role})" in line:
                    pid = int(line.split("pid ", 1)[1].split(" ", 1)[0])
                    roles.setdefault(role, set()).add(pid)
    return roles


RUNS_TIMEOUT = 900
"""Seconds for a test that waits for the module's runs (all of them run before the first such test ends)."""

BUGS = sorted(injectable())
SLOWEST_FIRST = ("write-rejected", "ttl-shortened", "evicted")  # started first, so the tail of the runs is short
HEALTHY_ATTEMPTS = 3
REFRESH = ("pexpire", "set-ex", "set-keepttl")


@dataclass
class Runs:
    work: Path  # where the runs wrote their traces and pictures
    futures: dict[str, Future[Result]]

    def mine(self, request: pytest.FixtureRequest) -> Result:
        """The requesting test's run's result (its jobs are keyed by test name), or what running it raised."""
        return self.futures[request.node.name].result()


@pytest.fixture(scope="module")
def runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """The sandbox run of each selected test of this module, side by side, each on a server of its own."""
    work = tmp_path_factory.mktemp("ttl-race")
    jobs: dict[str, Callable[[], Result]] = {
        f"test_each_bug_is_named_with_its_culprit[{bug}]": (
            lambda bug=bug: run_cli("ttl-race", "--bug", bug, "--json", "--out", str(work / f"{bug}.jsonl")))
        for bug in [*SLOWEST_FIRST, *(bug for bug in BUGS if bug not in SLOWEST_FIRST)]}
    jobs |= {f"test_healthy_run_is_clean[{attempt}]": lambda: run_cli("ttl-race", "--json")
             for attempt in range(HEALTHY_ATTEMPTS)}
    jobs |= {f"test_refresh_methods_are_healthy[{refresh}]": (
        lambda refresh=refresh: run_cli("ttl-race", "--refresh", refresh, "--batches", "1", "--json"))
        for refresh in REFRESH}
    jobs["test_svg_export"] = lambda: run_cli("ttl-race", "--batches", "1", "--svg", str(work / "race.svg"))
    jobs["test_live_findings_are_what_report_finds_in_the_trace"] = lambda: run_cli(
        "ttl-race", "--bug", "ttl-cleared-by-set", "--out", str(work / "race.jsonl"), "--json")
    wanted = selected(request)
    return Runs(work, side_by_side({name: job for name, job in jobs.items() if name in wanted}))


@pytest.mark.timeout(RUNS_TIMEOUT)
@pytest.mark.parametrize("bug", BUGS)
def test_each_bug_is_named_with_its_culprit(bug, runs, request):
    out = runs.work / f"{bug}.jsonl"
    result = runs.mine(request)
    assert result.code == 1, (bug, result.err)
    doc = result.json()
    rules = [f["rule"] for f in doc["findings"]]
    assert bug in rules, (bug, rules)
    finding = next(f for f in doc["findings"] if f["rule"] == bug)
    assert finding["evidence"], finding
    role = CULPRIT_ROLE[bug]
    if role is None:
        assert finding["culprit"] is None or finding["culprit"].get("pid") is None
    else:
        assert finding["culprit"] and finding["culprit"]["label"] == role, finding
        assert any(f"pid {finding['culprit']['pid']}" in line for line in finding["evidence"]), finding
    assert out.exists()


@pytest.mark.timeout(RUNS_TIMEOUT)
@pytest.mark.parametrize("attempt", range(HEALTHY_ATTEMPTS))
def test_healthy_run_is_clean(attempt, runs, request):
    result = runs.mine(request)
    assert result.code == 0, result.err + result.out
    doc = result.json()
    assert doc["findings"] == []
    assert len(doc["batches"]) == 2
    for batch in doc["batches"]:
        assert batch["removed"]["how"] == "del"
        assert batch["removed"]["by"]["label"] == "processor"
        assert batch["ttl_curve"], "the TTL sampler followed the batch"
        assert batch["lifetime"] >= 0.8 * doc["intended_lifetime"]


@pytest.mark.timeout(RUNS_TIMEOUT)
@pytest.mark.parametrize("refresh", REFRESH)
def test_refresh_methods_are_healthy(refresh, runs, request):
    result = runs.mine(request)
    assert result.code == 0, result.err + result.out
    assert result.json()["findings"] == []


def test_bug_on_user_server_needs_allow_writes(redis_url, r):
    refused = run_cli("ttl-race", "--url", redis_url, "--bug", "deleted-by-client")
    assert refused.code == 2 and "--allow-writes" in refused.err
    sandbox_only = run_cli("ttl-race", "--url", redis_url, "--bug", "flushed", "--allow-writes")
    assert sandbox_only.code == 2 and "sandbox only" in sandbox_only.err
    r.set("user:keep", "1")
    allowed = run_cli("ttl-race", "--url", redis_url, "--bug", "renamed-away", "--allow-writes", "--json",
                      "--batches", "1", "--enable-events")
    assert allowed.code == 1, allowed.err
    assert "renamed-away" in [f["rule"] for f in allowed.json()["findings"]]
    assert not list(r.scan_iter("redisprobe:*"))
    assert r.get("user:keep") == b"1"
    assert r.config_get("notify-keyspace-events")["notify-keyspace-events"] == ""
    r.delete("user:keep")


def test_unknown_bug_is_a_usage_error():
    result = run_cli("ttl-race", "--bug", "gremlins")
    assert result.code == 2 and "unknown --bug" in result.err


@pytest.mark.timeout(RUNS_TIMEOUT)
def test_svg_export(runs, request):
    svg = runs.work / "race.svg"
    result = runs.mine(request)
    assert result.code == 0, result.err
    assert svg.read_text().lstrip().startswith("<svg") and "batch" in svg.read_text()


@pytest.mark.timeout(RUNS_TIMEOUT)
def test_live_findings_are_what_report_finds_in_the_trace(runs, request):
    """One doctor entry point: the findings a run prints are those `report` gives for the trace it wrote."""
    out = runs.work / "race.jsonl"
    live = runs.mine(request)
    offline = run_cli("report", str(out), "--json")
    assert live.code == offline.code == 1, live.err + offline.err
    shown = [(f["rule"], f["summary"], f["evidence"]) for f in live.json()["findings"]]
    assert shown and shown == [(f["rule"], f["summary"], f["evidence"]) for f in offline.json()["findings"]]
