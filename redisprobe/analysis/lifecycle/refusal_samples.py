"""The server's refusal samples (`trace.Refusals`): kept whole, per server, for the `write-rejected` rule.

A capture emits a handful of them (at start, at stop, and when a count moved), so keeping every one is cheap.
"""

from __future__ import annotations

from redisprobe import trace
from redisprobe.analysis.lifecycle.limits import MAX_RECORDS
from redisprobe.analysis.lifecycle.state import FoldState


def on_refusals(st: FoldState, event: trace.Refusals) -> None:
    samples = st.refusals.setdefault(st.server_of(event.target), [])
    if len(samples) < MAX_RECORDS:
        samples.append(event)
