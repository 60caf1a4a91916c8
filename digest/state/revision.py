"""Which schema revision a state database is at, and whether it is digest's at all.

Read on every open for writing (one query), so it imports nothing heavy: Alembic comes in only
when ``migrate.upgrade`` has work to do.
"""

from __future__ import annotations

from ..errors import StateError
from .connection import Connection

HEAD = "0006"  # the newest revision; tests/test_state_copy.py checks it is Alembic's head


def revision(connection: Connection) -> str | None:
    """The schema revision this database is at; None for one no migration has touched yet."""
    if not connection.has_table("alembic_version"):
        return None
    row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    return row[0] if row else None


def refuse_a_stranger(connection: Connection) -> None:
    """A SQLite file with tables but neither digest's nor an older digest's is another program's
    database: refused, never given digest's tables beside its own."""
    if connection.postgres or connection.has_table("issues"):
        return
    tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                                   "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    if tables:
        shown_tables = ", ".join(tables[:5]) + (" ..." if len(tables) > 5 else "")
        raise StateError(f"{connection.location}: not a digest state database (it holds the tables {shown_tables} "
                         "and none of digest's); check [paths] state and DIGEST_STATE_URL")
