"""pytest plugin: collects redisprobe scenario files as test items and offers a sandbox fixture.

Installed with redisprobe (entry point `pytest11`), so `pytest` in a project with scenario files runs them.

Collection rule: a `*.toml` file is a scenario when it has a `[[actors]]` table and an `[expect]` table (a
line starting with `[[actors]]`, and one starting with `[expect]` or `[[expect.`). Other TOML files
(pyproject.toml, tool configs) are never collected. Turn collection off with the ini option
`redisprobe_collect = false`.

Options: `--redisprobe-url URL` (or the ini option `redisprobe_url`) runs the scenarios on that server instead of
a sandbox per scenario (scenarios that need the sandbox, e.g. FLUSHDB or a split topology, are skipped), and
makes the `redisprobe_sandbox` fixture hand out that URL.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from redisprobe.scenario.model import ScenarioResult
    from redisprobe.targets.sandbox import Sandbox


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("redisprobe", "redisprobe scenarios")
    group.addoption("--redisprobe-url", dest="redisprobe_url", default=None, metavar="URL",
                    help="run redisprobe scenarios (and the redisprobe_sandbox fixture) against this server "
                         "instead of a disposable sandbox")
    parser.addini("redisprobe_url", "server URL for redisprobe scenarios and the redisprobe_sandbox fixture",
                  default="")
    parser.addini("redisprobe_collect", "collect redisprobe scenario files (*.toml with [[actors]] and [expect])",
                  type="bool", default=True)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "redisprobe_topology(name): the redisprobe_sandbox topology for this test "
                                       "(single, split or replica)")


def target_url(config: pytest.Config) -> str | None:
    """The server the user asked for (flag first, then ini), or None for sandboxes."""
    return config.getoption("redisprobe_url", None) or str(config.getini("redisprobe_url") or "") or None


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> ScenarioFile | None:
    if file_path.suffix != ".toml" or file_path.name == "pyproject.toml":
        return None
    if not parent.config.getini("redisprobe_collect"):
        return None
    try:
        text = file_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    from redisprobe.scenario.loader import looks_like_scenario

    if not looks_like_scenario(text):
        return None
    return ScenarioFile.from_parent(parent, path=file_path)


class ScenarioFile(pytest.File):
    """One scenario file: one test item, named after the file."""

    def collect(self) -> Iterator[ScenarioItem]:
        yield ScenarioItem.from_parent(self, name=self.path.name.removesuffix(".toml"))


class ScenarioFailed(Exception):
    """A scenario ran, and some of its expectations did not hold."""

    def __init__(self, result: ScenarioResult) -> None:
        super().__init__("; ".join(result.failures))
        self.result = result


class ScenarioItem(pytest.Item):
    def runtest(self) -> None:
        from redisprobe.scenario import load, run_scenario

        scenario = load(self.path)
        if scenario.catalog_id:
            self.user_properties.append(("catalog_id", scenario.catalog_id))
        if scenario.pending:
            _skip(f"pending: {scenario.pending}")
        result = run_scenario(scenario, url=target_url(self.config))
        self.user_properties.append(("findings", ", ".join(result.rules) or "none"))
        if result.status == "skipped":
            _skip(result.skipped or "skipped")
        if result.status == "interrupted":  # Ctrl-C: pytest stops the session, as for any test
            raise KeyboardInterrupt
        if result.status != "passed":
            raise ScenarioFailed(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str | Any:
        """The scenario's own words, never a Python traceback."""
        from redisprobe.errors import ProbeError
        from redisprobe.render.escape import shown

        error = excinfo.value
        if isinstance(error, ScenarioFailed):
            result = error.result
            lines = [f"scenario {result.name} ({result.path}) {result.status}:"]
            lines += [f"  - {failure}" for failure in result.failures]
            if result.findings:
                lines.append("findings:")
                lines += [f"  {f.rule} ({f.severity}): {f.summary}" for f in result.findings]
            lines += [f"note: {note}" for note in result.notes]
            return "\n".join(shown(line) for line in lines)  # key names are data, never terminal codes
        if isinstance(error, ProbeError):
            return shown(str(error))
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"redisprobe scenario {self.name}"


def _skip(reason: str) -> None:
    """Skip, reported at the scenario file rather than at this plugin's line."""
    try:
        raise pytest.skip.Exception(reason, _use_item_location=True)  # type: ignore[call-arg]
    except TypeError:  # a pytest without the (private) item-location flag
        pytest.skip(reason)


@dataclass
class RedisprobeServer:
    """What `redisprobe_sandbox` yields: the URL to use (first server), every server's URL, and per-role URLs."""

    url: str
    urls: list[str]
    role_urls: dict[str, str] = field(default_factory=dict)
    topology: str = "single"  # single / split / replica, or "url" for --redisprobe-url
    sandbox: Sandbox | None = None


@pytest.fixture
def redisprobe_sandbox(request: pytest.FixtureRequest) -> Iterator[RedisprobeServer]:
    """A disposable Redis (or the server given with --redisprobe-url), stopped after the test.

    `@pytest.mark.redisprobe_topology("split")` (or "replica") asks for two servers: `role_urls["api"]` and
    `role_urls["processor"]` then differ.
    """
    marker = request.node.get_closest_marker("redisprobe_topology")
    topology = str(marker.args[0]) if marker and marker.args else "single"
    url = target_url(request.config)
    if url:
        if topology != "single":
            pytest.skip(f"needs the sandbox's {topology} topology (--redisprobe-url gives one server)")
        yield RedisprobeServer(url=url, urls=[url], role_urls={"api": url, "processor": url}, topology="url")
        return
    from redisprobe.targets.sandbox import sandbox

    with sandbox(topology) as box:
        yield RedisprobeServer(url=box.urls[0], urls=list(box.urls), role_urls=dict(box.role_urls),
                               topology=topology, sandbox=box)
