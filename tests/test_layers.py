"""The package's layers import only downward, and no import cycle forms (imports inside functions count too).

    core (errors, registry-free helpers) → toy → models → edits → judges and prompt sets → methods → eval
    → workflows → cli

A module may import its own layer and any layer below it. Inside a layer, the modules must not form a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import erasekit

PACKAGE = Path(erasekit.__file__).parent

# Module (or package prefix) -> layer, most specific first.
LAYERS = [
    ("erasekit.cli", 8),
    ("erasekit.__main__", 8),
    ("erasekit.workflows", 7),
    ("erasekit.api", 7),
    ("erasekit.eval", 6),
    ("erasekit.methods", 5),
    ("erasekit.judges", 4),
    ("erasekit.prompt_sets", 4),
    ("erasekit.edits", 3),
    ("erasekit.models", 2),
    ("erasekit.generate", 2),
    ("erasekit.toy", 1),
    ("erasekit.errors", 0),
    ("erasekit.arguments", 0),
    ("erasekit.config", 0),
    ("erasekit.outputs", 0),
    ("erasekit.checksums", 0),
    ("erasekit.atomic", 0),
    ("erasekit.progress", 0),
    ("erasekit.images", 0),
    ("erasekit.pipeline_state", 0),
    ("erasekit", 0),
]
NAMES = ["core", "toy", "models", "edits", "judges and prompt sets", "methods", "eval", "workflows", "cli"]


def layer_of(module: str) -> int:
    for prefix, layer in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return layer
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in tests/test_layers.py")


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every erasekit module ``name`` imports, at module level or inside functions."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("erasekit"):
                continue
            for alias in node.names:  # `from erasekit.methods import gie` imports a module
                out.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in known else target)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("erasekit")}
    return {m for m in out if m in known and m != name}


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{m} ({NAMES[layer_of(m)]}) imports {t} ({NAMES[layer_of(t)]})"
        for m, targets in graph.items()
        for t in targets
        if layer_of(t) > layer_of(m)
    )


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each a cycle or several."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _ignoring_packages(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """A package's ``__init__`` re-exporting its own modules is not a cycle with them."""
    return {m: {t for t in ts if not (m.startswith(t + ".") and layer_of(m) == layer_of(t))} for m, ts in graph.items()}


def test_every_import_points_down_the_layers():
    assert upward_imports(import_graph()) == []


def test_there_is_no_import_cycle():
    assert cycles(_ignoring_packages(import_graph())) == []


def test_the_checks_catch_a_cycle_and_an_upward_import():
    graph = {m: set(ts) for m, ts in import_graph().items()}
    graph["erasekit.edits"].add("erasekit.methods.base")  # what Edit.apply used to do
    graph["erasekit.methods.base"].add("erasekit.edits")
    assert "erasekit.edits (edits) imports erasekit.methods.base (methods)" in upward_imports(graph)
    assert any({"erasekit.edits", "erasekit.methods.base"} <= set(c) for c in cycles(_ignoring_packages(graph)))


@pytest.mark.parametrize("module", sorted(modules()))
def test_every_module_has_a_layer(module):
    layer_of(module)
