"""deploytool's dependencies run one way: the module map in its package docstring, kept true."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import deploytool
from support import GENERATED

PACKAGE = GENERATED / "deploytool"


def module_map() -> list[list[str]]:
    """The rows of the map, lowest first: the modules each row names."""
    doc = deploytool.__doc__ or ""
    table = doc[doc.index("Module map") :]
    rows = [line for line in table.splitlines() if line.startswith("    ")]
    return [re.split(r"\s{2,}", row.strip())[0].split(", ") for row in rows]


def imports(path: Path) -> set[str]:
    """The package's modules that ``path`` imports (relative imports: the package's own)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module.split(".")[0]} if node.module else {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("deploytool"):
            found.add((node.module or "").partition(".")[2].split(".")[0] or "__init__")
    return found


def test_the_map_names_every_module_once() -> None:
    named = [module for row in module_map() for module in row]
    modules = sorted(path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__")
    assert sorted(named) == modules, "deploytool/__init__.py's module map must list every module exactly once"


def test_no_module_imports_its_own_row_or_one_below() -> None:
    rank = {module: index for index, row in enumerate(module_map()) for module in row}
    upward = [
        f"{path.stem} (row {rank[path.stem]}) imports {other} (row {rank[other]})"
        for path in sorted(PACKAGE.glob("*.py"))
        if path.stem != "__init__"
        for other in sorted(imports(path))
        if rank[other] >= rank[path.stem]
    ]
    assert upward == [], "imports against the module map:\n" + "\n".join(upward)


def test_the_import_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The parser finds both spellings of an import of the package's own modules."""
    module = tmp_path / "m.py"
    module.write_text("from . import deploy, proc\nfrom .layout import Install\nfrom deploytool.sandbox import up\n")
    assert imports(module) == {"deploy", "proc", "layout", "sandbox"}
