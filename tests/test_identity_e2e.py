"""Processes named and selected the way their owners know them, under a real PM2 and real forked workers.

One PM2 (a private PM2_HOME) runs for the whole module: `idt-api` in fork mode and `idt-batch` in cluster mode
with two instances, each a node-redis client writing its own key on a server of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis

from redisprobe.producers import procs
from redisprobe.targets.sandbox import Sandbox, sandbox
from tests.apps.harness import NODE_DIR, PM2, check_installed, node_env
from tests.clirun import cli_env, run_cli
from tests.monitorrun import MonitorRun

APP = Path(__file__).parent / "apps" / "node" / "identity" / "app.js"

pytestmark = pytest.mark.skipif(bool(check_installed()), reason=check_installed() or "corpus packages present")


class Pm2:
    def __init__(self, home: Path, url: str) -> None:
        self.home = home
        self.env = {**node_env(), "PM2_HOME": str(home)}
        self.url = url

    def run(self, *args: str) -> str:
        done = subprocess.run([str(PM2), *args], env=self.env, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL, check=False)
        assert done.returncode == 0, done.stdout[-800:] + done.stderr[-800:]
        return done.stdout

    def pids(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for entry in json.loads(self.run("jlist") or "[]"):
            if entry.get("pid"):
                out.setdefault(entry["name"], []).append(int(entry["pid"]))
        return {name: sorted(pids) for name, pids in out.items()}

    def kill(self) -> None:
        daemon = None
        with contextlib.suppress(OSError, ValueError):
            daemon = int((self.home / "pm2.pid").read_text().strip())
        with contextlib.suppress(Exception):
            self.run("kill")
        if daemon is not None:
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(daemon)
                tree = [root, *root.children(recursive=True)]
                for proc in tree:
                    with contextlib.suppress(psutil.Error):
                        proc.kill()


@pytest.fixture(scope="module")
def server() -> Iterator[Sandbox]:
    with sandbox("single") as box:
        yield box


@pytest.fixture(scope="module")
def pm2(server: Sandbox) -> Iterator[Pm2]:
    home = Path(tempfile.mkdtemp(prefix="redisprobe-idt-pm2-"))
    running = Pm2(home, server.urls[0])
    env = {"REDIS_URL": server.urls[0]}
    ecosystem = {"apps": [
        {"name": "idt-api", "script": str(APP), "env": {**env, "APP_TAG": "api"}, "autorestart": True},
        {"name": "idt-batch", "script": str(APP), "env": {**env, "APP_TAG": "batch"}, "exec_mode": "cluster",
         "instances": 2, "autorestart": True}]}
    path = home / "ecosystem.json"
    path.write_text(json.dumps(ecosystem))
    try:
        running.run("start", str(path))
        client = redis.Redis.from_url(server.urls[0])
        deadline = time.monotonic() + 30
        while sum(1 for c in client.client_list() if c.get("name", "").startswith("ident-")) < 3:
            assert time.monotonic() < deadline, "the PM2 apps never connected"
            time.sleep(0.1)
        client.close()
        yield running
    finally:
        running.kill()


def user_env(pm2: Pm2, *, with_cli: bool = False) -> dict[str, str]:
    """The user's shell: PM2_HOME set; the pm2 CLI on PATH only when asked (else PM2's files are read)."""
    env = cli_env(PM2_HOME=str(pm2.home))
    if with_cli:
        env["PATH"] = f"{NODE_DIR / 'node_modules' / '.bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_info_names_every_instance_of_a_pm2_app_from_its_files(server: Sandbox, pm2: Pm2) -> None:
    pids = pm2.pids()
    result = run_cli("info", "--pids", "pm2:idt-batch", "--pids", "api=pm2:idt-api", "--url", server.urls[0],
                     "--json", env=user_env(pm2))
    assert result.code == 0, result.err
    entries = {entry["pid"]: entry for entry in result.json()["pids"]}
    assert set(entries) == {*pids["idt-batch"], *pids["idt-api"]}
    batch = sorted(entries[pid]["label"] for pid in pids["idt-batch"])
    assert batch == ["idt-batch#0", "idt-batch#1"]
    api = entries[pids["idt-api"][0]]
    assert (api["label"], api["name"], api["source"]) == ("api", "idt-api", "pm2")
    for entry in entries.values():
        assert [c["name"] for c in entry["connections"]] == \
            ["ident-api" if entry["label"] == "api" else "ident-batch"], entry
        assert all(c["process"] == entry["name"] for c in entry["connections"])
        assert "lib" in entry["connections"][0]

    text = run_cli("info", "--pids", "pm2:idt-batch", "--pids", "api=pm2:idt-api", "--url", server.urls[0],
                   env=user_env(pm2, with_cli=True))
    assert text.code == 0, text.err
    for pid in pids["idt-batch"]:
        assert f"(pid {pid})" in text.out
    assert f"api (pid {pids['idt-api'][0]}, idt-api)" in text.out
    assert "idt-batch#0" in text.out and "idt-batch#1" in text.out
    assert "ident-batch" in text.out


def test_pm2_flag_watches_every_app(server: Sandbox, pm2: Pm2) -> None:
    result = run_cli("info", "--pm2", "--url", server.urls[0], "--json", env=user_env(pm2, with_cli=True))
    assert result.code == 0, result.err
    assert sorted(entry["label"] for entry in result.json()["pids"]) == ["idt-api", "idt-batch#0", "idt-batch#1"]


def test_the_pm2_daemons_pid_means_its_apps_each_named_as_itself(server: Sandbox, pm2: Pm2) -> None:
    daemon = int((pm2.home / "pm2.pid").read_text().strip())
    result = run_cli("info", "--pids", str(daemon), "--url", server.urls[0], "--json", env=cli_env())
    assert result.code == 0, result.err
    assert sorted(entry["label"] for entry in result.json()["pids"]) == ["idt-api", "idt-batch#0", "idt-batch#1"]
    assert daemon not in [entry["pid"] for entry in result.json()["pids"]]


def test_a_misspelt_app_is_one_error_line_naming_the_apps(pm2: Pm2) -> None:
    for with_cli in (False, True):
        result = run_cli("info", "--pids", "pm2:idt-bacth", env=user_env(pm2, with_cli=with_cli))
        assert result.code != 0
        assert result.err.strip().splitlines() == [
            "redisprobe: error: pm2:idt-bacth: no such app; apps: idt-api, idt-batch"]


@pytest.mark.parametrize("item, says", [
    ("cmd:no-such-program-[0-9]{7}", "cmd:no-such-program-[0-9]{7}: no running process's command line matches"),
    ("cmd:(", "not a regular expression"),
    ("systemd:no-such-unit", "systemd:no-such-unit: no process in unit no-such-unit.service"),
    ("container:deadbeef0000", "container:deadbeef0000: no such container"),
])
def test_a_selector_that_matches_nothing_is_one_error_line(item: str, says: str) -> None:
    result = run_cli("info", "--pids", item)
    assert result.code != 0
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], result.err
    assert "Traceback" not in result.err


def test_monitor_follows_a_pm2_restart_and_names_each_instance(server: Sandbox, pm2: Pm2, tmp_path: Path) -> None:
    before = pm2.pids()
    trace_path = tmp_path / "pm2.jsonl"
    run = MonitorRun("--url", server.urls[0], "--pids", "api=pm2:idt-api", "--pids", "pm2:idt-batch",
                     "--keys", "ident:*", "--out", str(trace_path), env=user_env(pm2))
    try:
        time.sleep(1.0)
        pm2.run("restart", "idt-api")
        deadline = time.monotonic() + 30
        while pm2.pids().get("idt-api") == before["idt-api"]:
            assert time.monotonic() < deadline, "PM2 did not restart the app"
            time.sleep(0.2)
        pm2.run("scale", "idt-batch", "3")  # a new cluster instance
        while len(pm2.pids().get("idt-batch", [])) < 3:
            assert time.monotonic() < deadline, "PM2 did not scale the app"
            time.sleep(0.2)
        time.sleep(2.0)  # the new processes connect and write
        code, out, err = run.stop()
    finally:
        run.kill()
    assert code == 130, err
    new_api = pm2.pids()["idt-api"][0]
    (new_batch,) = set(pm2.pids()["idt-batch"]) - set(before["idt-batch"])
    assert f"pid {new_batch} (idt-batch#2) is now watched as idt-batch#2: it matches pm2:idt-batch" in out, out
    # the timeline says the restarted process joined its label; the clients table names every instance
    assert f"pid {new_api} (idt-api) is now watched as api: it matches pm2:idt-api" in out, out
    assert f"api:{new_api}" in out
    for pid in before["idt-batch"]:
        assert re.search(rf"idt-batch#[01]:{pid}\b", out), out
    assert "api (idt-api)" in out  # the clients table: the user's label and the PM2 identity

    report = run_cli("report", str(trace_path), "--json")
    clients = {c["pid"]: c for c in report.json()["clients"] if c["pid"]}
    assert clients[new_api]["label"] == "api"
    assert clients[before["idt-api"][0]]["label"] == "api"
    assert sorted(clients[pid]["label"] for pid in before["idt-batch"]) == ["idt-batch#0", "idt-batch#1"]
    assert clients[new_batch]["label"] == "idt-batch#2"
    assert {clients[pid]["process"] for pid in before["idt-batch"]} == {"idt-batch#0", "idt-batch#1"}
    assert report.json()["findings"] == [], report.json()["findings"]


FORKER = """
import os, sys, time, redis
r = redis.Redis.from_url(sys.argv[1], single_connection_client=True)
r.client_setname("forker")
r.ping()
children = []
for index in range(2):
    pid = os.fork()
    if pid == 0:
        while True:
            r.set(f"fork:{os.getpid()}", index, px=2000)
            time.sleep(0.05)
    children.append(pid)
print(" ".join(str(c) for c in children), flush=True)
sys.stdin.read()
for pid in children:
    os.kill(pid, 9)
"""


@pytest.fixture
def forker(server: Sandbox, tmp_path: Path) -> Iterator[tuple[int, list[int]]]:
    script = tmp_path / "forker.py"
    script.write_text(FORKER)
    proc = procs.spawn([sys.executable, str(script), server.urls[0]], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        children = [int(pid) for pid in proc.stdout.readline().split()]
        assert len(children) == 2
        yield proc.pid, children
    finally:
        for pid in psutil.Process(proc.pid).children() if psutil.pid_exists(proc.pid) else []:
            with contextlib.suppress(psutil.Error):
                pid.kill()
        procs.stop(proc)


def test_a_socket_shared_by_forked_workers_names_every_pid(server: Sandbox, forker: tuple[int, list[int]],
                                                           tmp_path: Path) -> None:
    parent, children = forker
    trace_path = tmp_path / "fork.jsonl"
    run = MonitorRun("--url", server.urls[0], "--pids", r"workers=cmd:forker\.py", "--keys", "fork:*",
                     "--out", str(trace_path))
    try:
        code, out, err = run.stop(settle=1.5)
    finally:
        run.kill()
    assert code == 130, err
    assert "shared-connection" in out
    for pid in (parent, *children):
        assert f"pid {pid} (workers)" in out, out

    report = run_cli("report", str(trace_path), "--json").json()
    shared = [f for f in report["findings"] if f["rule"] == "shared-connection"]
    assert len(shared) == 1, report["findings"]
    for pid in (parent, *children):
        assert f"pid {pid} (workers)" in shared[0]["evidence"][0]
    assert shared[0]["culprit"]["label"] == "workers"
    forker_client = [c for c in report["clients"] if c["name"] == "forker"]
    assert forker_client and forker_client[0]["process"] == "python forker.py"


ONE_SHOT = """
import sys, time, redis
r = redis.Redis.from_url(sys.argv[1])
r.set("oneshot:k", 1, px=3000)
time.sleep(0.8)
"""


def test_an_unlisted_one_shot_client_is_named_by_its_script(server: Sandbox, tmp_path: Path) -> None:
    script = tmp_path / "oneshot_job.py"
    script.write_text(ONE_SHOT)
    run = MonitorRun("--url", server.urls[0], "--keys", "oneshot:*", "--out", str(tmp_path / "one.jsonl"))
    try:
        job = subprocess.run([sys.executable, str(script), server.urls[0]], timeout=30, check=True)
        assert job.returncode == 0
        code, out, err = run.stop()
    finally:
        run.kill()
    assert code == 130, err
    assert "unlisted python oneshot_job.py" in out, out
    report = run_cli("report", str(tmp_path / "one.jsonl"), "--json").json()
    assert "python oneshot_job.py" in [c["process"] for c in report["clients"] if c["label"] == "unlisted"]


UNIX_CLIENT = """
import sys, time, redis
r = redis.Redis(unix_socket_path=sys.argv[1], single_connection_client=True)
r.client_setname(sys.argv[2])
print("ready", flush=True)
while True:
    r.set(f"unix:{sys.argv[2]}", 1, px=2000)
    time.sleep(0.1)
"""


def test_unix_socket_clients_are_mapped_to_their_pids(tmp_path: Path) -> None:
    sock = tempfile.mktemp(prefix="redisprobe-idt-", suffix=".sock", dir="/tmp")
    script = tmp_path / "unix_client.py"
    script.write_text(UNIX_CLIENT)
    with sandbox("single", extra=["--unixsocket", sock, "--unixsocketperm", "700"]) as box:
        clients = [procs.spawn([sys.executable, str(script), sock, name], stdout=subprocess.PIPE)
                   for name in ("alpha", "beta")]
        try:
            for client in clients:
                assert client.stdout is not None and client.stdout.readline()
            pids = {"alpha": clients[0].pid, "beta": clients[1].pid}
            run = MonitorRun("--url", f"unix://{sock}", "--keys", "unix:*", "--json")
            try:
                summary = run.stop_json(settle=1.0)
            finally:
                run.kill()
            text = run_cli("info", "--pids", r"cmd:unix_client\.py", "--url", f"unix://{sock}",
                           env=cli_env(COLUMNS="250"))
            info = run_cli("info", "--pids", r"cmd:unix_client\.py", "--url", f"unix://{sock}", "--json")
        finally:
            for client in clients:
                procs.stop(client)
    seen = {c["name"]: c for c in summary["clients"] if c["name"] in pids}
    assert {name: c["pid"] for name, c in seen.items()} == pids
    assert {c["process"] for c in seen.values()} == {"python unix_client.py"}
    assert box.servers  # the server was ours
    assert info.code == 0, info.err
    entries = {e["pid"]: e for e in info.json()["pids"]}
    assert set(entries) == set(pids.values())
    for name, pid in pids.items():
        assert [c["name"] for c in entries[pid]["connections"]] == [name]
        assert entries[pid]["name"] == "python unix_client.py"
        assert f"python unix_client.py:{pid} (pid {pid})" in text.out, text.out


SPAWNER = """
import os, sys, time, redis
redis.Redis.from_url(sys.argv[1]).set("spawn:parent", 1, px=3000)
print("ready", flush=True)
sys.stdin.readline()
if os.fork() == 0:
    r = redis.Redis.from_url(sys.argv[1])
    r.client_setname("spawned-child")
    while True:
        r.set(f"spawn:{os.getpid()}", 1, px=2000)
        time.sleep(0.1)
os.wait()
"""


def test_a_worker_forked_during_the_capture_joins_its_parents_label(server: Sandbox, tmp_path: Path) -> None:
    script = tmp_path / "spawner.py"
    script.write_text(SPAWNER)
    parent = procs.spawn([sys.executable, str(script), server.urls[0]], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    trace_path = tmp_path / "spawn.jsonl"
    try:
        assert parent.stdout is not None and parent.stdin is not None and parent.stdout.readline()
        run = MonitorRun("--url", server.urls[0], "--pids", f"spawner={parent.pid}", "--keys", "spawn:*",
                         "--out", str(trace_path))
        try:
            parent.stdin.write(b"go\n")
            parent.stdin.flush()
            code, out, err = run.stop(settle=1.5)
        finally:
            run.kill()
        child = psutil.Process(parent.pid).children()[0].pid
    finally:
        with contextlib.suppress(psutil.Error):
            for proc in psutil.Process(parent.pid).children():
                proc.kill()
        procs.stop(parent)
    assert code == 130, err
    assert f"pid {child} (python spawner.py) is now watched as spawner: a child of a listed process" in out, out
    assert f"spawner:{child}" in out
    report = run_cli("report", str(trace_path), "--json").json()
    spawned = [c for c in report["clients"] if c["name"] == "spawned-child"]
    assert [(c["pid"], c["label"], c["process"]) for c in spawned] == [(child, "spawner", "python spawner.py")]

