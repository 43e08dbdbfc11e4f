"""The package's import graph, derived from the code: modules import downward only.

Every `import` and `from ... import` anywhere in a module counts, a function's or a TYPE_CHECKING
block's too: a circle hidden in a function is still a circle of calls.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "trainer"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that module `name` imports (a name imported from a package counts as
    its submodule when there is one; the bare package `trainer` is no dependency)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            targets = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known] or [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target not in ("trainer", name):
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: _imported(name, path, known) for name, path in known.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The graph's strongly connected components of more than one module (Tarjan), or of one that
    imports itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def floors(graph: dict[str, set[str]]) -> dict[str, int]:
    """Each module's floor: 0 for one that imports none of the package, else one above the highest
    module it imports (the graph must have no circle)."""
    out: dict[str, int] = {}

    def floor(v: str) -> int:
        if v not in out:
            out[v] = 1 + max((floor(w) for w in graph[v]), default=-1)
        return out[v]

    for v in graph:
        floor(v)
    return out


def test_the_package_has_no_import_circle():
    assert circles(import_graph()) == []


def test_the_graph_is_read_from_the_code_and_finds_a_circle():
    """The two helpers see what they are meant to: a real edge of the package, and a planted circle."""
    graph = import_graph()
    assert "trainer.stores.tensor_store" in graph["trainer.services"]
    planted = {**graph, "trainer.keys": graph["trainer.keys"] | {"trainer.effects"}}
    assert any("trainer.keys" in c and "trainer.effects" in c for c in circles(planted))
    assert floors(graph)["trainer.keys"] == 0


# Layers of the package that must not reach up: the math, the data and the stores know nothing of
# the handlers, the control plane, sweeps or the local cloud above them.
LOWER = {
    "trainer.nn": ("trainer.nn",),
    "trainer.data": ("trainer.data", "trainer.keys", "trainer.errors"),
    "trainer.stores": (
        "trainer.stores",
        "trainer.keys",
        "trainer.errors",
        "trainer.vocabulary",
        "trainer.aws",
        "trainer.statemachine",
    ),
}


@pytest.mark.parametrize("layer", sorted(LOWER))
def test_a_lower_layer_imports_nothing_above_it(layer):
    graph = import_graph()
    allowed = LOWER[layer]
    below = {m for m in graph if any(m == a or m.startswith(a + ".") for a in allowed)}
    reach = set().union(*(graph[m] for m in graph if m == layer or m.startswith(layer + ".")))
    closure = set(reach)
    frontier = list(reach)
    while frontier:
        for w in graph[frontier.pop()]:
            if w not in closure:
                closure.add(w)
                frontier.append(w)
    upward = sorted(m for m in reach if m not in below)
    assert upward == [], f"{layer} imports {upward}"
    assert not any(m.startswith(("trainer.handlers", "trainer.sweep", "trainer.local")) for m in closure)
