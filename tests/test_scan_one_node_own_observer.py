"""`scan-one-node` is about the user's scans: redisprobe's own TTL sampler scans every primary of a cluster for the
run's batch pattern, one connection per node, and a node whose CLIENT LIST sample came too late leaves that
connection without a pid. Those scans are never a finding; a user's scan of one node still is."""

from __future__ import annotations

from redisprobe import trace
from redisprobe.analysis import Context, diagnose
from tests.tracebuild import TraceBuilder

NODES = tuple(f"redis://127.0.0.1:{7001 + index}/0" for index in range(3))
PATTERN = "redisprobe:ttl-race:ab6544b2:batch:*"


def _cluster_with_batches() -> TraceBuilder:
    """Three primaries of one cluster, a batch key written on each (the first three batch names hash to nodes 0..2)."""
    tb = TraceBuilder()
    for index, node in enumerate(NODES):
        tb.add(trace.ServerSeen(t=tb.now, target=node, server=trace.ServerFingerprint(
            run_id=str(index) * 40, port=7001 + index, redis_mode="cluster")))
    for index, node in enumerate(NODES):
        api = tb.client("api", pid=100, client_id=20 + index, target=node)
        api("RPUSH", f"redisprobe:ttl-race:ab6544b2:batch:{index}", "m")
        tb.ks("rpush", f"redisprobe:ttl-race:ab6544b2:batch:{index}", target=node)
    return tb


def _rules(tb: TraceBuilder) -> list[str]:
    return [f.rule for f in diagnose(tb.events, Context(watched={100: "api"}))]


def test_our_ttl_samplers_scans_with_a_pid_on_some_nodes_only_are_no_finding() -> None:
    tb = _cluster_with_batches()
    for index, node in enumerate(NODES):  # the last node's sample came before the sampler connected: no pid
        sampler = tb.client(pid=3902 if index < 2 else None, client_id=12 + index, target=node,
                            name="redisprobe:observer:ttl")
        sampler("SCAN", "0", "MATCH", PATTERN, "COUNT", "1000")
    assert "scan-one-node" not in _rules(tb)


def test_a_users_scan_of_one_node_is_still_a_finding() -> None:
    tb = _cluster_with_batches()
    scanner = tb.client(pid=4000, client_id=30, target=NODES[0], name="reports")
    scanner("SCAN", "0", "MATCH", PATTERN, "COUNT", "1000")
    assert _rules(tb).count("scan-one-node") == 1
