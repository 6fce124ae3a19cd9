"""The real-app corpus (tests/apps/): small apps on real client libraries, run under the process managers their
users use, each captured mid-flight with `redisprobe monitor --pids`.

A bug app must get a finding with its rule id that names the culprit's pid (or the server, for eviction); a healthy
twin must get zero findings and exit 0. Where today's tool gets an app wrong, the case is xfail(strict=True) with
what it says instead (tests/apps/corpus.py, TODAY): a fix turns it into an XPASS that fails the suite until the
marker goes. Every app is also checked, never xfail, to have really run (each of its processes had a connection in
the capture), so a crashed app can neither pass as a silent twin nor hide behind an expected failure.

All captures run once per session, three apps at a time (they mostly wait: three at once keep 2 cores at about
half their capacity; the corpus took about 160 s so, 230 s two at a time), in a module-scoped fixture. The `WIRE` apps
(tests/apps/corpus.py) are captured once more with `monitor --source wire`, where replies name what
MONITOR cannot see (a miss of a key made before the capture, a refused write's sender): same expectations, xfail
where `TODAY_WIRE` says so.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.apps.corpus import APPS, BY_NAME, TODAY_WIRE, WIRE
from tests.apps.harness import App, Capture, check_installed, run_app

PARALLEL = 3
CORPUS_TIMEOUT = 1200  # seconds for the fixture that runs all captures (about 3 minutes on 2 idle cores)


@pytest.fixture(scope="module")
def captures() -> Iterator[dict[str, Capture]]:
    problem = check_installed()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    # Bug apps and twins interleaved, so the two running at once are rarely both of the heavy (Celery) kind.
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        results = dict(zip([app.name for app in APPS], pool.map(run_app, APPS), strict=True))
    yield results


@pytest.fixture(scope="module")
def wire_captures() -> Iterator[dict[str, Capture]]:
    problem = check_installed()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    if os.geteuid() != 0:
        pytest.skip("--source wire needs root or CAP_NET_RAW")
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        results = dict(zip(WIRE, pool.map(lambda name: run_app(BY_NAME[name], source="wire"), WIRE), strict=True))
    yield results


def _param(app: App) -> object:
    marks = [pytest.mark.xfail(strict=not app.sometimes, reason=f"today: {app.today}")] if app.today else []
    return pytest.param(app, id=app.name, marks=marks)


def _wire_param(app: App) -> object:
    today = TODAY_WIRE.get(app.name, "")
    marks = [pytest.mark.xfail(strict=True, reason=f"today, --source wire: {today}")] if today else []
    return pytest.param(app, id=f"wire-{app.name}", marks=marks)


BUG_APPS = [_param(app) for app in APPS if not app.healthy]
TWINS = [_param(app) for app in APPS if app.healthy]
WIRE_BUG_APPS = [_wire_param(BY_NAME[name]) for name in WIRE if not BY_NAME[name].healthy]
WIRE_TWINS = [_wire_param(BY_NAME[name]) for name in WIRE if BY_NAME[name].healthy]


def _ran(capture: Capture) -> None:
    assert capture.doc is not None, f"monitor printed no JSON (exit {capture.code}):\n{capture.stderr[-2000:]}"
    assert "Traceback" not in capture.stderr, capture.stderr[-3000:]
    idle = capture.idle()
    assert not idle, f"{', '.join(idle)} had no connection in the capture: the app did not run\n{capture.logs}"


def test_corpus_size() -> None:
    """At least 14 bug apps and 10 healthy twins, over at least 8 libraries in Node and Python."""
    bugs = [app for app in APPS if not app.healthy]
    twins = [app for app in APPS if app.healthy]
    assert len(bugs) >= 14 and len(twins) >= 10
    libraries = {part.strip().split(" (")[0] for app in APPS for part in app.library.split("+")}
    assert len(libraries) >= 8, libraries
    languages = {proc.script.rsplit(".", 1)[-1] if proc.script else "py" for app in APPS for proc in app.procs}
    assert {"mjs", "py"} <= languages


@pytest.mark.timeout(CORPUS_TIMEOUT)
@pytest.mark.parametrize("app", [pytest.param(app, id=app.name) for app in APPS])
def test_app_ran(app: App, captures: dict[str, Capture]) -> None:
    """Never xfail: an app that crashed must not hide behind an expected failure (or pass as a silent twin)."""
    _ran(captures[app.name])


def _names_rule_and_culprit(capture: Capture) -> None:
    _ran(capture)
    assert capture.code == 1, capture.explain()
    app = capture.app
    who = "the server" if app.culprit is None else f"{app.culprit} (pids {sorted(capture.culprit_pids())})"
    assert capture.right(), f"expected {app.rule} naming {who}; got:\n{capture.explain()}"


def _silent(capture: Capture) -> None:
    _ran(capture)
    assert capture.findings == [] and capture.code == 0, capture.explain()


@pytest.mark.timeout(CORPUS_TIMEOUT)
@pytest.mark.parametrize("app", BUG_APPS)
def test_bug_app_names_rule_and_culprit(app: App, captures: dict[str, Capture]) -> None:
    _names_rule_and_culprit(captures[app.name])


@pytest.mark.timeout(CORPUS_TIMEOUT)
@pytest.mark.parametrize("app", TWINS)
def test_healthy_twin_is_silent(app: App, captures: dict[str, Capture]) -> None:
    _silent(captures[app.name])


@pytest.mark.timeout(CORPUS_TIMEOUT)
@pytest.mark.parametrize("app", [pytest.param(BY_NAME[name], id=f"wire-{name}") for name in WIRE])
def test_wire_app_ran(app: App, wire_captures: dict[str, Capture]) -> None:
    _ran(wire_captures[app.name])


@pytest.mark.timeout(CORPUS_TIMEOUT)
@pytest.mark.parametrize("app", WIRE_BUG_APPS)
def test_wire_bug_app_names_rule_and_culprit(app: App, wire_captures: dict[str, Capture]) -> None:
    """With replies: the refused writes' sender, exactly; the misses of keys made before the capture."""
    capture = wire_captures[app.name]
    _names_rule_and_culprit(capture)
    if app.rule == "write-rejected":  # counted from the error replies themselves, not inferred
        assert any("read off the wire" in line for f in capture.right() for line in f.get("evidence") or []), \
            capture.explain()


@pytest.mark.timeout(CORPUS_TIMEOUT)
@pytest.mark.parametrize("app", WIRE_TWINS)
def test_wire_healthy_twin_is_silent(app: App, wire_captures: dict[str, Capture]) -> None:
    _silent(wire_captures[app.name])
