"""Run by test_compiled.py in a child pytest: proves that child imports the pure-Python modules it was given."""

from __future__ import annotations

import os

import pytest

import redisprobe.analysis.attribution
import redisprobe.analysis.doctor
import redisprobe.analysis.lifecycle.engine
import redisprobe.analysis.rules.removal
import redisprobe.semantics.command_table

EXPECTED = os.environ.get("REDISPROBE_EXPECT_PURE")


@pytest.mark.skipif(not EXPECTED, reason="only meaningful inside test_compiled.py's pure-Python run")
def test_the_fold_modules_are_the_pure_python_sources() -> None:
    for module in (redisprobe.analysis.lifecycle.engine, redisprobe.semantics.command_table,
                   redisprobe.analysis.attribution, redisprobe.analysis.doctor, redisprobe.analysis.rules.removal):
        assert module.__file__ is not None and module.__file__.startswith(str(EXPECTED)), module.__file__
        assert module.__file__.endswith(".py")
