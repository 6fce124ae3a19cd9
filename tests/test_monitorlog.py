"""Reading a `redis-cli monitor` log: the helper-process parser gives exactly what the in-process one gives."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from conftest import descendants

from redisprobe import trace
from redisprobe.errors import TraceFormatError
from redisprobe.trace.cli_log import read_monitor_log


def _log(path: Path, lines: int, *, crlf: bool = False, odd: bool = True) -> None:
    rng = random.Random(3)
    end = "\r\n" if crlf else "\n"
    t = 1_700_000_000.0
    with path.open("w", newline="") as out:
        out.write("OK" + end)
        for n in range(lines):
            t += 0.0003
            key = f"k:{rng.randrange(50)}"
            arg = rng.choice(['"v"', r'"a\"b"', r'"\xff\x00"', '""', '"with space"'])
            out.write(f'{t:.6f} [{n % 3} 127.0.0.1:{5000 + n % 7}] "SET" "{key}" {arg}{end}')
            if odd and n == lines // 2:
                out.write("this is not a monitor line" + end)
        out.write(f'{t + 1:.6f} [0 127.0.0.1:5000] "GET"')  # truncated last line, no newline


@pytest.mark.parametrize("crlf", [False, True])
def test_the_helper_process_parses_like_the_reader_itself(tmp_path: Path, crlf: bool) -> None:
    log = tmp_path / "monitor.log"
    _log(log, 30_000, crlf=crlf)
    here = list(read_monitor_log(log, parallel=False, target="t"))
    helper = list(read_monitor_log(log, parallel=True, target="t"))
    assert here == helper
    monitors = [e for e in here if isinstance(e, trace.Monitor)]
    assert len(monitors) == 30_001  # the truncated last line is still a whole command
    assert monitors[1].args[2] in (b"v", b'a"b', b"\xff\x00", b"", b"with space")
    notes = [e for e in here if isinstance(e, trace.Note)]
    assert len(notes) == 1 and "1 lines" in notes[0].text and "not a MONITOR line" in notes[0].text


def test_stopping_early_leaves_no_helper_behind(tmp_path: Path) -> None:
    log = tmp_path / "monitor.log"
    _log(log, 200_000, odd=False)
    before = descendants()
    stream = read_monitor_log(log, parallel=True)
    first = next(stream)
    assert isinstance(first, trace.Monitor)
    assert descendants() - before, "the helper should be running"
    stream.close()  # what Ctrl-C or an error in the fold does to the generator
    assert descendants() - before == set()


def test_a_helper_that_dies_is_an_error_not_a_short_log(tmp_path: Path) -> None:
    log = tmp_path / "monitor.log"
    _log(log, 200_000, odd=False)
    stream = read_monitor_log(log, parallel=True)
    next(stream)
    import psutil

    helpers = [p for p in psutil.Process().children() if "redisprobe.trace.cli_log" in " ".join(p.cmdline())]
    assert len(helpers) == 1
    helpers[0].kill()
    with pytest.raises(TraceFormatError, match="the parser stopped"):
        for _ in stream:
            pass


def test_an_unreadable_log_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TraceFormatError, match="cannot read"):
        list(read_monitor_log(tmp_path / "missing.log", parallel=True))


def test_report_on_a_big_log_uses_the_helper_and_matches_the_inline_analysis(tmp_path: Path) -> None:
    """The CLI path: a log over PARALLEL_FROM_BYTES is parsed by the helper; same JSON as parsing in-process."""
    import json
    import subprocess
    import sys

    from clirun import cli_env

    from redisprobe.analysis.digest import summarise_monitor_log
    from redisprobe.trace.cli_log import PARALLEL_FROM_BYTES, MonitorLog

    log = tmp_path / "monitor.log"
    rng = random.Random(5)
    t = 1_700_000_000.0
    with log.open("w") as out:
        out.write("OK\n")
        while out.tell() < PARALLEL_FROM_BYTES + (1 << 20):
            t += 0.001
            key = f"job:{rng.randrange(300)}"
            cmd = rng.choice([f'"SET" "{key}" "payload" "EX" "5"', f'"GET" "{key}"', f'"DEL" "{key}"',
                              f'"EXPIRE" "{key}" "5"', f'"RPUSH" "{key}:q" "x"', f'"LPOP" "{key}:q"'])
            out.write(f"{t:.6f} [0 127.0.0.1:{40000 + rng.randrange(3)}] {cmd}\n")
        out.write("not a monitor line\n")
    proc = subprocess.run([sys.executable, "-m", "redisprobe", "report", str(log), "--json"], capture_output=True,
                          text=True, env=cli_env(), timeout=300)
    assert proc.returncode in (0, 1), proc.stderr
    cli = json.loads(proc.stdout)
    with MonitorLog(log, parallel=False) as inline:
        here = json.loads(json.dumps(summarise_monitor_log(inline).to_json(), default=str))
    assert cli["stats"] == here["stats"] and cli["stats"]["commands"] > 100_000
    assert cli["keys"] == here["keys"]
    assert [f["summary"] for f in cli["findings"]] == [f.summary for f in summarise_monitor_log(
        MonitorLog(log, parallel=False)).findings]
    assert any("1 lines" in note["text"] for note in cli["notes"])
    import psutil

    left = [p for p in psutil.process_iter(["cmdline"]) if str(log) in " ".join(p.info["cmdline"] or [])]
    assert left == [], "the helper parser outlived the command"
