"""`redisprobe catalog`: every root cause in the rule registry, one line each, and the scenario reproducing it."""

from __future__ import annotations

import tomllib
from pathlib import Path

from redisprobe.analysis.rules.registry import FACT, FAMILIES, REGISTRY

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
        if not isinstance(catalog_id, str) or catalog_id not in REGISTRY:
            continue
        pending = data.get("pending")
        entry = (str(path), pending if isinstance(pending, str) else "")
        # prefer the file named after the id, then a runnable one
        current = found.get(catalog_id)
        if current is None or path.stem == catalog_id or (current[1] and not entry[1]):
            found[catalog_id] = entry
    return found


def catalog_rows(scenario_dir: Path | None = DEFAULT_DIR) -> list[tuple[str, str, str]]:
    """(id, one line, scenario file or "") for every root cause in the rule registry, family by family."""
    files = scenario_files(scenario_dir)
    causes = [spec for family in FAMILIES if family != FACT for spec in REGISTRY.values() if spec.family == family]
    return [(spec.id, spec.summary, files.get(spec.id, ("", ""))[0]) for spec in causes]


def catalog_json(scenario_dir: Path | None = DEFAULT_DIR) -> list[dict[str, object]]:
    files = scenario_files(scenario_dir)
    return [{"id": rule_id, "description": line, "scenario": path or None,
             "pending": files.get(rule_id, ("", ""))[1] or None}
            for rule_id, line, path in catalog_rows(scenario_dir)]


def catalog_markdown() -> str:
    """docs/catalog.md: every cause in the rule registry by family, with its `ttl-race --bug` injection (the file
    is generated, `redisprobe catalog --markdown > docs/catalog.md`, and a test keeps it current)."""
    lines = ["# Root causes redisprobe recognises", "",
             "Generated from the rule registry (`redisprobe/analysis/rules/__init__.py`) by "
             "`redisprobe catalog --markdown`; do not edit by hand.", "",
             "Each id is what findings, scenario expectations (`findings = [...]`) and `ttl-race --bug` use. "
             "`scenarios/ID.toml` reproduces the cause on a real server and `scenarios/ID-healthy.toml` is its "
             "healthy twin, on which the doctor stays silent.", ""]
    for family, title in FAMILIES.items():
        specs = [spec for spec in REGISTRY.values() if spec.family == family]
        if not specs:
            continue
        lines += [f"## {title[0].upper()}{title[1:]}", "", "| id | what happened | diagnosed | `ttl-race --bug` |",
                  "|---|---|---|---|"]
        for spec in specs:
            inject = spec.inject.how + (" (sandbox only)" if spec.inject.sandbox_only else "") if spec.inject else "-"
            diagnosed = "doctor rule" if spec.check is not None else spec.named_by or (
                "reported by the run" if family == FACT else "not from a trace yet")
            lines.append(f"| `{spec.id}` | {spec.summary} | {diagnosed} | {inject} |")
        lines.append("")
    return "\n".join(lines)


def print_catalog(scenario_dir: Path | None = DEFAULT_DIR, *, json: bool = False, markdown: bool = False) -> int:
    """The `catalog` command's output: a table (or JSON, or the Markdown of docs/catalog.md); always exit 0."""
    import sys

    from redisprobe.render.console import print_json, stdout_console
    from redisprobe.render.layout import Records

    if markdown:
        sys.stdout.write(catalog_markdown())
        return 0
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
