"""Every root cause redisprobe knows, registered in the order the doctor runs them (see `registry`).

Each doctor rule is a pure function of the folded trace (`RuleInput -> list[Finding]`) in a module of its family:
`removal` (something removed the key), `ttl` (the TTL did not do what its owner meant), `names` (keys named
differently), `visibility` (another db, another server, a transaction, a connection). CONTRIBUTING.md shows how
to add one.
"""

from __future__ import annotations

from redisprobe.analysis.rules.cluster import cluster_unaware_client, cross_slot, scan_one_node
from redisprobe.analysis.rules.names import key_prefix_mismatch
from redisprobe.analysis.rules.refused import write_rejected
from redisprobe.analysis.rules.registry import FACT, REGISTRY, TTL, VISIBILITY, Injection, RuleSpec, register
from redisprobe.analysis.rules.removal import consumed_by_other, deleted_by_client, evicted, flushed, renamed_away
from redisprobe.analysis.rules.replicas import failover_lost_write, replica_read
from redisprobe.analysis.rules.ttl import (
    expire_in_past,
    recreated_without_ttl,
    ttl_cleared_by_set,
    ttl_refresh_missed,
    ttl_shortened,
    ttl_unit_mismatch,
)
from redisprobe.analysis.rules.visibility import (
    different_db,
    different_server,
    server_restarted,
    shared_connection,
    stale_client_cache,
    transaction_not_executed,
)


def _api_bug(rule_id: str, how: str, **processor: object) -> Injection:
    """A defect the batch-api program itself plays (its `bug` parameter)."""
    return Injection(how=how, api={"bug": rule_id}, processor=dict(processor))


register("deleted-by-client", TTL,
         "a client removed the key long before its TTL while another process was still writing it",
         deleted_by_client,
         inject=_api_bug("deleted-by-client", "the processor treats a batch with no last-message time as ready "
                                              "at once", policy="missing-is-ready"))
register("consumed-by-other", VISIBILITY, "an unlisted client or a second instance of a consumer took the key first",
         consumed_by_other,
         inject=Injection(how="a second processor instance takes batches too", stale_processor=True))
register("ttl-refresh-missed", TTL,
         "an EXPIRE meant to extend the key hit a missing or misnamed key, came too early or too late, or its "
         "XX/GT/LT condition failed", ttl_refresh_missed,
         inject=_api_bug("ttl-refresh-missed", "the api refreshes the TTL of a near-miss key name, so the batch "
                                               "expires on its first TTL"))
register("ttl-cleared-by-set", TTL, "a SET without EX/PX/KEEPTTL (or GETSET, MSET) dropped the key's TTL",
         ttl_cleared_by_set,
         inject=_api_bug("ttl-cleared-by-set", "the api updates the last-message time with a plain SET, dropping "
                                               "its TTL"))
register("recreated-without-ttl", TTL, "the key expired and a write recreated it with no TTL: it never expires again",
         recreated_without_ttl,
         inject=_api_bug("recreated-without-ttl", "the api sets the TTL on the first message only; an expired batch "
                                                  "is recreated without one, and the processor leaves cleanup to "
                                                  "the TTL", policy="read-only"))
register("ttl-shortened", TTL, "another process set a much shorter TTL than the key's owner", ttl_shortened,
         inject=Injection(how="a janitor process sets a much shorter TTL on the batches once the api is done; they "
                              "expire on it (the processor leaves cleanup to the TTL)", min_ttl=3.0,
                          processor={"policy": "read-only"}, helper_after_api=True,
                          helper={"role": "janitor", "program": "janitor", "action": "shorten", "ttl": 1}))
register("ttl-unit-mismatch", TTL,
         "seconds written as milliseconds (PEXPIRE/PX < 1000) or the reverse (EXPIRE/EX > 10^6)", ttl_unit_mismatch,
         inject=_api_bug("ttl-unit-mismatch", "the api passes seconds to PEXPIRE (milliseconds)"))
register("expire-in-past", TTL, "a TTL <= 0 or an EXPIREAT in the past deleted the key at once", expire_in_past,
         inject=_api_bug("expire-in-past", "the api's EXPIREAT uses a skewed clock, an hour in the past"))
register("evicted", TTL, "the server evicted the key under maxmemory", evicted,
         inject=Injection(how="a small maxmemory with volatile-ttl evicts the short-TTL batches", sandbox_only=True,
                          server_args=("--maxmemory", "3mb", "--maxmemory-policy", "volatile-ttl"),
                          helper={"role": "filler", "program": "filler", "size": 65536, "count": 96}))
register("flushed", TTL, "FLUSHDB/FLUSHALL by a process removed keys others were using", flushed,
         inject=Injection(how="a fixture process runs FLUSHDB mid-run", sandbox_only=True,
                          helper={"role": "janitor", "program": "janitor", "action": "flush", "ttl": 1}))
register("renamed-away", TTL, "RENAME/MOVE took the key from under a process still using the old name", renamed_away,
         inject=Injection(how="a janitor process RENAMEs the batches away",
                          helper={"role": "janitor", "program": "janitor", "action": "rename", "ttl": 1}))
register("different-db", VISIBILITY, "the key was written in one logical db and looked for in another", different_db,
         inject=Injection(how="the processor looks in db 1", processor={"db": 1}))
register("different-server", VISIBILITY,
         "the key was written on one server and looked for on another that looks alike", different_server)
register("key-prefix-mismatch", VISIBILITY,
         "a read or SCAN/KEYS pattern missed written keys by a prefix, suffix or separator", key_prefix_mismatch,
         inject=Injection(how="the processor scans batch_* while the api writes batch:*",
                          processor={"match": "{ns}batch_*"}))
register("failover-lost-write", TTL, "a cluster primary failed over before replicating writes: the new primary "
         "never had those keys", failover_lost_write)
register("server-restarted", TTL, "the server restarted mid-trace (run_id changed, uptime reset): its keys are gone",
         server_restarted)
register("write-rejected", VISIBILITY, "the writer's command was refused (OOM, READONLY, MISCONF, NOPERM)",
         write_rejected,
         inject=Injection(how="the server runs out of memory under noeviction: a filler keeps writing, and the "
                              "api's writes are refused with OOM", sandbox_only=True,
                          server_args=("--maxmemory", "2mb", "--maxmemory-policy", "noeviction"),
                          helper={"role": "filler", "program": "filler", "size": 8192, "count": 320, "hold": 2.0}))
register("transaction-not-executed", VISIBILITY,
         "a MULTI was never followed by EXEC or DISCARD: its queued commands never ran", transaction_not_executed)
register("shared-connection", VISIBILITY, "two processes used one connection (a fork kept its parent's socket)",
         shared_connection)
register("stale-client-cache", VISIBILITY,
         "client-side caching (CLIENT TRACKING) served a value another client had changed", stale_client_cache)
register("scan-one-node", VISIBILITY, "in a cluster, KEYS/SCAN covers one node only: matching keys on the other "
         "primaries are never seen", scan_one_node)
register("cross-slot", VISIBILITY, "in a cluster, a multi-key command, MULTI/EXEC or script over keys in different "
         "hash slots was refused with CROSSSLOT", cross_slot)
register("cluster-unaware-client", VISIBILITY, "a plain client on one cluster node sends keys other nodes own and "
         "does not follow the MOVED/ASK it gets", cluster_unaware_client)
# replica-read from our actors' own connections (as `isolation` and `info` name it) and from a cluster replica's
# MONITOR (a READONLY read before the primary's write arrived).
register("replica-read", VISIBILITY, "the reader reads a replica (asynchronous lag, read-only)", replica_read)
# Not root causes, but ids a run can report.
register("not-visible-unexplained", FACT, "the reader did not see the writes and no known cause matched")
register("expired-on-time", FACT, "the key expired at the TTL its owner set (not a bug)")
register("rule-failed", FACT, "a doctor rule failed on this trace (a redisprobe bug: please report it); the others ran")

__all__ = ["REGISTRY", "Injection", "RuleSpec"]
