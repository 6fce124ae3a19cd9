"""The mypyc-compiled fold and the pure-Python one are the same analysis (setup.py compiles when it can).

The rest of the suite runs whichever is installed (compiled, where a C compiler was there); these tests run the
pure-Python modules beside it: the fold and doctor unit tests, and `report --json` on a varied monitor log.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from clirun import cli_env

import redisprobe

ROOT = Path(__file__).resolve().parent.parent


def _compiled() -> list[Path]:
    """The compiled modules of the redisprobe this suite imports (whatever setup.py managed to compile)."""
    return sorted(Path(redisprobe.__file__).parent.rglob("*.so"))


needs_compiled = pytest.mark.skipif(not _compiled(), reason="pure-Python install: nothing compiled to compare")


@pytest.fixture(scope="module")
def pure_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package's sources alone (no compiled modules) with the tests beside them, for child processes."""
    root = tmp_path_factory.mktemp("pure")
    for part in ("redisprobe", "tests"):
        shutil.copytree(ROOT / part, root / part, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", root)
    probe = "import redisprobe.analysis.lifecycle.engine as m; print(m.__file__)"
    check = subprocess.run([sys.executable, "-c", probe],
                           capture_output=True, text=True, env=cli_env(PYTHONPATH=str(root)), check=True, cwd=root)
    assert check.stdout.strip() == str(root / "redisprobe" / "analysis" / "lifecycle" / "engine.py")
    return root


@needs_compiled
def test_compiled_modules_are_not_older_than_their_sources() -> None:
    for compiled in _compiled():
        source = compiled.with_name(compiled.name.split(".")[0] + ".py")
        assert source.stat().st_mtime <= compiled.stat().st_mtime + 1, (
            f"{compiled.name} is older than {source.name}: rebuild with `pip install -e .`")


@needs_compiled
def test_fold_and_doctor_unit_tests_pass_in_pure_python(pure_copy: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_pure_probe.py",
         "tests/test_lifecycle.py", "tests/test_doctor_rules.py"],
        cwd=pure_copy, capture_output=True, text=True, timeout=600,
        env=cli_env(PYTHONPATH=str(pure_copy), REDISPROBE_EXPECT_PURE=str(pure_copy)))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout


def _varied_log(path: Path, lines: int) -> None:
    """Every kind of command the fold handles, on few keys so that lives overlap, expire and get recreated."""
    rng = random.Random(11)
    peers = ["127.0.0.1:50001", "127.0.0.1:50002", "10.0.0.7:41000", "[::1]:6000", "lua"]
    t = 1_700_000_000.0
    keys = [f"job:{n}" for n in range(30)] + [f"jobs:{n}" for n in range(5)] + ["queue", "counter"]
    forms = [
        lambda k, n: ["SET", k, f"v{n}", "EX", str(rng.choice([1, 2, 30, 60000]))],
        lambda k, n: ["SET", k, f"v{n}", "PX", str(rng.choice([500, 1500, 30]))],
        lambda k, n: ["SET", k, f"v{n}"],
        lambda k, n: ["SET", k, f"v{n}", "NX", "EX", "5"],
        lambda k, n: ["SET", k, f"v{n}", "XX", "KEEPTTL"],
        lambda k, n: ["GET", k],
        lambda k, n: ["GET", k],
        lambda k, n: ["EXISTS", k],
        lambda k, n: ["EXPIRE", k, str(rng.choice([1, 3, 60, -1]))],
        lambda k, n: ["EXPIRE", k, "10", rng.choice(["NX", "XX", "GT", "LT"])],
        lambda k, n: ["PEXPIRE", k, str(rng.choice([30, 2000]))],
        lambda k, n: ["PERSIST", k],
        lambda k, n: ["DEL", k],
        lambda k, n: ["UNLINK", k],
        lambda k, n: ["GETDEL", k],
        lambda k, n: ["RPUSH", "queue", f"item{n}"],
        lambda k, n: ["LPOP", "queue"],
        lambda k, n: ["INCR", "counter"],
        lambda k, n: ["RENAME", k, k + ":done"],
        lambda k, n: ["MSET", k, "a", "jobs:1", "b"],
        lambda k, n: ["SCAN", "0", "MATCH", "job-*", "COUNT", "100"],
        lambda k, n: ["KEYS", "jobs*"],
        lambda k, n: ["SELECT", str(rng.choice([0, 1]))],
        lambda k, n: ["MULTI"],
        lambda k, n: ["EXEC"],
        lambda k, n: ["EVAL", "return redis.call('DEL', KEYS[1])", "1", k],
        lambda k, n: ["GETEX", k, "EX", "20"],
        lambda k, n: ["HSET", k + ":h", "f", "v"],
        lambda k, n: ["EXPIREAT", k, str(int(t) - 5)],
    ]
    with path.open("w") as out:
        out.write("OK\n")
        for n in range(lines):
            t += rng.choice([0.0001, 0.001, 0.05, 0.3])
            cmd = ["FLUSHDB"] if rng.random() < 0.002 else rng.choice(forms)(rng.choice(keys), n)
            quoted = " ".join('"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"' for arg in cmd)
            out.write(f"{t:.6f} [{rng.choice([0, 0, 0, 1])} {rng.choice(peers)}] {quoted}\n")


@needs_compiled
def test_report_gives_the_same_json_compiled_and_pure(pure_copy: Path, tmp_path: Path) -> None:
    log = tmp_path / "monitor.log"
    _varied_log(log, 20_000)
    results = []
    for env in (cli_env(), cli_env(PYTHONPATH=str(pure_copy))):
        proc = subprocess.run([sys.executable, "-m", "redisprobe", "report", str(log), "--json"],
                              capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
        assert proc.returncode in (0, 1), proc.stderr
        results.append(json.loads(proc.stdout))
    compiled, pure = results
    assert compiled["stats"]["commands"] == 20_000
    assert len(compiled["keys"]) > 50 and compiled["findings"], "the log should give lives and findings"
    assert compiled == pure
