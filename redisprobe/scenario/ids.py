"""The root-cause catalog's ids (BUGS.md), with one line each, for validating and listing scenarios."""

from __future__ import annotations

import contextlib

CATALOG: dict[str, str] = {
    # visibility: A writes, B doesn't see it
    "different-server": "the two processes talk to different servers that look alike",
    "different-db": "the two processes use different logical dbs",
    "key-prefix-mismatch": "one client adds a key prefix the other doesn't",
    "replica-read": "the reader reads a replica (asynchronous lag, read-only)",
    "scan-one-node": "in a cluster, KEYS/SCAN covers one node only",
    "consumed-by-other": "another process took or deleted the key first",
    "transaction-not-executed": "MULTI never followed by EXEC: the writes were never applied",
    "shared-connection": "a forked child uses its parent's socket: crossed replies",
    "stale-client-cache": "client-side caching (CLIENT TRACKING) served a stale value",
    # TTL: the key dies early, or lives forever
    "deleted-by-client": "a client removed the key long before its TTL",
    "ttl-refresh-missed": "the refreshing EXPIRE missed the key, so it expired on its first TTL",
    "ttl-cleared-by-set": "a SET without EX/KEEPTTL dropped the key's TTL",
    "recreated-without-ttl": "the key expired and a write recreated it without a TTL",
    "ttl-shortened": "another writer set a shorter TTL than the owner intended",
    "ttl-unit-mismatch": "seconds vs milliseconds: the TTL is 1000x off",
    "expire-in-past": "TTL <= 0 or EXPIREAT in the past: the key is deleted at once",
    "evicted": "maxmemory eviction removed the key (looks like early expiry)",
    "flushed": "FLUSHDB/FLUSHALL by a process removed every key",
    "renamed-away": "RENAME/MOVE moved the key away (with its TTL)",
    "server-restarted": "the server restarted without persistence: everything is gone at once",
}

# Not root causes, but ids a run can report: the visibility check's "no known cause" and the plain life fact.
EXTRA_RULES: dict[str, str] = {
    "not-visible-unexplained": "the reader did not see the writes and no known cause matched",
    "expired-on-time": "the key expired at the TTL its owner set (not a bug)",
}


def known_rules() -> set[str]:
    """Every finding id an expectation may name: the catalog, the extras, and whatever the doctor defines."""
    known = set(CATALOG) | set(EXTRA_RULES)
    try:
        from redisprobe.analysis.doctor import RULES  # type: ignore[attr-defined]
    except Exception:  # the doctor is optional here: an import problem must not break loading
        return known
    with contextlib.suppress(Exception):
        known |= {rule_id(entry, key) for key, entry in _items(RULES)}
    return known


def doctor_descriptions() -> dict[str, str]:
    """One line per rule id from the doctor's own table, when it has one."""
    try:
        from redisprobe.analysis.doctor import RULES  # type: ignore[attr-defined]
    except Exception:
        return {}
    found: dict[str, str] = {}
    try:
        for key, entry in _items(RULES):
            text = _describe(entry)
            if text:
                found[rule_id(entry, key)] = text
    except Exception:
        return {}
    return found


def _items(rules: object) -> list[tuple[object, object]]:
    if isinstance(rules, dict):
        return list(rules.items())
    return [(None, entry) for entry in rules]  # type: ignore[attr-defined]


def rule_id(entry: object, key: object) -> str:
    if isinstance(key, str):
        return key
    for attr in ("id", "rule", "name"):
        value = getattr(entry, attr, None)
        if isinstance(value, str):
            return value
    if isinstance(entry, tuple) and entry and isinstance(entry[0], str):
        return entry[0]
    raise ValueError(f"no id for {entry!r}")


def _describe(entry: object) -> str:
    if isinstance(entry, str):
        return entry
    for attr in ("one_line", "title", "summary", "description", "doc", "__doc__"):
        value = getattr(entry, attr, None)
        if isinstance(value, str) and value.strip() and attr != "__doc__":
            return value.strip().splitlines()[0]
    if isinstance(entry, tuple):
        texts = [part for part in entry[1:] if isinstance(part, str)]
        if texts:
            return texts[0]
    return ""
