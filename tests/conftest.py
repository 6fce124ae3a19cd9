"""Shared real servers for the suite: one session-wide sandbox server where isolation allows."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack

import psutil
import pytest
import redis

from redisprobe.targets.sandbox import Sandbox, sandbox


def pytest_configure(config: pytest.Config) -> None:
    if not (shutil.which("redis-server") or os.environ.get("REDISPROBE_SERVER")):
        raise pytest.UsageError("the tests need redis-server on PATH (apt-get install redis-server)")


@pytest.fixture(scope="session")
def shared_sandbox() -> Iterator[Sandbox]:
    """One single-server sandbox for tests that only touch their own keys."""
    with sandbox("single") as box:
        yield box


@pytest.fixture(scope="session")
def redis_url(shared_sandbox: Sandbox) -> str:
    return shared_sandbox.urls[0]


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def private_server() -> Iterator[Sandbox]:
    """A server of its own, for tests that change CONFIG, flush, kill clients or restart."""
    with sandbox("single") as box:
        yield box


@pytest.fixture
def url(private_server: Sandbox) -> str:
    return private_server.urls[0]


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    """Clients and captures a test starts, closed in reverse order however the test ends."""
    with ExitStack() as stack:
        yield stack


def descendants() -> set[int]:
    """PIDs of our living child processes (zombies excluded)."""
    alive = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                alive.add(child.pid)
        except psutil.NoSuchProcess:
            pass
    return alive
