"""The package as users meet it: the root API, the console script, the module entry point, trace headers."""

from __future__ import annotations

import subprocess
import sys

import redisprobe
from redisprobe.trace import load_trace
from tests.clirun import run_cli


def test_parse_monitor_line_is_importable_from_the_root():
    line = redisprobe.parse_monitor_line(b'+1700000000.5 [3 127.0.0.1:5000] "SET" "a b" "\\xff"')
    assert (line.ts, line.db, line.peer, line.args) == (1700000000.5, 3, "127.0.0.1:5000", [b"SET", b"a b", b"\xff"])
    assert issubclass(redisprobe.MonitorParseError, ValueError)


def test_version_from_module_and_console_script():
    module = subprocess.run([sys.executable, "-m", "redisprobe", "--version"], capture_output=True, text=True)
    assert module.returncode == 0 and module.stdout.strip() == f"redisprobe {redisprobe.__version__}"


def test_help_does_not_load_the_fold_or_redis_py():
    """`redisprobe --help` starts fast: the CLI reads the rule registry's ids, never the fold or redis-py."""
    probe = ("import sys\nfrom redisprobe.cli import main\ncode = main(['--help'])\n"
             "print(sorted(m for m in ('redis', 'redisprobe.analysis.lifecycle', 'redisprobe.analysis.doctor') "
             "if m in sys.modules), file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert "ttl-race" in result.stdout, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "[]"


def test_trace_header_carries_target_fingerprints(tmp_path):
    out = tmp_path / "t.jsonl"
    assert run_cli("info", "--topology", "split", "--out", str(out)).code == 1
    header, _ = load_trace(out)
    servers = header.servers
    assert set(servers) == {"api", "processor"}
    assert servers["api"].run_id != servers["processor"].run_id
    assert servers["api"].port == servers["processor"].port and servers["api"].version == "7.0.15"
