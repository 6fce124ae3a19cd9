"""Pausing Python's cyclic garbage collector around work that builds millions of acyclic objects."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Parsing and folding MONITOR lines make objects with hardly any cycles: the collector would only rescan
    them over and over (a third of the time). Restored as it was afterwards, nested uses included."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
