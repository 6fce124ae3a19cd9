"""TTL sampler: follows the PTTL of the keys matching a pattern while they live (the TTL curves of ttl-race)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import redis

from redisprobe import trace
from redisprobe.producers.observers.protocol import Sampler
from redisprobe.targets.url import Target


class TtlSampler(Sampler):
    """Every `interval` seconds: SCAN the pattern, PTTL each key (in one pipeline), emit a `TtlSample` each."""

    BLIND_SPOT = "keys outside its pattern, and a TTL changed and changed back between two samples"

    def __init__(self, target: Target, emit: Callable[[trace.Event], None], pattern: str, *,
                 interval: float = 0.05) -> None:
        super().__init__(emit, interval=interval, join_timeout=5.0)  # a sample under way (the thread is a daemon)
        self.target = target
        self.pattern = pattern
        self._client: redis.Redis | None = None

    def start(self) -> TtlSampler:
        self._client = self.target.connect(name="redisprobe:observer:ttl")
        self._spawn(self._run, "redisprobe-ttl")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """End the sampling, waiting at most `timeout` for a sample under way (Ctrl-C waits less)."""
        self._join_timeout = timeout
        super().stop()

    def _run(self) -> None:
        assert self._client is not None
        while not self._stopping.is_set():
            with contextlib.suppress(redis.RedisError, OSError):
                keys = [k for k in self._client.scan_iter(match=self.pattern, count=1000) if not k.endswith(b":last")]
                if keys:
                    pipe = self._client.pipeline(transaction=False)
                    for key in keys:
                        pipe.pttl(key)
                    now = time.time()
                    for key, pttl in zip(keys, pipe.execute(), strict=True):
                        if pttl != -2:
                            self.emit(trace.TtlSample(t=now, db=self.target.db, key=key, pttl=int(pttl),
                                                      target=self.target.label))
            self._stopping.wait(self.interval)

    def __enter__(self) -> TtlSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
