"""Reading a mailbox of bounces: a Maildir, an mbox file, one message file or a folder of ``.eml`` files.

Only the standard library's ``mailbox`` reads an mbox; an item that cannot be read becomes a
``Problem`` and the rest of the mailbox goes on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from mailbox import mbox
from pathlib import Path

from ...errors import InputError


@dataclass(frozen=True, slots=True)
class Problem:
    """An item that could not be read or parsed; the rest of the mailbox goes on."""

    source: str
    message: str


def read_messages(path: Path | str, problems: list[Problem] | None = None) -> Iterator[tuple[str, bytes]]:
    """Every message at ``path`` as (source, raw bytes).

    ``path`` is a Maildir (a folder with ``cur/`` or ``new/``), an mbox file (it starts with a
    ``From `` line), one message file, or a folder of ``*.eml`` files (not searched below).
    An item that cannot be read is appended to ``problems`` and skipped. A missing path raises
    InputError (exit 2) at once, before anything is read.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("no such file or folder", file=path)
    sink = problems if problems is not None else []
    if path.is_dir():
        if (path / "cur").is_dir() or (path / "new").is_dir():
            return _read_maildir(path, sink)
        return _read_folder(path, sink)
    return _read_file(path, sink)


def _read_path(item: Path, problems: list[Problem]) -> bytes | None:
    try:
        return item.read_bytes()
    except OSError as exc:
        problems.append(Problem(str(item), f"cannot read: {exc.strerror or exc}"))
        return None


def _read_maildir(path: Path, problems: list[Problem]) -> Iterator[tuple[str, bytes]]:
    for sub in ("new", "cur"):
        if (path / sub).is_dir():
            yield from _read_listed(path / sub, lambda p: True, problems)


def _read_folder(path: Path, problems: list[Problem]) -> Iterator[tuple[str, bytes]]:
    yield from _read_listed(path, lambda p: p.suffix.lower() == ".eml", problems)


def _read_listed(folder: Path, wanted, problems: list[Problem]) -> Iterator[tuple[str, bytes]]:
    """Every wanted, non-hidden file directly in ``folder``, in name order; problems recorded."""
    try:
        names = sorted(p for p in folder.iterdir() if not p.name.startswith(".") and wanted(p))
    except OSError as exc:
        problems.append(Problem(str(folder), f"cannot list: {exc.strerror or exc}"))
        return
    for item in names:
        if item.is_dir():
            continue
        data = _read_path(item, problems)
        if data is not None:
            yield str(item), data


def _read_file(path: Path, problems: list[Problem]) -> Iterator[tuple[str, bytes]]:
    try:
        with path.open("rb") as handle:
            start = handle.read(5)
    except OSError as exc:
        problems.append(Problem(str(path), f"cannot read: {exc.strerror or exc}"))
        return
    if start != b"From ":
        data = _read_path(path, problems)
        if data is not None:
            yield str(path), data
        return
    try:
        box = mbox(path, create=False)
        keys = box.keys()
    except OSError as exc:
        problems.append(Problem(str(path), f"cannot read mbox: {exc.strerror or exc}"))
        return
    try:
        for number, key in enumerate(keys, 1):
            source = f"{path}#{number}"
            try:
                yield source, box.get_bytes(key)
            except (OSError, KeyError) as exc:
                problems.append(Problem(source, f"cannot read: {exc}"))
    finally:
        box.close()
