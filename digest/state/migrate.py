"""Schema migrations of the state database, through Alembic, on SQLite and PostgreSQL alike.

A database created by an older digest (no ``alembic_version`` table) is adopted by the first
revision, which creates only what it lacks, so it upgrades in place with every row kept. Opening
a database for writing upgrades it (``Ledger``); ``digest state migrate`` does it on purpose and
says what it did. Two processes opening one new database at once take turns: a file lock beside
a SQLite file, an advisory lock on PostgreSQL.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from ..errors import StateError
from .connection import Connection, StateLocation, is_postgres, lock_key, shown, sqlalchemy_url

HEAD = "0002"  # the newest revision; tests/test_migrations.py checks it is Alembic's head
_SCRIPTS = Path(__file__).with_name("migrations")


def revision(connection: Connection) -> str | None:
    """The schema revision this database is at; None for one no migration has touched yet."""
    if not connection.has_table("alembic_version"):
        return None
    row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    return row[0] if row else None


def ensure_current(connection: Connection) -> None:
    """Bring the database to HEAD unless it is there already (the common, one-query case)."""
    if revision(connection) != HEAD:
        upgrade(connection.location)


def upgrade(location: StateLocation) -> tuple[str | None, str]:
    """Run every migration the database lacks; (revision before, revision after)."""
    engine = sa.create_engine(sqlalchemy_url(location), poolclass=sa.pool.NullPool)
    try:
        with _migration_lock(location, engine) as connection:
            before = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() \
                if sa.inspect(connection).has_table("alembic_version") else None
            config = Config()
            config.set_main_option("script_location", str(_SCRIPTS))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            connection.commit()
            after = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    except sa.exc.SQLAlchemyError as exc:
        raise StateError(f"{shown(location)}: cannot upgrade the state database's tables "
                         f"({str(exc.orig if getattr(exc, 'orig', None) else exc).strip()})") from None
    finally:
        engine.dispose()
    return before, after


def script_head() -> str:
    """The head revision as Alembic reads it from the migration scripts."""
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


@contextmanager
def _migration_lock(location: StateLocation, engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection that alone runs migrations on this database until the block ends."""
    if is_postgres(location):
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": lock_key("migrate")})
            connection.commit()
            try:
                yield connection
            finally:
                connection.rollback()
                connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": lock_key("migrate")})
                connection.commit()
        return
    path = Path(location)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = os.open(path.with_name(path.name + ".migrating"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        with engine.connect() as connection:
            yield connection
    finally:
        os.close(handle)
