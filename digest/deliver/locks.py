"""One coordinator per issue, one scheduler per state database: locks that die with their holder.

With a SQLite state, an exclusive OS lock on a file beside the database: the kernel releases it
when the process ends however it ends (even SIGKILL). With PostgreSQL, whose clients may be on
many machines, a file cannot coordinate them: the lock is a PostgreSQL advisory lock held by a
session of its own, which the server releases when that session ends. Either way a crashed
holder never leaves a stale lock behind, and the next ``digest send`` can resume at once.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from ..errors import DigestError
from ..state.ledger import PostgresUrl, StateLocation
from ..state.connection import SessionLock


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


class DatabaseLock:
    """``with DatabaseLock(url, name, what):`` holds a PostgreSQL advisory lock or raises ``AlreadyRunning``."""

    def __init__(self, url: PostgresUrl, name: str, what: str) -> None:
        self.lock = SessionLock(url, name)
        self.what = what

    def __enter__(self) -> DatabaseLock:
        if not self.lock.acquire():
            raise AlreadyRunning(f"{self.what} is already running in another process ({self.lock.holder()}); "
                                 "this one stops without sending anything")
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.lock.release()


def state_lock(state: StateLocation, name: str, what: str) -> ProcessLock | DatabaseLock:
    """The lock ``name`` for this state: a file under state/locks/ beside SQLite, an advisory lock in PostgreSQL."""
    if isinstance(state, PostgresUrl):
        return DatabaseLock(state, name, what)
    return ProcessLock(Path(state).parent / "locks" / f"{name}.lock", what)


def issue_lock(state_db: StateLocation, edition: str, date: str) -> ProcessLock | DatabaseLock:
    """The lock that makes one process the coordinator of issue (edition, date)."""
    return state_lock(state_db, f"{edition}-{date}", f"digest send {edition} {date}")
