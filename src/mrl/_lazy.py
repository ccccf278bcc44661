"""Lazy package exports (PEP 562), so importing one layer never loads the layers above it.

`import mrl.retrieval` runs `mrl/__init__.py` first; if that imported the training stack
eagerly, every service process would load it. Each package `__init__` instead names its
public objects and the module defining each, and a name is imported on first access.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: str, exports: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package` that import `exports[name]` on first use.

    Args:
        package: the package's `__name__` (for the error message).
        exports: public name -> module that defines it, e.g. {"Nesting": "mrl.nesting"}.
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
