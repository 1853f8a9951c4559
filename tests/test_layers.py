"""The architecture, kept: packages import only downward, and no module imports itself back.

The layers, bottom first (CONTRIBUTING.md draws them). A package may import its own layer's
peers only where the list says so, and any layer below. Imports under ``if TYPE_CHECKING:``
are annotations, not dependencies, and are not counted.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "descend"

# Bottom first. Within a tuple, earlier entries may be imported by later ones, not the reverse.
LAYERS: list[tuple[str, ...]] = [
    ("errors", "version", "io", "jsonfields", "registry", "extras", "cpu"),
    ("data", "models", "optim"),
    ("config",),
    ("runtime", "reports", "crawl"),
    ("training",),
    ("evaluation",),
    ("experiments", "export", "serving"),
    ("audit",),
    ("cli", "__main__", "__init__"),
]
# The rooms of training/, bottom first (`descend/training/__init__.py`).
TRAINING_ROOMS = ("keeping", "fitting", "planning", "trainer")


def modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The descend modules ``name`` imports at run time (anywhere in the file)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(block.test)
                   for stmt in block.body for node in ast.walk(stmt)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def rank(module: str) -> tuple[int, int]:
    """(layer, place within the layer) of a module's top-level package."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    for i, layer in enumerate(LAYERS):
        if top in layer:
            return i, layer.index(top)
    raise AssertionError(f"{module}: package {top} is in no layer of tests/test_layers.py")


def room(module: str) -> int | None:
    parts = module.split(".")
    if parts[:2] != ["descend", "training"] or len(parts) < 3:
        return None
    return TRAINING_ROOMS.index(parts[2])


def test_packages_import_only_downward() -> None:
    upward = sorted(f"{a} -> {b}" for a, targets in graph().items() for b in targets
                    if rank(b) > rank(a))
    assert not upward, "imports that climb a layer:\n" + "\n".join(upward)


def test_the_rooms_of_training_import_only_downward() -> None:
    upward = sorted(f"{a} -> {b}" for a, targets in graph().items() for b in targets
                    if (ra := room(a)) is not None and (rb := room(b)) is not None and rb > ra)
    assert not upward, "imports that climb a room of training/:\n" + "\n".join(upward)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
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

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_itself_back() -> None:
    assert cycles(graph()) == []


def test_the_checks_see_a_cycle_and_a_climb() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert rank("descend.training.trainer") > rank("descend.runtime.checkpoint")
    assert rank("descend.data.splits") < rank("descend.config")
    assert room("descend.training.planning.plan") > room("descend.training.fitting.loop")
    edges = defaultdict(set, graph())
    assert "descend.runtime.checkpoint" in edges["descend.training.trainer"] or any(
        b.startswith("descend.runtime") for b in edges["descend.training.trainer"])
