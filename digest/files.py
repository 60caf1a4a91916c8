"""Writing a file so that a reader of it sees the old version or the new one, never half of either."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path

from .errors import InputError


class NotAFile(InputError):
    """A path given for a file to write is a device, a pipe or a socket: replacing it would break it."""


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it and rename it over ``path``.

    A symbolic link is followed: the file it points at is replaced and the link kept. An existing
    file keeps its permission bits (and its owner and group where this process may set them), so
    an export does not make a private file world-readable. A device, pipe or socket at ``path`` is
    refused rather than replaced. An OSError names ``path`` (not the temporary file), and the
    temporary file is removed.
    """
    target = Path(os.path.realpath(path))
    try:
        existing = os.stat(target)
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    if existing is not None and stat.S_ISDIR(existing.st_mode):
        raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        raise NotAFile(f"{path}: not a regular file (a device, a pipe or a socket); give the path of a file", file=path)
    _write_via_temporary(path, target, data, lambda temp: os.replace(temp, target), like=existing)


def write_new(path: Path, data: bytes) -> None:
    """Create ``path`` holding ``data``; raise FileExistsError (naming it) if it already exists.

    Written like ``write_atomically`` but hard-linked into place instead of renamed: the link
    fails when ``path`` exists, so a file that is there (or appears meanwhile) is never replaced,
    and a crash never leaves half a file that a retry would then refuse to replace.
    """
    def link(temp: Path) -> None:
        os.link(temp, path)
        os.unlink(temp)  # the file stays, under its real name

    _write_via_temporary(path, path, data, link, like=None)


def _write_via_temporary(path: Path, target: Path, data: bytes, put_in_place, *, like: os.stat_result | None) -> None:
    """Write ``data`` to a fresh temporary file beside ``target``, fsync it, and ``put_in_place(temp)``.

    The new file gets ``like``'s mode and owner, or, with no file to be like, 0o666 less the umask
    (what open() gives). Errors name ``path``, the path the user gave.
    """
    temp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    created = False
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        created = True
        with os.fdopen(fd, "wb") as handle:
            if like is not None:
                os.fchmod(handle.fileno(), stat.S_IMODE(like.st_mode))
                with contextlib.suppress(PermissionError):
                    os.fchown(handle.fileno(), like.st_uid, like.st_gid)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        put_in_place(temp)
    except OSError as exc:
        if created:
            with contextlib.suppress(OSError):
                os.unlink(temp)
        raise OSError(exc.errno, exc.strerror, str(path)) from None
