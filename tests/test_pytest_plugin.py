"""The pytest plugin, run through pytest itself: scenario files become test items, failures read as reasons."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

SCENARIO = """\
name = "{name}"
catalog_id = "healthy"
max_seconds = 10

[[actors]]
role = "api"
steps = [{{ do = ["SET", "{{ns}}job", "v", "EX", "10"] }}]

[[actors]]
role = "processor"
db = {db}
steps = [{{ wait = [{{ name = "job", cmd = ["GET", "{{ns}}job"] }}], timeout = {timeout} }}]

[expect]
{expect}
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # in-process: redisprobe is already imported by this session, which pytest would warn about
    return pytester.runpytest("-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning", *args)


def scenario(name: str, *, expect: str, db: int = 0, timeout: float = 2) -> str:
    return SCENARIO.format(name=name, expect=expect, db=db, timeout=timeout)


@pytest.mark.timeout(180)
def test_passing_and_failing_scenarios(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", visible=scenario("visible", expect="visible = true\nclean = true"))
    # broken on purpose: the processor reads db 1, yet the file expects a clean, visible run
    pytester.makefile(".toml", wrong_db=scenario("wrong_db", db=1, timeout=0.5, expect="visible = true\nclean = true"))
    result = run(pytester, "-v")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*visible.toml::visible PASSED*",
        "*wrong_db.toml::wrong_db FAILED*",
        "*scenario wrong_db (*wrong_db.toml) failed:",
        "*- expected the writes to be visible, but processor (pid *) waited * for redisprobe:scenario:wrong_db:*",
        "*- expected a clean run, got different-db (error): *",
    ])
    text = result.stdout.str()
    assert "Traceback" not in text and "def runtest" not in text and "raise ScenarioFailed" not in text


@pytest.mark.timeout(60)
def test_only_scenario_toml_files_are_collected(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", config='[tool.something]\nkey = "value"\n[[actors]]\nrole = "not a scenario"\n')
    pytester.makefile(".toml", pending=scenario("pending", expect="clean = true").replace(
        'max_seconds = 10', 'max_seconds = 10\npending = "needs a fork step"'))
    result = run(pytester, "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*pending: needs a fork step*"])
    pytester.makeini("[pytest]\nredisprobe_collect = false\n")
    result = run(pytester)
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


@pytest.mark.timeout(60)
def test_malformed_scenario_fails_with_file_line_and_field(pytester: pytest.Pytester) -> None:
    text = scenario("typo", expect="clean = true").replace("{ wait =", "{ wiat =")
    pytester.makefile(".toml", typo=text)
    result = run(pytester)
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    assert "typo.toml:12: actors[1].steps[0]: unknown step 'wiat': one of do, sleep" in text
    assert "Traceback" not in text


@pytest.mark.timeout(180)
def test_sandbox_fixture_and_url_option(pytester: pytest.Pytester, redis_url: str) -> None:
    pytester.makepyfile(test_uses_fixture="""
        import pytest
        import redis

        def test_single(redisprobe_sandbox):
            client = redis.Redis.from_url(redisprobe_sandbox.url)
            assert client.ping()
            print("URL", redisprobe_sandbox.url, redisprobe_sandbox.topology)

        @pytest.mark.redisprobe_topology("split")
        def test_split(redisprobe_sandbox):
            api, processor = redisprobe_sandbox.role_urls["api"], redisprobe_sandbox.role_urls["processor"]
            assert api != processor
            redis.Redis.from_url(api).set("redisprobe:test:k", "1")
            assert redis.Redis.from_url(processor).get("redisprobe:test:k") is None
    """)
    result = run(pytester, "-s")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*URL redis://127.0.0.1:* single"])

    # --redisprobe-url: the fixture hands out that server, split-topology tests skip, scenarios run there
    pytester.makefile(".toml", on_url=scenario("on_url", expect="visible = true\nclean = true"))
    result = run(pytester, "-s", "-rs", f"--redisprobe-url={redis_url}")
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines([f"*URL {redis_url} url", "*needs the sandbox's split topology*"])
