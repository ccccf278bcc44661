"""Data flows one way (STYLE.md): nothing in the library imports a layer above it.

Checked twice: statically over the transitive closure of module-level imports (importing
`mrl.a.b` also runs `mrl/__init__.py` and `mrl/a/__init__.py`), and in a fresh interpreter by
looking at `sys.modules` after importing a layer.
"""

import ast
import json
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mrl"

BASE = {"_lazy", "errors", "checks", "io", "nesting"}
ALL = {
    "adaptation",
    "export",
    "nn",
    "models",
    "data",
    "training",
    "evaluation",
    "adaptive",
    "retrieval",
    "experiments",
    "service",
    "cli",
}
# The drivers sit on top: nothing below them may load one.
DRIVERS = {"experiments", "service", "cli"}
# The feature layers above models/data; each may load only the ones its comment names.
FEATURES = {"training", "evaluation", "adaptive", "adaptation", "export", "retrieval"}
# For each layer, the mrl layers it must never load, directly or through another module.
FORBIDDEN = {
    **{base: ALL for base in BASE},
    "nn": ALL - {"nn"},
    "models": ALL - {"nn", "models"},
    "data": ALL - {"data"},
    "training": FEATURES - {"training"} | DRIVERS,
    "evaluation": FEATURES - {"evaluation"} | DRIVERS,
    # cascades read evaluation's embeddings folders
    "adaptive": FEATURES - {"adaptive", "evaluation"} | DRIVERS,
    # retrieval works on any nested embeddings: it never needs the training stack
    "retrieval": FEATURES - {"retrieval", "evaluation"} | DRIVERS | {"nn", "models"},
    # post-hoc adaptors of frozen embeddings: above nn, beside evaluation
    "adaptation": FEATURES - {"adaptation", "evaluation"} | DRIVERS,
    # writing models in other tools' formats: above models, below the drivers
    "export": FEATURES - {"export"} | DRIVERS,
    "experiments": {"service", "cli"},
    # the HTTP service: a thin layer over retrieval (and, inside its routes, the text encoder)
    "service": FEATURES - {"retrieval", "evaluation"} | {"nn", "models", "experiments", "cli"},
    "cli": set(),
}


def _module_name(path: Path) -> str:
    parts = ("mrl", *path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _with_parents(name: str) -> set[str]:
    """`mrl.a.b` and the packages whose `__init__` importing it runs."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & set(MODULES)


def _top_level_statements(body):
    """Statements run at import: the module body and the bodies of its if/try blocks."""
    for node in body:
        yield node
        if isinstance(node, (ast.If, ast.Try)):
            yield from _top_level_statements(node.body + node.orelse)
            for handler in getattr(node, "handlers", []):
                yield from _top_level_statements(handler.body)


@cache
def _direct_imports(name: str) -> frozenset[str]:
    path = MODULES[name]
    found: set[str] = set()
    for node in _top_level_statements(ast.parse(path.read_text()).body):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for target in targets:
            if target.split(".")[0] == "mrl":
                found |= _with_parents(target)
    # a lazy package __init__ names its modules as strings: they load on attribute access,
    # not at import, so they are not import edges
    return frozenset(found - {name})


def _closure(name: str) -> set[str]:
    seen, todo = set(), [*_with_parents(name)]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(_direct_imports(module))
    return seen


def _layer(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else None


@pytest.mark.parametrize("name", [n for n in MODULES if _layer(n) in FORBIDDEN], ids=lambda n: n)
def test_no_upward_imports_even_transitively(name):
    loaded = {_layer(m) for m in _closure(name)} - {None}
    bad = loaded & FORBIDDEN[_layer(name)]
    assert not bad, f"importing {name} loads mrl.{sorted(bad)}"


def test_every_module_belongs_to_a_known_layer():
    unknown = {_layer(n) for n in MODULES} - set(FORBIDDEN) - {None}
    assert not unknown, f"add these layers to FORBIDDEN: {sorted(unknown)}"


def _loaded_after_import(module: str) -> set[str]:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return set(json.loads(out))


@pytest.mark.parametrize(
    "module, absent",
    [
        ("mrl", {"torch", "mrl.training", "mrl.retrieval", "mrl.service", "fastapi", "matplotlib"}),
        (
            "mrl.retrieval",
            {
                "mrl.training",
                "mrl.models",
                "mrl.nn",
                "mrl.adaptive",
                "mrl.experiments",
                "mrl.cli",
                "mrl.service",
                "mrl.evaluation.report",
                "matplotlib",
                "sklearn",
                "fastapi",
                "uvicorn",
                "starlette",
            },
        ),
        # the service's models and backends load no web framework and no training stack
        ("mrl.service.backend", {"fastapi", "mrl.training", "mrl.models", "transformers"}),
        ("mrl.service.memory", {"fastapi", "uvicorn", "mrl.training", "mrl.models", "mrl.cli"}),
        # the app loads the text encoder only when /v1/embeddings (or a text item) needs it
        ("mrl.service.app", {"mrl.training", "mrl.models", "transformers", "mrl.cli"}),
        ("mrl.evaluation.metrics", {"torch", "mrl.training", "matplotlib"}),
        # training and `mrl embed` need no faiss (a GPU image without it trains and embeds)
        ("mrl.training", {"faiss"}),
        ("mrl.cli.evaluate", {"faiss"}),
    ],
)
def test_importing_a_layer_does_not_load_the_layers_above(module, absent):
    loaded = _loaded_after_import(module)
    assert not loaded & absent, f"import {module} loaded {sorted(loaded & absent)}"
