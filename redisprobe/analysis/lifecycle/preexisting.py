"""The capture's baseline: keys that existed when it began are alive from the start, with the TTL they had.

A `trace.Baseline` is released at its start (`t`) and applied at its end (`until`), once every command MONITOR
showed meanwhile is folded: a key the capture saw created, removed or written during the scan keeps what the
capture saw; reads of a key the scan then found were not misses. A key the baseline covers but lacks did not exist;
one it does not cover (outside the patterns, past a bound) keeps an unknown state.
"""

from __future__ import annotations

import heapq
import itertools

from redisprobe import trace
from redisprobe.analysis.lifecycle import lives
from redisprobe.analysis.lifecycle.state import FoldState

_order = itertools.count(1)


def on_baseline(st: FoldState, event: trace.Baseline) -> None:
    """Released twice: at its start (its coverage is known from then on), then, queued again, at its end."""
    server = st.server_of(event.target)
    bases = st.baselines.setdefault(server, {})
    if bases.get(event.db) is not event:
        bases[event.db] = event
        heapq.heappush(st.held, (event.until, -next(_order), event))  # the same event, due at its end
        return
    apply(st, event)


def apply(st: FoldState, event: trace.Baseline) -> None:
    server = st.server_of(event.target)
    retracted: set[bytes] = set()
    for key, kind, expires_at in zip(event.keys, event.types, event.expires_at, strict=False):
        if kind == "none":  # gone between SCAN and TYPE
            continue
        slot = st.slots.get((server, event.db, key))
        if slot is not None and slot.count:
            continue  # the capture saw this key made, written or removed during the scan: that is what it knows
        if slot is None:
            slot = st.slot(server, event.db, key)
        life = lives.create(st, slot, event.t, None, None, 0, preexisting=True)
        life.baseline = (event.until, kind)
        life.expires_at = expires_at
        if slot.miss_log:  # reads during the scan of a key that was there after all
            retracted.add(key)
            slot.misses -= len(slot.miss_log)
            slot.miss_log = None
    if retracted:
        st.rows = [row for row in st.rows
                   if not (row[6] == "missed" and row[2] == event.db and row[4] in retracted)]

