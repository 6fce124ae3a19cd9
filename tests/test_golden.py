"""The analysis gives today's answers on every saved trace: `report --json` byte for byte (tests/data/golden).

The corpus holds traces the suite folded, traces its CLI runs wrote, one run of every scenario file and the
benchmark logs; tests/golden/make.py rebuilds it. A change that is meant to alter an answer updates the expected
file in the same commit, and says why.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from golden.report import GOLDEN, golden_inputs, report_json

NAMES = sorted(p.name.removesuffix(".json") for p in (GOLDEN / "expected").glob("*.json"))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return dict(golden_inputs(tmp_path_factory.mktemp("golden")))


def test_the_corpus_is_there(inputs: dict[str, Path]) -> None:
    assert len(NAMES) >= 50
    assert set(inputs) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_report_json_is_unchanged(name: str, inputs: dict[str, Path]) -> None:
    expected = (GOLDEN / "expected" / f"{name}.json").read_text()
    assert report_json(inputs[name]) == expected
