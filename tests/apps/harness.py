"""Run one real app of the corpus on its own redis-server, capture it with the real `redisprobe monitor` CLI, stop
everything.

An app is a few processes started the way their users start them: Node (and some Python) programs under PM2, from
an ecosystem file with one `env` block per process (the defect is one setting in it, as in production), and the
Python job queues under their own process managers (`rq worker`, `celery worker`). The app runs `WARMUP` seconds
before the capture starts (its keys exist before anyone attaches), then `redisprobe monitor --url URL --pids
label=pid,... --duration D --enable-events --json` runs as a subprocess, and its JSON is kept with the pids of
every process of the app (the ones PM2 or Popen reported, and every descendant seen while the app ran: celery's
prefork children, rq's work horses).

A cluster app (`topology="cluster"`) gets a sandbox Redis Cluster of 3 primaries instead; REDIS_URL and `--url` name
its first node (monitor finds the others).

Nothing outlives `run_app`: PM2 is `pm2 kill`ed (its daemon killed by pid if that did not end it), every plain
process group is killed, the server stopped, also when something in between fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from redisprobe.targets.sandbox import free_port, sandbox

APPS_DIR = Path(__file__).resolve().parent
NODE_DIR = APPS_DIR / "node"
PY_DIR = APPS_DIR / "py"
PM2 = NODE_DIR / "node_modules" / ".bin" / "pm2"

WARMUP = 2.0
"""Seconds the app runs before the capture starts."""

DURATION = 4.0
"""Seconds `redisprobe monitor` captures."""


@dataclass
class Proc:
    """One process (or one PM2 app, all its instances) of an app."""

    name: str  # the PM2 app name, else the role; the label given to --pids
    script: str = ""  # PM2: the script, relative to tests/apps/
    argv: list[str] = field(default_factory=list)  # plain process: argv; `{python}` is this interpreter, `{url}`
    # the server's URL (db 0), `{url/1}` the same server's db 1
    env: dict[str, str] = field(default_factory=dict)  # its own settings, on top of REDIS_URL
    instances: int = 1  # PM2 cluster mode when > 1
    interpreter: str = ""  # PM2: `python` runs a Python script under PM2
    listed: bool = True  # given to --pids (False: a process the user did not know about)
    start_after: float = 0.0  # seconds after the others (a producer that waits for its worker)
    redis: bool = True  # False: talks HTTP only (a load generator), never to Redis


@dataclass
class App:
    name: str
    library: str
    manager: str
    description: str
    procs: list[Proc]
    rule: str | None = None  # None: a healthy twin (zero findings, exit 0)
    culprit: str | None = None  # the Proc name whose pid (or a descendant's) the finding must name; None: server
    twin: str = ""  # the bug app this healthy app is the twin of (or the reverse)
    server_args: list[str] = field(default_factory=list)
    topology: str = "single"  # "cluster": a sandbox Redis Cluster of 3 primaries; REDIS_URL names its first node;
    # "two-clusters": two such clusters, alike (a second one's first node is `{other_url}` in a Proc's env), both
    # watched (`monitor --url A --url B`)
    today: str = ""  # what today's tool says instead, when it gets this app wrong (an xfail in the tests)
    sometimes: bool = False  # today's wrong verdict comes in some runs only (a non-strict xfail)

    @property
    def healthy(self) -> bool:
        return self.rule is None


@dataclass
class Capture:
    app: App
    code: int
    doc: dict | None
    stderr: str
    pids: dict[str, set[int]]  # Proc name -> every pid it had (instances, descendants)
    argv: list[str]
    logs: str = ""
    seconds: float = 0.0
    source: str = "monitor"  # `monitor --source`: monitor, wire or both

    @property
    def findings(self) -> list[dict]:
        return list((self.doc or {}).get("findings") or [])

    def rules(self) -> list[str]:
        return [f.get("rule", "?") for f in self.findings]

    def culprit_pids(self) -> set[int]:
        if self.app.culprit is None:
            return set()
        return self.pids.get(self.app.culprit, set())

    def names_culprit(self, finding: dict) -> bool:
        culprit = finding.get("culprit") or None
        if self.app.culprit is None:
            return culprit is None or culprit.get("pid") is None
        return culprit is not None and culprit.get("pid") in self.culprit_pids()

    def idle(self) -> list[str]:
        """Processes that talk to Redis but had no connection in the capture (crashed, stuck, never started)."""
        seen = {client.get("pid") for client in (self.doc or {}).get("clients") or []}
        return [proc.name for proc in self.app.procs if proc.redis and not seen & self.pids.get(proc.name, set())]

    def right(self) -> list[dict]:
        """Findings with the expected rule that name the culprit."""
        return [f for f in self.findings if f.get("rule") == self.app.rule and self.names_culprit(f)]

    def verdict(self) -> str:
        """bug app: right / wrong / missed; healthy twin: silent / false."""
        if self.doc is None:
            return "error"
        if self.app.healthy:
            return "silent" if not self.findings and self.code == 0 else "false"
        if self.right():
            return "right"
        return "wrong" if self.findings else "missed"

    def explain(self) -> str:
        """What the tool said, short: each finding's rule, culprit and summary (for failures and the table)."""
        source = "" if self.source == "monitor" else f" (--source {self.source})"
        lines = [f"{self.app.name}{source}: exit {self.code}, verdict {self.verdict()}, pids "
                 + ", ".join(f"{name}={sorted(pids)}" for name, pids in self.pids.items())]
        for finding in self.findings:
            culprit = finding.get("culprit") or {}
            lines.append(f"  {finding.get('rule')} culprit pid {culprit.get('pid')} ({culprit.get('label', '')}): "
                         f"{finding.get('summary', '')}")
            lines += [f"      {line}" for line in (finding.get("evidence") or [])[:4]]
        if self.doc is None:
            lines.append("  no JSON: " + self.stderr[-1500:])
        return "\n".join(lines)


def node_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PM2_", "NODE_APP_INSTANCE"))}
    env["PATH"] = f"{NODE_DIR / 'node_modules' / '.bin'}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}" \
                  f"{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(PY_DIR)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def check_installed() -> str:
    """'' when the corpus can run, else why not (npm ci not run, a Python package missing)."""
    if not PM2.exists():
        return f"the Node apps' packages are not installed: run `npm ci` in {NODE_DIR}"
    if not shutil.which("node"):
        return "node is not on PATH"
    for module in ("rq", "celery"):
        try:
            __import__(module)
        except ImportError:
            return f"the Python package {module} is missing: pip install -e '.[apps]'"
    return ""


_LOGGED_PID = re.compile(r"\[pid (\d+)\]")
"""A job that logs `[pid N]` ran in process N (rq's work horse lives tens of milliseconds: the 50 ms tracker may
never see it; its own log line says where it ran)."""


class _Tracker(threading.Thread):
    """Samples the app's process trees every 50 ms: short-lived children (work horses) keep their owner."""

    def __init__(self, roots: dict[str, set[int]]) -> None:
        super().__init__(daemon=True)
        self.roots = roots
        self.seen: dict[str, set[int]] = {name: set(pids) for name, pids in roots.items()}
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            self.sample()
            self.halt.wait(0.05)

    def sample(self) -> None:
        for name, pids in self.roots.items():
            for pid in list(pids):
                with contextlib.suppress(psutil.Error):
                    for child in psutil.Process(pid).children(recursive=True):
                        self.seen[name].add(child.pid)

    def stop(self) -> dict[str, set[int]]:
        self.halt.set()
        self.join(timeout=2)
        self.sample()
        return self.seen


class _Pm2:
    """A PM2 of our own (PM2_HOME in the run's temp dir): start an ecosystem file, read `pm2 jlist`, kill it."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home = home
        self.env = {**env, "PM2_HOME": str(home)}
        self.started = False

    def run(self, *args: str, timeout: float = 60) -> str:
        done = subprocess.run([str(PM2), *args], env=self.env, cwd=APPS_DIR, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise RuntimeError(f"pm2 {' '.join(args)} failed: {done.stdout[-800:]} {done.stderr[-800:]}")
        return done.stdout

    def start(self, ecosystem: Path) -> None:
        self.started = True
        self.run("start", str(ecosystem))

    def pids(self) -> dict[str, set[int]]:
        out: dict[str, set[int]] = {}
        for entry in json.loads(self.run("jlist") or "[]"):
            if entry.get("pid"):
                out.setdefault(entry["name"], set()).add(int(entry["pid"]))
        return out

    def logs(self) -> str:
        texts = []
        for log in sorted((self.home / "logs").glob("*.log")):
            with contextlib.suppress(OSError):
                tail = log.read_text(errors="replace")[-1500:]
                if tail.strip():
                    texts.append(f"--- pm2 {log.name}\n{tail}")
        return "\n".join(texts)

    def kill(self) -> None:
        if not self.started:
            return
        daemon = None
        with contextlib.suppress(OSError, ValueError):
            daemon = int((self.home / "pm2.pid").read_text().strip())
        with contextlib.suppress(Exception):
            self.run("kill", timeout=30)
        if daemon is not None:
            _kill_tree(daemon)
        self.started = False


def _kill_tree(pid: int) -> None:
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
        for proc in tree:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(tree, timeout=5)


def settings(proc: Proc, placeholders: dict[str, str]) -> dict[str, str]:
    """The process's env with `{http}`, `{admin}`... replaced by the HTTP ports chosen for this run (and
    `{other_url}` by the second cluster's URL)."""
    out = {}
    for name, value in proc.env.items():
        for placeholder, meant in placeholders.items():
            value = value.replace("{" + placeholder + "}", meant)
        out[name] = value
    return out


def ecosystem(app: App, url: str, placeholders: dict[str, str]) -> dict:
    """The PM2 ecosystem file of the app's PM2 processes (what its users keep in ecosystem.config.js)."""
    entries = []
    for proc in app.procs:
        if not proc.script:
            continue
        entry: dict[str, object] = {
            "name": proc.name, "script": str(APPS_DIR / proc.script), "cwd": str(APPS_DIR / Path(proc.script).parent),
            "env": {"REDIS_URL": url, "NODE_ENV": "production", **settings(proc, placeholders)},
            "autorestart": True, "time": True,
        }
        if proc.instances > 1:
            entry.update(exec_mode="cluster", instances=proc.instances)
        if proc.interpreter:
            entry["interpreter"] = sys.executable if proc.interpreter == "python" else proc.interpreter
        entries.append(entry)
    return {"apps": entries}


def run_app(app: App, *, warmup: float = WARMUP, duration: float = DURATION, trace: Path | None = None,
            source: str = "monitor") -> Capture:
    """Start the app on a server of its own, capture it with `redisprobe monitor`, stop everything.

    `trace`: also keep the capture's trace there (`monitor --out`), to read with `redisprobe report`. `source`:
    `monitor --source` (wire and both read the network: root or CAP_NET_RAW)."""
    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix=f"redisprobe-app-{app.name}-"))
    env = node_env()
    pm2 = _Pm2(workdir / "pm2", env)
    plain: list[subprocess.Popen[bytes]] = []
    try:
        extra = ["--notify-keyspace-events", "KEA", *app.server_args]
        two = app.topology == "two-clusters"
        with sandbox("cluster" if two else app.topology, extra=extra) as box, \
                (sandbox("cluster", extra=extra) if two else contextlib.nullcontext()) as other:
            urls = [box.servers[0].url] + ([other.servers[0].url] if other is not None else [])
            try:
                return _run(app, urls, workdir, pm2, plain, warmup, duration, began, trace, source)
            finally:  # the app stops before its server does
                pm2.kill()
                for child in plain:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(child.pid, signal.SIGKILL)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        child.wait(timeout=10)
    finally:
        pm2.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def _run(app: App, urls: list[str], workdir: Path, pm2: _Pm2, plain: list[subprocess.Popen[bytes]],
         warmup: float, duration: float, began: float, trace: Path | None, source: str = "monitor") -> Capture:
    url = urls[0]
    env = pm2.env.copy()
    env.pop("PM2_HOME", None)
    roots: dict[str, set[int]] = {}
    placeholders = {name: str(free_port()) for name in ("http", "admin")} | {"other_url": urls[-1]}
    eco = ecosystem(app, url, placeholders)
    if eco["apps"]:
        path = workdir / "ecosystem.json"
        path.write_text(json.dumps(eco, indent=2))
        pm2.start(path)
        deadline = time.monotonic() + 30
        wanted = {p.name: p.instances for p in app.procs if p.script}
        while True:
            found = pm2.pids()
            if all(len(found.get(name, ())) >= count for name, count in wanted.items()):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"pm2 did not start {wanted}: {found}\n{pm2.logs()}")
            time.sleep(0.1)
        roots.update(found)
    started_at = time.monotonic()  # the app is up: warmup and start_after count from here
    for proc in sorted((p for p in app.procs if not p.script), key=lambda p: p.start_after):
        wait = started_at + proc.start_after - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        db1 = url.rsplit("/", 1)[0] + "/1"
        argv = [sys.executable if part == "{python}" else part.replace("{url}", url).replace("{url/1}", db1)
                for part in proc.argv]
        with (workdir / f"{proc.name}.log").open("wb") as log:
            child = subprocess.Popen(argv, cwd=PY_DIR, env={**env, "REDIS_URL": url, **settings(proc, placeholders)},
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        plain.append(child)
        roots[proc.name] = {child.pid}
    tracker = _Tracker(roots)
    tracker.start()
    try:
        time.sleep(max(0.0, warmup - (time.monotonic() - started_at)))
        if eco["apps"]:  # PM2 restarts an app that crashed while a slow machine warmed up: list its pids now
            roots.update(pm2.pids())
        spec = ",".join(f"{proc.name}={pid}" for proc in app.procs if proc.listed for pid in sorted(roots[proc.name]))
        argv = [sys.executable, "-m", "redisprobe", "monitor", *(w for u in urls for w in ("--url", u)), "--pids", spec,
                "--duration", str(duration), "--enable-events", "--json"]
        if trace is not None:
            argv += ["--out", str(trace)]
        if source != "monitor":
            argv += ["--source", source]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 120, stdin=subprocess.DEVNULL,
                              env={k: v for k, v in os.environ.items() if k != "REDIS_URL"})
    finally:
        pids = tracker.stop()
    doc = None
    with contextlib.suppress(json.JSONDecodeError):
        doc = json.loads(done.stdout)
    logs = [pm2.logs()]
    for proc in app.procs:
        log = workdir / f"{proc.name}.log"
        if not proc.script and log.exists():
            text = log.read_text(errors="replace")
            pids.setdefault(proc.name, set()).update(int(pid) for pid in _LOGGED_PID.findall(text))
            logs.append(f"--- {proc.name}\n{text[-1500:]}")
    return Capture(app=app, code=done.returncode, doc=doc, stderr=done.stderr, pids=pids, argv=argv,
                   logs="\n".join(logs), seconds=time.monotonic() - began, source=source)
