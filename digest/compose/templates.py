"""The newsroom's own template folder (``[paths] templates``): which file wins, and copies to edit.

The search itself is ``render.template_loader``; this module reports on it (``digest templates
list``) and copies built-ins into the folder (``digest templates init``), never over a file the
newsroom already has.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable

from ..errors import TemplateError
from ..files import write_new
from .render import BUILTIN_TEMPLATES, template_files


@dataclass(frozen=True, slots=True)
class TemplateFile:
    """One template name and the file that is used for it."""

    name: str
    path: Path
    newsroom: bool  # the newsroom's folder holds it, so it wins
    builtin: bool  # digest ships a template of this name


@dataclass(slots=True)
class Copied:
    """What ``copy_builtins`` did, name by name."""

    copied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already in the newsroom's folder: left as they are


def builtin_names() -> list[str]:
    """The names of digest's own templates, sorted (``partials/footer.html``, ...)."""
    return sorted(template_files(None))


def template_list(folder: Path | None) -> list[TemplateFile]:
    """Every template name, sorted, with the file the renderer and the web pages would load."""
    builtins = set(builtin_names())
    return [TemplateFile(name, path, newsroom=folder is not None and path.is_relative_to(folder),
                         builtin=name in builtins)
            for name, path in sorted(template_files(folder).items())]


def copy_builtins(folder: Path, names: Iterable[str]) -> Copied:
    """Copy the built-in templates ``names`` into ``folder`` (created if missing) for editing.

    Every name is checked before anything is copied: a path that is absolute or climbs out with
    ``..``, or a name that is not a built-in, is a TemplateError (the latter lists the valid
    names). A file already in ``folder`` is never overwritten; it is reported in ``skipped``.
    """
    known = builtin_names()
    wanted = list(dict.fromkeys(_checked_name(name, known) for name in names))
    result = Copied()
    for name in wanted:
        target = folder / name
        if not target.parent.resolve().is_relative_to(folder.resolve()):
            # A symbolic link inside the folder points elsewhere: the copy would land outside it.
            raise TemplateError(f"{target.parent} leads out of the templates folder; not copying {name} there")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            write_new(target, (BUILTIN_TEMPLATES / name).read_bytes())
        except FileExistsError:
            result.skipped.append(name)
        else:
            result.copied.append(name)
    return result


def _checked_name(name: str, known: list[str]) -> str:
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts or "\\" in name:
        raise TemplateError(f"'{name}' is not a template name: give it relative to the templates folder, "
                            "without '..' (for example partials/footer.html)")
    if str(path) not in known:
        raise TemplateError(f"'{name}' is not a built-in template; the built-in templates are: {', '.join(known)}")
    return str(path)
