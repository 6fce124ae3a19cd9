"""What the capture's baseline covers: whether a key it lacks is known absent or of unknown state."""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redisprobe.analysis.lifecycle.state import FoldState


def known_absent(st: FoldState, server: str, db: int, key: bytes, t: float) -> bool | None:
    """Whether the baseline says `key` did not exist at `t`: True (it covers the key, lacked it, and was over by
    then), False (unknown: it does not cover the key, or `t` is during the scan), None (no baseline here)."""
    bases = st.baselines.get(server)
    if not bases:
        return None
    if any(t <= e.until for e in bases.values()):
        return False  # during the scan: a key it did not find may have gone just before it looked
    event = bases.get(db)
    if event is None:  # a db INFO keyspace did not list: empty, if the baseline got that far
        return all(e.complete for e in bases.values()) and matches(next(iter(bases.values())).patterns, key)
    return event.complete and matches(event.patterns, key)


def matches(patterns: list[str], key: bytes) -> bool:
    """Whether a baseline with these patterns covers `key` (no patterns: every key)."""
    if not patterns:
        return True
    text = key.decode("utf-8", "backslashreplace")
    return any(fnmatch.fnmatchcase(text, pattern) for pattern in patterns)
