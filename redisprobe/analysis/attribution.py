"""Who sent a command: a MONITOR peer at a moment, turned into an `Actor` (pid, label, client id, address).

MONITOR names a client only by `ip:port`, `lua` or `unix:<socket>`. CLIENT LIST samples (`ClientSeen`) and our
actors' own start records (`ActorStarted`) give each address a client id, and psutil a pid. Ports are reused
quickly, so an address maps to a *sequence* of client ids over time; the one in effect at `t` is the last one
that had connected by then (`age` in CLIENT LIST says when).

The fold stores compact `Who` tokens and resolves them at the end, when every sample is known: a command sent
before the first CLIENT LIST poll still gets its pid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from redisprobe import trace
from redisprobe.analysis.connection_roles import OBSERVER_PREFIX
from redisprobe.findings import Actor
from redisprobe.producers.processes.instances import program_of

# (server, peer, server time, hint): `peer` is the MONITOR peer (`ip:port`, `unix:...`) or `id:<client id>` for
# an actor's own op; `hint` is a hash of the command's args for unix-socket peers (matched to actors' ops), else 0.
Who = tuple[str, str, float, int]

UNIX_ALIVE_SLACK = 5.0
"""Seconds after its last CLIENT LIST sample a unix-socket client still counts as connected (poll interval)."""

OP_MATCH_WINDOW = 2.0
"""Seconds between an actor's recorded op and the MONITOR line it matches (unix-socket attribution)."""

_NAME_PREFIX = "redisprobe:"


@dataclass
class ClientInfo:
    """Everything learned about one connection (client ids are unique for a server's lifetime)."""

    client_id: int
    addr: str = ""
    pid: int | None = None
    name: str = ""
    lib: str = ""
    label: str = ""
    process: str = ""
    role: str = ""
    db: int = 0
    flags: set[str] = field(default_factory=set)
    connected_at: float | None = None
    first_seen: float = 0.0
    last_seen: float = 0.0
    multi: bool = False  # CLIENT LIST showed flags=x (inside MULTI) at the last sample
    samples: int = 0


SHORT_LIVED: Final = "short-lived connection: in no CLIENT LIST sample"

CHILD_SLACK: Final = 0.25
"""Seconds around a listed process's forked child's sightings within which a connection no sample or watcher caught
counts as opened while that child ran (a starved watcher sees a work horse late)."""


class Attributor:
    """Joins MONITOR peers to connections and processes; fed in trace order, queried at the end."""

    def __init__(self, watched: dict[int, str] | None = None) -> None:
        self.watched = dict(watched or {})
        self.children: dict[int, str] = {}  # pid -> label: processes whose listed ancestor the pid map found
        self.clients: dict[tuple[str, int], ClientInfo] = {}
        self.actor_pids: dict[int, trace.ActorStarted] = {}
        self.actor_server: dict[int, str] = {}  # pid -> server key of its target
        self._by_addr: dict[tuple[str, str], list[tuple[float, int]]] = {}
        self._unix_peers: dict[str, list[int]] = {}  # server -> client ids on a unix socket
        self._unix_ops: dict[tuple[str, int], list[tuple[float, int]]] = {}  # (server, args hash) -> (t, cid)
        self._pids_by_client: dict[tuple[str, int], set[int]] = {}
        self._cache: dict[tuple[str, str, int], Actor] = {}
        self.pid_roles: dict[int, str] = {}  # from actors' own records (ops, ActorStarted)
        self._programs: set[str] | None = None  # the watched labels without their `#instance`
        self._held: dict[tuple[str, int], set[int]] = {}  # connection -> every pid the kernel says holds it
        self.holders: dict[int, str] = {}  # pid -> label of the connection it holds but did not open (a fork)
        self._sampled: set[str] = set()  # servers whose CLIENT LIST was sampled
        self._peers: dict[tuple[str, str], list[trace.PeerSeen]] = {}  # (server, addr) -> what the kernel showed
        self._child_spans: dict[str, list[tuple[float, float, int]]] | None = None  # server -> (first, last, pid)
        # of each listed process's forked child's sightings there
        self._local_hosts: set[str] = set()  # client IPs of connections whose process the pid map named

    # -- feeding -------------------------------------------------------------------------------------------

    def _client(self, server: str, client_id: int, t: float) -> ClientInfo:
        info = self.clients.get((server, client_id))
        if info is None:
            info = ClientInfo(client_id=client_id, first_seen=t)
            self.clients[(server, client_id)] = info
        return info

    def _place(self, server: str, addr: str, client_id: int, since: float) -> None:
        """Record that `addr` belongs to `client_id` from `since` on (one entry per new client on an addr)."""
        if not addr:
            return
        history = self._by_addr.setdefault((server, addr), [])
        for index, (_, known) in enumerate(history):
            if known == client_id:
                if since < history[index][0]:
                    history[index] = (since, client_id)
                    history.sort()
                return
        history.append((since, client_id))
        history.sort()
        if _is_unix(addr):
            self._unix_peers.setdefault(server, []).append(client_id)

    def _add_pid(self, server: str, client_id: int, pid: int | None) -> None:
        if pid:
            self._pids_by_client.setdefault((server, client_id), set()).add(pid)

    def client_seen(self, event: trace.ClientSeen, server: str) -> None:
        self._sampled.add(server)
        info = self._client(server, event.client_id, event.t)
        info.addr = event.addr or info.addr
        info.db = event.db
        info.name = event.name or info.name
        info.lib = event.lib or info.lib
        info.label = event.label or info.label
        info.process = event.process or info.process
        if event.pid:
            info.pid = event.pid
            self._add_pid(server, event.client_id, event.pid)
            if event.shared_with:  # one socket, inherited across a fork: every holder may write on it
                self._held.setdefault((server, event.client_id), set()).update((event.pid, *event.shared_with))
                for holder in event.shared_with:
                    self.holders.setdefault(holder, event.label)
            if event.pid not in self.watched and event.label and self._is_watched_label(event.label):
                # the pid map found a listed ancestor (a forked worker), or the process joined a selector's label
                # during the capture (a PM2 restart, a new cluster instance `app#2`)
                self.children[event.pid] = event.label
        info.flags.update(event.flags)
        info.multi = "x" in event.flags
        info.last_seen = max(info.last_seen, event.t)
        info.samples += 1
        connected = event.t - event.age - 1.0  # age is whole seconds, rounded down
        if info.connected_at is None or connected < info.connected_at:
            info.connected_at = connected
        self._cache.clear()
        self._child_spans = None
        self._place(server, event.addr, event.client_id, connected)

    def peer_seen(self, event: trace.PeerSeen, server: str) -> None:
        """A connection the kernel showed between CLIENT LIST samples: its process, for MONITOR lines from it."""
        self._peers.setdefault((server, event.addr), []).append(event)
        if event.pid not in self.watched and event.label and self._is_watched_label(event.label):
            self.children[event.pid] = event.label
        self._cache.clear()
        self._child_spans = None

    def _peer_actor(self, server: str, peer: str, t: float, client: ClientInfo | None = None) -> Actor | None:
        """The process the kernel showed behind a peer no CLIENT LIST sample caught (the sighting nearest `t`), or
        behind `client` while it was connected (a port is reused by later connections)."""
        seen = self._peers.get((server, peer))
        if seen and client is not None:
            start = client.connected_at if client.connected_at is not None else client.first_seen - 1.0
            seen = [e for e in seen if start <= e.t <= client.last_seen + 1.0]
        if not seen:
            return None
        event = min(seen, key=lambda e: abs(e.t - t))
        label = self.watched.get(event.pid) or self.children.get(event.pid) or event.label or event.process
        return Actor(pid=event.pid, label=label, addr=peer)

    def _forked_tree(self, server: str, peer: str, t: float) -> tuple[int, str] | None:
        """The listed process (pid, and how it is known) a connection nothing named most likely belongs to: rq's work
        horse opens the job's own connection for a few ms, which a watcher starved of CPU misses. Only for a client
        on this host (an address of a process the pid map named) when the forked children seen on this server
        all belong to one listed pid: one of them was running then, or failing that, it forks such children."""
        spans = self._spans_of_children().get(server, ())
        if not spans or _host(peer) not in self._local_hosts:
            return None
        near = {self.children[pid] for first, last, pid in spans if first - CHILD_SLACK <= t <= last + CHILD_SLACK}
        labels = near or {self.children[pid] for _first, _last, pid in spans}
        if len(labels) != 1:
            return None
        [label] = labels
        roots = [pid for pid, listed in self.watched.items() if listed == label]
        if len(roots) != 1:
            return None
        how = "opened while one ran" if near else "none seen then, but it forks short-lived children"
        return roots[0], f"{label}: a forked child's connection, its pid unseen ({how})"

    def _spans_of_children(self) -> dict[str, list[tuple[float, float, int]]]:
        if self._child_spans is not None:
            return self._child_spans
        seen: dict[tuple[str, int], list[float]] = {}
        local = self._local_hosts
        local.clear()
        for (server, addr), events in self._peers.items():
            local.add(_host(addr))
            for event in events:
                if event.pid in self.children:
                    seen.setdefault((server, event.pid), []).append(event.t)
        for (server, _id), info in self.clients.items():
            if info.pid is not None and info.addr:
                local.add(_host(info.addr))
            if info.pid is not None and info.pid in self.children and info.samples:
                seen.setdefault((server, info.pid), []).extend((info.first_seen, info.last_seen))
        spans: dict[str, list[tuple[float, float, int]]] = {}
        for (server, pid), times in seen.items():
            spans.setdefault(server, []).append((min(times), max(times), pid))
        self._child_spans = spans
        return spans

    def _is_watched_label(self, label: str) -> bool:
        if label in self.watched.values():
            return True
        if self._programs is None:
            self._programs = {program_of(known) for known in self.watched.values()}
        return program_of(label) in self._programs

    def actor_started(self, event: trace.ActorStarted, server: str) -> None:
        self.actor_pids[event.pid] = event
        self.actor_server[event.pid] = server
        if not event.client_id:
            return
        info = self._client(server, event.client_id, event.t)
        info.pid = event.pid
        info.role = event.role
        info.name = event.client_name or info.name
        info.addr = event.addr or info.addr
        info.db = event.db
        if info.connected_at is None or event.t - 1.0 < info.connected_at:
            info.connected_at = event.t - 1.0  # it connected just before saying so
        info.last_seen = max(info.last_seen, event.t)
        self._add_pid(server, event.client_id, event.pid)
        self._cache.clear()
        self._place(server, event.addr, event.client_id, info.connected_at)

    def op_seen(self, event: trace.Op, server: str, unix_hint: int = 0) -> None:
        """An actor's own op: ties its client id to its pid (and, on a unix socket, its args to the client)."""
        if event.role and event.pid not in self.pid_roles:
            self.pid_roles[event.pid] = event.role
        key = (server, event.client_id)
        info = self.clients.get(key)
        if info is None or info.pid != event.pid:
            info = self._client(server, event.client_id, event.t)
            if info.pid is not None and info.pid != event.pid:
                self._cache.clear()
            info.pid = info.pid or event.pid
            info.role = info.role or event.role
            self._add_pid(server, event.client_id, event.pid)
        pids = self._pids_by_client.get(key)
        if pids is None or event.pid not in pids:
            self._add_pid(server, event.client_id, event.pid)
        info.last_seen = event.t if event.t > info.last_seen else info.last_seen
        if unix_hint and _is_unix(info.addr):
            bucket = self._unix_ops.setdefault((server, unix_hint), [])
            if len(bucket) < 64:
                bucket.append((event.t, event.client_id))

    # -- querying ------------------------------------------------------------------------------------------

    def server_of(self, pid: int, client_id: int) -> str:
        """The server of a process that never announced itself (no ActorStarted): from CLIENT LIST samples."""
        same_id = [(server, info) for (server, known), info in self.clients.items() if known == client_id]
        for server, info in same_id:
            if info.pid == pid:
                self.actor_server[pid] = server
                return server
        if len(same_id) == 1:  # a fork on its parent's connection: same client id, another pid
            return same_id[0][0]
        return ""

    def client_at(self, server: str, peer: str, t: float) -> int | None:
        """The client id behind `peer` at time `t` (the last one connected by then), or None."""
        history = self._by_addr.get((server, peer))
        if not history:
            return None
        chosen = history[0][1]
        for since, client_id in history:
            if since <= t:
                chosen = client_id
            else:
                break
        return chosen

    def resolve(self, who: Who | None) -> Actor | None:
        """The Actor behind a Who token; None for the server itself (no token)."""
        if who is None:
            return None
        server, peer, t, hint = who
        if peer.startswith("id:"):
            return self.actor_for_client(server, int(peer[3:]), peer)
        if peer.startswith("pid:"):
            pid = int(peer[4:])
            started = self.actor_pids.get(pid)
            label = self.watched.get(pid) or (started.role if started else "")
            return Actor(pid=pid, label=label, client_id=started.client_id if started else None,
                         addr=started.addr if started else "")
        if peer.startswith("unix:"):
            return self._resolve_unix(server, peer, t, hint)
        if peer == "lua":
            return Actor(label="lua script (its caller was not seen)", addr="lua")
        client_id = self.client_at(server, peer, t)
        if client_id is None:
            # CLIENT LIST was sampled, yet never showed this peer: it connected and left between two samples (the
            # kernel's socket table may still have shown it)
            found = self._peer_actor(server, peer, t)
            if found is not None:
                return found
            if server in self._sampled:
                tree = self._forked_tree(server, peer, t)
                if tree is not None:
                    return Actor(pid=tree[0], label=tree[1], addr=peer)
                return Actor(addr=peer, label=SHORT_LIVED)
            return Actor(addr=peer)
        actor = self.actor_for_client(server, client_id, peer)
        if actor.pid is None:
            # a sample caught the connection after its process had gone (a fork's job): the kernel's table may have
            # named it while it was open
            found = self._peer_actor(server, peer, t, self.clients.get((server, client_id)))
            if found is not None:
                return Actor(pid=found.pid, label=found.label, client_id=client_id, addr=peer)
            tree = self._forked_tree(server, peer, t)
            if tree is not None:
                return Actor(pid=tree[0], label=tree[1], client_id=client_id, addr=peer)
        elif not actor.label and actor.pid not in self.watched and actor.pid not in self.children:
            # its pid, but nothing else: the process was gone before the pid map could read its parent
            tree = self._forked_tree(server, peer, t)
            if tree is not None:
                self.children[actor.pid] = self.watched[tree[0]]
                self._child_spans = None
                return Actor(pid=actor.pid, label=f"{self.watched[tree[0]]}: a forked child (its parent unseen: gone "
                                                  "before the pid map read it)", client_id=client_id, addr=peer)
        return actor

    def actor_for_client(self, server: str, client_id: int, addr: str = "") -> Actor:
        key = (server, addr, client_id)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        info = self.clients.get((server, client_id))
        if info is None:
            actor = Actor(client_id=client_id, addr=addr if not addr.startswith("id:") else "")
        else:
            actor = Actor(pid=info.pid, label=self.label_of(info), client_id=client_id,
                          addr=info.addr or (addr if not addr.startswith("id:") else ""))
        self._cache[key] = actor
        return actor

    def label_of(self, info: ClientInfo) -> str:
        """watched label > a listed process's child's label > actor role > observer label > redisprobe client name >
        process name > name/lib."""
        if info.pid is not None and info.pid in self.watched:
            return self.watched[info.pid]
        if info.pid is not None and info.pid in self.children:
            return self.children[info.pid]  # a listed process's child (the kernel's table may have named it when
            # the CLIENT LIST sample came too late to read its parent)
        if info.pid is not None and info.pid in self.actor_pids:
            return self.actor_pids[info.pid].role
        if info.role:
            return info.role
        if info.label:
            return info.label
        if info.name.startswith(_NAME_PREFIX):
            parts = info.name.split(":")
            if len(parts) >= 2 and parts[1]:
                return parts[1]
        if info.process:
            return info.process
        # a client from no local process: its name and library are all there is to go by
        return " ".join(part for part in (f"name={info.name}" if info.name else "",
                                          f"lib={info.lib}" if info.lib else "") if part)

    def _resolve_unix(self, server: str, peer: str, t: float, hint: int) -> Actor:
        if hint:
            bucket = self._unix_ops.get((server, hint), ())
            best = min(bucket, key=lambda item: abs(item[0] - t), default=None)
            if best is not None and abs(best[0] - t) <= OP_MATCH_WINDOW:
                return self.actor_for_client(server, best[1], peer)
        candidates = []
        for client_id in self._unix_peers.get(server, ()):
            info = self.clients[(server, client_id)]
            if info.name.startswith(OBSERVER_PREFIX):
                continue  # our own observers (a capture over the unix socket) never send what MONITOR shows
            start = info.connected_at if info.connected_at is not None else info.first_seen
            if start <= t <= info.last_seen + UNIX_ALIVE_SLACK:
                candidates.append(info)
        if len(candidates) == 1:
            return self.actor_for_client(server, candidates[0].client_id, peer)
        if not candidates:
            return Actor(addr=peer, label="unix-socket client (not in any CLIENT LIST sample)")
        labels = [self.label_of(c) or f"client {c.client_id}" for c in candidates]
        # two clients of one program (`python uclient.py`) are told apart by their pids
        names = ", ".join(sorted({f"{label}:{c.pid}" if labels.count(label) > 1 and c.pid is not None else label
                                  for label, c in zip(labels, candidates, strict=True)}))
        return Actor(addr=peer, label=f"ambiguous: {len(candidates)} unix-socket clients ({names})")

    # -- questions the rules ask ---------------------------------------------------------------------------

    def is_listed(self, actor: Actor | None) -> bool:
        """A process the user named (--pids), or a child of one (it carries the label: a forked worker belongs to
        its actor); else one of our actors; with neither, any local pid counts.

        When pids are listed, an actor outside the list is unexpected too (a stale worker nobody listed)."""
        if actor is None or actor.pid is None:
            return False
        if self.watched:
            return actor.pid in self.watched or actor.pid in self.children
        if self.actor_pids:
            return actor.pid in self.actor_pids
        return True

    @property
    def has_expectations(self) -> bool:
        """Whether the trace says which processes are expected (watched pids or our own actors)."""
        return bool(self.watched or self.actor_pids)

    def process_of(self, pid: int | None) -> str:
        """The program (or actor role) of a pid, to spot several instances of one program: `batch-processor#1`
        and `batch-processor#0` are both `batch-processor`."""
        if pid is None:
            return ""
        for info in self.clients.values():
            if info.pid == pid and info.process:
                return program_of(info.process)
        started = self.actor_pids.get(pid)
        return started.role if started else ""

    def shared_clients(self) -> list[tuple[str, int, set[int]]]:
        """Connections used by more than one pid (a forked child writing on its parent's socket), and sockets
        the kernel shows held by several processes (inherited across a fork; which holder writes is unseen)."""
        shared = {key: set(pids) for key, pids in self._pids_by_client.items() if len(pids) > 1}
        for key, held in self._held.items():
            pids = held | self._pids_by_client.get(key, set())
            if len(pids) > 1:
                shared[key] = pids
        return [(server, client_id, pids) for (server, client_id), pids in shared.items()]

    def client_info(self, server: str, client_id: int | None) -> ClientInfo | None:
        if client_id is None:
            return None
        return self.clients.get((server, client_id))


def _host(addr: str) -> str:
    """`127.0.0.1:5000` -> `127.0.0.1` (`[::1]:5000` -> `[::1]`)."""
    return addr.rpartition(":")[0]


def _is_unix(addr: str) -> bool:
    return addr.startswith("/") or addr.startswith("unix:")


def describe(actor: Actor | None) -> str:
    """`pid 4242 (api) client 7` / `unlisted client 127.0.0.1:5000 (name=x)` / `the server`."""
    if actor is None:
        return "the server"
    parts = []
    if actor.pid is not None:
        parts.append(f"pid {actor.pid}" + (f" ({actor.label})" if actor.label else ""))
    else:
        where = actor.addr or "?"
        parts.append(f"client {where}" + (f" ({actor.label})" if actor.label else "") + " with no known pid")
    if actor.client_id is not None:
        parts.append(f"client id {actor.client_id}")
    return " ".join(parts)
