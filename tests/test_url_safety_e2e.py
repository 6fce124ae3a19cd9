"""`run --url` on a server full of a user's data: after any scenario file, the user's data is byte-identical.

Each hostile file tries one way past the namespace (a FLUSHDB in a wait item, a fork whose steps flush, scripts
that flush or delete a user key, CLIENT PAUSE, SWAPDB...); every shipped scenario runs there too (in three groups
side by side, each on a user server of its own).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from clirun import Result, run_cli

from redisprobe.targets.sandbox import Sandbox, sandbox
from tests.sidebyside import side_by_side

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
USER_DBS = (0, 3, 7)

HEAD = """
name = "{name}"
{extra}
[[actors]]
role = "api"
steps = [
{steps}
]

[expect]
clean = true
"""

HOSTILE = {
    "wait-flushdb": '{ wait = [{ name = "x", cmd = ["FLUSHDB"] }], timeout = 0.2 },',
    "wait-flushall": '{ wait = [{ name = "x", cmd = ["FLUSHALL"], until = "absent" }], timeout = 0.2 },',
    "fork-flushdb": '{ fork = true, steps = [{ do = ["FLUSHDB"] }] },',
    "repeat-fork-flushall": '{ repeat = 2, steps = [{ fork = true, steps = [{ do = ["FLUSHALL"] }] }] },',
    "eval-flushall": '{ do = ["EVAL", "return redis.call(\'FLUSHALL\')", "0"] },',
    "eval-del-user-key": '{ do = ["EVAL", "return redis.call(\'DEL\',\'user:1\')", "0"] },',
    "client-pause": '{ do = ["CLIENT", "PAUSE", "4000", "ALL"] },',
    "swapdb": '{ do = ["SWAPDB", "0", "3"] },',
    "config-set": '{ do = ["CONFIG", "SET", "maxmemory", "1"] },',
    "lowercase-flushdb": '{ do = ["flushdb"] },',
    "function-flush": '{ do = ["FUNCTION", "FLUSH"] },',
    "script-flush": '{ do = ["SCRIPT", "FLUSH"] },',
}
# opted in to scripts, and run with --allow-writes: the keys the script can touch are still checked
HOSTILE_OPTED_IN = {
    "optin-eval-del-user-key": '{ do = ["EVAL", "return redis.call(\'DEL\',\'user:1\')", "0"] },',
    "optin-eval-computed-key": '{ do = ["EVAL", "return redis.call(\'DEL\', KEYS[1] .. \'x\')", "1", "{ns}k"] },',
    "optin-eval-alias": '{ do = ["EVAL", "local c = redis.call; return c(\'FLUSHDB\')", "0"] },',
    "optin-evalsha-unknown": '{ do = ["EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "0"] },',
}


@pytest.fixture(scope="module")
def user_server() -> Iterator[Sandbox]:
    with sandbox("single") as box:
        yield box


def _fill(url: str) -> None:
    """A user's data: several types, with and without TTLs, in several dbs."""
    for db in USER_DBS:
        client = redis.Redis.from_url(url.rsplit("/", 1)[0] + f"/{db}")
        client.set("user:1", f"alice-{db}")
        client.set("session:abc", b"\x00\xffbinary", ex=3600)
        client.hset("profile:7", mapping={"name": "bob", "age": "40"})
        client.rpush("queue:jobs", "a", "b", "c")
        client.zadd("scores", {"x": 1.5, "y": 2})
        client.sadd("tags", "red", "blue")
        client.close()


def _snapshot(url: str) -> dict[int, dict[bytes, tuple[bytes, int]]]:
    """Every key of every db with its serialized value and absolute expiry time (stable over time)."""
    client = redis.Redis.from_url(url)
    found: dict[int, dict[bytes, tuple[bytes, int]]] = {}
    for db in range(16):
        client.execute_command("SELECT", db)
        keys = client.keys("*")
        if keys:
            found[db] = {key: (client.dump(key), client.execute_command("PEXPIRETIME", key)) for key in keys}
    client.close()
    return found


def _scenario(tmp_path: Path, name: str, step: str, extra: str = "") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(HEAD.format(name=name, steps=step, extra=extra))
    return path


@pytest.mark.timeout(600)
def test_hostile_scenarios_leave_user_data_byte_identical(tmp_path: Path, user_server: Sandbox) -> None:
    url = user_server.urls[0]
    _fill(url)
    before = _snapshot(url)
    assert set(before) == set(USER_DBS)
    files = [_scenario(tmp_path, name, step) for name, step in HOSTILE.items()]
    files += [_scenario(tmp_path, name, step, extra="allow_scripts = true")
              for name, step in HOSTILE_OPTED_IN.items()]
    result = run_cli("run", "--url", url, "--allow-writes", "--json", *map(str, files), timeout=300)
    assert _snapshot(url) == before
    report = result.json()
    by_name = {s["name"]: s for s in report["scenarios"]}
    assert set(by_name) == set(HOSTILE) | set(HOSTILE_OPTED_IN)
    for name, outcome in by_name.items():
        assert outcome["status"] == "skipped", (name, outcome)
        assert "not run on --url" in outcome["skipped"], (name, outcome)
    assert "administrative or acts on the whole server" in by_name["client-pause"]["skipped"]
    assert "scripts run on your server only" in by_name["eval-flushall"]["skipped"]
    assert "user:1" in by_name["optin-eval-del-user-key"]["skipped"]
    assert "computed at run time" in by_name["optin-eval-computed-key"]["skipped"]
    assert "did not load" in by_name["optin-evalsha-unknown"]["skipped"]


SHIPPED_GROUPS = 3
"""The shipped scenarios run in this many groups side by side, each group on a user server of its own."""


def _shipped_on_a_user_server(files: list[Path]) -> tuple[Result, bool, bool]:
    """`run --url` of `files` on a fresh server full of a user's data: the result, and whether the data and the
    config are exactly as before."""
    with sandbox("single") as box:
        url = box.urls[0]
        _fill(url)
        before = _snapshot(url)
        config = redis.Redis.from_url(url).config_get("*")
        result = run_cli("run", "--url", url, "--json", *map(str, files), timeout=540)
        return result, _snapshot(url) == before, redis.Redis.from_url(url).config_get("*") == config


@pytest.mark.timeout(600)
def test_every_shipped_scenario_on_a_user_server_leaves_its_data_byte_identical() -> None:
    files = sorted(SCENARIOS.glob("*.toml"))
    groups = [files[index::SHIPPED_GROUPS] for index in range(SHIPPED_GROUPS)]
    runs = side_by_side({str(index): (lambda group=group: _shipped_on_a_user_server(group))
                         for index, group in enumerate(groups)}, parallel=SHIPPED_GROUPS)  # no timing asserted
    statuses = {}
    for future in runs.values():
        result, data_kept, config_kept = future.result()
        assert result.code in (0, 1), result.err
        assert data_kept  # nothing of ours left behind either: our keys would show here
        assert config_kept
        statuses |= {s["name"]: s["status"] for s in result.json()["scenarios"]}
    assert len(statuses) == len(files)  # every shipped scenario, each once
    assert "passed" in statuses.values()  # the run really ran scenarios there, not only skipped them
    assert statuses["flushed"] == "skipped"


@pytest.mark.timeout(120)
def test_opted_in_script_on_namespaced_keys_runs_with_allow_writes_only(tmp_path: Path, user_server: Sandbox) -> None:
    url = user_server.urls[0]
    _fill(url)
    before = _snapshot(url)
    step = ('{ do = ["EVAL", "return redis.call(\'SET\', KEYS[1], ARGV[1])", "1", "{ns}k", "v"] },\n'
            '{ do = ["EVALSHA", "e1b4a9ee7ee9b3e6e8d0c0d3b53e3ac2e1e7de3b", "1", "{ns}k", "v"] },')
    ok = _scenario(tmp_path, "script-ok", step.split("\n")[0], extra="allow_scripts = true")
    without = run_cli("run", "--url", url, "--json", str(ok))
    assert without.json()["scenarios"][0]["status"] == "skipped"
    assert "--allow-writes" in without.json()["scenarios"][0]["skipped"]
    allowed = run_cli("run", "--url", url, "--allow-writes", "--json", str(ok))
    assert allowed.json()["scenarios"][0]["status"] == "passed", allowed.out
    assert _snapshot(url) == before


@pytest.mark.parametrize("steps", [
    [{"do": ["SET", "redisprobe:t:name", "user:1"]}, {"do": ["GET", "redisprobe:t:name"], "as": "victim"},
     {"do": ["DEL", "{victim}"]}],
    [{"fork": True, "steps": [{"wait": [{"cmd": ["FLUSHALL"]}], "timeout": 0.1}]},
     {"do": ["SET", "redisprobe:t:after", "1"]}],
    [{"do": ["SET", "redisprobe:t:batch:1", "m", "EX", "30"]},  # a batch: the janitor acts at once, not after 15 s
     {"program": "janitor", "ns": "redisprobe:t:", "action": "flush", "delay": 0}],
], ids=["key-from-a-reply", "fork-wait-flushall", "janitor-flush"])
def test_the_actors_own_gate_refuses_at_run_time(user_server: Sandbox, steps: list) -> None:
    """What the file check cannot see (a key captured from a reply, a program's own commands) is refused by the
    actor itself: the command is never sent, the actor stops and says why."""
    from redisprobe import trace
    from redisprobe.producers.actors.child import ActorSpec
    from redisprobe.producers.plan import Plan, execute
    from redisprobe.targets.resolve import Targets
    from redisprobe.targets.url import parse_target

    url = user_server.urls[0]
    _fill(url)
    before = _snapshot(url)
    target = parse_target(url)
    plan = Plan(command="test", actors=[ActorSpec(role="api", url=url, steps=steps)], observe=False,
                max_seconds=30, cleanup_patterns=["redisprobe:t:*"])
    execution = execute(plan, Targets(by_role={"api": target, "processor": target}, sandbox=None), None)
    assert _snapshot(url) == before
    exited = [e for e in execution.events if isinstance(e, trace.ActorExited)]
    assert exited and exited[0].crashed and "refused to send to your server" in (exited[0].detail or "")
    assert any("did not send it" in note.text for note in execution.notes)
