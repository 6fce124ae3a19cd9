"""A cluster-aware actor's connections: one per primary, each command sent where its keys' slot lives.

It plays the part of a cluster client (redis-py's RedisCluster, ioredis Cluster): it learns the slot map from the
node it was given, keeps one connection per primary, sends a keyed command to the node that owns the slot, and
follows MOVED (the map changed: learn it again) and ASK (a slot being migrated: ASKING, then the command once).
Each command's node is known, so its op is recorded with that node's connection id: client ids are per node.
A command without keys (SCAN, KEYS, INFO, FLUSHDB) goes to the node the actor was given, as a cluster client's
default node; a MULTI pins the connection it went to until EXEC or DISCARD.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from redis.crc import key_slot

from redisprobe.semantics.command_table import keys_of
from redisprobe.targets.url import Target

SLOTS = 16384
MAX_REDIRECTS = 5

SPLIT_BY_SLOT = frozenset({b"DEL", b"UNLINK", b"EXISTS", b"TOUCH"})
"""Multi-key commands a cluster client sends as one command per slot, adding up the replies (as redis-py does):
a batch and its `:last` key live in different slots."""


@dataclass
class NodeConnection:
    """One primary and this actor's connection to it."""

    target: Target
    client: redis.Redis
    client_id: int

    @property
    def label(self) -> str:
        return self.target.label


class ClusterRouter:
    """The slot map and one connection per primary; `execute` sends a command where it belongs."""

    def __init__(self, seed: NodeConnection, connect: Callable[[Target], NodeConnection]) -> None:
        self.default = seed
        self._connect = connect
        self.nodes: dict[str, NodeConnection] = {seed.target.address: seed}
        self._slots: list[str] = [seed.target.address] * SLOTS
        self._pinned: NodeConnection | None = None  # inside MULTI: every command goes where MULTI went
        self.redirects = 0
        myid = seed.client.execute_command("CLUSTER", "MYID")
        self._seed_id = myid.decode() if isinstance(myid, bytes) else str(myid)
        self.refresh()

    def refresh(self) -> None:
        """Learn the slot map again (from the default node) and connect to any primary not yet known."""
        from redisprobe.targets.topology import discover, node_target

        primaries: list[NodeConnection] = []
        for node in discover(self.default.client):
            if node.role != "primary":
                continue
            target = node_target(self.default.target, node)
            if node.node_id == self._seed_id:  # the node we were given, perhaps by another name (localhost)
                self.nodes[target.address] = self.default
            if target.address not in self.nodes:
                self.nodes[target.address] = self._connect(target)
            for first, last in node.slots:
                self._slots[first:last + 1] = [target.address] * (last - first + 1)
            primaries.append(self.nodes[target.address])
        self._primaries = primaries

    def primaries(self) -> list[NodeConnection]:
        """Every primary of the cluster (where a cluster client scans or flushes), the default node first if it is
        one (the node we were given may be a replica)."""
        return sorted(self._primaries, key=lambda node: node is not self.default)

    def node_for(self, args: list[bytes]) -> NodeConnection:
        if self._pinned is not None:
            return self._pinned
        keys = keys_of(args)
        if not keys:
            return self.default
        return self.nodes[self._slots[key_slot(keys[0])]]

    def split(self, args: list[bytes]) -> list[list[bytes]] | None:
        """DEL/UNLINK/EXISTS/TOUCH over keys of several slots: one command per slot (keys in their order)."""
        if not args or args[0].upper() not in SPLIT_BY_SLOT or len(args) < 3:
            return None
        by_slot: dict[int, list[bytes]] = {}
        for key in args[1:]:
            by_slot.setdefault(key_slot(key), []).append(key)
        if len(by_slot) < 2:
            return None
        return [[args[0], *keys] for keys in by_slot.values()]

    def execute(self, args: list[bytes], node: NodeConnection | None = None) -> tuple[Any, NodeConnection]:
        """Send `args` to its node (or `node`), following redirects; returns the reply and the node that gave it.
        A refused command raises the server's error, with the node that refused it in `self.last`."""
        node = node or self.node_for(args)
        name = args[0].upper() if args else b""
        for _ in range(MAX_REDIRECTS):
            self.last = node
            try:
                reply = node.client.execute_command(*args)
            except redis.exceptions.MovedError as exc:
                self.redirects += 1
                self.refresh()
                node = self._node_at(str(exc.args[0]))
                continue
            except redis.exceptions.AskError as exc:
                self.redirects += 1
                node = self._node_at(str(exc.args[0]))
                self.last = node
                node.client.execute_command("ASKING")
                return node.client.execute_command(*args), node
            if name == b"MULTI":
                self._pinned = node
            elif name in (b"EXEC", b"DISCARD"):
                self._pinned = None
            return reply, node
        raise redis.ResponseError(f"still redirected after {MAX_REDIRECTS} tries (the cluster is resharding)")

    def _node_at(self, redirect: str) -> NodeConnection:
        """The node a MOVED or ASK reply names (`<slot> <host>:<port>`), connected to if new."""
        from redisprobe.targets.topology import ClusterNode, node_target

        address = redirect.split()[-1]
        host, _, port = address.rpartition(":")
        target = node_target(self.default.target, ClusterNode(node_id="", host=host, port=int(port),
                                                              role="primary"))
        if target.address not in self.nodes:
            self.nodes[target.address] = self._connect(target)
        return self.nodes[target.address]
