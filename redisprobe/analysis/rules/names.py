"""Near-miss key names: the reader asks for `job:1`, the writer wrote `bull:job:1` (or `job_1`, `app:app:job:1`).

The index is built once, after the fold, from the keys that existed during the trace; lookups cost a few dict
hits per missed key, never a scan.
"""

from __future__ import annotations

import fnmatch
import re
from typing import TYPE_CHECKING

from redisprobe.analysis import facts
from redisprobe.analysis.rules.base import Group, Groups, RuleInput, identity, who_text
from redisprobe.findings import Finding
from redisprobe.semantics import command_table as C
from redisprobe.text import clock

if TYPE_CHECKING:
    from redisprobe.analysis.lifecycle import KeyLife, Slot

MIN_NAME = 3
"""Name parts shorter than this never count as a near-miss (`1` would match every id)."""

MAX_INDEX_KEYS = 1_000_000
"""Written keys indexed for near-miss lookups (the first ones; more would only cost memory)."""

MAX_PATTERN_KEYS = 200_000
"""Written keys a SCAN/KEYS pattern is tried against."""

SYSTEMATIC = 2
"""Distinct missed names that must follow one rewrite (a replaced prefix, a part too many or too few) before it
counts as a near-miss."""

MAX_PREFIXES_TRIED = 20
"""Top-level prefixes of written keys tried in front of a pattern that matched nothing."""

_SEPARATORS = bytes.maketrans(b"_./", b":::")


def _norm(key: bytes) -> bytes:
    return key.translate(_SEPARATORS)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


class NameIndex:
    """Near-misses between the names somebody missed and the names that were written, per server.

    Built from the missed side: each missed name's variants (normalised separators, leading parts dropped) go
    into small dicts; then every written key is checked once with a few dict lookups. Only written keys whose last
    part also appears in a missed name are split further, so a million written keys cost about a microsecond
    each. Names that differ by a trailing part are not near-misses: `job:1:lock` next to `job:1` is a related key
    (queues read optional sub-keys that were never written all the time), not the same key named differently.

    A replaced first part (`myapp:<sid>` missed, `sess:<sid>` written) or one middle part too many or too few
    (`presence:<id>` missed, `presence:user:<id>` written) is a near-miss only when it is systematic: at least
    SYSTEMATIC missed names follow the same rewrite, and for a replaced prefix, the reader's prefix is (nearly)
    never written. One `user:42` missed next to `cart:42` is two different things about one id; every session
    id read under a prefix nobody writes while all of them exist under another is one misconfigured name.
    """

    def __init__(self, spaces: dict[str, str] | None = None) -> None:
        self.spaces = spaces or {}  # server -> its key space: the nodes of one cluster share one
        self.servers: dict[tuple[str, bytes], str] = {}  # (space, written key) -> the server it lived on
        self.matches: dict[tuple[str, bytes], tuple[str, str]] = {}
        self.per_server: dict[str, list[bytes]] = {}
        self.db_of: dict[tuple[str, bytes], int] = {}
        self._norm: dict[tuple[str, bytes], list[bytes]] = {}  # missed, normalised -> missed names
        self._tails: dict[tuple[str, bytes], list[tuple[bytes, bytes]]] = {}  # tail of a missed name
        self._lasts: set[bytes] = set()
        self._rests: dict[tuple[str, bytes], list[tuple[bytes, bytes]]] = {}  # missed minus its first part
        self._dropped: dict[tuple[str, bytes], list[tuple[bytes, bytes]]] = {}  # missed minus a middle part
        self._heads_written: dict[tuple[str, bytes], int] = {}  # first parts of missed names: keys written there
        self.head_writers: dict[tuple[str, bytes], set[object]] = {}  # who wrote under them during the trace
        self.missers: dict[tuple[str, bytes], object] = {}  # missed name -> who missed it (an identity)
        self.waited: set[tuple[str, bytes]] = set()  # missed names a blocking pop waited on in vain
        self._candidates: dict[tuple[object, ...], dict[bytes, tuple[str, str]]] = {}  # rewrite -> its matches

    def space(self, server: str) -> str:
        """Where names are compared: a server, or for a node of a cluster the whole cluster (a key and its
        near-miss usually hash to different slots, so live on different nodes)."""
        return self.spaces.get(server, server)

    def want(self, server: str, key: bytes) -> None:
        """A missed name to find near-misses for (call before `add`)."""
        server = self.space(server)
        norm = _norm(key)
        self._norm.setdefault((server, norm), []).append(key)
        parts = norm.split(b":")
        self._lasts.add(parts[-1])
        for index in range(1, len(parts)):
            tail, head = b":".join(parts[index:]), b":".join(parts[:index])
            if len(tail) >= MIN_NAME:
                self._tails.setdefault((server, tail), []).append((key, head))
        if len(parts) >= 2 and len(parts[0]) and len(norm) - len(parts[0]) - 1 >= MIN_NAME:
            self._rests.setdefault((server, norm[len(parts[0]) + 1:]), []).append((key, parts[0]))
            self._heads_written.setdefault((server, parts[0]), 0)
        for index in range(1, len(parts) - 1):
            if len(parts[index]) >= MIN_NAME:
                variant = b":".join(parts[:index] + parts[index + 1:])
                self._dropped.setdefault((server, variant), []).append((key, parts[index]))

    def add(self, server: str, key: bytes, db: int = 0) -> None:
        """A written key: record every missed name it nearly matches."""
        real, server = server, self.space(server)
        self.db_of[(server, key)] = db
        self.servers[(server, key)] = real
        keys = self.per_server.setdefault(server, [])
        if len(keys) < MAX_PATTERN_KEYS:
            keys.append(key)
        norm = _norm(key)
        if (server, norm) in self._norm:
            for missed in self._norm[(server, norm)]:
                if missed != key:
                    self._match(server, missed, _text(key), "separators differ")
        if (server, norm) in self._tails:
            for missed, head in self._tails[(server, norm)]:
                doubled = norm.startswith(head + b":")
                what = "a doubled prefix" if doubled else "an extra prefix"
                self._match(server, missed, _text(key), f"the reader's name has {what} '{_text(head)}:'")
        for missed, part in self._dropped.get((server, norm), ()):
            self._candidate(("extra", server, part), missed, key,
                            f"the reader's name has an extra part '{_text(part)}:'")
        if b":" not in norm:
            return
        head, _sep, rest = norm.partition(b":")
        if (server, head) in self._heads_written:
            self._heads_written[(server, head)] += 1
        for missed, missed_head in self._rests.get((server, rest), ()):
            if missed_head != head:
                self._candidate(("prefix", server, missed_head, head), missed, key,
                                f"the reader's prefix is '{_text(missed_head)}:', the writer's '{_text(head)}:'")
        if norm.rpartition(b":")[2] in self._lasts:
            parts = norm.split(b":")
            for index in range(1, len(parts)):
                for missed in self._norm.get((server, b":".join(parts[index:])), ()):
                    prefix = _text(b":".join(parts[:index]))
                    self._match(server, missed, _text(key), f"the writer's name has the prefix '{prefix}:'")
            for index in range(1, len(parts) - 1):
                if len(parts[index]) < MIN_NAME:
                    continue
                for missed in self._norm.get((server, b":".join(parts[:index] + parts[index + 1:])), ()):
                    self._candidate(("lacks", server, parts[index]), missed, key,
                                    f"the reader's name lacks the part '{_text(parts[index])}:'")

    def _match(self, server: str, missed: bytes, written: str, how: str) -> None:
        if (server, missed) not in self.matches:
            self.matches[(server, missed)] = (written, how)

    def _candidate(self, rewrite: tuple[object, ...], missed: bytes, written: bytes, how: str) -> None:
        self._candidates.setdefault(rewrite, {}).setdefault(missed, (_text(written), how))

    def finish(self) -> None:
        """Keep the rewrites that are systematic (call after the last `add`)."""
        for rewrite, found in self._candidates.items():
            server, head = str(rewrite[1]), rewrite[2]
            found = {missed: match for missed, match in found.items() if (server, missed) not in self.db_of}
            waited = any((server, missed) in self.waited for missed in found)
            if len(found) < SYSTEMATIC and not (rewrite[0] == "prefix" and waited):
                continue  # one name alone is a coincidence, unless a consumer sat waiting on it
            if rewrite[0] == "prefix":
                missers = {self.missers.get((server, missed)) for missed in found}
                if isinstance(head, bytes) and self.head_writers.get((server, head), set()) - missers:
                    continue  # others write under the reader's prefix: two namespaces, not a misnamed one
            for missed, (written, how) in found.items():
                self._match(server, missed, written, how)

    def find(self, server: str, key: bytes) -> tuple[str, str] | None:
        """(written key, how the names differ) for a missed key, or None when no written key is that close."""
        server = self.space(server)
        if (server, key) in self.db_of:
            return None  # it was written itself
        return self.matches.get((server, key))


def name_index(inp: RuleInput) -> NameIndex:
    """Built once per diagnosis and shared by the rules that look for near-misses."""
    cached = inp.cache.get("names")
    if isinstance(cached, NameIndex):
        return cached
    from redisprobe.analysis.rules.cluster import cluster_nodes, cluster_peers

    index = NameIndex({node: min(cluster_peers(inp, node)) for node in cluster_nodes(inp)})
    for slot in inp.missed:
        if not slot.count:
            index.want(slot.server, slot.key)
            _note_misser(inp, index, slot)
    for count, (slot, lives) in enumerate(inp.lived):
        if count >= MAX_INDEX_KEYS:
            break
        index.add(slot.server, slot.key, slot.db)
        head = (index.space(slot.server), _norm(slot.key).partition(b":")[0])
        if head in index._heads_written:
            index.head_writers.setdefault(head, set()).update(_writers(inp, lives))
    index.finish()
    inp.cache["names"] = index
    return index


def _note_misser(inp: RuleInput, index: NameIndex, slot: Slot) -> None:
    """Who missed the name first, and whether a blocking pop sat waiting on it."""
    miss = facts.first_miss(slot)
    if miss is not None:
        who = miss.who
    elif slot.absent_ttl:
        who = slot.absent_ttl[0].who
    else:
        return
    index.missers[(index.space(slot.server), slot.key)] = identity(inp.actor(who))
    if any(miss.args and C.lookup(miss.args[0]).blocking for miss in facts.misses(slot)):
        index.waited.add((index.space(slot.server), slot.key))


def _writers(inp: RuleInput, lives: list[KeyLife]) -> set[object]:
    """Who wrote a key during the trace (its creators and writers; a key only seen at the baseline has none)."""
    found: set[object] = set()
    for life in lives:
        if life.created_by is not None:
            found.add(identity(inp.actor(life.created_by)))
        for writer in facts.writers(life):
            found.add(identity(inp.actor(writer.who)))
    return found


def near_miss(inp: RuleInput, server: str, key: bytes) -> tuple[str, str] | None:
    return name_index(inp).find(server, key)


def key_prefix_mismatch(inp: RuleInput) -> list[Finding]:
    """Reads (or SCAN/KEYS patterns) that miss written keys by a prefix, a suffix or a separator."""
    groups = Groups("key-prefix-mismatch")
    index = name_index(inp)
    for slot in inp.missed:
        miss = facts.first_miss(slot)
        if slot.count or miss is None:
            continue
        found = index.find(slot.server, slot.key)
        if found is None:
            continue
        written, how = found
        t, who, args, _certain = miss
        reader = inp.actor(who)
        group = groups.get((identity(reader), how), "error", reader, _summary)  # one rewrite, one cause
        group.extra.update(actor=reader, how=how, example=(_text(slot.key), written))
        if not group.add_key(slot.key):
            continue
        creator = _creation(inp, index, slot.server, written.encode())
        if creator is not None:
            group.add_evidence(creator)
        group.add_evidence(inp.line(t, who, args, f"missed ({slot.misses}x): no such key; {written} exists, {how}",
                                    slot.db))
    for pattern in facts.patterns(inp.lifecycle):
        _pattern(inp, groups, index, pattern)
    return groups.findings()


def _creation(inp: RuleInput, index: NameIndex, server: str, key: bytes) -> str | None:
    space = index.space(server)
    slot = inp.lifecycle.slots.get((index.servers.get((space, key), server), index.db_of.get((space, key), 0), key))
    if slot is None:
        return None
    for life in slot.all_lives():
        if life.created_by is not None:
            return inp.line(life.created_at, life.created_by, life.created_args, "written", slot.db)
    return None


def _summary(group: Group) -> str:
    extra = group.extra
    example = extra["example"]
    assert isinstance(example, tuple)
    missed, written = example
    more = "" if group.key_count == 1 else f" (and {group.key_count - 1} more like it)"
    return (f"{who_text(group.actor('actor'))} looked for {missed}{more} but {written} was written: "
            f"{extra['how']}")


def _glob(pattern: bytes) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(_text(pattern)), re.DOTALL)


def _pattern(inp: RuleInput, groups: Groups, index: NameIndex, used: facts.Pattern) -> None:
    server, db, pattern, count, t, who, args, _last = used
    keys = [_text(k) for k in index.per_server.get(index.space(server), ())]
    if not keys or any(_glob(pattern).match(k) for k in keys):
        return
    variants: list[tuple[bytes, str]] = [(_norm(pattern), "separators differ")]
    parts = _norm(pattern).split(b":")
    if len(parts) > 2:
        variants.append((b":".join(parts[1:]), f"the pattern has an extra prefix '{_text(parts[0])}:'"))
    prefixes = []
    for key in keys:
        head = key.split(":", 1)[0]
        if ":" in key and head not in prefixes:
            prefixes.append(head)
            if len(prefixes) >= MAX_PREFIXES_TRIED:
                break
    variants += [(p.encode() + b":" + pattern, f"the keys have the prefix '{p}:' the pattern lacks") for p in prefixes]
    normalized = [_norm(k.encode()).decode("utf-8", "backslashreplace") for k in keys]
    for variant, how in variants:
        regex = _glob(variant)
        hits = [k for k, n in zip(keys, normalized, strict=True) if regex.match(n) or regex.match(k)]
        if hits:
            actor = inp.actor(who)
            group = groups.get((identity(actor), "pattern", _text(pattern)), "error", actor, _pattern_summary)
            group.extra.update(actor=actor, pattern=_text(pattern), how=how, hits=len(hits), example=hits[0])
            group.add_key(pattern)
            group.add_evidence(inp.line(t, who, args, f"matched none of the written keys ({count} scans)", db),
                               f"{clock(t)} {_text(variant)} would match {len(hits)} key(s), e.g. {hits[0]}: {how}")
            return


def _pattern_summary(group: Group) -> str:
    extra = group.extra
    return (f"{who_text(group.actor('actor'))} scanned for {extra['pattern']}, which matched none of the written keys; "
            f"{extra['how']} ({extra['hits']} key(s) like {extra['example']})")
