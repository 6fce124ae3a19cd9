"""Independent client processes for end-to-end tests: a python (redis-py) client and a plain redis-cli,
both long-lived (so their connection, and so their pid, can be seen) and fed commands one at a time; another
service that is no child of the test; a sandbox cluster's replica promoted in a failover."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import ExitStack, suppress
from pathlib import Path

import psutil
import redis

_PY_CLIENT = r"""
import json, sys, redis
client = redis.Redis.from_url(sys.argv[1])
client.echo("ready")  # not PING: a server in MISCONF refuses PING
print("ready", flush=True)
for line in sys.stdin:
    args = json.loads(line)
    try:
        reply = client.execute_command(*args)
    except redis.RedisError as exc:
        reply = f"error: {exc}"
    print(json.dumps(reply if not isinstance(reply, bytes) else reply.decode("latin-1"), default=str), flush=True)
"""


class Client:
    """`Client(url)` runs redis-py in its own process; `Client(url, cli=True)` runs `redis-cli`."""

    def __init__(self, url: str, *, cli: bool = False) -> None:
        self.cli = cli
        argv = ["redis-cli", "-u", url] if cli else [sys.executable, "-c", _PY_CLIENT, url]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if cli:
            self.send("PING")
        else:
            assert self.proc.stdout.readline().strip() == "ready"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, *args: object) -> str:
        """Run one command and wait for its (first) reply line: when this returns, the server has run it."""
        if self.cli:
            self.proc.stdin.write(" ".join(_quote(str(a)) for a in args) + "\n")
        else:
            self.proc.stdin.write(json.dumps([str(a) for a in args]) + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _quote(arg: str) -> str:
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"' if (" " in arg or not arg) else arg


def start_client(stack: ExitStack, url: str, *, cli: bool = False) -> Client:
    """A client process closed when `stack` closes."""
    client = Client(url, cli=cli)
    stack.callback(client.close)
    return client


def run_as_another_service(script: str, *args: str, output: Path, timeout: float = 60) -> str:
    """Run a python `script` as another service: started through a shell that exits at once, so it is no child of
    the test process (a listed process's children are its own). Waits for it; returns what it printed."""
    shell = 'python=$0 script=$1; shift; "$python" -c "$script" "$@" >"$OUT" 2>&1 & echo $!'
    started = subprocess.run(["sh", "-c", shell, sys.executable, script, *args], capture_output=True, text=True,
                             check=True, timeout=30, env={**os.environ, "OUT": str(output)})
    with suppress(psutil.NoSuchProcess):
        psutil.wait_procs([psutil.Process(int(started.stdout.strip()))], timeout=timeout)
    return output.read_text()


def not_our_child(script: str, *args: str) -> psutil.Process:
    """`python -c script args...` as another service: started through a shell that exits at once, so its parent is
    not this process (a listed process's children belong to it)."""
    out = subprocess.run(["sh", "-c", '"$0" -c "$@" >/dev/null 2>&1 & echo $!', sys.executable, script, *args],
                         capture_output=True, text=True, check=True, timeout=30)
    return psutil.Process(int(out.stdout.strip()))


def replica_of(box, port: int) -> int:
    """The port of the sandbox cluster node that replicates the primary on `port`."""
    for server in box.servers:
        client = redis.Redis(port=server.port)
        try:
            if client.info("replication").get("master_port") == port:
                return server.port
        finally:
            client.close()
    raise AssertionError(f"no replica of {port}")


def wait_promoted(port: int, timeout: float = 30) -> None:
    """Until the node on `port` says it is a primary (a failover can take seconds on a loaded machine)."""
    client = redis.Redis(port=port)
    try:
        deadline = time.monotonic() + timeout
        while client.info("replication")["role"] != "master":
            assert time.monotonic() < deadline, f"127.0.0.1:{port} was not promoted"
            time.sleep(0.1)
    finally:
        client.close()


def fail_over(replica: int, *, force: bool = False) -> None:
    """CLUSTER FAILOVER on the replica on port `replica`, and wait for it to be a primary. `force`: without waiting
    for its primary's last writes."""
    client = redis.Redis(port=replica)
    try:
        client.execute_command("CLUSTER", "FAILOVER", *(["FORCE"] if force else []))
    finally:
        client.close()
    wait_promoted(replica)
