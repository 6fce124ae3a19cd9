"""`.ci/run` installs Redis when it is missing and stops the service Debian starts with it, but never a Redis
service that was running before (someone's). Run with stand-ins for apt-get, service and python3."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_STUB = "#!/bin/sh\necho \"$(basename \"$0\") $*\" >> \"{log}\"\n{extra}exit 0\n"


def _stub(folder: Path, name: str, log: Path, extra: str = "") -> None:
    path = folder / name
    path.write_text(_STUB.format(log=log, extra=extra))
    path.chmod(0o755)


def _run(tmp_path: Path, *, redis_installed: bool) -> list[str]:
    repo = tmp_path / "repo"
    (repo / ".ci").mkdir(parents=True)
    shutil.copy(ROOT / ".ci" / "run", repo / ".ci" / "run")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    log.write_text("")
    for tool in ("dirname", "basename", "mkdir", "chmod"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    _stub(bin_dir, "service", log)
    _stub(bin_dir, "npm", log)  # the real-app corpus's packages (tests/apps/node)
    # apt-get "installs" redis-server by putting a stand-in on PATH
    _stub(bin_dir, "apt-get", log, extra=f'printf "#!/bin/sh\\nexit 0\\n" > "{bin_dir}/redis-server"; '
                                          f'chmod +x "{bin_dir}/redis-server"\n')
    venv = repo / ".venv" / "bin"
    _stub(bin_dir, "python3", log, extra=f'mkdir -p "{venv}"; for t in pip python; do printf "#!/bin/sh\\nexit 0\\n" '
                                          f'> "{venv}/$t"; chmod +x "{venv}/$t"; done\n')
    if redis_installed:
        _stub(bin_dir, "redis-server", log)
    subprocess.run(["/bin/bash", str(repo / ".ci" / "run")], check=True, env={"PATH": str(bin_dir)}, timeout=60,
                   capture_output=True)
    return log.read_text().splitlines()


def test_a_redis_service_that_ran_before_is_left_alone(tmp_path):
    calls = _run(tmp_path, redis_installed=True)
    assert not [c for c in calls if c.startswith(("service", "apt-get"))], calls


def test_the_service_this_script_installed_is_stopped(tmp_path):
    calls = _run(tmp_path, redis_installed=False)
    assert any(c.startswith("apt-get install") for c in calls), calls
    assert "service redis-server stop" in calls, calls
