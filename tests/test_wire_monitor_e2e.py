"""`redisprobe monitor --source both|wire` as a user runs it: replies and refused commands join the trace; with
`wire` MONITOR is never attached; without privilege, one line and exit 2."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from redisprobe import trace
from redisprobe.targets.sandbox import Sandbox
from tests.clirun import cli_env
from tests.monitorrun import MonitorRun

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a packet capture needs root or CAP_NET_RAW")


def load(url: str) -> tuple[str, list[object]]:
    """A client's commands, one of them refused (OOM under noeviction); returns its peer and its replies."""
    client = redis.Redis.from_url(url, single_connection_client=True)
    replies: list[object] = [client.set("wire:a", "1"), client.get("wire:a"), client.expire("wire:a", 100),
                             client.get("wire:missing")]
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", "1")
    try:
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            client.set("wire:refused", "x")
    finally:
        client.config_set("maxmemory", "0")
    host, port = client.connection._sock.getsockname()[:2]  # type: ignore[union-attr]
    client.close()
    return f"{host}:{port}", replies


def monitor_attached(url: str) -> bool:
    with redis.Redis.from_url(url) as admin:
        return any("O" in c["flags"] for c in admin.client_list())


@pytest.mark.parametrize("source", ["both", "wire"])
def test_replies_and_refused_commands_join_the_trace(private_server: Sandbox, tmp_path: Path, source: str) -> None:
    url = private_server.servers[0].url
    out = tmp_path / "trace.jsonl"
    run = MonitorRun("--url", url, "--source", source, "--json", "--out", str(out), "--no-enable-events")
    try:
        assert monitor_attached(url) == (source == "both")
        peer, replies = load(url)
        time.sleep(0.3)
        run.stop_json()
    finally:
        run.kill()
    _header, events = trace.load_trace(out)
    commands = [e.args for e in events if isinstance(e, trace.Monitor) and e.peer == peer]
    answered = [e for e in events if isinstance(e, trace.WireReply) and e.peer == peer]
    data = [args for args in commands if args[0] in (b"SET", b"GET", b"EXPIRE")]
    assert data == [[b"SET", b"wire:a", b"1"], [b"GET", b"wire:a"], [b"EXPIRE", b"wire:a", b"100"],
                    [b"GET", b"wire:missing"]]  # once each: with `both`, from MONITOR only
    assert [b"SET", b"wire:refused", b"x"] not in commands  # the server never ran it
    by_args = {tuple(r.refused): r for r in answered if r.refused}
    refused = by_args[(b"SET", b"wire:refused", b"x")]
    assert refused.error is not None and refused.error.startswith("OOM")
    mine = [r for r in answered if not r.refused]
    sent = {e.t: e.args for e in events if isinstance(e, trace.Monitor) and e.peer == peer}
    if source == "wire":  # each reply names its command's Monitor event by time
        paired = [(sent[r.sent][0], r.reply) for r in mine if r.sent in sent]
        assert (b"GET", "1") in paired and (b"GET", None) in paired and (b"EXPIRE", 1) in paired
    assert replies[:4] == [True, b"1", True, None]
    answers = [r.reply for r in mine]
    assert any(answers[i:i + 4] == ["OK", "1", 1, None] for i in range(len(answers)))  # SET GET EXPIRE GET
    newest = float("-inf")
    for event in events:  # the merged trace is as nearly time-ordered as a trace must be
        assert event.t >= newest - trace.REORDER_WINDOW
        newest = max(newest, event.t)


def test_without_cap_net_raw_monitor_source_wire_is_one_line_and_exit_2(private_server: Sandbox) -> None:
    """Root without CAP_NET_RAW (dropped from the bounding set): the same Python, the same packages."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv is not installed")
    proc = subprocess.run([setpriv, "--bounding-set=-net_raw", "--inh-caps=-net_raw", sys.executable, "-m",
                           "redisprobe", "monitor", "--url", private_server.servers[0].url, "--source", "wire",
                           "--json", "--duration", "1"],
                          capture_output=True, text=True, timeout=120, env=cli_env())
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "CAP_NET_RAW" in lines[0] and lines[0].startswith("redisprobe: error:"), proc.stderr
    assert proc.stdout == ""
    assert not monitor_attached(private_server.servers[0].url)
