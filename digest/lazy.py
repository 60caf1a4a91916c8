"""A module loaded on first use: start-up stays short for the commands that never need it."""

from __future__ import annotations

from importlib import import_module
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for module ``name`` and imports it when one of its attributes is first read.

    ``except lazy.Error`` is evaluated only when an exception reaches it, so a module that is
    only named in ``except`` clauses and type hints is never loaded on the paths that do not use it.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attribute: str) -> Any:
        if self._module is None:
            self._module = import_module(self._name)
        return getattr(self._module, attribute)
