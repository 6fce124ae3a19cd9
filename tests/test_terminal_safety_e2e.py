"""Key names are data, not terminal instructions: ESC, BEL, NUL, CR/LF in a key reach the screen escaped, a huge
key name is cut with its length, and the JSON keeps a key holding byte 0xff apart from one spelling `\\xff`."""

from __future__ import annotations

import base64
import json
import re
import subprocess

import pytest
import redis

from tests.clirun import cli_env, new_marker, run_cli
from tests.monitorrun import MonitorRun

_STYLE = re.compile(r"\x1b\[[0-9;]*m")  # rich's own colours (FORCE_COLOR): allowed
_RAW_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")  # anything else a terminal acts on (LF is fine)


def _assert_terminal_safe(text: str) -> None:
    plain = _STYLE.sub("", text)
    found = _RAW_CONTROL.findall(plain)
    assert not found, f"raw control characters reached the terminal: {sorted(set(found))!r}"


@pytest.fixture(scope="module")
def captured(tmp_path_factory, shared_sandbox):
    """One capture of hostile key names (a trace, and what monitor printed on a colour terminal)."""
    url = shared_sandbox.urls[0]
    prefix = new_marker()
    evil = f"{prefix}:evil\x1b]0;PWNED\x07\x1b[2J\r\nX\x00".encode()
    huge = f"{prefix}:huge:".encode() + b"k" * (1 << 20)
    out = tmp_path_factory.mktemp("terminal") / "trace.jsonl"
    run = MonitorRun("--url", url, "--keys", f"{prefix}*", "--out", str(out), env=cli_env(FORCE_COLOR="1"))
    api, other = redis.Redis.from_url(url), redis.Redis.from_url(url)
    try:
        api.rpush(evil, b"m1\x1b[31m")
        api.expire(evil, 60)
        other.delete(evil)  # another connection deletes it while the api still writes: a finding naming the key
        api.rpush(evil, b"m2")
        api.set(f"{prefix}:".encode() + b"\xff", 1)
        api.set(f"{prefix}:\\xff".encode(), 2)
        api.set(huge, 1, ex=60)
        other.delete(huge)
        api.set(huge, 2)
        gone = f"{prefix}:gone:".encode() + b"\xff"  # not UTF-8, and named by a finding
        api.rpush(gone, b"a")
        api.expire(gone, 60)
        subprocess.run([b"redis-cli", b"-u", url.encode(), b"DEL", gone], check=True, capture_output=True)
        api.rpush(gone, b"b")  # another process deleted it while the api still used it: a finding naming it
        api.set(f"{prefix}:caf\u00e9".encode(), 3)
        code, stdout, stderr = run.stop(settle=1.0)
    finally:
        run.kill()
        api.delete(evil, huge, f"{prefix}:gone:".encode() + b"\xff")
        api.close()
        other.close()
    assert code == 130, stderr
    return prefix, out, stdout, stderr


def test_live_timeline_and_summary_escape_control_characters(captured):
    _prefix, _out, stdout, stderr = captured
    _assert_terminal_safe(stdout)
    _assert_terminal_safe(stderr)
    assert "evil\\x1b]0;PWN" in stdout  # shown, the way redis-cli shows it


def test_report_escapes_and_cuts_a_megabyte_key_name(captured):
    prefix, out, _stdout, _stderr = captured
    # wide enough for the key next to identities such as `python -m pytest pid 4242 (client 11)`
    result = run_cli("report", str(out), "--keys", f"{prefix}*", env=cli_env(FORCE_COLOR="1", COLUMNS="200"))
    assert result.code in (0, 1), result.err
    _assert_terminal_safe(result.out + result.err)
    plain = _STYLE.sub("", result.out)
    assert "evil\\x1b]0;PWNED" in plain
    assert len(plain.splitlines()) < 300, "a 1 MB key name must be cut, not printed"
    assert "…(1,048,6" in plain  # cut, with its length


def test_json_tells_byte_ff_from_the_text_backslash_x_f_f(captured):
    prefix, out, _stdout, _stderr = captured
    result = run_cli("report", str(out), "--json", "--keys", f"{prefix}*")
    assert result.code in (0, 1), result.err
    keys = [k for k in json.loads(result.out)["keys"]
            if k["key"].endswith("ff") and len(k["key"]) < 60 and ":gone:" not in k["key"]]
    exact = {base64.b64decode(k["key_base64"]) if "key_base64" in k else k["key"].encode() for k in keys}
    assert exact == {f"{prefix}:".encode() + b"\xff", f"{prefix}:\\xff".encode()}
    assert "\x1b" not in result.out and "\x07" not in result.out


def test_findings_keep_the_exact_bytes_of_keys_that_are_not_utf8(captured):
    prefix, out, _stdout, _stderr = captured
    result = run_cli("report", str(out), "--json", "--keys", f"{prefix}*")
    assert result.code == 1, result.err
    named = [f for f in json.loads(result.out)["findings"] if any(":gone:" in k for k in f["keys"])]
    assert named, "the delete of the gone key is a finding"
    for finding in named:
        listed = [base64.b64decode(k) for k in finding["keys_base64"] if k is not None]
        assert f"{prefix}:gone:".encode() + b"\xff" in listed
    plain = [f for f in json.loads(result.out)["findings"] if all(":gone:" not in k for k in f["keys"])]
    assert all("keys_base64" not in f for f in plain), "keys_base64 only where a key is not UTF-8"


def test_terminal_shows_keys_escaped_exactly_as_redis_cli_does(captured):
    prefix, out, _stdout, _stderr = captured
    result = run_cli("report", str(out), "--keys", f"{prefix}*", env=cli_env(COLUMNS="300"))
    assert result.code == 1, result.err
    assert f"{prefix}:\\xff" in result.out  # byte 0xff, as redis-cli writes it
    assert f"{prefix}:\\\\xff" in result.out  # the four characters \xff: the backslash doubled
    assert f"{prefix}:caf\\xc3\\xa9" in result.out  # UTF-8 bytes too, as redis-cli writes them
    assert f"{prefix}:gone:\\xff" in result.out
