"""Temporary files and folders named after the process that owns them, so that what a killed run left is found.

A run removes its own temp trace, MONITOR spool and sandbox folder on the way out, Ctrl-C included; `kill -9`
gives it no way out. Every such name carries the owner's pid (`redisprobe-monitor-<pid>-<random>.jsonl`), and each
run first removes the ones whose owner is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path

import psutil

PREFIX = "redisprobe-"
_OWNED = re.compile(r"^redisprobe-(?P<kind>monitor|spool|sandbox)-(?P<pid>\d+)-")


def temp_file(kind: str, suffix: str = "") -> Path:
    """A new private temp file owned by this process (0600)."""
    fd, name = tempfile.mkstemp(prefix=f"{PREFIX}{kind}-{os.getpid()}-", suffix=suffix)
    os.close(fd)
    return Path(name)


def temp_dir(kind: str) -> Path:
    """A new private temp folder owned by this process (0700)."""
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{kind}-{os.getpid()}-"))


def _owner_alive(pid: int, made: float) -> bool:
    """Whether the process that made a file at time `made` still runs: `pid` exists and started before then (a
    pid reused by a later process does not count)."""
    if pid == os.getpid():
        return True
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return process.create_time() <= made + 1.0
    except psutil.NoSuchProcess:
        return False
    except (psutil.AccessDenied, psutil.ZombieProcess):
        return True  # not ours to judge


def sweep(folder: Path | None = None) -> list[str]:
    """Remove what runs that no longer exist left in the temp folder; returns what was removed (names)."""
    folder = Path(folder or tempfile.gettempdir())
    removed: list[str] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _OWNED.match(entry.name)
        if match is None:
            continue
        with contextlib.suppress(OSError):
            if _owner_alive(int(match.group("pid")), entry.stat(follow_symlinks=False).st_ctime):
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(entry.name)
    return removed
