"""Run the real CLI in a child process, as a user would, and find what it left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass

import psutil


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> dict:
        return json.loads(self.out)


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["COLUMNS"] = "160"
    env.update(extra)
    return env


def run_cli(*args: str, timeout: float = 180, env: dict[str, str] | None = None) -> Result:
    proc = subprocess.run([sys.executable, "-m", "redisprobe", *args], capture_output=True, text=True,
                          timeout=timeout, env=env or cli_env())
    return Result(proc.returncode, proc.stdout, proc.stderr)


def new_marker() -> str:
    return f"redisprobe-test-{uuid.uuid4().hex[:8]}"


def processes_with_marker(marker: str) -> list[psutil.Process]:
    """Every living process whose environment carries `marker` (children inherit it, servers too)."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get("REDISPROBE_TEST_MARKER") == marker and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found
