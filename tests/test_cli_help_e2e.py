"""The CLI explains itself: real placeholders and choices in --help, shell completion, one warning said once."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.clirun import cli_env, run_cli
from tests.monitorrun import MonitorRun


@pytest.mark.parametrize("command", ["isolation", "info", "monitor", "ttl-race", "run", "report"])
def test_help_shows_placeholders_not_types(command):
    result = run_cli(command, "--help")
    assert result.code == 0, result.err
    options = [line for line in result.out.splitlines() if line.lstrip().startswith("--")]
    assert not [line for line in options if "<" in line.strip().split("  ")[0]], result.out  # `--url <str>`


def test_help_lists_the_choices():
    assert "single|split|replica" in run_cli("isolation", "--help").out
    race = run_cli("ttl-race", "--help").out
    assert "expire|pexpire|set-ex|set-keepttl" in race and "quiet|read-only|missing-is-ready" in race
    assert "--connect-timeout SECONDS" in run_cli("monitor", "--help").out


def _complete(words: str) -> list[str]:
    env = {**cli_env(), "_REDISPROBE_COMPLETE": "complete_bash", "COMP_WORDS": words,
           "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1))}
    proc = subprocess.run([sys.executable, "-m", "redisprobe"], capture_output=True, text=True, env=env, timeout=60)
    return proc.stdout.split()


def test_shell_completion_completes_commands_and_choices():
    assert "--install-completion" in run_cli("--help").out
    assert _complete("redisprobe mon") == ["monitor"]
    assert _complete("redisprobe isolation --topology s") == ["single", "split"]
    assert "ttl-unit-mismatch" in _complete("redisprobe ttl-race --bug ttl-")


def test_show_completion_prints_a_script_for_the_shell():
    result = run_cli("--show-completion", "bash", env={**cli_env(), "SHELL": "/bin/bash"})
    assert result.code == 0 and "_REDISPROBE_COMPLETE" in result.out, (result.code, result.out, result.err)


@pytest.mark.parametrize("json", [False, True])
def test_the_keyspace_events_warning_is_printed_once(redis_url, json):
    """Events off on the user's server: said once (live, or on stderr with --json), not again in the summary."""
    run = MonitorRun("--url", redis_url, *(["--json"] if json else []))
    try:
        _code, out, err = run.stop(settle=0.5)
    finally:
        run.kill()
    printed = err if json else out + err
    assert printed.count("keyspace events are off") == 1, printed
