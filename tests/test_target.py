"""URL parsing and secret redaction."""

from __future__ import annotations

import pytest

from redisprobe.errors import ProbeError
from redisprobe.targets.url import parse_target, redact


def test_parse_db_from_path_and_password():
    t = parse_target("redis://user:p%40ss@host.example:6380/4")
    assert (t.host, t.port, t.db, t.username, t.password) == ("host.example", 6380, 4, "user", "p@ss")
    assert t.label == "redis://user:***@host.example:6380/4"


def test_password_only_shorthand():
    t = parse_target("redis://secret@localhost")
    assert t.password == "secret" and t.username is None
    assert "secret" not in t.label


def test_unix_socket_with_db():
    t = parse_target("unix:///tmp/redis.sock?db=2")
    assert t.unix_path == "/tmp/redis.sock" and t.db == 2


@pytest.mark.parametrize("url", ["ftp://x", "redis://:pw@h:99999", "redis://h/abc", "redis:///0"])
def test_bad_urls_never_show_the_password(url):
    with pytest.raises(ProbeError) as err:
        parse_target(url)
    assert "pw@" not in str(err.value)


def test_redact_inside_text():
    assert redact("connect redis://a:b@h:1/0 and rediss://:c@h2") == "connect redis://a:***@h:1/0 and rediss://:***@h2"
