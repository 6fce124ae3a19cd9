"""Bad input: one clear line on stderr, exit 2, never a traceback, never a secret."""

from __future__ import annotations

import socket

import pytest
import redis

from tests.clirun import run_cli


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
