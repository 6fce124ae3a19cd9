"""`redisprobe catalog`: every root cause redisprobe knows (BUGS.md), one line each, and the scenario reproducing it."""

from __future__ import annotations

import tomllib
from pathlib import Path

from redisprobe.scenario.ids import CATALOG, doctor_descriptions

DEFAULT_DIR = Path("scenarios")


def scenario_files(scenario_dir: Path | None) -> dict[str, tuple[str, str]]:
    """catalog id -> (reproducing scenario file, pending reason or ""), read leniently (a bad file is skipped)."""
    found: dict[str, tuple[str, str]] = {}
    if scenario_dir is None or not scenario_dir.is_dir():
        return found
    for path in sorted(scenario_dir.glob("*.toml")):
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            continue
        catalog_id = data.get("catalog_id")
        if not isinstance(catalog_id, str) or catalog_id not in CATALOG:
            continue
        pending = data.get("pending")
        entry = (str(path), pending if isinstance(pending, str) else "")
        # prefer the file named after the id, then a runnable one
        current = found.get(catalog_id)
        if current is None or path.stem == catalog_id or (current[1] and not entry[1]):
            found[catalog_id] = entry
    return found


def catalog_rows(scenario_dir: Path | None = DEFAULT_DIR) -> list[tuple[str, str, str]]:
    """(id, one line, scenario file or "") for every BUGS.md id, in the catalog's order."""
    described = doctor_descriptions()
    files = scenario_files(scenario_dir)
    rows = []
    for rule_id, fallback in CATALOG.items():
        rows.append((rule_id, described.get(rule_id, fallback), files.get(rule_id, ("", ""))[0]))
    return rows


def catalog_json(scenario_dir: Path | None = DEFAULT_DIR) -> list[dict[str, object]]:
    files = scenario_files(scenario_dir)
    return [{"id": rule_id, "description": line, "scenario": path or None,
             "pending": files.get(rule_id, ("", ""))[1] or None}
            for rule_id, line, path in catalog_rows(scenario_dir)]


def print_catalog(scenario_dir: Path | None = DEFAULT_DIR, *, json: bool = False) -> int:
    """The `catalog` command's output: a table (or JSON); always exit 0."""
    from redisprobe.render.console import print_json, stdout_console
    from redisprobe.render.layout import Records

    if json:
        print_json({"catalog": catalog_json(scenario_dir)})
        return 0
    files = scenario_files(scenario_dir)
    rows = [(rule_id, line, (f"{path} (pending)" if files.get(rule_id, ("", ""))[1] else path) or "-")
            for rule_id, line, path in catalog_rows(scenario_dir)]
    stdout_console().print(Records(("id", "what happened", "scenario"), rows,
                                   title="Root causes redisprobe recognises",
                                   column_options={"id": {"style": "bold", "no_wrap": True}}))
    return 0
