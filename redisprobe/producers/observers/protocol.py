"""What every observer of a server is to a capture: start, pump, stop (and abort), and what it cannot see.

An observer watches one server and turns what it sees into trace events. Most write them from a thread of their
own through the `emit` callback they were given; MONITOR's lines wait in a spool on disk until the capture pumps
them into the trace. The capture drives every observer the same way:

- `start()`: connect and take a first look (raises `ConnectionProblem` when the server cannot be watched at all);
- `pump()`: the events gathered since the last call that the capture must write (nothing for an observer that
  writes from its own thread);
- `stop()`: a last look, then end; idempotent, safe in `finally`; `abort()`: stop waiting for a server that no
  longer answers (close the connections under whoever waits on them);
- `BLIND_SPOT`: one line saying what it cannot see, which another observer (or nobody) covers.

`starting` is the failure handling every start shares, and `Sampler` the stop sequence the observers that
sample from a thread share: stop once, wake the thread, wait for it a bounded time, take the last sample only if
it ended, close the connection.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol

import redis.exceptions as rex

from redisprobe.errors import ConnectionProblem
from redisprobe.targets.url import describe_redis_error

if TYPE_CHECKING:
    from redisprobe import trace
    from redisprobe.targets.url import Target

DROPPED: Final = (rex.ConnectionError, rex.TimeoutError, OSError)
"""A connection that failed or went away (unlike an error reply, which the server sent and the observer reads)."""


class Observer(Protocol):
    BLIND_SPOT: ClassVar[str]

    def start(self) -> object: ...

    def pump(self) -> Sequence[trace.Recorded]: ...

    def stop(self) -> None: ...

    def abort(self) -> None: ...


@contextlib.contextmanager
def starting(stop: Callable[[], None], target: Target) -> Iterator[None]:
    """An observer's start: whatever fails stops what was begun (threads, changed config, connections), and a server
    that cannot be reached or went away becomes one `ConnectionProblem` line."""
    try:
        yield
    except DROPPED as exc:
        stop()
        raise ConnectionProblem(describe_redis_error(exc, target)) from None
    except BaseException:
        stop()
        raise


class Sampler:
    """An observer that samples a server from a thread of its own and writes through `emit`."""

    BLIND_SPOT: ClassVar[str] = ""

    def __init__(self, emit: Callable[[trace.Event], None], *, interval: float, join_timeout: float) -> None:
        self.emit = emit
        self.interval = interval
        self._join_timeout = join_timeout  # how long `stop` waits for a sample under way
        self._client: Any = None  # its redis connection, closed by `stop`, cut by `abort`
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._stopped = False

    def _spawn(self, run: Callable[[], None], name: str) -> None:
        self._thread = threading.Thread(target=run, name=name, daemon=True)
        self._thread.start()

    def pump(self) -> Sequence[trace.Recorded]:
        return ()  # it writes from its own thread

    def stop(self) -> None:
        """A last look, then end. Idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._stopping.set()
        thread = self._thread
        if thread is not None:
            thread.join(self._join_timeout)
            self._last_look(ended=not thread.is_alive())
        self._close()

    def abort(self) -> None:
        """Stop waiting for the server: close the connection under a sample blocked on it."""
        self._stopping.set()
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.connection_pool.disconnect()

    def _last_look(self, *, ended: bool) -> None:
        """What to record once the thread is told to stop (`ended`: it has, so the connection is free)."""

    def _close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()


__all__ = ["DROPPED", "Observer", "Sampler", "starting"]
