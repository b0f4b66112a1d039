"""Imports point one way (docs/ARCHITECTURE.md): results -> findings -> reports. The renderers and
the findings engine read results.json alone, never the catalogue, the peers or the runner; the
findings engine renders nothing; the baseline and --repeat do not reach up into the reports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mtls_matrix import results

PACKAGE = Path(results.__file__).parent
# what a run is made of: today's catalogue and peers, the runner, the CLI
RUNTIME = ("cell", "peers", "baseline", "repeat", "scenarios", "hostile", "versions", "leaks", "floor", "plugin",
           "verdict", "observe", "isolate", "isolated_client", "pki", "repro", "cli", "suite", "compare", "setup_foreign",
           "selection", "options")


def imported(path: Path) -> set[str]:
    """Every mtls_matrix module the file imports, at any depth (function-level imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("mtls_matrix.")}


def _touches(names: set[str], module: str) -> bool:
    return any(name == f"mtls_matrix.{module}" or name.startswith(f"mtls_matrix.{module}.") for name in names)


@pytest.mark.parametrize("path", sorted((PACKAGE / "reports").glob("*.py")), ids=lambda p: p.name)
def test_reports_read_only_results_and_findings(path):
    names = imported(path)
    assert not [m for m in RUNTIME if _touches(names, m)], names


@pytest.mark.parametrize("name", ["findings", "sections", "knowledge"])
def test_the_findings_engine_imports_no_renderer_and_no_runtime(name):
    names = imported(PACKAGE / f"{name}.py")
    assert not _touches(names, "reports"), names
    assert not [m for m in RUNTIME if _touches(names, m)], names


@pytest.mark.parametrize("name", ["baseline", "repeat"])
def test_baseline_and_repeat_do_not_import_reports(name):
    assert not _touches(imported(PACKAGE / f"{name}.py"), "reports")


def _code_strings(path: Path, longest: int) -> list[tuple[int, str]]:
    """String literals of more than `longest` lines that are not docstrings, with their first line."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value.splitlines()[0]) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
            and len(node.value.strip("\n").splitlines()) > longest]


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_code_in_string_literals(path):
    # Python, JavaScript and CSS live in modules and package data files, where linters and tests see them
    assert not _code_strings(path, longest=5)

