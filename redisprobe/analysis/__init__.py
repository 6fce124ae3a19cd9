"""Pure analysis of a trace: each key's lives, who did what to them, and the doctor's findings.

Nothing here does I/O or renders: feed `trace.Event`s in time order, get data back.
"""

from __future__ import annotations

from redisprobe.analysis.attribution import Attributor, Who, describe
from redisprobe.analysis.doctor import RULES, Analysis, Context, analyze, diagnose, diagnose_lives, run_rules
from redisprobe.analysis.lifecycle import KeyLife, Lifecycle, Timeline, TimelineRow, fold

__all__ = [
    "RULES", "Analysis", "Attributor", "Context", "KeyLife", "Lifecycle", "Timeline", "TimelineRow", "Who",
    "analyze", "describe", "diagnose", "diagnose_lives", "fold", "run_rules",
]
