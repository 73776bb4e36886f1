"""The layers of the package: data flows down, nothing below imports from above, no cycles.

Every import of a calstack module is read from the source (module level and inside functions
alike, since a function-level import hides a cycle just as well), and checked against the
layer each subpackage sits in (``docs/architecture.md``).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import calstack

SOURCE = Path(calstack.__file__).parent

#: Each top-level piece of the package and its layer: a module may import from its own piece
#: and from lower layers only; pieces of one layer do not import each other.
LAYERS = {
    "errors": 0,
    "kernels": 1,
    "options": 2, "progress": 2,
    "io": 3,
    "catalog": 4,
    "stacking": 5, "processing": 5,
    "pipeline": 6,
    "compat": 7, "viz": 7,
    "sim": 8,
    "cli": 9, "ccdproc_compat": 9,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The calstack modules ``path`` imports, anywhere in it."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("calstack"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if not target.startswith("calstack"):
                continue
            for alias in node.names:  # ``from . import module`` imports a module
                candidate = f"{target}.{alias.name}"
                found.add(candidate if _exists(candidate) else target)
    return found - {name}


def _exists(module: str) -> bool:
    path = SOURCE.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in sorted(SOURCE.rglob("*.py"))}


def _piece(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def test_every_piece_has_a_layer():
    pieces = {_piece(m) for m in _graph()} - {""}
    assert pieces == set(LAYERS), "give each new subpackage a layer in LAYERS"


def test_nothing_imports_from_above():
    upward = []
    for module, targets in _graph().items():
        piece = _piece(module)
        if piece == "":  # calstack/__init__.py: lazy names only, no imports
            assert targets <= {"calstack"}, targets
            continue
        for target in targets:
            other = _piece(target)
            if other in ("", piece):
                continue
            if LAYERS[other] >= LAYERS[piece]:
                upward.append(f"{module} imports {target}")
    assert upward == []


def test_no_import_cycle():
    graph = _graph()
    state, cycles = {}, []

    def visit(module, path):
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if target not in graph:
                continue
            if state.get(target) == "open":
                cycles.append(" -> ".join([*path[path.index(target):], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in graph:
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_graph_is_read():
    """The walk finds real edges (a broken walk would pass the tests above vacuously)."""
    graph = _graph()
    assert "calstack.stacking.job" in graph["calstack.stacking.combining"]
    assert "calstack.io.fitsheader" in graph["calstack.catalog.scan"]
    assert "calstack.pipeline.groups" in graph["calstack.pipeline.night"]


@pytest.mark.parametrize("module", ["calstack.kernels.reference", "calstack.kernels.esd",
                                    "calstack.kernels.registry"])
def test_reference_twin_does_not_import_numba(module):
    code = f"import sys, {module}; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_public_api_is_importable():
    for name in calstack.__all__:
        assert getattr(calstack, name) is not None, name
    assert calstack.build_night.__module__ == "calstack.pipeline.night"
    assert calstack.combine_many.__name__ == "combine_many"
    assert {"Report", "write_report", "combine_groups", "combine_many", "build_night",
            "connect", "ALGORITHMS"} <= set(calstack.__all__)
