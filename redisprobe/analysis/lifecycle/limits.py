"""The fold's numbers: matching windows, what is kept per key, caps that bound memory."""

from __future__ import annotations

from typing import Final

KS_MATCH_WINDOW: Final = 0.5
"""Seconds within which a keyspace event is paired with the command that caused it (receipt lag)."""

MARK_SLACK: Final = 0.01
"""Seconds of clock slack between a MONITOR time (the server's clock) and a keyspace mark's sending time (ours)."""

FIRST_SAMPLE_SPAN: Final = 1.0
"""Seconds after a server's first CLIENT LIST sample that still count as the capture's start (a connection
blocked then was blocked before the capture: MONITOR never shows its command)."""

BLOCKED_MISS_AFTER: Final = 1.0
"""A blocking pop on an absent key still waiting at the end of the trace is a miss once it has waited this long."""

RACE_WINDOW: Final = 1.0
"""Seconds after another connection's pop emptied a key within which a pop that comes away empty lost a race."""

POST_TOUCH_WINDOW: Final = 5.0
"""Seconds after a removal during which touches of the same key are remembered on the removed life."""

CREATE_AFTER_MISS_WINDOW: Final = 1.0
"""An EXPIRE that missed this many seconds or less before the key was created "arrived before the key"."""

ON_TIME_TOLERANCE: Final = 0.25
"""Seconds of slack when judging that a key expired at the TTL set on it (the server's sweep is lazy)."""

TX_GRACE: Final = 0.5
"""A MULTI this close to the end of the trace may still get its EXEC: not called abandoned."""

LIVES_KEPT: Final = 2
"""Closed lives kept per key (the most recent); older ones are kept only if remarkable, else counted."""

REMARKABLE_KEPT: Final = 2
"""Older remarkable lives kept per key (removed early by a client, TTL missed or cleared...)."""

COMPACT_HEAD: Final = 2
COMPACT_TAIL: Final = 2
"""History lines an unremarkable life keeps once it is over (its start and its end)."""

HISTORY_HEAD: Final = 3
HISTORY_TAIL: Final = 4
"""History lines kept per life: the first HISTORY_HEAD and the last HISTORY_TAIL."""

LOG_CAP: Final = 4
"""Entries kept per key for misses, missed EXPIREs and touches after removal."""

TTL_PAIRING_CAP: Final = 64
TTL_PAIRING_MAX: Final = 8192
"""TTL commands per key kept to pair with their keyspace `expire` events and replies: pruned every CAP commands
to those still awaiting their event within the matching window (at most MAX), so a burst on one key never pushes
out a command whose event has not arrived yet."""

MAX_MISS_ONLY_KEYS: Final = 200_000
"""Keys that were only ever read while missing are tracked up to this many (cache misses can be endless)."""

MAX_PENDING_CONFIRMS: Final = 100_000
"""EXPIREs waiting for their keyspace event at once (more means the keyspace stream stalled)."""

MAX_SECOND_VALUES: Final = 32
"""Distinct TTL values (in seconds) remembered per connection, to spot the same number sent as milliseconds."""

MAX_PATTERNS: Final = 1_000
MAX_RECORDS: Final = 1_000
"""Caps on SCAN/KEYS patterns, flushes, abandoned MULTIs and server samples remembered."""

TIMELINE_LIMIT: Final = 10_000
"""Notable rows kept for the renderer; the rest are counted (a truncation notice, never a silent cut)."""

REORDER_WINDOW: Final = 5.0
"""Seconds a non-MONITOR event may wait for MONITOR time to catch up (a lagging MONITOR reader's batches)."""

REORDER_WINDOW_UNMONITORED: Final = 1.0
"""The same wait when no server is monitored: events only need sorting among themselves."""

PREFETCH_SECONDS: Final = 2.0
PREFETCH_EVENTS: Final = 50_000
"""How far `run` looks ahead to learn which servers were monitored (their actors' ops are then only replies)."""

INF: Final = float("inf")

SHORTER_FRACTION: Final = 0.5
"""Another client's TTL below this fraction of the owner's counts as shortening it (ttl-shortened)."""

PX_SECONDS_SUSPECT: Final = 1000
"""PEXPIRE/PX/PSETEX below this many ms look like seconds written as milliseconds (ttl-unit-mismatch)."""

EX_MS_SUSPECT: Final = 1_000_000
"""EXPIRE/EX/SETEX above this many seconds (11.6 days) look like milliseconds written as seconds."""

