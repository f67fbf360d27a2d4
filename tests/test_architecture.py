"""The layout rules a newcomer relies on, checked on every run: small modules and functions,
no import cycles, and the web app never importing the scheduler. (The layer contract itself is
import-linter's, in pyproject.toml, run by scripts/test.sh.)"""

from __future__ import annotations

import ast
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("webapp", "scheduler")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def source_files() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py"))


def test_no_module_is_over_500_lines():
    long = {
        str(p.relative_to(REPO)): n
        for p in source_files()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_no_function_is_over_60_lines():
    long = {}
    for path in source_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(REPO)}:{node.lineno} {node.name}"] = lines
    assert long == {}


@pytest.fixture(scope="module")
def import_graph() -> grimp.ImportGraph:
    # Imports for type checkers count too: a cycle hidden behind TYPE_CHECKING is still two
    # modules that each need the other.
    return grimp.build_graph(*PACKAGES, cache_dir=None)


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected groups of two or more modules (Tarjan), each one import cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return cycles


def test_there_are_no_import_cycles(import_graph):
    assert import_cycles(import_graph) == []


def test_the_web_app_never_imports_the_scheduler(import_graph):
    chains = import_graph.find_shortest_chains(importer="webapp", imported="scheduler")
    assert chains == set()
