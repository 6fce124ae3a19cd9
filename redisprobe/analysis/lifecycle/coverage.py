"""What the capture's baseline covers: whether a key it lacks is known absent or of unknown state."""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redisprobe.analysis.lifecycle.state import FoldState


def known_absent(st: FoldState, server: str, db: int, key: bytes) -> bool | None:
    """Whether the baseline says `key` did not exist when the capture began: True (it covers the key and lacked
    it), False (it does not cover it: unknown), None (no baseline of this server)."""
    bases = st.baselines.get(server)
    if not bases:
        return None
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
