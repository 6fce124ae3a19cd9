"""Output a person can read at any width: at 60, 80 and 200 columns (and piped, as in a CI log) no table is
squeezed until its words break; a table that does not fit becomes one record per row."""

from __future__ import annotations

import re

import pytest
import redis

from redisprobe.commands.catalog import catalog_rows
from tests.clients import Client
from tests.clirun import cli_env, new_marker, run_cli
from tests.monitorrun import MonitorRun

WIDTHS = (60, 80, 200)


def _at(width: int, *args: str):  # type: ignore[no-untyped-def]
    result = run_cli(*args, env=cli_env(COLUMNS=str(width)))
    assert result.code in (0, 1), result.err
    return result


def _readable(out: str, width: int, words: list[str]) -> None:
    lines = out.splitlines()
    assert all(len(line.rstrip()) <= width for line in lines), max(lines, key=len)
    flat = set(re.findall(r"\S+", out))
    broken = [w for w in words if not any(w in token for token in flat)]
    assert not broken, f"cut in the middle at {width} columns: {broken}"


@pytest.mark.parametrize("width", WIDTHS)
def test_catalog(width):
    out = _at(width, "catalog").out
    _readable(out, width, [rule for rule, _line, _path in catalog_rows()] +
              [path for _rule, _line, path in catalog_rows() if path])


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    path = tmp_path_factory.mktemp("layout") / "a-scenario-with-a-rather-long-name.toml"
    path.write_text('catalog_id = "healthy"\nobserve = false\n[[actors]]\nrole = "api"\n'
                    'steps = [{ do = ["SET", "{ns}k", "1", "EX", "60"] }]\n[expect]\nclean = true\n')
    return path


@pytest.mark.parametrize("width", WIDTHS)
def test_run_summary(width, scenario):
    out = _at(width, "run", str(scenario)).out
    _readable(out, width, ["a-scenario-with-a-rather-long-name", "passed", "healthy"])


@pytest.mark.parametrize("width", WIDTHS)
def test_info_pids(width, redis_url):
    client = Client(redis_url)
    try:
        out = _at(width, "info", "--pids", f"worker-with-a-long-label={client.pid}", "--url", redis_url).out
    finally:
        client.close()
    run_id = redis.Redis.from_url(redis_url).info("server")["run_id"][:20]
    _readable(out, width, [run_id, str(client.pid), redis_url.split("/")[2]])


@pytest.fixture(scope="module")
def trace(tmp_path_factory, redis_url):
    prefix = new_marker()
    out = tmp_path_factory.mktemp("layout") / "trace.jsonl"
    run = MonitorRun("--url", redis_url, "--json", "--out", str(out), "--keys", f"{prefix}*")
    client = redis.Redis.from_url(redis_url)
    try:
        for index in range(3):
            client.set(f"{prefix}:batch:{index}:a-longish-key-name", "v", ex=60)
        client.delete(f"{prefix}:batch:0:a-longish-key-name")
        run.stop_json(settle=0.5)
    finally:
        run.kill()
        client.close()
    return prefix, out


@pytest.mark.parametrize("width", WIDTHS)
def test_monitor_summary(width, trace):
    prefix, out = trace
    text = _at(width, "report", str(out), "--keys", f"{prefix}*").out
    _readable(text, width, [f"{prefix}:batch:1:a-longish-key-name" if width >= 60 else prefix, "60.00s"])
