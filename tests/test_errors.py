"""The error tree drawn in digest/errors.py's docstring is the real one, so it cannot go stale."""

from __future__ import annotations

import importlib
import pkgutil
import re

import digest
from digest import errors

_NODE = re.compile(r"^(?P<indent>[ │├└─]*)(?P<name>[A-Z]\w+)\b")


def drawn_tree() -> dict[str, str | None]:
    """{class name: parent name} as the docstring draws it (the root's parent is None)."""
    lines = errors.__doc__.split("::", 1)[1].splitlines()
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in lines:
        match = _NODE.match(line)
        if not match:
            continue
        depth = len(match["indent"])
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[match["name"]] = stack[-1][1] if stack else None
        stack.append((depth, match["name"]))
    return parents


def real_tree() -> dict[str, str | None]:
    """{class name: parent name} of DigestError and every subclass defined in the package."""
    for module in pkgutil.iter_modules(digest.__path__):
        importlib.import_module(f"digest.{module.name}")
    parents: dict[str, str | None] = {"DigestError": None}
    todo = [errors.DigestError]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub.__module__.startswith("digest."):
                parents[sub.__name__] = cls.__name__
                todo.append(sub)
    return parents


def test_the_drawn_error_tree_is_the_real_class_tree():
    drawn, real = drawn_tree(), real_tree()
    assert set(real) - set(drawn) == set(), "errors.py's docstring does not draw these DigestError subclasses"
    assert set(drawn) - set(real) == set(), "errors.py's docstring draws classes that do not exist"
    assert drawn == real
