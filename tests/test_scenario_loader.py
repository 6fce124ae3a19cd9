"""Scenario files: a bad file is one error line naming the file, the line and the field; good files load."""

from __future__ import annotations

from pathlib import Path

import pytest

from redisprobe.errors import ProbeError
from redisprobe.scenario import ScenarioError, load, loads, looks_like_scenario
from redisprobe.scenario.locate import Locator

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"

GOOD = """\
name = "demo"
catalog_id = "healthy"

[[actors]]
role = "api"
steps = [
  { do = ["SET", "{ns}job", "v", "EX", "10"] },
]

[[actors]]
role = "processor"
steps = [
  { wait = [{ name = "job", cmd = ["GET", "{ns}job"] }], timeout = 2 },
]

[expect]
visible = true
clean = true
"""


def write(tmp_path: Path, text: str, name: str = "x.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> ScenarioError:
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as info:
        load(path)
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith(f"{path}:"), message
    assert isinstance(info.value, ProbeError)
    return info.value


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    count = 0
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            count += 1
            if count == occurrence:
                return number
    raise AssertionError(f"{needle!r} not in the text")


def test_a_good_file_loads(tmp_path: Path) -> None:
    scenario = load(write(tmp_path, GOOD))
    assert scenario.name == "demo"
    assert [a.role for a in scenario.actors] == ["api", "processor"]
    assert scenario.expect.visible is True and scenario.expect.clean


def test_syntax_error_names_tomllib_line(tmp_path: Path) -> None:
    text = GOOD.replace('role = "processor"', 'role = "processor')
    error = error_of(tmp_path, text)
    assert error.line == line_of(text, 'role = "processor')
    assert "TOML syntax error" in str(error)


def test_unknown_top_level_field(tmp_path: Path) -> None:
    text = GOOD.replace('catalog_id = "healthy"', 'catalog_id = "healthy"\nmax_second = 3')
    error = error_of(tmp_path, text)
    assert error.line == line_of(text, "max_second = 3")
    assert "unknown field 'max_second'" in str(error)
    assert f":{error.line}: max_second: " in str(error)


def test_unknown_actor_field(tmp_path: Path) -> None:
    text = GOOD.replace('role = "processor"', 'role = "processor"\nprefx = "app:"')
    error = error_of(tmp_path, text)
    assert error.line == line_of(text, 'prefx = "app:"')
    assert f":{error.line}: actors[1]: unknown field 'prefx'" in str(error)


def test_unknown_step(tmp_path: Path) -> None:
    text = GOOD.replace('{ wait = [{ name = "job"', '{ dooo = ["GET", "{ns}job"] },\n  { wait = [{ name = "job"')
    error = error_of(tmp_path, text)
    line = line_of(text, "dooo")
    assert str(error) == (f"{tmp_path / 'x.toml'}:{line}: actors[1].steps[0]: unknown step 'dooo': one of do, sleep, "
                          "wait, repeat, inspect, program, fork, cache, stall, failover")


def test_bad_type_top_level(tmp_path: Path) -> None:
    text = GOOD.replace('catalog_id = "healthy"', 'catalog_id = "healthy"\nmax_seconds = "ten"')
    error = error_of(tmp_path, text)
    assert error.line == line_of(text, 'max_seconds = "ten"')
    assert "max_seconds: expected a number, got string 'ten'" in str(error)


def test_bad_type_in_a_nested_step(tmp_path: Path) -> None:
    text = GOOD.replace('timeout = 2 }', 'timeout = "2s" }')
    error = error_of(tmp_path, text)
    assert error.line == line_of(text, 'timeout = "2s"')
    assert "actors[1].steps[0].timeout: expected a number, got string '2s'" in str(error)


def test_key_outside_the_namespace(tmp_path: Path) -> None:
    text = GOOD.replace('{ do = ["SET", "{ns}job"', '{ do = ["SET", "job"')
    error = error_of(tmp_path, text)
    assert error.line == line_of(text, '"SET", "job"')
    assert "actors[0].steps[0].do[1]: key 'job' is outside the scenario's namespace" in str(error)


def test_keys_of_multi_key_commands_and_waits_are_checked(tmp_path: Path) -> None:
    text = GOOD.replace('{ do = ["SET", "{ns}job", "v", "EX", "10"] },',
                        '{ do = ["SET", "{ns}job", "v", "EX", "10"] },\n  { do = ["DEL", "{ns}a", "other"] },')
    error = error_of(tmp_path, text)
    assert "actors[0].steps[1].do[2]: key 'other'" in str(error)
    assert error.line == line_of(text, '"DEL"')
    text = GOOD.replace('cmd = ["GET", "{ns}job"]', 'cmd = ["GET", "session:1"]')
    error = error_of(tmp_path, text)
    assert "actors[1].steps[0].wait[0].cmd[1]: key 'session:1'" in str(error)


def test_namespace_via_a_variable_and_redisprobe_prefix_are_accepted(tmp_path: Path) -> None:
    text = GOOD.replace('catalog_id = "healthy"', 'catalog_id = "healthy"\n\n[vars]\njob = "{ns}jobs:1"\n')
    text = text.replace('"SET", "{ns}job"', '"SET", "{job}"').replace('"GET", "{ns}job"', '"GET", "redisprobe:x"')
    load(write(tmp_path, text))
    bad = text.replace('job = "{ns}jobs:1"', 'job = "jobs:1"')
    assert "key '{job}' is outside" in str(error_of(tmp_path, bad))


def test_scan_pattern_and_program_namespace(tmp_path: Path) -> None:
    text = GOOD.replace('{ do = ["SET", "{ns}job", "v", "EX", "10"] },', '{ do = ["SCAN", "0", "MATCH", "*"] },')
    assert "pattern '*' is outside" in str(error_of(tmp_path, text))
    text = GOOD.replace('{ do = ["SET", "{ns}job", "v", "EX", "10"] },',
                        '{ program = "batch-processor", match = "batch:*" },')
    assert "actors[0].steps[0].match: it is outside" in str(error_of(tmp_path, text))


def test_unknown_program_and_parameter(tmp_path: Path) -> None:
    text = GOOD.replace('{ do = ["SET", "{ns}job", "v", "EX", "10"] },', '{ program = "batch-apj" },')
    assert "actors[0].steps[0].program: unknown program 'batch-apj'" in str(error_of(tmp_path, text))
    text = GOOD.replace('{ do = ["SET", "{ns}job", "v", "EX", "10"] },', '{ program = "batch-api", bugs = "x" },')
    assert "unknown field 'bugs' in the batch-api program" in str(error_of(tmp_path, text))
    text = GOOD.replace('{ do = ["SET", "{ns}job", "v", "EX", "10"] },', '{ program = "batch-api", bug = "typo" },')
    assert "actors[0].steps[0].bug: unknown bug 'typo'" in str(error_of(tmp_path, text))


def test_variables_are_checked(tmp_path: Path) -> None:
    text = GOOD.replace('"v", "EX"', '"{value}", "EX"')
    assert "unknown variable {value}" in str(error_of(tmp_path, text))
    text = GOOD.replace('"v", "EX"', '"{i}", "EX"')
    assert "{i} is only set inside a repeat step" in str(error_of(tmp_path, text))
    text = GOOD.replace('{ do = ["SET", "{ns}job", "v", "EX", "10"] },',
                        '{ repeat = 3, steps = [{ do = ["SET", "{ns}job:{i}", "v"] }] },')
    load(write(tmp_path, text))


def test_expectations_are_checked(tmp_path: Path) -> None:
    text = GOOD.replace("clean = true", 'findings = ["different-dbb"]')
    error = error_of(tmp_path, text)
    assert "expect.findings[0]: unknown finding id 'different-dbb'" in str(error)
    assert error.line == line_of(text, "different-dbb")
    text = GOOD.replace("clean = true", 'clean = true\nfindings = ["different-db"]')
    assert "clean = true means no finding at all" in str(error_of(tmp_path, text))
    text = GOOD + '\n[[expect.removed]]\nkey = "{ns}job"\nhow = "vanished"\n'
    error = error_of(tmp_path, text)
    assert "expect.removed[0].how: unknown removal 'vanished'" in str(error)
    assert error.line == line_of(text, 'how = "vanished"')


def test_missing_parts(tmp_path: Path) -> None:
    text = GOOD[:GOOD.index("[expect]")]
    assert "no [expect] table" in str(error_of(tmp_path, text))
    text = GOOD.replace('role = "api"\n', "")
    error = error_of(tmp_path, text)
    assert "actors[0]: missing field 'role'" in str(error)
    assert error.line == line_of(text, "[[actors]]")


def test_array_of_tables_steps_are_located(tmp_path: Path) -> None:
    text = """\
name = "aot"

[[actors]]
role = "api"

  [[actors.steps]]
  do = ["SET", "{ns}a", "1"]

  [[actors.steps]]
  sleep = "long"

[expect]
clean = true
"""
    error = error_of(tmp_path, text)
    assert "actors[0].steps[1].sleep: expected a number" in str(error)
    assert error.line == line_of(text, 'sleep = "long"')


def test_locator_follows_toml_structure() -> None:
    text = """\
# comment [[actors]]
a = "x # not a comment"
b = '''multi
[[actors]]
line'''
[[actors]]
role = "one"
steps = [
  { do = ["GET", "k"] },  # trailing
  { wait = [
      { cmd = ["GET", "k"] },
      { cmd = ["GET", "l"], until = "}" },
    ], timeout = 1 },
]
[[actors]]
role = "two"
[actors.vars]
x = 1
"""
    locate = Locator(text)
    assert locate.line(("actors", 0)) == line_of(text, "[[actors]]", 3)  # not the comment, not the string
    assert locate.line(("actors", 0, "steps", 1, "wait", 1, "until")) == line_of(text, 'until = "}"')
    assert locate.line(("actors", 0, "steps", 1, "timeout")) == line_of(text, "], timeout = 1")
    assert locate.line(("actors", 1, "role")) == line_of(text, 'role = "two"')
    assert locate.line(("actors", 1, "vars", "x")) == line_of(text, "x = 1")
    assert locate.line(("b",)) == 3


def test_collection_rule() -> None:
    assert looks_like_scenario(GOOD)
    assert not looks_like_scenario('[tool.ruff]\nline-length = 120\n[project]\nname = "x"\n')
    assert not looks_like_scenario('[[actors]]\nrole = "a"\n')  # no [expect]


def test_loads_without_a_file() -> None:
    assert loads(GOOD, "inline.toml").name == "demo"


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_scenario_loads(path: Path) -> None:
    scenario = load(path)
    assert scenario.name == path.stem, "a scenario's name is its file name"
    assert scenario.description, "every shipped scenario says what it shows"
    assert looks_like_scenario(path.read_text())


def test_the_documented_example_loads() -> None:
    import re

    doc = (SCENARIOS.parent / "docs" / "scenarios.md").read_text()
    block = re.search(r"```toml\n(# scenarios/batch-deleted-early.toml.*?)```", doc, re.S)
    assert block is not None
    scenario = loads(block.group(1), "batch-deleted-early.toml")
    assert scenario.catalog_id == "deleted-by-client" and scenario.expect.lifetime[0].life == 1


def test_fork_step_needs_steps(tmp_path: Path) -> None:
    text = GOOD.replace('{ wait = [{ name = "job"', '{ fork = true },\n  { wait = [{ name = "job"')
    error = error_of(tmp_path, text)
    assert "missing field 'steps' (what the forked child runs)" in str(error)
    assert f"x.toml:{line_of(text, 'fork = true')}:" in str(error)


CLUSTER = GOOD.replace('catalog_id = "healthy"\n', 'catalog_id = "healthy"\ntopology = "cluster"\nreplicas = 1\n')


def with_api_step(step: str, text: str = CLUSTER) -> str:
    return text.replace('  { do = ["SET", "{ns}job", "v", "EX", "10"] },',
                        f'  {step},\n  {{ do = ["SET", "{{ns}}job", "v", "EX", "10"] }},')


def test_stall_and_failover_steps_load() -> None:
    text = with_api_step('{ stall = "replica0", seconds = 1.5 },\n  { failover = "replica0", mode = "force", '
                         'timeout = 20 }')
    scenario = loads(text, "x.toml")
    assert scenario.replicas == 1
    assert scenario.actors[0].steps[:2] == [{"stall": "replica0", "seconds": 1.5},
                                            {"failover": "replica0", "mode": "force", "timeout": 20}]


@pytest.mark.parametrize(("step", "field", "said"), [
    ('{ stall = "replica7", seconds = 1 }', "stall", "unknown replica 'replica7': one of replica0, replica1, "
                                                     "replica2"),
    ('{ stall = 0, seconds = 1 }', "stall", "expected a string, got integer 0"),
    ('{ stall = "replica0" }', "", "missing field 'seconds' (how long the replica applies no write)"),
    ('{ stall = "replica0", seconds = -1 }', "seconds", "must be above 0 and at most 60, got -1"),
    ('{ stall = "replica0", seconds = "2s" }', "seconds", "expected a number, got string '2s'"),
    ('{ stall = "replica0", seconds = 1, mode = "force" }', "", "unknown field 'mode' in a stall step"),
    ('{ failover = "replica1", mode = "hard" }', "mode", "unknown mode 'hard': one of coordinated, force, takeover"),
    ('{ failover = "replica1", timeout = 0 }', "timeout", "timeout must be above 0 and at most 600 seconds"),
    ('{ failover = "replica1", seconds = 1 }', "", "unknown field 'seconds' in a failover step"),
])
def test_a_malformed_stall_or_failover_is_one_line(tmp_path: Path, step: str, field: str, said: str) -> None:
    text = with_api_step(step)
    error = error_of(tmp_path, text)
    assert said in str(error), str(error)
    assert f"x.toml:{line_of(text, step)}:" in str(error)
    assert error.where.endswith(field), error.where


def test_stall_and_failover_need_the_clusters_replicas(tmp_path: Path) -> None:
    no_replicas = with_api_step('{ failover = "replica0" }', CLUSTER.replace("replicas = 1\n", ""))
    assert "needs the sandbox cluster's replicas: set topology = \"cluster\" and replicas = 1" in str(
        error_of(tmp_path, no_replicas))
    single = GOOD.replace('catalog_id = "healthy"\n', 'catalog_id = "healthy"\nreplicas = 1\n')
    error = error_of(tmp_path, single)
    assert error.where == "replicas" and "replicas go with topology = \"cluster\"" in str(error)
    many = CLUSTER.replace("replicas = 1", "replicas = 5")
    assert "replicas 5 is out of range 0..2" in str(error_of(tmp_path, many))
