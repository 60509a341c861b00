"""The shipped program: ``oneoff.remote.source()`` is every remote module as one, agent last."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from oneoff import remote

HERE = Path(remote.__file__).parent


def _tree(name: str) -> ast.Module:
    return ast.parse((HERE / (name + ".py")).read_text())


def _imported_modules(tree: ast.Module) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def test_every_remote_module_is_shipped() -> None:
    on_disk = {p.stem for p in HERE.glob("*.py")} - {"__init__"}
    assert set(remote.MODULES) == on_disk


@pytest.mark.parametrize("index", range(len(remote.MODULES)))
def test_each_module_imports_only_modules_shipped_before_it(index: int) -> None:
    name = remote.MODULES[index]
    ours = {m for m in _imported_modules(_tree(name)) if m.startswith("oneoff")}
    allowed = {"oneoff.remote." + earlier for earlier in remote.MODULES[:index]}
    assert ours <= allowed, name


@pytest.mark.parametrize("name", remote.MODULES)
def test_remote_modules_import_only_the_standard_library(name: str) -> None:
    others = {
        m.split(".")[0] for m in _imported_modules(_tree(name)) if not m.startswith("oneoff.remote")
    }
    assert others <= sys.stdlib_module_names, others - sys.stdlib_module_names


def test_no_two_modules_define_the_same_name() -> None:
    # shipped, they share one namespace: a second definition would replace the first
    seen: dict[str, str] = {}
    clashes = []
    for name in remote.MODULES:
        for defined in _top_level_names(_tree(name)):
            if defined in seen:
                clashes.append((defined, seen[defined], name))
            seen[defined] = name
    assert clashes == []


def test_the_source_is_the_marker_then_the_modules_in_order() -> None:
    source = remote.source()
    assert source.startswith(remote.INLINE_MARKER)
    positions = [source.index((HERE / (name + ".py")).read_bytes()) for name in remote.MODULES]
    assert positions == sorted(positions)


def test_the_source_is_read_once() -> None:
    assert remote.source() is remote.source()


def test_the_source_defines_the_agent_without_running_it_unless_main() -> None:
    namespace: dict[str, object] = {"__name__": "not_main"}
    exec(compile(remote.source(), "oneoff-agent", "exec"), namespace)
    assert callable(namespace["main"])
    assert "Supervisor" in namespace and "FrameReader" in namespace
