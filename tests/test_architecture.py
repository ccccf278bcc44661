"""Data flows one way (STYLE.md): nothing in the library imports a layer above it."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mrl"

# For each package, the mrl packages it must never import.
FORBIDDEN = {
    "nesting": {"nn", "models", "data", "training", "evaluation", "adaptive", "retrieval", "cli"},
    "io": {"nn", "models", "data", "training", "evaluation", "adaptive", "retrieval", "cli"},
    "nn": {"models", "data", "training", "evaluation", "adaptive", "retrieval", "cli"},
    "models": {"data", "training", "evaluation", "adaptive", "retrieval", "cli"},
    "data": {"nn", "models", "training", "evaluation", "adaptive", "retrieval", "cli"},
    "training": {"evaluation", "adaptive", "retrieval", "cli"},
    "evaluation": {"adaptive", "retrieval", "cli"},
    "adaptive": {"retrieval", "cli"},
    # retrieval works on any nested embeddings: it never needs the training stack
    "retrieval": {"training", "adaptive", "cli"},
}


def _mrl_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "mrl" and len(parts) > 1:
                found.add(parts[1])
    return found


def _modules():
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        layer = rel.parts[0].removesuffix(".py")
        if layer in FORBIDDEN:
            yield pytest.param(path, layer, id=str(rel))


@pytest.mark.parametrize("path, layer", list(_modules()))
def test_no_upward_imports(path, layer):
    bad = _mrl_imports(path) & FORBIDDEN[layer]
    assert not bad, f"{path.relative_to(SRC)} ({layer}) imports mrl.{sorted(bad)}"
