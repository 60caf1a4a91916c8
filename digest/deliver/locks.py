"""One sender per issue: an exclusive OS lock on a file beside the state database.

The kernel releases the lock when the process ends however it ends (even SIGKILL), so a crashed
sender never leaves a stale lock behind, and the next ``digest send`` can resume at once.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from ..errors import DigestError


class AlreadyRunning(DigestError):
    """Another process holds the lock."""

    exit_code = 1


class ProcessLock:
    """``with ProcessLock(path, what):`` holds the lock or raises ``AlreadyRunning``."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self.what = what
        self.handle: int | None = None

    def __enter__(self) -> ProcessLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(handle, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(handle)
            raise AlreadyRunning(f"{self.what} is already running in another process (pid {holder}); "
                                 "this one stops without sending anything") from None
        os.ftruncate(handle, 0)
        os.pwrite(handle, f"{os.getpid()}\n".encode(), 0)
        self.handle = handle
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        if self.handle is not None:
            os.close(self.handle)  # closing releases the flock
            self.handle = None


def issue_lock(state_db: Path, edition: str, date: str) -> ProcessLock:
    """The lock that makes one process the sender of issue (edition, date)."""
    return ProcessLock(state_db.parent / "locks" / f"{edition}-{date}.lock", f"digest send {edition} {date}")
