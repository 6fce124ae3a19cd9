"""Reading a `redis-cli monitor` log: the helper-process parser gives exactly what the in-process one gives."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from conftest import descendants

from redisprobe import trace
from redisprobe.errors import TraceFormatError
from redisprobe.monitorlog import read_monitor_log


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

    helpers = [p for p in psutil.Process().children() if "redisprobe.monitorlog" in " ".join(p.cmdline())]
    assert len(helpers) == 1
    helpers[0].kill()
    with pytest.raises(TraceFormatError, match="the parser stopped"):
        for _ in stream:
            pass


def test_an_unreadable_log_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TraceFormatError, match="cannot read"):
        list(read_monitor_log(tmp_path / "missing.log", parallel=True))
