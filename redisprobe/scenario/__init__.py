"""Declarative scenarios: a TOML file describes actors and what a run must show; the runner checks it.

Loading stays light (no Redis client, no actor machinery), so the pytest plugin can sniff files cheaply;
the runner is imported on first use.
"""

from __future__ import annotations

from typing import Any

from redisprobe.scenario.loader import load, loads, looks_like_scenario
from redisprobe.scenario.model import Scenario, ScenarioError, ScenarioResult

__all__ = ["Scenario", "ScenarioError", "ScenarioResult", "compile_plan", "load", "loads", "looks_like_scenario",
           "run_scenario"]


def __getattr__(name: str) -> Any:
    if name in ("compile_plan", "run_scenario"):
        from redisprobe.scenario import runner

        return getattr(runner, name)
    raise AttributeError(name)
