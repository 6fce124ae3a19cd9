"""A thread-safe emit target for observer tests, with a way to wait for an event."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from redisprobe import trace


class Sink:
    """A thread-safe emit target with a way to wait for an event."""

    def __init__(self) -> None:
        self.events: list[trace.Event] = []
        self._lock = threading.Lock()

    def __call__(self, event: trace.Event) -> None:
        with self._lock:
            self.events.append(event)

    def of(self, kind: type) -> list:
        with self._lock:
            return [e for e in self.events if isinstance(e, kind)]

    def wait(self, predicate: Callable[[trace.Event], bool], timeout: float = 15.0) -> trace.Event:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                for event in self.events:
                    if predicate(event):
                        return event
            if time.monotonic() > deadline:
                raise AssertionError(f"event never came; got {self.events!r}")
            time.sleep(0.02)

    def keyspace(self, event: str, key: bytes, db: int = 0, timeout: float = 15.0) -> trace.Keyspace:
        found = self.wait(lambda e: isinstance(e, trace.Keyspace) and e.event == event and e.key == key
                          and e.db == db, timeout)
        assert isinstance(found, trace.Keyspace)
        return found
