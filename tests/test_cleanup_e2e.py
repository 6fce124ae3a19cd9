"""Nothing left behind: no actor or sandbox server survives Ctrl-C, a killed actor or the end of a command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import redis

from tests.clirun import cli_env, new_marker, processes_with_marker


def _start(marker: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "redisprobe", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=cli_env(REDISPROBE_TEST_MARKER=marker),
                            start_new_session=True)


def _wait_for_actors(proc: subprocess.Popen[str], count: int, timeout: float = 60,
                     trace_path: object = None) -> list[psutil.Process]:
    """The actor processes, once they exist (and, given the trace, once each has connected)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        actors = [p for p in psutil.Process(proc.pid).children(recursive=True)
                  if "redisprobe.producers.actors.child" in " ".join(p.cmdline())]
        path = Path(str(trace_path)) if trace_path is not None else None
        connected = path is None or (path.exists() and path.read_text().count('"actor-started"') >= count)
        if len(actors) >= count and connected:
            time.sleep(0.5)  # let them start waiting
            return actors
        time.sleep(0.05)
    raise AssertionError("actors did not start")


def _family(proc: subprocess.Popen[str]) -> list[psutil.Process]:
    """Everything the command started (redis-server rewrites its environment, so we track pids too)."""
    return psutil.Process(proc.pid).children(recursive=True)


def _alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for p in processes:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.NoSuchProcess:
            pass
    return alive


def _assert_nothing_left(marker: str, family: list[psutil.Process]) -> None:
    deadline = time.monotonic() + 30  # generous: a loaded machine reaps slowly
    while (processes_with_marker(marker) or _alive(family)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_with_marker(marker) == []
    assert _alive(family) == []


def test_ctrl_c_mid_run_stops_actors_and_sandbox(tmp_path):
    marker = new_marker()
    out = tmp_path / "trace.jsonl"
    proc = _start(marker, "isolation", "--topology", "split", "--timeout", "60", "--out", str(out))
    try:
        _wait_for_actors(proc, 2, trace_path=out)
        family = _family(proc)
        assert sum("redis-server" in p.name() for p in family) == 2
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    _assert_nothing_left(marker, family)
    from redisprobe.trace import ActorStarted, load_trace

    _, events = load_trace(out)  # the trace is readable after the interruption
    assert sum(isinstance(e, ActorStarted) for e in events) == 2


def test_sigterm_to_redisprobe_alone_still_cleans_up():
    marker = new_marker()
    proc = _start(marker, "isolation", "--topology", "split", "--timeout", "60")
    try:
        _wait_for_actors(proc, 2)
        family = _family(proc)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    _assert_nothing_left(marker, family)


def test_killed_actor_is_reported_and_nothing_remains(tmp_path):
    marker = new_marker()
    out = tmp_path / "trace.jsonl"
    proc = _start(marker, "isolation", "--topology", "split", "--timeout", "8", "--json", "--out", str(out))
    try:
        actors = _wait_for_actors(proc, 2)
        family = _family(proc)
        actors[0].kill()
        stdout, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2, err
    assert "crashed" in err and "killed by signal 9" in err
    import json

    assert json.loads(stdout)["crashed"][0]["pid"] == actors[0].pid
    _assert_nothing_left(marker, family)


def test_sandbox_command_prints_urls_and_stops_on_ctrl_c():
    marker = new_marker()
    proc = _start(marker, "sandbox", "--topology", "replica")
    try:
        lines = [proc.stdout.readline() for _ in range(2)]
        family = _family(proc)
        urls = [line.split(": ", 1)[1].strip() for line in lines]
        assert redis.Redis.from_url(urls[1]).info("replication")["role"] == "slave"
        os.killpg(proc.pid, signal.SIGINT)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    _assert_nothing_left(marker, family)
