"""The keyspace link's lag, from its marks: how far back a late event's command may lie, and when silence counts.

A mark is a PING the keyspace observer sends on its subscribed connection; the answer comes in order with the
events. So an event read after the answer to a mark sent at `s` was published after `s`, and once the answer to a
mark sent after a write has been read, every event of that write has been read too. A trace without marks (older
ones) keeps the fixed window.
"""

from __future__ import annotations

from redisprobe.analysis.lifecycle.limits import KS_MATCH_WINDOW, MARK_SLACK
from redisprobe.analysis.lifecycle.records import ServerState


def window(state: ServerState, t: float) -> float:
    """Seconds before an event read at `t` within which the command that caused it may lie: the fixed window, or
    back to the last mark answered before it when the link lags more than that."""
    if not state.ks_marked:
        return KS_MATCH_WINDOW
    since = t - state.ks_mark_sent + MARK_SLACK + state.clock_uncertainty
    return since if since > KS_MATCH_WINDOW else KS_MATCH_WINDOW


def delivered(state: ServerState, t: float) -> bool:
    """Whether every event the server published at `t` has been read: the answer to a mark sent after it came."""
    return state.ks_mark_sent > t + MARK_SLACK + state.clock_uncertainty
