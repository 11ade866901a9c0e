"""Package attributes imported on first use (PEP 562), for packages that re-export.

A package whose ``__init__`` imports what it re-exports makes every import of one of its
submodules pay for all of them: Prefect imports ``aiorch.blocks`` at every server start
(its collections), which needs only the DaggerEngine block, not the step task and its
runners. Measured: 1.7 s more per start before the container package became lazy.

Example:
    ```python
    from aiorch.core.lazy import lazy_exports

    __getattr__, __dir__ = lazy_exports(__name__, {"ContainerStep": "aiorch.tasks.container.spec"})
    ```
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: each name from its module on first use."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return __getattr__, __dir__
