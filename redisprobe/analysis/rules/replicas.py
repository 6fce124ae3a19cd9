"""`replica-read` on a cluster: a READONLY reader asked a replica for a key its primary had written, before the
write reached the replica (replication is asynchronous), so the replica answered as if the key did not exist.

The symptom and its proof come from the replica's own MONITOR: the reader's read there, and the line where the
primary's write arrived over the replication link, after it (or never). The replication offsets sampled during
the capture say how far behind the replica was.
"""

from __future__ import annotations

from math import inf as INF
from typing import TYPE_CHECKING

from redisprobe.analysis.rules.base import Group, Groups, RuleInput, identity, keys_phrase, who_text
from redisprobe.analysis.rules.fingerprints import actor_replica_read
from redisprobe.findings import Finding
from redisprobe.text import clock

if TYPE_CHECKING:
    from redisprobe.analysis.lifecycle import KeyLife

FIX = ("read from the primary where a reader must see a write it was told about (or have the writer WAIT for "
       "the replica before telling)")


def replica_read(inp: RuleInput) -> list[Finding]:
    """Reads on a replica before the write reached it: seen in a cluster replica's own MONITOR, or told by our
    actors' connections (an actor on the replica of the primary another actor writes)."""
    return _cluster_replica_reads(inp) + actor_replica_read(inp)


def _cluster_replica_reads(inp: RuleInput) -> list[Finding]:
    """Reads on a cluster replica of keys the primary held at the time and the replica did not yet."""
    st = inp.lifecycle
    groups = Groups("replica-read")
    promoted = {}
    for _t, since, server, _former in st.promotions:
        promoted.setdefault(server, since)
    for t, who, db, key, primary, args in st.replica_reads:
        if t >= promoted.get(who[0], INF):
            continue  # the node may have been a primary already: not a replica read
        slot = st.slots.get((primary, db, key))
        life = _alive_at(slot.all_lives(), t) if slot is not None else None
        if life is None or life.created_at is None:
            continue  # the primary did not have it either: no write was missed
        replica = who[0]
        unsure = _uncertainty(inp, primary, replica)  # the write's time is the primary's, the arrival the replica's
        arrived = next((a for a in st.arrivals.get((replica, db, key), ()) if a >= life.created_at - unsure), None)
        if arrived is not None and arrived <= t:
            continue  # the write had reached the replica: the reader saw it
        actor = inp.actor(who)
        group = groups.get((identity(actor), replica), "error", actor, _summary)
        group.extra.update(actor=actor, replica=replica, primary=primary)
        group.add_key(key)
        group.add_evidence(inp.line(t, who, args, f"on replica {replica} (READONLY): not there yet", db))
        group.add_evidence(inp.line(life.created_at, life.created_by, life.created_args,
                                    f"on its primary {primary}", db))
        group.add_evidence(f"the write arrived on {replica} at {clock(arrived)}, {(arrived - t) * 1000:.0f} ms after "
                           "the read" if arrived is not None else
                           f"the write had not arrived on {replica} by the end of the capture")
        gap = _offset_gap(inp, primary, replica, t)
        if gap:
            group.add_evidence(gap)
        if t - life.created_at < unsure:
            group.add_evidence(f"order uncertain: the write on {primary} and the read on {replica} are "
                               f"{(t - life.created_at) * 1000:.1f} ms apart, within their clocks' uncertainty "
                               f"(±{unsure * 1000:.1f} ms): the read may have come first")
    return groups.findings()


def _uncertainty(inp: RuleInput, *servers: str) -> float:
    """How far apart two nodes' events may be and still be in either order: their clock measures' uncertainty."""
    return sum(inp.lifecycle.servers[s].clock_uncertainty for s in servers if s in inp.lifecycle.servers)


def _alive_at(lives: list[KeyLife], t: float) -> KeyLife | None:
    for life in lives:
        if life.created_at is not None and life.created_at <= t and (life.removed_at is None or life.removed_at > t):
            return life
    return None


def _offset_gap(inp: RuleInput, primary: str, replica: str, t: float) -> str:
    """The replication offset gap sampled nearest the read (or the largest of the capture)."""
    samples = [(s, s.offset - s.replicas[replica]) for s in inp.lifecycle.replication.get(primary, ())
               if replica in s.replicas]
    if not samples:
        return ""
    sample, gap = min(samples, key=lambda item: abs(item[0].t - t))
    if gap <= 0:
        sample, gap = max(samples, key=lambda item: item[1])
        if gap <= 0:
            return ""
        return (f"largest replication offset gap sampled: {clock(sample.t)} {primary} at {sample.offset}, {replica} "
                f"at {sample.replicas[replica]}: {gap} bytes behind")
    return (f"replication offsets at {clock(sample.t)}: {primary} at {sample.offset}, {replica} at "
            f"{sample.replicas[replica]}: {gap} bytes behind")


def _summary(group: Group) -> str:
    extra = group.extra
    return (f"{who_text(extra['actor'])} read {keys_phrase(group)} on replica {extra['replica']} (READONLY) before "  # type: ignore[arg-type]
            f"its primary {extra['primary']}'s write reached it: replication is asynchronous, and the replica "
            f"answered as if the key did not exist; {FIX}")


LOST_FIX = ("a write the app must not lose needs WAIT 1 <timeout> after it (the replica has it before the app goes "
            "on), or min-replicas-to-write on the primaries")


def failover_lost_write(inp: RuleInput) -> list[Finding]:
    """Keys written on a primary that failed over before replicating them, looked for afterwards and missed."""
    st = inp.lifecycle
    groups = Groups("failover-lost-write")
    for t, since, former, promoted, slot, life in st.failover_lost:
        misses = [(at, who, args) for at, who, args, _certain in slot.miss_log or () if at >= since]
        misses += [(at, who, args) for at, who, db, key, _primary, args in st.replica_reads
                   if who[0] == promoted and at >= since and db == slot.db and key == slot.key]
        if not misses:
            continue  # nobody looked for it after: a loss, in its life's end, but no symptom
        group = groups.get((former, promoted), "error", None, _lost_summary)
        group.extra.update(former=former, promoted=promoted, since=since, t=t)
        group.add_key(slot.key)
        group.add_evidence(inp.line(life.created_at, life.created_by, life.created_args, f"on {former}", slot.db))
        group.add_evidence(f"{promoted} took over as primary "
                           + (f"between {clock(since)} and {clock(t)}" if since < t else f"at {clock(t)}")
                           + "; its replication stream never carried this write")
        gap = _offset_gap(inp, former, promoted, since)
        if gap:
            group.add_evidence(gap)
        at, who, args = min(misses, key=lambda m: m[0])
        group.add_evidence(inp.line(at, who, args, "missed: no such key", slot.db))
    return groups.findings()


def _lost_summary(group: Group) -> str:
    extra = group.extra
    return (f"{keys_phrase(group)} written on {extra['former']} were lost in a failover: {extra['promoted']} "
            f"took over as primary before the writes were replicated to it, and readers missed them after; "
            f"{LOST_FIX}")
