"""The doctor's rules, one per root cause in BUGS.md; each a pure function of the folded trace."""

from __future__ import annotations

from redisprobe.analysis.rules.base import Rule
from redisprobe.analysis.rules.names import key_prefix_mismatch
from redisprobe.analysis.rules.removal import consumed_by_other, deleted_by_client, evicted, flushed, renamed_away
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

# id -> (one-line description for `catalog`, the rule)
REGISTRY: dict[str, tuple[str, Rule]] = {
    "deleted-by-client": ("a client removed the key long before its TTL while another process was still writing it",
                          deleted_by_client),
    "consumed-by-other": ("an unlisted client or a second instance of a consumer took the key first",
                          consumed_by_other),
    "ttl-refresh-missed": ("an EXPIRE meant to extend the key hit a missing or misnamed key, came too early or too "
                           "late, or its XX/GT/LT condition failed", ttl_refresh_missed),
    "ttl-cleared-by-set": ("a SET without EX/PX/KEEPTTL (or GETSET, MSET) dropped the key's TTL", ttl_cleared_by_set),
    "recreated-without-ttl": ("the key expired and a write recreated it with no TTL: it never expires again",
                              recreated_without_ttl),
    "ttl-shortened": ("another process set a much shorter TTL than the key's owner", ttl_shortened),
    "ttl-unit-mismatch": ("seconds written as milliseconds (PEXPIRE/PX < 1000) or the reverse (EXPIRE/EX > 10^6)",
                          ttl_unit_mismatch),
    "expire-in-past": ("a TTL <= 0 or an EXPIREAT in the past deleted the key at once", expire_in_past),
    "evicted": ("the server evicted the key under maxmemory", evicted),
    "flushed": ("FLUSHDB/FLUSHALL by a process removed keys others were using", flushed),
    "renamed-away": ("RENAME/MOVE took the key from under a process still using the old name", renamed_away),
    "different-db": ("the key was written in one logical db and looked for in another", different_db),
    "different-server": ("the key was written on one server and looked for on another that looks alike",
                         different_server),
    "key-prefix-mismatch": ("a read or SCAN/KEYS pattern missed written keys by a prefix, suffix or separator",
                            key_prefix_mismatch),
    "server-restarted": ("the server restarted mid-trace (run_id changed, uptime reset): its keys are gone",
                         server_restarted),
    "transaction-not-executed": ("a MULTI was never followed by EXEC or DISCARD: its queued commands never ran",
                                 transaction_not_executed),
    "shared-connection": ("two processes used one connection (a fork kept its parent's socket)", shared_connection),
    "stale-client-cache": ("client-side caching (CLIENT TRACKING) served a value another client had changed",
                           stale_client_cache),
}

__all__ = ["REGISTRY"]
