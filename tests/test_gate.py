"""The gate's rules, command by command: what may reach a server redisprobe does not own."""

from __future__ import annotations

import hashlib

import pytest

from redisprobe.targets.gate import Gate


def refusal(*args: str, scripts: bool = False) -> str | None:
    return Gate(scripts=scripts).refusal([a.encode() for a in args])


@pytest.mark.parametrize("args", [
    ("SET", "redisprobe:k", "v", "EX", "5"), ("GET", "redisprobe:k"), ("DEL", "redisprobe:a", "redisprobe:b"),
    ("MSET", "redisprobe:a", "1", "redisprobe:b", "2"), ("SCAN", "0", "MATCH", "redisprobe:x:*"),
    ("KEYS", "redisprobe:*"), ("CLIENT", "SETNAME", "x"), ("client", "tracking", "on"), ("SELECT", "3"),
    ("MULTI",), ("EXEC",), ("PING",), ("INFO", "server"), ("CONFIG", "GET", "maxmemory"),
    ("WATCH", "redisprobe:k"), ("OBJECT", "ENCODING", "redisprobe:k"), ("XINFO", "STREAM", "redisprobe:s"),
    ("PUBLISH", "redisprobe:chan", "m"), ("SORT", "redisprobe:l", "BY", "redisprobe:w_*", "GET", "#"),
    ("BLPOP", "redisprobe:q", "1"), ("EVAL", "return 1", "0"),
])
def test_allowed(args: tuple[str, ...]) -> None:
    assert refusal(*args, scripts=True) is None


@pytest.mark.parametrize(("args", "words"), [
    (("FLUSHDB",), "whole server"), (("flushall", "async"), "whole server"), (("SWAPDB", "0", "1"), "whole server"),
    (("CLIENT", "PAUSE", "10", "ALL"), "CLIENT PAUSE"), (("CLIENT", "KILL", "ID", "4"), "CLIENT KILL"),
    (("CONFIG", "SET", "maxmemory", "1"), "CONFIG SET"), (("DEBUG", "SLEEP", "1"), "DEBUG"),
    (("SHUTDOWN",), "SHUTDOWN"), (("RANDOMKEY",), "RANDOMKEY"), (("MIGRATE", "h", "1", "redisprobe:a", "0", "1"),
                                                                  "MIGRATE"),
    (("SET", "user:1", "x"), "user:1"), (("DEL", "redisprobe:a", "user:1"), "user:1"),
    (("RENAME", "redisprobe:a", "user:1"), "user:1"), (("SCAN", "0"), "names of your keys"),
    (("SCAN", "0", "MATCH", "*"), "names of your keys"), (("KEYS", "*"), "names of your keys"),
    (("PUBLISH", "orders", "m"), "channel orders"), (("SORT", "redisprobe:l", "GET", "user:*"), "user:*"),
    (("OBJECT", "FREQ", "user:1"), "user:1"), (("FUNCTION", "FLUSH"), "function library"),
    (("FCALL", "f", "1", "redisprobe:k"), "function library"), (("SCRIPT", "FLUSH"), "scripts run"),
    (("EVAL", "return 1", "0"), "allow_scripts"), (("EVALSHA", "ab" * 20, "0"), "allow_scripts"),
])
def test_refused(args: tuple[str, ...], words: str) -> None:
    reason = refusal(*args)
    assert reason is not None and words in reason


@pytest.mark.parametrize(("body", "words"), [
    ("return redis.call('FLUSHALL')", "whole server"),
    ("return redis.call('DEL', 'user:1')", "user:1"),
    ("return redis.pcall(\"del\", \"user:1\")", "user:1"),
    ("return server.call('FLUSHDB')", "whole server"),
    ("local c = redis.call; return c('FLUSHALL')", "other than redis.call"),
    ("return redis['call']('FLUSHALL')", "other than redis.call"),
    ("return _G.redis.call('FLUSHALL')", "dynamic"),
    ("return loadstring('return 1')()", "dynamic"),
    ("return redis.call('DEL', KEYS[1] .. 'x')", "computed at run time"),
    ("return redis.call('DEL', unpack(KEYS))", "computed at run time"),
    ("return redis.call(ARGV[2], KEYS[1])", "administrative"),
    ("return redis.call('DEL', KEYS[2])", "computed at run time"),
    ("return redis.call('EVAL', 'return 1', '0')", "scripts run"),
    ("return redis.call('ZUNIONSTORE', KEYS[1], ARGV[3], KEYS[1])", "computed at run time"),
    ("return redis.call([[FLUSHALL]])", "computes a command name"),
    ("return redis.call('\\70LUSHALL')", "computes a command name"),
])
def test_scripts_are_read_and_refused(body: str, words: str) -> None:
    reason = refusal("EVAL", body, "1", "redisprobe:k", "v", "FLUSHALL", scripts=True)
    assert reason is not None and words in reason, reason


@pytest.mark.parametrize("body", [
    "return redis.call('SET', KEYS[1], ARGV[1])",
    "local v = redis.call('INCR', KEYS[1]) if v == 1 then redis.call('EXPIRE', KEYS[1], 10) end return v",
    "return redis.call('DEL', 'redisprobe:other') -- redis.call('FLUSHALL') in a comment",
    "return redis.call('SET', KEYS[1], 'a -- not a comment')",
])
def test_scripts_on_namespaced_keys_pass(body: str) -> None:
    assert refusal("EVAL", body, "1", "redisprobe:k", "v", scripts=True) is None


def test_evalsha_runs_only_a_script_the_run_checked() -> None:
    gate = Gate(scripts=True)
    body = b"return redis.call('SET', KEYS[1], ARGV[1])"
    sha = hashlib.sha1(body).hexdigest().encode()
    assert gate.refusal([b"EVALSHA", sha, b"1", b"redisprobe:k", b"v"]) is not None
    assert gate.refusal([b"SCRIPT", b"LOAD", body]) is None
    assert gate.refusal([b"EVALSHA", sha, b"1", b"redisprobe:k", b"v"]) is None
    reason = gate.refusal([b"EVALSHA", sha, b"1", b"user:1", b"v"])
    assert reason is not None and "user:1" in reason
