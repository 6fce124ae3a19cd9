"""Passwords never appear anywhere: stdout, stderr, --json, --out traces, --svg, --junit, children's argv.

The password holds an `@` (written raw in the URL, as users do) and the scheme is upper case: both used to
print in clear.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import psutil
import pytest
import redis
from clirun import Result, cli_env, run_cli

from redisprobe.targets.sandbox import Sandbox, sandbox
from tests.sidebyside import side_by_side

PASSWORD = "Zq@Secret-4471"
FRAGMENTS = (PASSWORD, quote(PASSWORD, safe=""), "Secret-4471")


@contextmanager
def _locked_server() -> Iterator[Sandbox]:
    with sandbox("single") as box:
        client = redis.Redis.from_url(box.urls[0])
        client.config_set("requirepass", PASSWORD)
        client.close()
        yield box


@pytest.fixture(scope="module")
def locked() -> Iterator[Sandbox]:
    with _locked_server() as box:
        yield box


def _address(box: Sandbox) -> str:
    return box.urls[0].removeprefix("redis://")


def _urls(box: Sandbox) -> list[str]:
    address = _address(box)
    return [f"REDIS://:{PASSWORD}@{address}",                     # upper-case scheme, raw '@' in the password
            f"redis://default:{quote(PASSWORD, safe='')}@{address}",  # user and an encoded password
            f"redis://{address}?password={quote(PASSWORD, safe='')}"]  # the password as a query option


def _assert_hidden(where: str, text: str) -> None:
    for fragment in FRAGMENTS:
        assert fragment not in text, f"{fragment!r} shown in {where}: {text[:2000]}"


VARIANTS = {"upper-scheme-raw-at": 0, "user-encoded": 1, "query-option": 2}


def _every_channel(variant: int, work: Path) -> dict[str, Result]:
    """Every command, with the password given the `variant` way, on a locked server of its own."""
    with _locked_server() as box:
        url = _urls(box)[variant]
        runs = {
            "monitor": run_cli("monitor", "--url", url, "--duration", "1", "--out", str(work / "m.jsonl"),
                               "--svg", str(work / "m.svg")),
            "monitor --json": run_cli("monitor", "--url", url, "--duration", "1", "--json"),
            "isolation": run_cli("isolation", "--url", url, "--timeout", "1", "--out", str(work / "i.jsonl")),
            "isolation --json": run_cli("isolation", "--url", url, "--timeout", "1", "--json"),
            "info": run_cli("info", "--url", url),
            "ttl-race": run_cli("ttl-race", "--url", url, "--batches", "1", "--messages", "2", "--spacing", "0.1",
                                "--ttl", "1", "--svg", str(work / "t.svg")),
        }
        scenario = work / "s.toml"
        scenario.write_text('[[actors]]\nrole = "api"\nsteps = [{ do = ["SET", "{ns}k", "v"] }]\n'
                            '[expect]\nclean = true\n')
        runs["run"] = run_cli("run", "--url", url, "--junit", str(work / "r.xml"), str(scenario))
        runs["report"] = run_cli("report", str(work / "m.jsonl"))
        return runs


@pytest.fixture(scope="module")
def channels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Future[dict[str, Result]]]]:
    """The three variants side by side (tests/sidebyside.py), each on a locked server of its own."""
    work = {name: tmp_path_factory.mktemp(name) for name in VARIANTS}
    futures = side_by_side({name: (lambda name=name: _every_channel(VARIANTS[name], work[name])) for name in VARIANTS},
                           parallel=len(VARIANTS))  # no timing asserted: every exit 0 or 1, no password anywhere
    return {name: (work[name], futures[name]) for name in VARIANTS}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", VARIANTS)
def test_every_output_channel_hides_the_password(channels, name: str) -> None:
    tmp_path, future = channels[name]
    runs = future.result()
    for command, result in runs.items():
        assert result is not None
        assert result.code in (0, 1), (command, result.code, result.err)
        _assert_hidden(f"{command} stdout", result.out)
        _assert_hidden(f"{command} stderr", result.err)
    for produced in ("m.jsonl", "m.svg", "i.jsonl", "t.svg", "r.xml"):
        _assert_hidden(produced, (tmp_path / produced).read_text())
    assert "***" in (tmp_path / "m.jsonl").read_text().splitlines()[0]  # the header's command line


@pytest.mark.parametrize("url", [
    f"REDIS://:{PASSWORD}@127.0.0.1:notaport/0",
    f"redis://:{PASSWORD}@127.0.0.1:1/zero",
    f"Redis://:{PASSWORD}@127.0.0.1:1/0",  # refused connection
    f"redis://:{PASSWORD[:5]}/{PASSWORD[5:]}@127.0.0.1:1/0",  # a '/' the URL parser misreads
    f"redis://127.0.0.1:1/0?password={PASSWORD}&db=1",
])
def test_errors_hide_the_password(url: str) -> None:
    result = run_cli("info", "--url", url)
    assert result.code == 2, result
    _assert_hidden("the error", result.err + result.out)
    assert "***" in result.err


def test_wrong_password_with_an_at_sign(locked: Sandbox) -> None:
    result = run_cli("info", "--url", f"REDIS://:Wr@ng-Pass-99@{_address(locked)}")
    assert result.code == 2 and "authentication failed" in result.err
    assert "Wr@ng-Pass-99" not in result.err and "ng-Pass-99" not in result.err


@pytest.mark.timeout(120)
def test_children_never_get_the_password_in_argv(locked: Sandbox) -> None:
    url = _urls(locked)[0]
    proc = subprocess.Popen([sys.executable, "-m", "redisprobe", "ttl-race", "--url", url, "--batches", "1",
                             "--messages", "6", "--spacing", "0.3", "--ttl", "1"], env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        seen: set[int] = set()
        deadline = time.monotonic() + 20
        own = " ".join(psutil.Process(proc.pid).cmdline())  # what the test itself typed
        while proc.poll() is None and time.monotonic() < deadline:
            for child in psutil.Process(proc.pid).children(recursive=True):
                try:
                    cmdline = " ".join(child.cmdline())
                except psutil.Error:
                    continue
                if cmdline == own:  # caught between fork and exec: still the parent's own argv
                    continue
                seen.add(child.pid)
                _assert_hidden(f"the argv of child {child.pid}", cmdline)
            time.sleep(0.1)
        assert len(seen) >= 2  # actors and the MONITOR reader were looked at
    finally:
        proc.kill()
        proc.wait()
