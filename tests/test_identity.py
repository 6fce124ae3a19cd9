"""How processes are named: command lines, cgroups and PM2 environments as the kernel and PM2 write them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from redisprobe.producers import procs
from redisprobe.producers.processes.identity import command_identity, identity_of, parse_cgroup, pm2_of, program_of


@pytest.mark.parametrize("argv, expected", [
    (["node", "/srv/orders/api.js"], "node api.js"),
    (["/usr/bin/node", "--max-old-space-size", "512", "/srv/orders/index.js"], "node orders/index.js"),
    (["node /tmp/nu_node_processor.js                "], "node nu_node_processor.js"),  # PM2's title over argv
    (["PM2 v7.0.4: God Daemon (/home/app/.pm2)"], "PM2 v7.0.4: God Daemon (/home/app/.pm2)"),
    (["/usr/bin/python3", "-u", "-m", "rq.cli", "worker", "--url", "redis://x"], "python -m rq.cli worker"),
    (["python3", "-m", "celery", "-A", "tasks", "worker", "--loglevel", "INFO"], "celery worker"),
    (["/venv/bin/python3", "/venv/bin/celery", "-A", "tasks", "worker"], "celery worker"),
    (["python3", "/srv/app/shop_producer.py"], "python shop_producer.py"),
    (["python3", "-c", "import redis"], "python -c"),
    (["redis-cli", "-p", "6379", "monitor"], "redis-cli monitor"),
    ([], "kernel-name"),
])
def test_command_identity(argv: list[str], expected: str) -> None:
    assert command_identity(argv, "kernel-name") == expected


@pytest.mark.parametrize("text, expected", [
    ("0::/system.slice/orders-api.service\n", ("orders-api.service", "")),
    ("0::/user.slice/user-1000.slice/user@1000.service/app.slice/worker.service\n", ("worker.service", "")),
    ("0::/user.slice/user-1000.slice/session-3.scope\n", ("", "")),
    ("0::/system.slice/docker-3f2a9c1e5b7d8a6f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f.scope\n",
     ("", "3f2a9c1e5b7d8a6f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f")),
    ("12:memory:/docker/0123456789abcdef0123\n1:name=systemd:/docker/0123456789abcdef0123\n",
     ("", "0123456789abcdef0123")),
    ("0::/\n", ("", "")),
])
def test_parse_cgroup(text: str, expected: tuple[str, str]) -> None:
    assert parse_cgroup(text) == expected


def test_pm2_environments_fork_and_cluster() -> None:
    fork = {"name": "api", "pm_id": "0", "NODE_APP_INSTANCE": "0", "exec_mode": "fork_mode", "instances": "1",
            "PM2_HOME": "/home/app/.pm2"}
    assert pm2_of(fork) == ("api", 0, 0, "/home/app/.pm2", False)
    cluster = {"PM2_HOME": "/home/app/.pm2", "pm2_env": json.dumps(
        {"name": "batch-processor", "pm_id": 2, "NODE_APP_INSTANCE": 1, "exec_mode": "cluster_mode", "instances": 2})}
    assert pm2_of(cluster) == ("batch-processor", 2, 1, "/home/app/.pm2", True)
    assert pm2_of({"name": "bash", "HOME": "/root"}) is None  # `name` alone is no PM2 app


def test_program_of_drops_the_instance() -> None:
    assert program_of("batch-processor#1") == program_of("batch-processor#0") == "batch-processor"
    assert program_of("node api.js") == "node api.js"
    assert program_of("channel#general") == "channel#general"


def test_identity_of_a_live_process_is_its_script(tmp_path: Path) -> None:
    script = tmp_path / "a_rather_long_worker_name.py"
    script.write_text("import sys; sys.stdin.read()")
    proc = procs.spawn([sys.executable, "-u", str(script), "--queue", "mail"], stdin=subprocess.PIPE)
    try:
        identity = identity_of(proc.pid)
    finally:
        procs.stop(proc)
    # the kernel's name would be `python3.11`; the owner knows the script
    assert (identity.name, identity.source) == ("python a_rather_long_worker_name.py", "command")
    assert identity_of(proc.pid).name == ""  # gone
