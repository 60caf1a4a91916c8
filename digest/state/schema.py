"""Opening the state database: created or upgraded to the newest schema, or read only.

The tables themselves are Alembic revisions (state/migrations/versions/); migrate.py runs them.
What the rest of ``state`` needs from a backend is here: a connection (connection.py) whose
database is at the newest revision when opened for writing, a path check that refuses a
location that can never hold a database, and whether an older database has a table or a column.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import StateError
from .connection import Connection, StateLocation, is_postgres
from .revision import HEAD, revision


def ensure_current(connection: Connection) -> None:
    """Bring the database to HEAD unless it is there already (the common, one-query case)."""
    if revision(connection) != HEAD:
        # (upgrade refuses another program's SQLite file before it writes.) Alembic and SQLAlchemy take about 0.35 s to import: only a database that needs upgrading pays it.
        from .migrate import upgrade
        upgrade(connection.location)


def connect(location: StateLocation, *, create: bool) -> Connection:
    """A connection to the database at ``location``: created and upgraded when ``create``, else read only.

    StateError (naming the file or URL) when it cannot be opened.
    """
    connection = Connection(location, create=create)
    if create:
        try:
            ensure_current(connection)
        except BaseException:
            connection.close()
            raise
    return connection


def check_state_path(location: StateLocation) -> None:
    """Refuse a state database path that can never hold one, naming it and why (a URL: nothing to check here)."""
    if is_postgres(location):
        return
    path = Path(location)
    if path.exists():
        if not path.is_file():
            raise StateError(f"{path}: the state database path is {'a folder' if path.is_dir() else 'not a regular file'}, "
                             "not a database file; check [paths] state and DIGEST_STATE_URL")
        return
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise StateError(f"{path}: {parent} is a file, not a folder, so no state database can be there; "
                                 "check [paths] state and DIGEST_STATE_URL")
            return


def has_table(db: Connection, name: str) -> bool:
    """Whether the database has this table (one from an older digest, opened read only, may not)."""
    return db.has_table(name)


def has_column(db: Connection, table: str, column: str) -> bool:
    """Whether ``table`` has ``column`` (one from an older digest, opened read only, may not)."""
    return column in db.columns(table)


def exists(location: StateLocation) -> bool:
    """Whether a state database is there already: a SQLite file, or a PostgreSQL database with digest's tables."""
    if not is_postgres(location):
        return Path(location).exists()
    connection = Connection(location, create=False)
    try:
        return connection.has_table("issues")
    finally:
        connection.close()
