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
    temp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    created = False
    try:
        # 0o666 and the umask, as open() would give a new file; an existing file's mode is kept below.
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        created = True
        with os.fdopen(fd, "wb") as handle:
            if existing is not None:
                os.fchmod(handle.fileno(), stat.S_IMODE(existing.st_mode))
                with contextlib.suppress(PermissionError):
                    os.fchown(handle.fileno(), existing.st_uid, existing.st_gid)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except OSError as exc:
        if created:
            with contextlib.suppress(OSError):
                os.unlink(temp)
        raise OSError(exc.errno, exc.strerror, str(path)) from None
