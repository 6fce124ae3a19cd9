"""Pure analysis of a trace: each key's lives, who did what to them, and the doctor's findings.

Nothing here does I/O or renders: feed `trace.Event`s in time order, get data back. The names below are loaded
on first use, so a command that only needs the rule registry (`--help`, `catalog`) does not import the fold.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redisprobe.analysis.attribution import Attributor, Who, describe
    from redisprobe.analysis.doctor import RULES, Analysis, Context, analyze, diagnose, diagnose_lives, run_rules
    from redisprobe.analysis.lifecycle import KeyLife, Lifecycle, Timeline, TimelineRow, fold

_HOME = {
    "Attributor": "attribution", "Who": "attribution", "describe": "attribution",
    "RULES": "doctor", "Analysis": "doctor", "Context": "doctor", "analyze": "doctor", "diagnose": "doctor",
    "diagnose_lives": "doctor", "run_rules": "doctor",
    "KeyLife": "lifecycle", "Lifecycle": "lifecycle", "Timeline": "lifecycle", "TimelineRow": "lifecycle",
    "fold": "lifecycle",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


__all__ = [
    "RULES", "Analysis", "Attributor", "Context", "KeyLife", "Lifecycle", "Timeline", "TimelineRow", "Who",
    "analyze", "describe", "diagnose", "diagnose_lives", "fold", "run_rules",
]
