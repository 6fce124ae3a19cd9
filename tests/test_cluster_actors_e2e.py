"""`isolation`, `ttl-race` and scenario files on a Redis Cluster: the actors are cluster clients (one connection per
primary, each key sent to the node of its slot) and the verdicts are the ones a single server gives.

Real CLI, real sandbox cluster of three primaries, real actor processes. Each run has a cluster of its own; the
runs go side by side in one module fixture (tests/sidebyside.py) and each test asserts its own run's result."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from redisprobe import trace
from redisprobe.analysis.rules.registry import injectable
from redisprobe.targets.sandbox import sandbox
from tests.clirun import Result, run_cli
from tests.sidebyside import selected, side_by_side

CLUSTER = ("--topology", "cluster")

CULPRIT_ROLE = {
    "deleted-by-client": "processor", "consumed-by-other": "processor", "ttl-refresh-missed": "api",
    "ttl-cleared-by-set": "api", "recreated-without-ttl": "api", "ttl-shortened": "janitor",
    "ttl-unit-mismatch": "api", "expire-in-past": "api", "evicted": None, "flushed": "janitor",
    "renamed-away": "janitor", "key-prefix-mismatch": "processor", "write-rejected": "filler",
}
NOT_ON_A_CLUSTER = {"different-db"}  # a cluster has db 0 only: refused up front, one line
ALSO = {"ttl-refresh-missed": {"recreated-without-ttl"}}  # as on one server: the batch expired, the api recreated it


def _ops_and_starts(path: Path) -> tuple[list[trace.Op], list[trace.ActorStarted]]:
    events = list(trace.read_trace(path)[1])
    return ([e for e in events if isinstance(e, trace.Op)], [e for e in events if isinstance(e, trace.ActorStarted)])


RUNS_TIMEOUT = 900
"""Seconds for a test that waits for the module's runs (all of them run before the first such test ends)."""

BUGS = sorted(set(injectable()) - NOT_ON_A_CLUSTER)
SLOWEST_FIRST = ("write-rejected", "ttl-unit-mismatch", "renamed-away", "expire-in-past", "flushed", "ttl-shortened")


def _leftovers(servers) -> dict[str, list[bytes]]:
    """Each server's keys under `redisprobe:` (a run removes its own when it ends)."""
    left = {}
    for server in servers:
        client = redis.Redis(host=server.host, port=server.port)
        try:
            left[server.url] = list(client.scan_iter("redisprobe:*"))
        finally:
            client.close()
    return left


def _on_a_node_url(out: Path) -> tuple[Result, dict[str, list[bytes]]]:
    with sandbox("cluster") as box:
        node = box.servers[1].url  # any node will do: the slot map says where each key lives
        result = run_cli("isolation", "--url", node, *CLUSTER, "--json", "--timeout", "3", "--out", str(out))
        return result, _leftovers(box.servers)


def _given_a_replica(out: Path) -> tuple[Result, set[str], dict[str, list[bytes]]]:
    with sandbox("cluster", replicas=1) as box:
        replica = box.servers[4].url  # a cluster client may be given any node: it finds the primaries
        result = run_cli("ttl-race", "--url", replica, *CLUSTER, "--json", "--out", str(out))
        return result, {server.url for server in box.servers[:3]}, _leftovers(box.servers[:3])


def _scenario(path: Path) -> Result:
    path.write_text(CLUSTER_CLIENTS.format(expect="clean = true"))
    return run_cli("run", str(path), "--json")


@dataclass
class Runs:
    work: Path  # where the runs wrote their traces
    futures: dict[str, Future]

    def mine(self, request: pytest.FixtureRequest) -> Any:
        """The requesting test's run's result (what its job returned; jobs are keyed by test name), or what it
        raised, raised here."""
        return self.futures[request.node.name].result()


@pytest.fixture(scope="module")
def runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """The slow run of each selected test of this module, side by side, each on a sandbox cluster of its own."""
    work = tmp_path_factory.mktemp("cluster-actors")
    bugs = [*SLOWEST_FIRST, *(bug for bug in BUGS if bug not in SLOWEST_FIRST)]
    jobs: dict[str, Callable[[], object]] = {
        f"test_each_bug_is_named_on_a_cluster_with_its_culprit[{bug}]": (
            lambda bug=bug: run_cli("ttl-race", *CLUSTER, "--bug", bug, "--json")) for bug in bugs}
    jobs |= {
        "test_ttl_race_given_a_replica_of_a_cluster_works_on_the_primaries":
            lambda: _given_a_replica(work / "replica-race.jsonl"),
        "test_ttl_race_on_a_cluster_is_clean_and_batches_live_on_several_primaries":
            lambda: run_cli("ttl-race", *CLUSTER, "--batches", "4", "--json", "--out", str(work / "race.jsonl")),
        "test_a_scenario_on_a_cluster_runs_its_actors_as_cluster_clients":
            lambda: _scenario(work / "cluster-clients.toml"),
        "test_isolation_on_a_cluster_is_visible_each_op_tagged_with_its_node_connection":
            lambda: run_cli("isolation", *CLUSTER, "--json", "--timeout", "3", "--out", str(work / "iso.jsonl")),
        "test_isolation_on_a_cluster_names_a_prefix_mismatch_as_on_one_server":
            lambda: run_cli("isolation", *CLUSTER, "--api-prefix", "app:", "--json", "--timeout", "0.5"),
        "test_topology_cluster_on_a_cluster_node_url_reaches_every_primary":
            lambda: _on_a_node_url(work / "node-iso.jsonl"),
    }
    wanted = selected(request)
    return Runs(work, side_by_side({name: job for name, job in jobs.items() if name in wanted}))


@pytest.mark.timeout(RUNS_TIMEOUT)
def test_isolation_on_a_cluster_is_visible_each_op_tagged_with_its_node_connection(runs, request):
    out = runs.work / "iso.jsonl"
    result = runs.mine(request)
    for attempt in range(3):
        assert result.code == 0, result.err + result.out
        doc = result.json()
        assert doc["verdict"] == "visible" and doc["findings"] == []
        assert all(check["seen"] for check in doc["checks"])
        ops, starts = _ops_and_starts(out)
        if len({op.target for op in ops}) >= 2:
            break
        # the four marker keys' names hold a random run id: 1 run in 27 puts them all on one node, where the
        # test would prove nothing about ops tagged per node; run again
        out = runs.work / f"iso-{attempt}.jsonl"
        result = run_cli("isolation", *CLUSTER, "--json", "--timeout", "3", "--out", str(out))
    # one connection per primary for each actor, each with the client id that node gave it
    nodes = {(s.pid, s.target): s.client_id for s in starts}
    assert {s.role for s in starts} == {"api", "processor"}
    for pid in {s.pid for s in starts}:
        assert len({target for p, target in nodes if p == pid}) == 3
    assert len({op.target for op in ops}) >= 2, "the marker keys all hashed to one node: the test proves nothing"
    for op in ops:
        assert op.error is None, op  # no MOVED: every key went to the node of its slot
        assert op.role in ("api", "processor") and op.pid
        assert nodes[(op.pid, op.target)] == op.client_id  # the connection id is per node


@pytest.mark.timeout(RUNS_TIMEOUT)
def test_isolation_on_a_cluster_names_a_prefix_mismatch_as_on_one_server(runs, request):
    result = runs.mine(request)
    assert result.code == 1, result.err + result.out
    doc = result.json()
    assert [f["rule"] for f in doc["findings"]] == ["key-prefix-mismatch"]
    assert doc["findings"][0]["culprit"]["label"] == "processor"


@pytest.mark.timeout(RUNS_TIMEOUT)
def test_ttl_race_on_a_cluster_is_clean_and_batches_live_on_several_primaries(runs, request):
    out = runs.work / "race.jsonl"
    result = runs.mine(request)
    assert result.code == 0, result.err + result.out
    doc = result.json()
    assert doc["findings"] == []
    ops, _ = _ops_and_starts(out)
    batch_nodes = {op.target for op in ops if op.args[0] == b"RPUSH"}
    assert len(batch_nodes) >= 2, "four batches on one primary: the test proves nothing"
    assert not [op for op in ops if op.error], [op for op in ops if op.error][:3]
    deleted = {op.args[1] for op in ops if op.args[0] == b"DEL" and op.role == "processor"}
    assert {op.args[1] for op in ops if op.args[0] == b"RPUSH"} <= deleted  # processed on every primary


@pytest.mark.timeout(RUNS_TIMEOUT)
@pytest.mark.parametrize("bug", BUGS)
def test_each_bug_is_named_on_a_cluster_with_its_culprit(bug, runs, request):
    result = runs.mine(request)
    assert result.code == 1, (bug, result.err)
    doc = result.json()
    rules = {f["rule"] for f in doc["findings"]}
    assert rules == {bug} | ALSO.get(bug, set()), (bug, rules)
    role = CULPRIT_ROLE[bug]
    for finding in doc["findings"]:
        if role is None:
            assert finding["culprit"] is None or finding["culprit"].get("pid") is None
        else:
            assert finding["culprit"]["label"] == role, finding
            assert any(f"pid {finding['culprit']['pid']}" in line for line in finding["evidence"]), finding


def test_a_bug_that_needs_a_second_db_is_one_line_on_a_cluster():
    result = run_cli("ttl-race", *CLUSTER, "--bug", "different-db")
    assert result.code == 2
    assert result.err.strip().count("\n") == 0 and "db 0 only" in result.err, result.err
    assert "Traceback" not in result.err


def test_topology_cluster_on_a_plain_server_url_is_one_line(redis_url):
    for command in ("isolation", "ttl-race"):
        result = run_cli(command, "--url", redis_url, *CLUSTER)
        assert result.code == 2, (command, result.out, result.err)
        assert result.err.strip().count("\n") == 0 and "not a Redis Cluster node" in result.err, result.err


@pytest.mark.timeout(RUNS_TIMEOUT)
def test_topology_cluster_on_a_cluster_node_url_reaches_every_primary(runs, request):
    out = runs.work / "node-iso.jsonl"
    result, leftovers = runs.mine(request)
    assert result.code == 0, result.err + result.out
    assert result.json()["verdict"] == "visible"
    ops, starts = _ops_and_starts(out)
    assert len({s.target for s in starts}) == 3
    assert not [op for op in ops if op.error]
    assert len(leftovers) == 3 and not any(leftovers.values()), leftovers  # the run's keys are gone from every node


CLUSTER_CLIENTS = """
name = "cluster-clients"
topology = "cluster"
max_seconds = 15

[[actors]]
role = "api"
steps = [
  {{ repeat = 6, steps = [{{ do = ["SET", "{{ns}}order:{{i}}", "o", "EX", "30"] }}] }},
  {{ do = ["DEL", "{{ns}}order:0", "{{ns}}order:1", "{{ns}}order:2"] }},
]

[[actors]]
role = "processor"
steps = [
  {{ wait = [{{ name = "o5", cmd = ["GET", "{{ns}}order:5"] }}], timeout = 5 }},
  {{ do = ["MGET", "{{ns}}order:4"] }},
]

[expect]
{expect}
"""


@pytest.mark.timeout(RUNS_TIMEOUT)
def test_a_scenario_on_a_cluster_runs_its_actors_as_cluster_clients(runs, request):
    result = runs.mine(request)
    assert result.code == 0, result.err + result.out
    doc = json.loads(result.out)
    assert doc["scenarios"][0]["status"] == "passed", doc


@pytest.mark.timeout(RUNS_TIMEOUT)
def test_ttl_race_given_a_replica_of_a_cluster_works_on_the_primaries(runs, request):
    out = runs.work / "replica-race.jsonl"
    result, primaries, leftovers = runs.mine(request)
    assert result.code == 0, result.err + result.out
    assert result.json()["findings"] == []
    ops, _ = _ops_and_starts(out)
    assert not [op for op in ops if op.error]
    assert {op.target for op in ops} <= primaries  # no scan or write went to the replica
    assert len(leftovers) == 3 and not any(leftovers.values()), leftovers
