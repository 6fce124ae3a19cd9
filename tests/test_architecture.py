"""The package's shape, kept: one name per module, modules a reader can hold in mind, imports that flow one way.

These read the source only (no server); they fail when a change adds a second `monitor.py`, a module far over
the size a newcomer reads in one sitting, an import cycle, or rich outside the renderers.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "redisprobe"
MAX_LINES = 600
RICH_ALLOWED = ("render/", "cli.py")


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _load_time_imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The package modules `name` imports while it loads (imports inside functions and under TYPE_CHECKING run
    later or never, so they cannot make a cycle)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for stmt in ast.walk(node) if isinstance(node, (ast.If, ast.Try)) else [node]:
            if isinstance(stmt, ast.Import):
                found.update(alias.name for alias in stmt.names if alias.name in known)
            elif isinstance(stmt, ast.ImportFrom) and (stmt.module or "").startswith("redisprobe"):
                base = stmt.module or ""
                for alias in stmt.names:
                    sub = f"{base}.{alias.name}"
                    found.add(sub if sub in known else base)
    found.discard(name)
    return {module for module in found if module in known}


def test_no_module_name_is_used_twice():
    names = [path.stem for path in PACKAGE.rglob("*.py") if path.stem not in ("__init__", "__main__")]
    names += [folder.name for folder in PACKAGE.rglob("*") if folder.is_dir() and folder.name != "__pycache__"]
    twice = sorted(name for name, count in Counter(names).items() if count > 1)
    assert not twice, f"module names used more than once: {twice}"


def test_no_module_is_over_the_size_a_reader_can_hold():
    too_big = {str(path.relative_to(PACKAGE.parent)): n for path in PACKAGE.rglob("*.py")
               if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not too_big, f"modules over {MAX_LINES} lines: {too_big}"


def test_imports_have_no_cycle():
    modules = _modules()
    graph = {name: _load_time_imports(path, name, set(modules)) for name, path in modules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for name in sorted(graph):
        if name not in state and (cycle := visit(name)):
            raise AssertionError("import cycle: " + " -> ".join(cycle))


def test_only_the_renderers_and_the_cli_import_rich():
    offenders = set()
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith(RICH_ALLOWED):
            continue
        tree = ast.parse(path.read_text())
        typing_only = {id(inner) for node in tree.body if isinstance(node, ast.If)
                       and "TYPE_CHECKING" in ast.unparse(node.test) for inner in ast.walk(node)}
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue  # annotations may name rich's types
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(name == "rich" or name.startswith("rich.") for name in names):
                offenders.add(relative)
    assert not offenders, f"rich imported outside render/ and cli.py: {sorted(offenders)}"


def test_the_cycle_check_finds_a_cycle(tmp_path):
    """The cycle test must be able to fail: two modules importing each other at load time are caught."""
    (tmp_path / "a.py").write_text("from redisprobe.b import x\n")
    (tmp_path / "b.py").write_text("from redisprobe.a import y\n")
    known = {"redisprobe.a", "redisprobe.b"}
    assert _load_time_imports(tmp_path / "a.py", "redisprobe.a", known) == {"redisprobe.b"}
    assert _load_time_imports(tmp_path / "b.py", "redisprobe.b", known) == {"redisprobe.a"}
