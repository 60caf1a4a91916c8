"""Where the state lives and one connection to it: SQLite (the embedded default) or PostgreSQL.

Both drivers are imported here and nowhere else. ``Connection`` gives ``Ledger`` one way to run
a statement on either (``?`` placeholders, autocommit, short explicit transactions) and turns
each driver's errors into ``StateError``. On PostgreSQL a lost connection (a restarted server,
a dropped network) is made again, with backoff, for a statement that runs on its own; a
transaction that loses its connection is rolled back by the server and raises
``StateConnectionLost`` so its caller can run it again.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Union
from urllib.parse import urlsplit, urlunsplit

from ..errors import ConfigError, StateError
from ..lazy import LazyModule


psycopg: Any = LazyModule("psycopg")  # the only psycopg import; a SQLite state never loads it

RECONNECT_FOR = 120.0  # seconds a statement waits for PostgreSQL to come back before giving up


class StateConnectionLost(StateError):
    """The database connection was lost inside a transaction; the server rolled it back."""


class PostgresUrl(str):
    """A ``postgresql://`` state URL. ``str()`` is the URL itself; ``shown`` hides the password."""

    @property
    def shown(self) -> str:
        parts = urlsplit(self)
        if parts.password is None:
            return str(self)
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))

    @property
    def parent(self) -> Path:  # pragma: no cover - guards a Path-only call reaching a URL
        raise TypeError("a PostgreSQL state has no folder")


StateLocation = Union[Path, PostgresUrl]


def state_location(url: str | None, default: Path) -> StateLocation:
    """The state named by DIGEST_STATE_URL: a SQLite file (``sqlite:///rel.db``,
    ``sqlite:////abs/path.db``, or a plain path) or a PostgreSQL URL (``postgresql://...``)."""
    if not url:
        return default
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):])
    if url.startswith("sqlite:"):
        return Path(url[len("sqlite:"):])
    scheme = url.split("://", 1)[0] if "://" in url else None
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        rest = url.split("://", 1)[1]
        if not urlsplit("postgresql://" + rest).hostname and "host=" not in rest:
            raise ConfigError("a PostgreSQL state URL needs a host: postgresql://user@host:5432/dbname",
                              field="DIGEST_STATE_URL")
        return PostgresUrl("postgresql://" + rest)
    if scheme is not None:
        raise ConfigError(f"state URLs are sqlite:///path or postgresql://user@host/dbname, not '{scheme}://'",
                          field="DIGEST_STATE_URL")
    return Path(url)


def shown(location: StateLocation) -> str:
    """How to name the state to an operator (a URL's password hidden)."""
    return location.shown if isinstance(location, PostgresUrl) else str(location)


def is_postgres(location: StateLocation) -> bool:
    return isinstance(location, PostgresUrl)


def sqlalchemy_url(location: StateLocation) -> str:
    """The same database as SQLAlchemy names it (for Alembic and APScheduler's job store)."""
    if isinstance(location, PostgresUrl):
        return "postgresql+psycopg://" + location.split("://", 1)[1]
    return f"sqlite:///{location}"


_PLACEHOLDER = re.compile(r"\?")


def _pg_sql(sql: str, cache: dict[str, str] = {}) -> str:  # noqa: B006 - a deliberate per-process cache
    """A statement written with ``?`` placeholders as psycopg spells them (``%s``; a literal ``%`` doubled)."""
    converted = cache.get(sql)
    if converted is None:
        converted = cache[sql] = _PLACEHOLDER.sub("%s", sql.replace("%", "%%"))
    return converted


class Connection:
    """One connection to the state database, in autocommit mode; transactions are explicit."""

    def __init__(self, location: StateLocation, *, create: bool) -> None:
        self.location = location
        self.postgres = isinstance(location, PostgresUrl)
        self._in_transaction = False
        self.raw: Any = self._open_postgres() if self.postgres else self._open_sqlite(Path(location), create)

    # --- opening --------------------------------------------------------------------------------

    def _open_sqlite(self, path: Path, create: bool) -> sqlite3.Connection:
        try:
            if create:
                path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                # NORMAL in WAL mode survives a killed process (what a crash of digest is); only a
                # power cut can lose the last commits, and then a copy is resent with its Message-ID.
                db.execute("PRAGMA synchronous=NORMAL")
            else:
                db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=30,
                                     check_same_thread=False)
                db.execute("SELECT 1 FROM sqlite_master LIMIT 1")  # fail here, naming the file, not at a query
            db.execute("PRAGMA foreign_keys=ON")
        except sqlite3.OperationalError as exc:
            # SQLite names no file and no errno; a read-only or full disk, or a folder in the way, lands here.
            raise StateError(f"{path}: cannot open the state database ({exc}); check that its folder "
                             "exists, is writable and has space") from None
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{path}: is not a state database ({exc}); check [paths] state and DIGEST_STATE_URL, "
                             "or restore the database from its backup") from None
        return db

    def _open_postgres(self) -> psycopg.Connection:
        try:
            return psycopg.connect(str(self.location), autocommit=True, connect_timeout=10,
                                   application_name=f"digest:{os.getpid()}")
        except psycopg.Error as exc:
            raise StateError(f"{shown(self.location)}: cannot connect to the state database "
                             f"({_said(exc)}); check DIGEST_STATE_URL and that "
                             "PostgreSQL is running and reachable") from None

    def _reconnect(self) -> None:
        """Open the connection again, waiting (with backoff) up to RECONNECT_FOR seconds."""
        try:
            self.raw.close()
        except psycopg.Error:
            pass
        waited, delay = 0.0, 0.2
        while True:
            try:
                self.raw = self._open_postgres()
                return
            except StateError:
                if waited >= RECONNECT_FOR:
                    raise
                time.sleep(delay)
                waited += delay
                delay = min(delay * 2, 5.0)

    def close(self) -> None:
        try:
            self.raw.close()
        except (sqlite3.Error, psycopg.Error):
            pass

    # --- statements -----------------------------------------------------------------------------

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement; a cursor to read from (``fetchone``, iteration, ``rowcount``)."""
        if not self.postgres:
            try:
                return self.raw.execute(sql, params)
            except sqlite3.OperationalError as exc:
                raise self._sqlite_error(exc) from exc
        return self._pg(lambda: self.raw.execute(_pg_sql(sql), params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement for each row (a generator is read as it goes)."""
        if not self.postgres:
            try:
                self.raw.executemany(sql, rows)
            except sqlite3.OperationalError as exc:
                raise self._sqlite_error(exc) from exc
            return
        if not self._in_transaction:  # a generator cannot be read twice, so no retry outside a transaction
            raise RuntimeError("executemany on PostgreSQL runs inside a transaction")
        statement = _pg_sql(sql)
        with self.raw.cursor() as cursor:
            batch: list[Sequence[Any]] = []
            for row in rows:
                batch.append(row)
                if len(batch) == 2000:
                    self._pg(lambda: cursor.executemany(statement, batch))
                    batch = []
            if batch:
                self._pg(lambda: cursor.executemany(statement, batch))

    def _pg(self, run: Any) -> Any:
        try:
            return run()
        except psycopg.OperationalError as exc:
            if self._in_transaction:
                raise StateConnectionLost(f"{shown(self.location)}: the connection was lost mid-transaction "
                                          f"({_said(exc)})") from exc
            if not self.raw.closed and not self.raw.broken:
                raise StateError(f"{shown(self.location)}: {_said(exc)}") from exc
        self._reconnect()
        try:
            return run()
        except psycopg.Error as exc:
            raise StateError(f"{shown(self.location)}: {_said(exc)}") from exc

    def _sqlite_error(self, exc: sqlite3.OperationalError) -> StateError:
        return StateError(f"{self.location}: {exc}")

    @contextmanager
    def transaction(self, *, serialised: bool = True) -> Iterator[None]:
        """One write transaction. SQLite takes its write lock at once (BEGIN IMMEDIATE); PostgreSQL
        takes one advisory lock for the transaction, so the ledger's few multi-statement writes are
        serialised there as they are on SQLite (the hot path's single statements are not).
        ``serialised=False``: no advisory lock (claims, which lock their rows with SKIP LOCKED)."""
        if self._in_transaction:
            yield
            return
        if self.postgres:
            if self.raw.broken or self.raw.closed:
                self._reconnect()
            try:
                with self.raw.transaction():
                    self._in_transaction = True
                    if serialised:
                        self.raw.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))
                    yield
            except psycopg.OperationalError as exc:
                raise StateConnectionLost(f"{shown(self.location)}: the connection was lost mid-transaction "
                                          f"({_said(exc)})") from exc
            finally:
                self._in_transaction = False
            return
        self.raw.execute("BEGIN IMMEDIATE")
        self._in_transaction = True
        try:
            yield
        except BaseException:
            self.raw.execute("ROLLBACK")
            raise
        finally:
            self._in_transaction = False
        self.raw.execute("COMMIT")

    # --- the schema as it stands ----------------------------------------------------------------

    def has_table(self, name: str) -> bool:
        """Whether the database has this table (one from an older digest, opened read only, may not)."""
        if self.postgres:
            return self.execute("SELECT to_regclass(?) IS NOT NULL", (name,)).fetchone()[0]
        return self.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone() is not None

    def columns(self, table: str) -> set[str]:
        """The names of ``table``'s columns (none when there is no such table)."""
        if self.postgres:
            rows = self.execute("SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                                "AND table_schema = current_schema()", (table,))
            return {row[0] for row in rows}
        return {row[1] for row in self.execute(f"PRAGMA table_info({table})")}

    # --- locks that hold across machines --------------------------------------------------------

    def try_lock(self, name: str) -> bool:
        """Take the session-level advisory lock ``name`` (PostgreSQL) if free; held until ``unlock``
        or until this connection ends however it ends (the server drops it with the session)."""
        return bool(self.execute("SELECT pg_try_advisory_lock(?)", (lock_key(name),)).fetchone()[0])

    def unlock(self, name: str) -> None:
        self.execute("SELECT pg_advisory_unlock(?)", (lock_key(name),))


def _said(exc: BaseException) -> str:
    """A driver's message on one line: libpq writes its hints on lines of their own, tab-indented."""
    return " ".join(str(exc).split()) or type(exc).__name__


def lock_key(name: str) -> int:
    """A stable 64-bit advisory-lock key for a lock's name (the same on every machine)."""
    return zlib.crc32(b"digest:" + name.encode()) | (0x4447 << 32)


_WRITE_LOCK = lock_key("ledger.write")


class SessionLock:
    """A lock named ``name`` held by a connection of its own (PostgreSQL advisory lock): across
    machines, and released by the server when the holder's session ends, even by SIGKILL."""

    def __init__(self, location: PostgresUrl, name: str) -> None:
        self.location = location
        self.name = name
        self.connection: Connection | None = None

    def acquire(self) -> bool:
        """True when taken; False when another session holds it."""
        connection = Connection(self.location, create=False)
        # A holder whose machine vanishes (no FIN, no RST) keeps the lock until the server sees the
        # session is dead: TCP keepalives on this session bring that down to about 10 + 5 x 3 s.
        for setting, value in (("tcp_keepalives_idle", 10), ("tcp_keepalives_interval", 5), ("tcp_keepalives_count", 3)):
            connection.execute(f"SET {setting} = {value}")
        if connection.try_lock(self.name):
            self.connection = connection
            return True
        connection.close()
        return False

    def holder(self) -> str:
        """Who holds the lock, as PostgreSQL knows them (application name, client address)."""
        connection = Connection(self.location, create=False)
        try:
            key = lock_key(self.name)
            row = connection.execute(
                "SELECT a.application_name, coalesce(host(a.client_addr), 'local') FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
                "AND l.classid = ? AND l.objid = ? LIMIT 1", (key >> 32, key & 0xFFFFFFFF)).fetchone()
        finally:
            connection.close()
        return f"{row[0]} from {row[1]}" if row else "unknown"

    def release(self) -> None:
        if self.connection is not None:
            self.connection.close()  # ending the session releases its advisory locks
            self.connection = None
