"""Writing a file so that a reader of it sees the old version or the new one, never half of either."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder, fsync and rename over ``path``.

    An OSError names ``path`` (not the temporary file), and the temporary file is removed.
    The temporary name is unique, so two writers of one path never share a temporary file.
    """
    _write_via_temporary(path, data, lambda temp: os.replace(temp, path))


def write_new(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Create ``path`` holding ``data``; raise FileExistsError (naming it) if it already exists.

    Written like ``write_atomically`` but hard-linked into place instead of renamed: the link
    fails when ``path`` exists, so a file that is there (or appears meanwhile) is never replaced,
    and a crash never leaves half a file that a retry would then refuse to replace.
    """
    def link(temp: str) -> None:
        os.chmod(temp, mode)  # mkstemp's 0600 would hide the file from anyone else (a web server's user)
        os.link(temp, path)
        os.unlink(temp)  # the file stays, under its real name

    _write_via_temporary(path, data, link)


def _write_via_temporary(path: Path, data: bytes, put_in_place) -> None:
    """Write ``data`` to a fresh temporary file beside ``path``, fsync it, and ``put_in_place(temp)``."""
    temp: str | None = None
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        put_in_place(temp)
    except OSError as exc:
        if temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp)
        raise OSError(exc.errno, exc.strerror, str(path)) from None
