"""Key names are data, not terminal instructions: ESC, BEL, NUL, CR/LF in a key reach the screen escaped, a huge
key name is cut with its length, and the JSON keeps a key holding byte 0xff apart from one spelling `\\xff`."""

from __future__ import annotations

import base64
import json
import re

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
        code, stdout, stderr = run.stop(settle=1.0)
    finally:
        run.kill()
        api.delete(evil, huge)
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
    result = run_cli("report", str(out), "--keys", f"{prefix}*", env=cli_env(FORCE_COLOR="1"))
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
    keys = [k for k in json.loads(result.out)["keys"] if k["key"].endswith("ff") and len(k["key"]) < 60]
    exact = {base64.b64decode(k["key_base64"]) if "key_base64" in k else k["key"].encode() for k in keys}
    assert exact == {f"{prefix}:".encode() + b"\xff", f"{prefix}:\\xff".encode()}
    assert "\x1b" not in result.out and "\x07" not in result.out
