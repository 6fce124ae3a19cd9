"""Fold a trace into each key's lives: created by whom, TTL set or missed by whom, read, removed how and by whom.

The fold is a single pass over a time-ordered stream (millions of MONITOR lines), so per-line work is a dict
lookup or two; memory grows with keys and clients, never with lines (histories and logs are capped, a key's
old unremarkable lives are counted and dropped).

Commands come from MONITOR (exact args, server time, peer) or, for a server nobody monitored, from our actors'
own ops. Keyspace events say what really happened: each is paired with the command that caused it (same key,
same db, nearest preceding command that can produce it); `expired`/`evicted` have no client cause. Who sent a
command is kept as a `Who` token and turned into an `Actor` at the end, once every CLIENT LIST sample is known.

The package by concern: `records` (what is kept), `state` (the fold's state), `engine` (ordering, dispatch),
`dispatch` (command kind -> handler), `keys`, `expiry`, `pairing`, `connection`, `replies`, `wirereplies` (the
handlers; the last reads replies captured off the wire), `lives` (a life's start and end), `baseline` and
`coverage` (what existed when a capture began), `limits` (the numbers).
"""

from __future__ import annotations

from redisprobe.analysis.lifecycle.engine import Lifecycle, MonitorRow, fold
from redisprobe.analysis.lifecycle.records import FlushRecord, KeyLife, ServerState, Slot, Timeline, TimelineRow, TtlSet

__all__ = ["FlushRecord", "KeyLife", "Lifecycle", "MonitorRow", "ServerState", "Slot", "Timeline", "TimelineRow",
           "TtlSet", "fold"]
