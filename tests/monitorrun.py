"""Run `redisprobe monitor` as a user would, in the background, and stop it with Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from tests.clirun import cli_env


class MonitorRun:
    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "redisprobe", "monitor", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env or cli_env())
        self.err_lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                raise AssertionError(f"monitor exited early: {self.proc.wait()} {''.join(self.err_lines)}")
            self.err_lines.append(line)
            if "capturing" in line:
                return
        raise AssertionError("monitor did not become ready")

    def stop(self, *, settle: float = 0.4) -> tuple[int, str, str]:
        """Ctrl-C after letting keyspace events arrive; returns exit code, stdout, stderr."""
        time.sleep(settle)
        os.kill(self.proc.pid, signal.SIGINT)
        out, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, out, "".join(self.err_lines) + err

    def stop_json(self, **kwargs: float) -> dict:
        code, out, err = self.stop(**kwargs)
        assert code == 130, (code, err)
        assert "Traceback" not in err, err
        return json.loads(out)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def start_monitor(stack: ExitStack, url: str, pids: dict[str, int], *extra: str) -> MonitorRun:
    """`monitor --url URL --pids label=pid,... --json --enable-events`, killed when `stack` closes if still up."""
    spec = ",".join(f"{label}={pid}" for label, pid in pids.items())
    run = MonitorRun("--url", url, "--pids", spec, "--json", "--enable-events", *extra)
    stack.callback(run.kill)
    return run


def rules_of(doc: dict) -> list[str]:
    return [f["rule"] for f in doc["findings"]]


def monitor_this_process(*urls: str, duration: float = 8, out: Path | None = None) -> subprocess.Popen[str]:
    """`monitor --url URL... --duration D --json --enable-events --pids app=<this test's pid>`, returned once it
    says it is capturing (on a cluster: once every node's MONITOR is on)."""
    given = [word for url in urls for word in ("--url", url)]
    proc = subprocess.Popen([sys.executable, "-m", "redisprobe", "monitor", *given, "--json", "--duration",
                             str(duration), "--enable-events", "--pids", f"app={os.getpid()}",
                             *(["--out", str(out)] if out else [])],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
    assert proc.stderr is not None
    said = []
    while True:
        line = proc.stderr.readline()
        said.append(line)
        assert line, "".join(said)
        if "capturing" in line:
            return proc


def finished_json(proc: subprocess.Popen[str], *, early: bool = False) -> tuple[dict, str]:
    """The JSON a `monitor_this_process` run printed, and its stderr. `early`: the test's actions are over, so end
    the capture now with Ctrl-C (it drains, then analyses it all; exit 130) instead of letting it run out a
    --duration sized for a slow machine; without it the exit code says whether there were findings."""
    if early:
        time.sleep(0.5)  # the last CLIENT LIST sample and keyspace events
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    if early:
        assert proc.returncode in (0, 1, 130) and "Traceback" not in err, (proc.returncode, err)
    return json.loads(out), err
