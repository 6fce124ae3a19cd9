"""Where a command runs: the user's servers (`--url`, per-role URLs, `REDIS_URL`) or a disposable sandbox."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from redisprobe import trace
from redisprobe.targets.sandbox import Sandbox, sandbox
from redisprobe.targets.url import Target, check_target, given_url, parse_target, redact

ROLES = ("api", "processor")


@dataclass
class Targets:
    """The server each role talks to, and whether we own it (a sandbox) or it is the user's."""

    by_role: dict[str, Target]
    sandbox: Sandbox | None
    cluster: bool = False  # a Redis Cluster (`--topology cluster`): actors are cluster clients, nodes are `nodeN`

    @property
    def owned(self) -> bool:
        return self.sandbox is not None

    def labels(self) -> dict[str, str]:
        return {role: target.label for role, target in self.by_role.items()}


@contextlib.contextmanager
def open_targets(url: str | None, api_url: str | None = None, processor_url: str | None = None,
                 topology: str = "single", roles: tuple[str, ...] = ROLES,
                 server_args: list[str] | None = None, replicas: int = 0) -> Iterator[Targets]:
    """Resolve the targets, check each answers (one clear error if not), and clean up a sandbox after.
    `replicas`: a sandbox cluster's replicas per primary (roles `replica0`..)."""
    url, api_url = given_url(url), given_url(api_url, "--api-url")
    processor_url = given_url(processor_url, "--processor-url")
    url = url or os.environ.get("REDIS_URL") or None
    if url or api_url or processor_url:
        chosen = {"api": api_url or url, "processor": processor_url or url}
        missing = [role for role in roles if not chosen.get(role)]
        if missing:
            from redisprobe.errors import ProbeError

            raise ProbeError(f"no URL for the {' and '.join(missing)} role: give --url or --{missing[0]}-url")
        by_role = {role: parse_target(str(chosen[role])) for role in roles}
        _check_all(by_role)
        if topology == "cluster":
            by_role.update(cluster_nodes(by_role))
        yield Targets(by_role=by_role, sandbox=None, cluster=topology == "cluster")
        return
    with sandbox(topology, extra=server_args, replicas=replicas) as box:
        nodes = tuple(role for role in box.role_urls if role.startswith(("node", "replica")) and role not in roles)
        yield Targets(by_role={role: box.target(role) for role in (*roles, *nodes)}, sandbox=box,
                      cluster=topology == "cluster")


def cluster_nodes(by_role: dict[str, Target]) -> dict[str, Target]:
    """`--topology cluster` with your URLs: each must be a node of one Redis Cluster; its primaries become roles
    `node0`.. (the capture watches them all, the actors reach them through the slot map). One clear line if not."""
    import redis

    from redisprobe.errors import ProbeError
    from redisprobe.targets.topology import discover, is_cluster, node_target

    found: dict[str, Target] = {}
    for role, target in by_role.items():
        if target.unix_path is not None:
            raise ProbeError(f"--topology cluster: the {role} URL {target.label} is a unix socket; give a cluster "
                             "node's host:port")
        client = target.connect()
        try:
            if not is_cluster(client):
                raise ProbeError(f"--topology cluster: {target.label} is not a Redis Cluster node (INFO server says "
                                 "redis_mode is not cluster); drop --topology cluster to test it as one server")
            if target.db != 0:
                raise ProbeError(f"--topology cluster: {target.label} asks for db {target.db}; a cluster has db 0 "
                                 "only")
            nodes = [node for node in discover(client) if node.role == "primary"]
        except (redis.RedisError, OSError) as exc:
            raise ProbeError(f"--topology cluster: could not read the cluster's nodes from {target.label}: "
                             f"{type(exc).__name__}: {exc}") from None
        finally:
            client.close()
        if found and {t.address for t in found.values()} != {node_target(target, n).address for n in nodes}:
            raise ProbeError(f"--topology cluster: {target.label} is a node of another cluster than the first URL's")
        found = {f"node{index}": node_target(target, node) for index, node in enumerate(nodes)}
    return found


def _check_all(by_role: dict[str, Target]) -> None:
    seen: set[str] = set()
    for target in by_role.values():
        if target.url in seen:
            continue
        seen.add(target.url)
        check_user_target(target)


def check_user_target(target: Target) -> None:
    """Check that the user's server answers, and restore any CONFIG an earlier, killed run left changed on it
    (saying so on stderr)."""
    import redis

    from redisprobe.render.console import stderr_console
    from redisprobe.render.escape import shown
    from redisprobe.targets.configledger import undo_left_changes

    check_target(target)
    client = target.connect()
    try:
        said = undo_left_changes(target, client)
    except (redis.RedisError, OSError):
        said = []
    finally:
        client.close()
    for line in said:
        stderr_console().print(f"redisprobe: {shown(line)}", markup=False)


def make_header(command: str, targets: dict[str, Target], options: dict[str, object] | None = None, *,
                servers: dict[str, trace.ServerFingerprint] | None = None) -> trace.Header:
    """The trace header: the command line with any URL password hidden, and each target's fingerprint (taken now
    unless `servers` already has them)."""
    return trace.Header(argv=[redact(arg) for arg in sys.argv], command=command, started=time.time(),
                        targets={label: target.label for label, target in targets.items()},
                        servers=fingerprints(targets) if servers is None else servers, options=dict(options or {}))


def fingerprints(targets: dict[str, Target]) -> dict[str, trace.ServerFingerprint]:
    """Who answers at each target now (run_id, version, port, role); a target that does not answer is left out."""
    import redis

    from redisprobe.producers.actors.child import server_fingerprint

    found: dict[str, trace.ServerFingerprint] = {}
    for label, target in targets.items():
        client = target.connect()
        try:
            found[label] = server_fingerprint(client, target.host or target.address, target.port or 0)
        except (redis.RedisError, OSError):
            pass
        finally:
            client.close()
    return found


def open_writer(out: Path | None, header: trace.Header) -> trace.TraceWriter:
    return trace.TraceWriter(out, header)
