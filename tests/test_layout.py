"""The package's layout is what docs/package-map.md says: every module it names exists, every module
is named there, and imports walk one way (no package imports one above it)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "digest"
MAP = ROOT / "docs" / "package-map.md"

BASE = {"models", "errors", "outcomes", "files", "events", "console", "lazy", "returnpath"}
# What each package may import, besides the base modules (docs/package-map.md, the table).
ALLOWED = {
    "sources": set(),
    "state": set(),
    "readers": {"state"},
    "compose": {"sources", "readers", "state"},
    "deliver": {"compose", "sources", "readers", "state"},
}


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")


def test_every_module_the_map_names_exists():
    named = set(re.findall(r"`((?:digest/)?(?:[a-z_]+/)*[a-z_]+\.py)`", MAP.read_text(encoding="utf-8")))
    assert named, "the map names no module"
    missing = []
    for name in named:
        path = ROOT / name if name.startswith("digest/") else PACKAGE / name
        if not path.is_file():
            missing.append(name)
    assert not missing, f"docs/package-map.md names modules that do not exist: {sorted(missing)}"


def test_every_module_is_named_in_the_map_or_the_readme_layout():
    text = MAP.read_text(encoding="utf-8") + (ROOT / "README.md").read_text(encoding="utf-8")
    unnamed = [str(p.relative_to(PACKAGE)) for p in modules() if p.name not in text]
    assert not unnamed, f"modules nobody's map mentions: {unnamed}"


def _imported_packages(path: Path) -> set[str]:
    """The digest subpackages and top-level modules ``path`` imports (relative or absolute)."""
    here = path.relative_to(PACKAGE).parts[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(here[: len(here) - (node.level - 1)]) if node.level - 1 <= len(here) else []
                target = base + (node.module.split(".") if node.module else [])
                if not target:  # "from . import x" at the top
                    target = [alias.name for alias in node.names][:1]
            elif node.module and node.module.startswith("digest."):
                target = node.module.split(".")[1:]
            else:
                continue
            if target:
                found.add(target[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("digest."):
                    found.add(alias.name.split(".")[1])
    return found


def test_imports_walk_one_way():
    wrong = []
    for path in modules():
        parts = path.relative_to(PACKAGE).parts
        if len(parts) == 1:
            if path.stem in BASE:
                packages = _imported_packages(path) & set(ALLOWED)
                if packages:
                    wrong.append(f"{path.name} (a base module) imports {sorted(packages)}")
            continue
        package = parts[0]
        for target in _imported_packages(path) - {package}:
            if target in ALLOWED and target not in ALLOWED[package]:
                wrong.append(f"{'/'.join(parts)} imports {target}/")
            elif target not in ALLOWED and target not in BASE and target != "templates":
                wrong.append(f"{'/'.join(parts)} imports the top-level {target}.py, which is above it")
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_a_wrong_import(tmp_path):
    """The import reader itself: a relative import two levels up is found."""
    probe = PACKAGE / "state" / "_probe_layout.py"
    probe.write_text("from ..compose.render import Renderer\n", encoding="utf-8")
    try:
        assert _imported_packages(probe) == {"compose"}
    finally:
        probe.unlink()
