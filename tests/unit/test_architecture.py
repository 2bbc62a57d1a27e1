"""The layers of ARCHITECTURE.md hold in the code: no import runs upward or sideways, no import circle, no module
past 450 lines. The layer table is read from ARCHITECTURE.md itself, so the document cannot drift from the check.

Every import counts, wherever it is written (inside a function, under TYPE_CHECKING, under `if __name__`): a lazy
import is still a dependency a reader has to hold in their head."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("shared", "functions", "simulator")
MAX_LINES = 450
NAMESPACE = "shared"  # shared/__init__.py: a docstring, no code, so in no layer (checked below)


def product_sources() -> dict[str, str]:
    """Module name → source, for every module of the product (not tests or benchmarks)."""
    sources = {"function_app": (ROOT / "function_app.py").read_text(encoding="utf-8")}
    for top in PRODUCT:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            sources[".".join(parts)] = path.read_text(encoding="utf-8")
    return sources


def layers(document: str) -> list[tuple[str, ...]]:
    """The rows of ARCHITECTURE.md's layer table, top-down: each row's packages."""
    rows = [re.findall(r"`([\w.]+)`", line.split("|")[2]) for line in document.splitlines()
            if re.match(r"^\| \d+ \|", line)]
    assert rows and all(rows), "ARCHITECTURE.md has no layer table (rows '| n | `package`, … | what |')"
    return [tuple(row) for row in rows]


def imports(module: str, source: str, known: set[str], is_package: bool) -> set[str]:
    """The product modules `module` imports. `from pkg import name` is an import of pkg.name when that is a module
    (a submodule), else of pkg itself; relative imports are resolved."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {name for name in found if name in known and name != module}


def graph(sources: dict[str, str]) -> dict[str, set[str]]:
    known = set(sources)
    return {module: imports(module, source, known, is_package=any(m.startswith(module + ".") for m in known))
            for module, source in sources.items()}


def owner(module: str, table: list[tuple[str, ...]]) -> tuple[int, str] | None:
    """(row, package) of the longest package in the table that holds `module`."""
    best: tuple[int, str] | None = None
    for row, packages in enumerate(table):
        for package in packages:
            if (module == package or module.startswith(package + ".")) and (best is None or len(package) > len(best[1])):
                best = (row, package)
    return best


def layer_violations(sources: dict[str, str], table: list[tuple[str, ...]]) -> list[str]:
    problems = []
    for module, targets in sorted(graph(sources).items()):
        if module.startswith("simulator"):
            problems += [f"{module} imports {target}: the simulator imports nothing of authwatch"
                         for target in sorted(targets) if not target.startswith("simulator")]
            continue
        mine = owner(module, table)
        if module == NAMESPACE and not targets:
            continue
        if mine is None:
            problems.append(f"{module} is in no layer of ARCHITECTURE.md")
            continue
        for target in sorted(targets):
            if target.startswith("simulator"):
                if mine[1] != "shared.cli":
                    problems.append(f"{module} imports {target}: only shared.cli (the demo) may import the simulator")
                continue
            theirs = owner(target, table)
            if theirs is None or theirs[1] == mine[1] or theirs[0] > mine[0]:
                continue
            where = "above" if theirs[0] < mine[0] else "beside"
            problems.append(f"{module} imports {target}: {theirs[1]} (layer {theirs[0] + 1}) is {where} "
                            f"{mine[1]} (layer {mine[0] + 1})")
    return problems


def circles(sources: dict[str, str]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    edges = graph(sources)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


@pytest.fixture(scope="module")
def table() -> list[tuple[str, ...]]:
    return layers((ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8"))


def test_no_import_runs_up_or_sideways_across_the_layers(table):
    assert layer_violations(product_sources(), table) == []


def test_no_import_circles():
    assert circles(product_sources()) == []


def test_every_product_module_is_in_a_layer_and_every_layer_exists(table):
    sources = product_sources()
    packages = [package for row in table for package in row]
    assert not [p for p in packages if p not in sources], "ARCHITECTURE.md names a package that does not exist"
    assert not [m for m in sources if not m.startswith("simulator") and m != NAMESPACE and owner(m, table) is None]
    assert not [node for node in ast.parse(sources[NAMESPACE]).body if not isinstance(node, ast.Expr)]


def test_no_module_is_longer_than_a_reader_can_hold():
    long = {str(path.relative_to(ROOT)): lines for top in PRODUCT for path in (ROOT / top).rglob("*.py")
            if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}, f"split these along a seam a reader would name (limit {MAX_LINES} lines)"


# --- the check itself fails when it should ------------------------------------------------------------------------

def test_a_planted_upward_import_is_named(table):
    sources = product_sources()
    sources["shared.storage.entities"] += "\n\ndef _planted():\n    from shared.views import api  # noqa\n"
    assert layer_violations(sources, table) == [
        "shared.storage.entities imports shared.views.api: shared.views (layer 4) is above shared.storage (layer 8)"]


def test_a_planted_sideways_import_and_a_simulator_import_are_named(table):
    sources = product_sources()
    sources["shared.cycle.fleet"] += "\nfrom shared.alerts import content\n"
    sources["simulator.graph"] += "\nfrom shared.model import SOURCES\n"
    sources["shared.controls.base"] += "\nimport simulator.limits\n"
    problems = layer_violations(sources, table)
    assert "shared.cycle.fleet imports shared.alerts.content: shared.alerts (layer 5) is beside shared.cycle " \
           "(layer 5)" in problems
    assert "simulator.graph imports shared.model: the simulator imports nothing of authwatch" in problems
    assert "shared.controls.base imports simulator.limits: only shared.cli (the demo) may import the simulator" \
        in problems


def test_a_planted_circle_inside_a_package_is_found():
    sources = product_sources()
    sources["shared.controls.base"] += "\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n" \
                                       "    from shared.controls.evaluate import evaluate\n"
    assert any({"shared.controls.base", "shared.controls.evaluate"} <= set(group) for group in circles(sources))


def test_relative_imports_resolve_like_python_does():
    known = {"simulator", "simulator.scenario", "simulator.defaults", "simulator.limits"}
    found = imports("simulator.scenario", "from .defaults import X\nfrom . import limits\n", known, False)
    assert found == {"simulator.defaults", "simulator.limits"}
