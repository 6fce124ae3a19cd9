"""Slow, independent end-to-end runs side by side: each on servers of its own, each test asserting its own result.

Most of a CLI run's wall time is waiting (TTLs, quiet periods, server starts), so a few at once cost little more
than one. A job's exception is re-raised by the one test that reads it, never by its neighbours.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import pytest

T = TypeVar("T")

PARALLEL = 2
"""Runs at once: a run's own work is about a third of its wall time, and two
at a time on 2 cores keep the actors' timing (spacing and quiet periods of tenths of seconds). Three at a time
made a cluster ttl-race's janitor miss its batches on a heavily loaded machine."""


def side_by_side(jobs: dict[str, Callable[[], T]], parallel: int = PARALLEL) -> dict[str, Future[T]]:
    """Run every job, `parallel` at a time in the order given (longest first keeps the tail short), and return once
    all are done; `result()` of a job's future gives its value or raises what it raised."""
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        return {name: pool.submit(job) for name, job in jobs.items()}


def selected(request: pytest.FixtureRequest) -> set[str]:
    """The names (`test_x[param]`) of the tests of the requesting module that this session runs and that use the
    requesting fixture: what `-k` or a node id left. A fixture keys its jobs by these names and runs only theirs."""
    return {item.name for item in request.session.items
            if item.module is request.module and request.fixturename in item.fixturenames}
