"""Bad input: one clear line on stderr, exit 2, never a traceback, never a secret."""

from __future__ import annotations

import resource
import socket
import subprocess
import sys
import time

import pytest
import redis

from tests.clirun import Result, cli_env, run_cli


def _assert_one_line_error(result, *fragments: str) -> None:
    assert result.code == 2, (result.code, result.out, result.err)
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("command", ["isolation", "info"])
def test_refused_connection(command):
    port = _closed_port()
    result = run_cli(command, "--url", f"redis://127.0.0.1:{port}/0")
    _assert_one_line_error(result, "cannot connect", f"127.0.0.1:{port}")


@pytest.mark.parametrize("url,fragment", [
    ("http://localhost:6379", "scheme"),
    ("redis://localhost:notaport", "bad URL"),
    ("redis://localhost:6379/zero", "db must be a number"),
    ("unix://", "socket path"),
])
def test_bad_urls(url, fragment):
    _assert_one_line_error(run_cli("isolation", "--url", url), fragment)


def test_unknown_topology():
    _assert_one_line_error(run_cli("isolation", "--topology", "mesh"), "unknown topology")


@pytest.fixture
def password_server(private_server):
    client = redis.Redis.from_url(private_server.urls[0])
    client.config_set("requirepass", "s3cret-pw")
    client.close()
    base = private_server.urls[0].replace("redis://", "")
    yield base
    redis.Redis.from_url(f"redis://:s3cret-pw@{base}").config_set("requirepass", "")


def test_wrong_password_is_one_line_without_the_secret(password_server):
    result = run_cli("isolation", "--url", f"redis://:wrong-pw-123@{password_server}")
    _assert_one_line_error(result, "authentication failed")
    assert "wrong-pw-123" not in result.err + result.out


def test_missing_password(password_server):
    _assert_one_line_error(run_cli("info", "--url", f"redis://{password_server}"), "authentication required")


def test_right_password_never_appears_in_output_or_trace(password_server, tmp_path):
    out = tmp_path / "t.jsonl"
    url = f"redis://:s3cret-pw@{password_server}"
    result = run_cli("isolation", "--url", url, "--timeout", "3", "--out", str(out), "--json")
    assert result.code == 0, result.err
    assert "s3cret-pw" not in result.out + result.err
    text = out.read_text()
    assert "s3cret-pw" not in text
    assert "redis://:***@" in text


def test_missing_acl_permission(private_server):
    admin = redis.Redis.from_url(private_server.urls[0])
    admin.execute_command("ACL", "SETUSER", "limited", "on", ">pw", "~*", "+@all", "-info")
    base = private_server.urls[0].replace("redis://", "")
    result = run_cli("isolation", "--url", f"redis://limited:pw@{base}")
    _assert_one_line_error(result, "missing ACL permission")
    assert ":pw@" not in result.err


def test_info_says_not_permitted_when_config_is_refused(private_server):
    admin = redis.Redis.from_url(private_server.urls[0])
    admin.execute_command("ACL", "SETUSER", "noconfig", "on", ">pw", "~*", "+@all", "-config")
    base = private_server.urls[0].replace("redis://", "")
    result = run_cli("info", "--url", f"redis://noconfig:pw@{base}", "--json")
    assert result.code == 0, result.err
    for actor in result.json()["actors"]:
        assert actor["sections"]["config"]["maxmemory-policy"] == "not permitted"


def test_unreadable_trace_file(tmp_path):
    _assert_one_line_error(run_cli("report", str(tmp_path / "missing.jsonl")), "cannot read trace")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("this is not a trace\n")
    _assert_one_line_error(run_cli("report", str(bad)), "not a redisprobe trace")


def test_bad_option_value_is_a_usage_error():
    result = run_cli("isolation", "--timeout", "soon")
    assert result.code == 2
    assert "Traceback" not in result.err


# -- what used to be "internal error:" -------------------------------------------------------------------------


def _no_internal_error(result, *fragments: str) -> None:
    _assert_one_line_error(result, *fragments)
    assert "internal error" not in result.err, result.err


def test_a_5000_character_host_is_a_bad_url():
    _no_internal_error(run_cli("info", "--url", f"redis://{'a' * 5000}:6390/0"), "bad URL")


def test_an_empty_url_is_an_error_not_a_silent_sandbox():
    _no_internal_error(run_cli("isolation", "--url", ""), "--url")
    _no_internal_error(run_cli("monitor", "--url", "", "--duration", "1"), "--url")


def test_a_server_that_answers_ok_to_everything_is_not_redis():
    from tests.fakeservers import fake_server

    with fake_server("ok") as port:
        for command in ("info", "monitor", "isolation"):
            _no_internal_error(run_cli(command, "--url", f"redis://127.0.0.1:{port}/0"), "does not answer like Redis")


@pytest.mark.parametrize("option", ["--out", "--svg"])
def test_an_unwritable_output_is_refused_before_the_capture(tmp_path, option):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for target in (str(blocker / "x"), str(tmp_path), *(["/dev/null"] if option == "--out" else [])):
        started = time.monotonic()
        result = run_cli("monitor", option, target, "--duration", "30")
        _no_internal_error(result, option)
        assert "capturing" not in result.err and time.monotonic() - started < 25  # refused before it started


def test_an_unwritable_junit_report_is_refused_before_the_scenarios(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_cli("run", "scenarios/deleted-by-client-healthy.toml", "--junit", str(blocker / "r.xml"))
    _no_internal_error(result, "--junit")


@pytest.mark.parametrize("args", [("isolation", "--timeout", "1", "--out", "{tmp}/t.jsonl"),
                                  ("monitor", "--duration", "3")])
def test_disk_full_while_writing_the_trace_is_one_line(tmp_path, args):
    """A file size limit makes every write past it fail (EFBIG), as a full disk does (ENOSPC)."""
    limit = 3000

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    argv = [arg.format(tmp=tmp_path) for arg in args]
    proc = subprocess.run([sys.executable, "-m", "redisprobe", *argv], capture_output=True, text=True, timeout=120,
                          env=cli_env(TMPDIR=str(tmp_path)), preexec_fn=small_files)
    lines = [line for line in proc.stderr.splitlines()
             if not line.startswith(("redisprobe: capturing", "redisprobe: baseline of"))]
    _no_internal_error(Result(proc.returncode, proc.stdout, "\n".join(lines)), "cannot write")
    assert not any(p.name.startswith("redisprobe-") for p in tmp_path.iterdir())


def test_traceback_does_not_change_the_exit_code():
    port = _closed_port()
    plain = run_cli("info", "--url", f"redis://127.0.0.1:{port}/0")
    debug = run_cli("--traceback", "info", "--url", f"redis://127.0.0.1:{port}/0")
    assert plain.code == debug.code == 2, (plain.code, debug.code)
    assert "Traceback" in debug.err and "cannot connect" in debug.err.splitlines()[-1]
