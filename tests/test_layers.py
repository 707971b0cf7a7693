"""The package's layers point one way: funcapprox/nni/ is the only door to NNI, the records sit
below the store that builds them, and the trial process loads only what a trial needs."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "funcapprox"
MODULES = sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module `path` imports at run time (absolute names; `if TYPE_CHECKING:` blocks left out)."""
    tree = ast.parse(path.read_text())
    package = module_name(path).split(".") if path.name == "__init__.py" else module_name(path).split(".")[:-1]
    skipped = {id(n) for node in ast.walk(tree)
               if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.add(module)
            found |= {f"{module}.{a.name}" for a in node.names}  # `from . import trial` imports a module
    return found


def under(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def strings(path: Path) -> set[str]:
    """The string constants in `path`'s code, docstrings and comments left out."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body
                  and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docstrings}


OUTSIDE_NNI = [p for p in MODULES if not under(module_name(p), "funcapprox.nni")]


@pytest.mark.parametrize("path", OUTSIDE_NNI, ids=module_name)
def test_only_funcapprox_nni_imports_nni_or_opens_its_store(path):
    assert not [m for m in imports(path) if under(m, "nni", "nni_node", "sqlite3")]
    assert not [s for s in strings(path) if "nnictl" in s or "nni.sqlite" in s]


def test_only_the_store_opens_nni_sqlite():
    assert [module_name(p) for p in MODULES if "sqlite3" in imports(p)] == ["funcapprox.nni.store"]


@pytest.mark.parametrize("path", [p for p in MODULES if under(module_name(p), "funcapprox.nni")], ids=module_name)
def test_nni_imports_neither_views_nor_search_nor_the_cli(path):
    assert not [m for m in imports(path) if under(m, "funcapprox.views", "funcapprox.search", "funcapprox.cli")]


def test_the_records_sit_below_the_store_that_builds_them():
    found = imports(PACKAGE / "results.py")
    assert not [m for m in found if under(m, "funcapprox.nni", "funcapprox.search", "funcapprox.views")]


def test_the_trial_process_loads_only_what_a_trial_needs():
    code = ("import json, sys; import funcapprox.nni.trial; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('funcapprox', 'nni', 'matplotlib', 'click', 'yaml', 'sqlite3', 'pandas', 'scipy'))))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                       check=True).stdout)
    assert not [m for m in loaded if under(m, "funcapprox.search", "funcapprox.views", "funcapprox.cli", "nni",
                                           "matplotlib", "click", "yaml", "sqlite3", "pandas", "scipy")], loaded
