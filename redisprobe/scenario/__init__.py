"""Declarative scenarios: a TOML file describes actors and what a run must show; the runner checks it."""

from redisprobe.scenario.loader import load, loads, looks_like_scenario
from redisprobe.scenario.model import Scenario, ScenarioError, ScenarioResult
from redisprobe.scenario.runner import compile_plan, run_scenario

__all__ = ["Scenario", "ScenarioError", "ScenarioResult", "compile_plan", "load", "loads", "looks_like_scenario",
           "run_scenario"]
