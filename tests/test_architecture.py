"""The dependency rules of ARCHITECTURE.md, checked on the source: no import cycles between vidgan's
modules (function-local imports included), and pipeline, metrics and library never import training."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "vidgan"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every vidgan module this file imports, at module level or inside functions (TYPE_CHECKING excluded)."""
    tree = ast.parse(path.read_text())
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("vidgan")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vidgan") and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}  # `from vidgan.models import ctvgan`
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    return {name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()}


def test_no_import_cycles():
    edges = graph()
    # packages' __init__ files re-export their modules' names: an edge into a package means its __init__
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)


def test_readers_of_runs_never_import_training():
    edges = graph()
    for name, targets in edges.items():
        if name.startswith(("vidgan.pipeline", "vidgan.metrics", "vidgan.library", "vidgan.run", "vidgan.data", "vidgan.models")):
            assert not any(t.startswith("vidgan.training") for t in targets), (name, sorted(targets))
