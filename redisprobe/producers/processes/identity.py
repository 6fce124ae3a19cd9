"""How a process's owner knows it: `batch-processor#1`, `orders.service`, `node api.js`, `celery worker`.

The kernel's process name is cut at 15 characters and is the interpreter's (`node`, `python`) or whatever the
program put in its title (`node /tmp/nu_no`), so it names nothing. The best source comes first: PM2's app name
and instance (the process's environment), the systemd unit or the container (its cgroup, when it differs from
ours), then the script or module an interpreter runs, then the program. One function, used by every output.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache

import psutil

from redisprobe.producers.processes.instances import program_of
from redisprobe.targets.url import redact

__all__ = ["Identity", "cgroup_of", "command_identity", "identity_of", "parse_cgroup", "pm2_of", "program_of"]

INTERPRETERS = re.compile(r"^(node|nodejs|bun|deno|python[0-9.]*|pypy[0-9.]*|ruby[0-9.]*|perl[0-9.]*|php[0-9.]*|"
                          r"java|sh|bash|dash|zsh)$")
_PYTHON = re.compile(r"^(python|pypy)[0-9.]*$")
# Python options that take the next word as their value (`-X dev`, `-W ignore`); `-m`/`-c` end the options.
_PY_VALUE_OPTIONS = {"-X", "-W", "-Q"}
_NODE_VALUE_OPTIONS = {"-r", "--require", "--import", "--loader", "--experimental-loader", "--title",
                       "--inspect-port", "--max-old-space-size"}
# Script names that say little on their own: their folder is shown with them (`orders/index.js`).
_GENERIC_SCRIPTS = re.compile(r"^(index|main|app|server|worker|start|run|__main__|cli)\.[a-z]+$")
TITLE_MAX = 60
_SUBCOMMAND = re.compile(r"^[a-z][a-z0-9_-]{0,24}$")
_CONTAINER = re.compile(r"(?:docker-|cri-containerd-|crio-|libpod-|/docker/|/libpod/|/kubepods[^ ]*/)"
                        r"(?P<id>[0-9a-f]{12,64})(?:\.scope)?(?:/|$)")
_UNIT = re.compile(r"(?P<unit>[^/]+\.service)(?:/|$)")
_USER_MANAGER = re.compile(r"^user@\d+\.service$")


@dataclass(frozen=True)
class Identity:
    """One process as its owner knows it."""

    name: str  # what every output shows
    source: str  # pm2 | systemd | container | command | kernel | "" (unknown)
    program: str = ""  # the same for every instance of one program (the name without `#instance`)
    pm2_app: str = ""
    pm2_id: int | None = None  # PM2's own id (`pm2 list`), unique per instance
    pm2_instance: int | None = None  # NODE_APP_INSTANCE: 0, 1... within the app
    pm2_home: str = ""
    unit: str = ""
    container: str = ""


def identity_of(pid: int) -> Identity:
    """The readable identity of a live pid; Identity("", "") when the process is gone or unreadable."""
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            argv = _quiet(proc.cmdline) or []
            kernel = _quiet(proc.name) or ""
            environ = _quiet(proc.environ) or {}
    except psutil.Error:
        return Identity(name="", source="")
    command = command_identity(argv, kernel)
    pm2 = pm2_of(environ)
    if pm2 is not None:
        app, pm_id, instance, home, several = pm2
        name = f"{app}#{instance}" if several and instance is not None else app
        return Identity(name=name, source="pm2", program=app, pm2_app=app, pm2_id=pm_id, pm2_instance=instance,
                        pm2_home=home)
    unit, container = cgroup_of(pid)
    if container and container != own_cgroup()[1]:
        return Identity(name=f"{command} (container {container[:12]})" if command else f"container {container[:12]}",
                        source="container", program=command, container=container)
    if unit and unit != own_cgroup()[0]:
        return Identity(name=f"{unit}: {command}" if command else unit, source="systemd", program=command, unit=unit)
    if command:
        return Identity(name=command, source="command" if argv else "kernel", program=command)
    return Identity(name="", source="")


def _quiet(method):  # type: ignore[no-untyped-def]
    try:
        return method()
    except (psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return None


def pm2_of(environ: dict[str, str]) -> tuple[str, int | None, int | None, str, bool] | None:
    """(app, pm_id, instance, PM2 home, several instances) from a PM2 process's environment, else None.

    Fork mode puts `name`, `pm_id` and `NODE_APP_INSTANCE` in the environment; cluster mode passes them as one
    JSON variable, `pm2_env`. Both carry `PM2_HOME`.
    """
    fields: dict[str, object] = {}
    if "pm2_env" in environ:
        with contextlib.suppress(ValueError):
            parsed = json.loads(environ["pm2_env"])
            if isinstance(parsed, dict):
                fields = parsed
    if not fields.get("name") and "pm_id" in environ and environ.get("name"):
        fields = environ  # type: ignore[assignment]
    name = str(fields.get("name") or "")
    if not name or "pm_id" not in fields:
        return None
    pm_id = _int(fields.get("pm_id"))
    instance = _int(fields.get("NODE_APP_INSTANCE"))
    instances = _int(fields.get("instances")) or 1
    several = instances > 1 or instances < 0 or str(fields.get("exec_mode", "")) == "cluster_mode"
    home = str(environ.get("PM2_HOME") or fields.get("PM2_HOME") or "")
    return name, pm_id, instance, home, several


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def cgroup_of(pid: int | str) -> tuple[str, str]:
    """(systemd unit, container id) from /proc/PID/cgroup; "" for what it does not show."""
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="replace") as handle:
            return parse_cgroup(handle.read())
    except OSError:
        return "", ""


def parse_cgroup(text: str) -> tuple[str, str]:
    """(systemd unit, container id) from the text of a /proc/PID/cgroup file (v1 or v2)."""
    paths = [line.split(":", 2)[2] for line in text.splitlines() if line.count(":") >= 2]
    # The unified hierarchy (0::) or systemd's own (name=systemd) says the unit; any says the container.
    preferred = [line.split(":", 2)[2] for line in text.splitlines()
                 if line.startswith("0::") or ":name=systemd:" in line] or paths
    unit = ""
    for path in preferred:
        units = [m.group("unit") for m in _UNIT.finditer(path) if not _USER_MANAGER.match(m.group("unit"))]
        if units:
            unit = units[-1]
            break
    container = ""
    for path in paths:
        match = _CONTAINER.search(path)
        if match:
            container = match.group("id")
            break
    return unit, container


@lru_cache(maxsize=1)
def own_cgroup() -> tuple[str, str]:
    """Our own unit and container: a process sharing them is told apart by its command, not by them."""
    return cgroup_of(os.getpid())


def command_identity(argv: list[str], kernel_name: str = "") -> str:
    """`node api.js`, `python -m rq.cli worker`, `celery worker`, `redis-cli`: never a name cut at 15 chars.
    A password in a URL or a known secret never shows (a title may carry a URL)."""
    return redact(_command_identity(argv, kernel_name))


def _command_identity(argv: list[str], kernel_name: str) -> str:
    if not argv:
        return kernel_name
    if len(argv) == 1 and " " in argv[0].strip() and not os.path.exists(argv[0]):
        # a title the program wrote over its argv: `node /path/app.js` is split, `PM2 v5: God Daemon` is kept
        words = argv[0].split()
        if not INTERPRETERS.match(os.path.basename(words[0])):
            return " ".join(words)[:TITLE_MAX]
        argv = words
    program = os.path.basename(argv[0]) or kernel_name
    if _PYTHON.match(program):
        return _python_identity(program, argv[1:])
    if INTERPRETERS.match(program):
        return _script_identity(_base_interpreter(program), argv[1:], _NODE_VALUE_OPTIONS)
    return _with_subcommand(program, argv[1:])


def _base_interpreter(program: str) -> str:
    return "node" if program == "nodejs" else program


def _python_identity(program: str, args: list[str]) -> str:
    shown = "python"
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "-m" and index + 1 < len(args):
            module = args[index + 1]
            rest = args[index + 2:]
            if module in ("celery", "rq", "uvicorn", "gunicorn", "flask", "dramatiq", "huey", "arq"):
                return _with_subcommand(module, rest)
            return _with_subcommand(f"{shown} -m {module}", rest)
        if arg == "-c":
            return f"{shown} -c"
        if arg in _PY_VALUE_OPTIONS:
            index += 2
            continue
        if arg.startswith("-"):
            index += 1
            continue
        script = os.path.basename(arg)
        if script.endswith(".py") or "/" in arg:
            if not script.endswith(".py") and "/bin/" in arg:  # a console script: `celery worker`, `rq worker`
                return _with_subcommand(script, args[index + 1:])
            return _with_subcommand(f"{shown} {_script_name(arg)}", args[index + 1:])
        return _with_subcommand(script, args[index + 1:])
    return shown


def _script_identity(interpreter: str, args: list[str], value_options: set[str]) -> str:
    index = 0
    while index < len(args):
        arg = args[index]
        if arg in value_options:
            index += 2
            continue
        if arg.startswith("-"):
            if arg in ("-e", "--eval", "-c", "-p", "--print"):
                return f"{interpreter} {arg}"
            index += 1
            continue
        return f"{interpreter} {_script_name(arg)}"
    return interpreter


def _script_name(path: str) -> str:
    base = os.path.basename(path.rstrip("/"))
    parent = os.path.basename(os.path.dirname(path.rstrip("/")))
    return f"{parent}/{base}" if _GENERIC_SCRIPTS.match(base) and parent else base


def _with_subcommand(head: str, args: list[str]) -> str:
    """`head` and the first word that reads as a subcommand (`worker`), skipping options and their values."""
    index = 0
    while index < len(args):
        arg = args[index]
        if arg.startswith("-"):
            # `-A tasks`, `--queue mail`: an option followed by a plain word most likely takes it as its value
            takes_value = "=" not in arg and index + 1 < len(args) and not args[index + 1].startswith("-")
            index += 2 if takes_value else 1
            continue
        return f"{head} {arg}" if _SUBCOMMAND.match(arg) else head
    return head
