"""The layout keeps itself honest: no import hidden inside a function without a stated reason.

A function-level import is allowed only where it keeps a heavy library (torch, pandas, scipy,
onnxruntime, numpy) out of a process that does not need it, or where Django's start-up order
demands it; either way the line says why in a comment. The import-linter contracts in
pyproject.toml (run by `make test`) keep the layers themselves.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("models_mgmt", "techanal")


def _function_level_imports(path: Path) -> list[tuple[int, str]]:
    source = path.read_text()
    lines = source.splitlines()
    found = []

    def visit(node: ast.AST, inside: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = inside or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if inside and isinstance(child, ast.Import | ast.ImportFrom):
                text = " ".join(lines[child.lineno - 1 : (child.end_lineno or child.lineno)])
                found.append((child.lineno, text.strip()))
            visit(child, nested)

    visit(ast.parse(source), False)
    return found


def _python_files() -> list[Path]:
    return [
        path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if "migrations" not in path.parts
    ]


def test_every_function_level_import_says_why():
    unexplained = [
        f"{path.relative_to(ROOT)}:{line}: {text}"
        for path in _python_files()
        for line, text in _function_level_imports(path)
        if "#" not in text
    ]
    assert unexplained == []


def test_the_checker_sees_a_function_level_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    import os\n    return os\n\n\ndef g():\n    import json  # heavy: reason\n")
    assert _function_level_imports(sample) == [(2, "import os"), (7, "import json  # heavy: reason")]
