"""Redis Cluster discovery: from any one node, every node of the cluster, its role and the slots it serves.

A capture of a cluster must watch every node: a key lives on the node that owns its slot, and "B can't see A's
key" there is often a SCAN that covered one node, or a replica read. CLUSTER SHARDS (Redis 7.0+) says it all in
one reply; older servers answer CLUSTER NODES, parsed to the same shape.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redisprobe import trace
from redisprobe.errors import ProbeError
from redisprobe.targets.url import Target


@dataclass(frozen=True)
class ClusterNode:
    """One node as the cluster knows it."""

    node_id: str
    host: str
    port: int
    role: str  # "primary" or "replica"
    primary_id: str | None = None  # a replica's primary
    slots: tuple[tuple[int, int], ...] = field(default=())  # a primary's slot ranges, inclusive
    health: str = "online"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def owns(self, slot: int) -> bool:
        return any(first <= slot <= last for first, last in self.slots)


def is_cluster(client: Any) -> bool:
    """Whether the server a redis-py client talks to runs in cluster mode."""
    return str(_text(client.info("server").get("redis_mode", ""))) == "cluster"


def discover(client: Any) -> list[ClusterNode]:
    """Every node of the cluster `client` is connected to one node of: primaries first, each with its slots."""
    import redis

    try:
        shards = client.execute_command("CLUSTER", "SHARDS")
    except redis.ResponseError as exc:
        if "unknown subcommand" not in str(exc).lower():
            raise ProbeError(f"CLUSTER SHARDS was refused: {exc}") from None
        return parse_cluster_nodes(_text(client.execute_command("CLUSTER", "NODES")))
    return _from_shards(shards)


def cluster_identity(client: Any) -> str:
    """Which cluster a node belongs to: the lowest node id it knows of ("" when it cannot say). Two clusters
    that look alike (same ports, same version) never share a node id; the nodes of one cluster all know the
    same ids (a node that joins with a lower one during a run changes it, so compare what was taken together)."""
    import redis

    with contextlib.suppress(redis.RedisError, OSError, ValueError, IndexError):
        reply = client.execute_command("CLUSTER", "NODES")  # text on every server and protocol
        if isinstance(reply, bytes | str):
            return min((node.node_id for node in parse_cluster_nodes(_text(reply))), default="")
    return ""


def _from_shards(shards: list[dict[Any, Any]]) -> list[ClusterNode]:
    nodes: list[ClusterNode] = []
    for shard in shards:
        shard = {_text(k): v for k, v in shard.items()}
        bounds = [int(n) for n in shard.get("slots") or ()]
        slots = tuple(zip(bounds[::2], bounds[1::2], strict=True))
        members = [{_text(k): v for k, v in node.items()} for node in shard.get("nodes") or ()]
        primary = next((m for m in members if _text(m.get("role")) == "master"), None)
        primary_id = _text(primary["id"]) if primary is not None else None
        for member in members:
            is_primary = member is primary
            nodes.append(ClusterNode(
                node_id=_text(member["id"]), host=_text(member.get("ip") or member.get("endpoint")),
                port=int(member.get("port") or member.get("tls-port") or 0),
                role="primary" if is_primary else "replica",
                primary_id=None if is_primary else primary_id, slots=slots if is_primary else (),
                health=_text(member.get("health") or "online")))
    return sorted(nodes, key=lambda n: (n.role != "primary", n.slots[:1], n.port))


def parse_cluster_nodes(text: str) -> list[ClusterNode]:
    """CLUSTER NODES' lines (`<id> <ip:port@bus> <flags> <primary> <ping> <pong> <epoch> <link> <slot>...`)."""
    nodes: list[ClusterNode] = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 8:
            continue
        host, _, rest = words[1].rpartition(":")
        port = int(rest.split("@", 1)[0] or 0)
        flags = set(words[2].split(","))
        if "noaddr" in flags or "handshake" in flags:
            continue
        primary = "master" in flags
        slots = []
        for word in words[8:]:
            if word.startswith("["):
                continue  # a slot being migrated or imported
            first, _, last = word.partition("-")
            slots.append((int(first), int(last or first)))
        nodes.append(ClusterNode(
            node_id=words[0], host=host, port=port, role="primary" if primary else "replica",
            primary_id=None if primary or words[3] == "-" else words[3], slots=tuple(slots) if primary else (),
            health="fail" if "fail" in flags else "online"))
    return sorted(nodes, key=lambda n: (n.role != "primary", n.slots[:1], n.port))


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def expand_cluster(targets: list[Target]) -> tuple[list[Target], list[str], list[TopologyWatcher]]:
    """Each target that is a cluster node becomes every node of its cluster, primaries then replicas (the
    credentials carried over), each once; returns the targets and a note per cluster found (its nodes, and how far
    their clocks are from ours, which bounds how exactly their events interleave).

    A replica's MONITOR repeats its primary's writes as they arrive over the replication link (the link's address
    is the primary's, flag `M` in CLIENT LIST): the fold takes those lines as the replica catching up, not as a
    client's commands, and what other clients do there (READONLY reads) as replica reads."""
    import redis

    out: list[Target] = []
    notes: list[str] = []
    watchers: list[TopologyWatcher] = []
    seen: set[str] = set()
    for target in targets:
        if target.unix_path is not None or target.address in seen:
            out += [] if target.address in seen else [target]
            seen.add(target.address)
            continue
        client = target.connect()
        try:
            nodes = discover(client) if is_cluster(client) else []
        except (redis.RedisError, OSError):
            nodes = []  # the capture's own checks say what is wrong with this server
        finally:
            client.close()
        if not nodes:
            out.append(target)
            seen.add(target.address)
            continue
        fresh = [n for n in nodes if n.address not in seen and n.health != "fail"]
        nodes_targets = [node_target(target, node) for node in fresh]
        clocks = {node.address: measure_clock(t) for node, t in zip(fresh, nodes_targets, strict=True)}
        watchers.append(TopologyWatcher(target, nodes, clocks=clocks))
        out += nodes_targets
        seen.update(n.address for n in fresh)
        skew = max((abs(offset) + uncertainty for offset, uncertainty in clocks.values()), default=0.0)
        primaries = sum(n.role == "primary" for n in fresh)
        notes.append(f"{target.label} is a node of a Redis Cluster of {len(nodes)} nodes: watching its {primaries} "
                     f"primaries and {len(fresh) - primaries} replicas; their clocks are within "
                     f"{abs(skew) * 1000:.1f} ms of ours, so events on different nodes closer than that may be shown "
                     "out of order")
    return out, notes, watchers


def node_target(seed: Target, node: ClusterNode) -> Target:
    """The seed's URL (scheme, credentials, db) pointed at another node."""
    parts = urlsplit(seed.url)
    userinfo, at, _address = parts.netloc.rpartition("@")
    host = f"[{node.host}]" if ":" in node.host else node.host
    url = urlunsplit((parts.scheme, f"{userinfo}{at}{host}:{node.port}", parts.path, parts.query, ""))
    return replace(seed, url=url, host=node.host, port=node.port)


def clock_offset(target: Target) -> float:
    """The server's clock minus ours, in seconds (TIME, halfway through the round trip)."""
    return measure_clock(target)[0]


CLOCK_TRIES = 3
"""TIME round trips per node; the shortest is kept (the least room for the server's answer to sit anywhere)."""


def measure_clock(target: Target) -> tuple[float, float]:
    """(the server's clock minus ours, how far off that may be), in seconds: TIME, halfway through the shortest of
    a few round trips, whose half is the uncertainty. (0, 0) when TIME cannot be asked."""
    client = target.connect()
    best: tuple[float, float] | None = None
    try:
        for _ in range(CLOCK_TRIES):
            before = time.time()
            seconds, micros = client.time()
            after = time.time()
            sample = (seconds + micros / 1e6 - (before + after) / 2, (after - before) / 2)
            if best is None or sample[1] < best[1]:
                best = sample
    except Exception:
        return best or (0.0, 0.0)
    finally:
        client.close()
    return best or (0.0, 0.0)


def describe_changes(before: list[ClusterNode], after: list[ClusterNode]) -> list[str]:
    """What changed in a cluster's shape, one sentence each: failovers, slots that moved, nodes added or gone."""
    old = {n.node_id: n for n in before}
    new = {n.node_id: n for n in after}
    lines = [line for node_id, node in new.items() if (line := describe_node(old.get(node_id), node))]
    lines += [f"node {node.address} left the cluster" for node_id, node in old.items() if node_id not in new]
    return lines


def describe_node(was: ClusterNode | None, node: ClusterNode) -> str:
    """What changed for one node ("" when nothing said is worth saying)."""
    if was is None:
        return f"node {node.address} joined the cluster as a {node.role}"
    if was.role != node.role:
        return f"failover: {node.address} is now a {node.role}" + (
            f" serving slots {_ranges(node.slots)}" if node.slots else "")
    if was.slots != node.slots and node.role == "primary":
        return (f"slots moved: {node.address} now serves {_ranges(node.slots) or 'no slots'} "
                f"(before: {_ranges(was.slots) or 'none'})")
    return ""


def _ranges(slots: tuple[tuple[int, int], ...]) -> str:
    return ", ".join(f"{first}-{last}" if first != last else str(first) for first, last in slots)


def roles_at_start(nodes: list[ClusterNode], seed: Target, t: float,
                   clocks: dict[str, tuple[float, float]] | None = None) -> list[trace.Topology]:
    """Each node's role and clock as the capture begins: the fold reads a replica's MONITOR by the role, and puts
    each node's MONITOR times on our clock with its offset."""
    by_id = {n.node_id: n for n in nodes}
    clocks = clocks or {}
    return [trace.Topology(t=t, target=node_target(seed, n).label, role=n.role,
                           primary=by_id[n.primary_id].address if n.primary_id in by_id else "",
                           clock_offset=clocks.get(n.address, (0.0, 0.0))[0],
                           clock_uncertainty=clocks.get(n.address, (0.0, 0.0))[1])
            for n in nodes]


def joined_gap(target: Target, since: float) -> trace.Gap:
    """The hole a primary that joined between two looks leaves: its commands until it was watched."""
    return trace.Gap(t=since, until=time.time(), source="monitor", target=target.label,
                     reason=f"{target.label} joined the cluster as a primary between two looks at its shape: its "
                            "commands until it was watched were not captured")


class TopologyWatcher:
    """During a capture, re-reads the cluster's shape every `every` seconds: each change is said and recorded as a
    `Topology` event, a node that joined is handed to the capture to watch (a primary with a gap from the last look,
    since its commands meanwhile were not captured), and each primary's replication offsets are sampled.

    Its connections stay open between looks (one per node asked; `close()` ends them): a connection made every
    second would show in every CLIENT LIST and MONITOR of the capture, and cost each watcher a lookup."""

    def __init__(self, seed: Target, nodes: list[ClusterNode], *, every: float = 1.0,
                 clocks: dict[str, tuple[float, float]] | None = None) -> None:
        self.seed = seed
        self.clocks = dict(clocks or {})
        self.nodes = nodes
        self.every = every
        self.watched = {n.address for n in nodes if n.health != "fail"}
        self._next = time.monotonic() + every
        self._looked = time.time()
        self._clients: dict[str, Any] = {}  # node address -> an open client

    def start_events(self) -> list[trace.Topology]:
        return roles_at_start(self.nodes, self.seed, self._looked, self.clocks)

    def record(self, writer: trace.TraceWriter) -> list[tuple[Target, float | None]]:
        """`poll`, its events written to the trace with a warning for each change; returns the nodes to watch from
        now on (see `joined_gap` for a primary's)."""
        events, fresh = self.poll()
        writer.emit_many(events)
        for event in events:
            if isinstance(event, trace.Topology) and event.text:
                writer.note(f"cluster topology changed: {event.text}", level="warning")
        return fresh

    def poll(self) -> tuple[list[trace.Event], list[tuple[Target, float | None]]]:
        """(events to record: topology changes and replication offsets; nodes to watch from now on, each with the
        time since which a primary's commands were not captured)."""
        import redis

        if time.monotonic() < self._next:
            return [], []
        self._next = time.monotonic() + self.every
        looked, self._looked = self._looked, time.time()
        for node in self.nodes:  # any node that still answers will tell
            try:
                now = discover(self._client(node))
                break
            except (redis.RedisError, OSError, ProbeError):
                self._drop(node)
                continue
        else:
            return [], []
        fresh = [n for n in now if n.address not in self.watched and n.health != "fail"]
        self.watched |= {n.address for n in fresh}
        for node in fresh:
            self.clocks[node.address] = measure_clock(node_target(self.seed, node))
        events: list[trace.Event] = []
        if now != self.nodes:
            events += self._changes(self.nodes, now, looked)
        self.nodes = now
        events += self._offsets()
        return events, [(node_target(self.seed, n), looked if n.role == "primary" else None) for n in fresh]

    def _changes(self, before: list[ClusterNode], after: list[ClusterNode], looked: float) -> list[trace.Event]:
        t = time.time()
        old = {n.node_id: n for n in before}
        by_id = {n.node_id: n for n in after}
        events: list[trace.Event] = []
        for node in after:
            was = old.get(node.node_id)
            if was is None or was.role != node.role or was.primary_id != node.primary_id or was.slots != node.slots:
                primary = by_id[node.primary_id].address if node.primary_id in by_id else ""
                text = describe_node(was, node)
                offset, uncertainty = self.clocks.get(node.address, (0.0, 0.0))
                events.append(trace.Topology(t=t, target=node_target(self.seed, node).label, role=node.role,
                                             primary=primary, text=text, since=looked, clock_offset=offset,
                                             clock_uncertainty=uncertainty))
        events += [trace.Topology(t=t, target=node_target(self.seed, node).label, role="gone", since=looked,
                                  text=f"node {node.address} left the cluster")
                   for node_id, node in old.items() if node_id not in by_id]
        return events

    def _client(self, node: ClusterNode) -> Any:
        client = self._clients.get(node.address)
        if client is None:
            client = self._clients[node.address] = node_target(self.seed, node).connect(timeout=1.0)
        return client

    def _drop(self, node: ClusterNode) -> None:
        """A node that did not answer: its connection goes (the next look connects anew)."""
        client = self._clients.pop(node.address, None)
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    def close(self) -> None:
        """End the connections kept between looks."""
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                client.close()
        self._clients.clear()

    def _offsets(self) -> list[trace.Event]:
        """Each primary's replication offset and its replicas' (one INFO replication per primary)."""
        import redis

        events: list[trace.Event] = []
        for node in self.nodes:
            if node.role != "primary" or node.health == "fail":
                continue
            target = node_target(self.seed, node)
            try:
                info = self._client(node).info("replication")
            except (redis.RedisError, OSError, ProbeError):
                self._drop(node)
                continue
            replicas = {f"{v.get('ip')}:{v.get('port')}": int(v.get("offset", 0) or 0)
                        for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)}
            events.append(trace.Replication(t=time.time(), target=target.label,
                                            offset=int(info.get("master_repl_offset", 0) or 0), replicas=replicas))
        return events
