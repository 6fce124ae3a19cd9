"""`--pids` selectors by the names owners already use: `pm2:APP`, `cmd:PATTERN`, `systemd:UNIT`, `container:X`.

A selector is resolved to pids once at the start, and asked again about every process that appears during the
capture (a PM2 restart, a new cluster instance, a forked worker), which then joins its label.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from redisprobe.errors import ProbeError
from redisprobe.producers.processes.identity import Identity, cgroup_of, identity_of, pm2_of

KINDS = ("pm2", "cmd", "systemd", "container")
_ITEM = re.compile(r"^(?:(?P<label>[^=,:]*)=)?\s*(?P<kind>pm2|cmd|systemd|container):(?P<value>.*)$", re.DOTALL)
_DAEMON_HOME = re.compile(r"God Daemon \((?P<home>[^)]+)\)")
LISTED_MAX = 12  # names listed in "no such app; apps: ..." errors


@dataclass
class Selector:
    """One `KIND:VALUE` item of `--pids`, with the label the user put before it ("" for none)."""

    kind: str
    value: str
    label: str = ""
    text: str = ""  # as the user wrote it (for messages)
    homes: tuple[str, ...] = ()  # pm2: the PM2 homes its apps were found in (a restart joins from these only)
    _pattern: re.Pattern[str] | None = field(default=None, repr=False)

    def matches(self, pid: int, identity: Identity | None = None) -> bool:
        """Whether a live pid is one this selector means (asked again for processes that appear later)."""
        if self.kind == "pm2":
            identity = identity or identity_of(pid)
            return identity.source == "pm2" and (not self.value or identity.pm2_app == self.value) and \
                (not self.homes or not identity.pm2_home or identity.pm2_home in self.homes)
        if self.kind == "cmd":
            assert self._pattern is not None
            return bool(self._pattern.search(_cmdline(pid))) and not _is_ours(pid)
        if self.kind == "systemd":
            return cgroup_of(pid)[0] == self.value
        if self.kind == "container":
            container = cgroup_of(pid)[1]
            return bool(container) and container.startswith(self.value)
        return False

    def label_for(self, pid: int, identity: Identity | None = None) -> str:
        """The label a matched pid gets: the user's (with `#instance` for a PM2 app's instances), else its
        identity."""
        identity = identity or identity_of(pid)
        if not self.label:
            return identity.name or f"pid{pid}"
        if identity.source == "pm2" and identity.name != identity.program and identity.pm2_instance is not None:
            return f"{self.label}#{identity.pm2_instance}"
        return self.label


def parse_selector(item: str) -> Selector | None:
    """`[LABEL=]KIND:VALUE` -> Selector; None when the item is no selector (a pid). Bad ones raise ProbeError."""
    match = _ITEM.match(item.strip())
    if not match:
        return None
    kind, value = match.group("kind"), match.group("value").strip()
    label = (match.group("label") or "").strip()
    if match.group("label") is not None and not label:
        raise ProbeError(f"bad --pids item {item!r}: the label before '=' is empty")
    selector = Selector(kind=kind, value=value, label=label, text=f"{kind}:{value}")
    if kind == "cmd":
        if not value:
            raise ProbeError(f"bad --pids item {item!r}: cmd: needs a regular expression (e.g. cmd:'celery worker')")
        try:
            selector._pattern = re.compile(value)
        except re.error as exc:
            raise ProbeError(f"bad --pids item {item!r}: not a regular expression ({exc})") from None
    elif kind == "systemd":
        if not value:
            raise ProbeError(f"bad --pids item {item!r}: systemd: needs a unit name (e.g. systemd:orders)")
        selector.value = value if "." in value else f"{value}.service"
    elif kind == "container" and not value:
        raise ProbeError(f"bad --pids item {item!r}: container: needs a container name or id")
    elif kind == "pm2" and value in ("", "*"):
        selector.value, selector.text = "", "pm2:*"  # every app, as --pm2
    return selector


def pm2_daemon(pid: int, label: str = "") -> Selector | None:
    """A listed pid that is a PM2 daemon means its apps, each named as itself (not all `PM2 v5: God Daemon`),
    including the ones it restarts during the capture; None for any other process."""
    try:
        match = _DAEMON_HOME.search(" ".join(psutil.Process(pid).cmdline()))
    except psutil.Error:
        return None
    if match is None:
        return None
    return Selector(kind="pm2", value="", label=label, text=f"pid {pid} (a PM2 daemon)", homes=(match.group("home"),))


def all_pm2_apps() -> Selector:
    """What `--pm2` means: every app of every PM2 we can see."""
    return Selector(kind="pm2", value="", text="--pm2")


def resolve(selector: Selector) -> list[int]:
    """The pids a selector means now, in a stable order; a selector that matches nothing is a ProbeError naming
    what exists."""
    if selector.kind == "pm2":
        return _resolve_pm2(selector)
    if selector.kind == "container":
        _resolve_container_name(selector)
    pids = [pid for pid in _all_pids() if selector.matches(pid)]
    if pids:
        return pids
    if selector.kind == "cmd":
        raise ProbeError(f"{selector.text}: no running process's command line matches")
    if selector.kind == "systemd":
        units = sorted({unit for pid in _all_pids() if (unit := cgroup_of(pid)[0])})
        known = f"units with processes: {_listed(units)}" if units else "no process runs in a systemd unit here"
        raise ProbeError(f"{selector.text}: no process in unit {selector.value}; {known}")
    containers = sorted({c[:12] for pid in _all_pids() if (c := cgroup_of(pid)[1])})
    runtime = _container_runtime()
    where = f"containers with processes here: {_listed(containers)}" if containers else \
        "no process here runs in a container"
    if not runtime:
        where += " (no container runtime (docker, podman) on PATH to resolve names: give the container id)"
    raise ProbeError(f"{selector.text}: no such container; {where}")


# -- PM2 --------------------------------------------------------------------------------------------------------


@dataclass
class Pm2Process:
    app: str
    pm_id: int | None
    pid: int
    home: str = ""


def pm2_homes() -> list[Path]:
    """The PM2 homes to look in: $PM2_HOME when set (as the pm2 CLI does), else ~/.pm2 and the home of every
    running PM2 daemon (its title names it)."""
    if os.environ.get("PM2_HOME"):
        homes = [Path(os.environ["PM2_HOME"])]
    else:
        homes = [Path.home() / ".pm2"]
        for proc in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error, TypeError):
                match = _DAEMON_HOME.search(" ".join(proc.info["cmdline"] or ()))
                if match:
                    homes.append(Path(match.group("home")))
    unique: list[Path] = []
    for home in homes:
        if home not in unique and home.is_dir():
            unique.append(home)
    return unique


def pm2_processes(extra_homes: list[Path] | None = None) -> list[Pm2Process]:
    """Every live PM2 app process: from `pm2 jlist` where the CLI and a running daemon are there, else from the
    home's pid files (`pids/APP-ID.pid`), and from the environment of processes we may read."""
    found: dict[int, Pm2Process] = {}
    homes = pm2_homes()
    homes += [home for home in extra_homes or () if home not in homes and home.is_dir()]
    for home in homes:
        listed = _jlist(home)
        for proc in listed if listed is not None else _pid_files(home):
            if psutil.pid_exists(proc.pid):
                found.setdefault(proc.pid, proc)
    for pid in _all_pids():
        if pid in found:
            continue
        try:
            environ = psutil.Process(pid).environ()
        except psutil.Error:
            continue
        pm2 = pm2_of(environ)
        if pm2 is not None and (not pm2[3] or Path(pm2[3]) in homes) and _is_app_root(pid, pm2[0]):
            found[pid] = Pm2Process(app=pm2[0], pm_id=pm2[1], pid=pid, home=pm2[3])
    return sorted(found.values(), key=lambda p: (p.app, p.pm_id if p.pm_id is not None else -1, p.pid))


def _is_app_root(pid: int, app: str) -> bool:
    """A PM2 app's own process, not a child it forked (children inherit the environment)."""
    try:
        parent = psutil.Process(pid).parent()
        if parent is None:
            return True
        pm2 = pm2_of(parent.environ())
    except psutil.Error:
        return True
    return pm2 is None or pm2[0] != app


def _jlist(home: Path) -> list[Pm2Process] | None:
    """`pm2 jlist` for one home, only when the CLI is installed and that home's daemon runs (the CLI would
    otherwise start a daemon); None when it cannot be asked."""
    cli = shutil.which("pm2")
    if not cli or not _daemon_alive(home):
        return None
    try:
        done = subprocess.run([cli, "jlist"], env={**os.environ, "PM2_HOME": str(home)}, capture_output=True,
                              text=True, timeout=20, stdin=subprocess.DEVNULL, check=False)
        entries = json.loads(done.stdout[done.stdout.find("["):] or "[]") if done.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    if not isinstance(entries, list):
        return None
    return [Pm2Process(app=str(e.get("name", "")), pm_id=e.get("pm_id"), pid=int(e["pid"]), home=str(home))
            for e in entries if isinstance(e, dict) and e.get("pid")]


def _daemon_alive(home: Path) -> bool:
    with contextlib.suppress(OSError, ValueError):
        return psutil.pid_exists(int((home / "pm2.pid").read_text().strip()))
    return False


def _pid_files(home: Path) -> Iterator[Pm2Process]:
    with contextlib.suppress(OSError):
        for path in sorted((home / "pids").glob("*.pid")):
            app, _sep, pm_id = path.stem.rpartition("-")
            with contextlib.suppress(OSError, ValueError):
                yield Pm2Process(app=app, pm_id=int(pm_id) if pm_id.isdigit() else None, home=str(home),
                                 pid=int(path.read_text().strip()))


def _resolve_pm2(selector: Selector) -> list[int]:
    if not selector.homes:
        selector.homes = tuple(str(home) for home in pm2_homes())
    processes = [p for p in pm2_processes(extra_homes=[Path(h) for h in selector.homes])
                 if not p.home or p.home in selector.homes]
    chosen = [p.pid for p in processes if not selector.value or p.app == selector.value]
    if chosen:
        return chosen
    apps = sorted({p.app for p in processes})
    if not apps:
        homes = ", ".join(str(h) for h in pm2_homes()) or "none found"
        raise ProbeError(f"{selector.text}: no PM2 app is running (PM2 homes: {homes}; set PM2_HOME if yours "
                         "is elsewhere)")
    raise ProbeError(f"{selector.text}: no such app; apps: {_listed(apps)}")


# -- containers -------------------------------------------------------------------------------------------------


def _container_runtime() -> str:
    return next((tool for tool in ("docker", "podman") if shutil.which(tool)), "")


def _resolve_container_name(selector: Selector) -> None:
    """A container name becomes its id (through docker or podman); an id prefix is kept as it is."""
    if re.fullmatch(r"[0-9a-f]{6,64}", selector.value):
        return
    runtime = _container_runtime()
    if not runtime:
        return
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run([runtime, "inspect", "--format", "{{.Id}}", selector.value], capture_output=True,
                              text=True, timeout=10, check=False)
        if done.returncode == 0 and done.stdout.strip():
            selector.value = done.stdout.strip().splitlines()[0]


# -- processes --------------------------------------------------------------------------------------------------


def _all_pids() -> list[int]:
    return sorted(psutil.pids())


def _cmdline(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return ""


def _is_ours(pid: int) -> bool:
    """redisprobe itself, the shells above it (their command lines carry the pattern too) and its own helper
    processes (the MONITOR reader)."""
    me = os.getpid()
    if pid == me:
        return True
    with contextlib.suppress(psutil.Error):
        if pid in {p.pid for p in psutil.Process(me).parents()}:
            return True
        return me in {p.pid for p in psutil.Process(pid).parents()}
    return False


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:LISTED_MAX])
    return shown + (f" and {len(names) - LISTED_MAX} more" if len(names) > LISTED_MAX else "")
