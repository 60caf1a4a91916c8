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
import time
from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from ..errors import StateError
from .connection import Connection, StateLocation, is_postgres, lock_key, shown, sqlalchemy_url
from .revision import HEAD, refuse_a_stranger

_SCRIPTS = Path(__file__).with_name("migrations")


def upgrade(location: StateLocation) -> tuple[str | None, str]:
    """Run every migration the database lacks; (revision before, revision after). Another
    program's SQLite file is refused (StateError) before anything is written."""
    if not is_postgres(location) and Path(location).exists():
        connection = Connection(location, create=False)
        try:
            refuse_a_stranger(connection)
        finally:
            connection.close()
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
                         f"({_reason(exc)})") from None
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


# What `copy` moves, parents before children. Leases and workers say who holds what on the source
# right now; a copy must not inherit them. APScheduler writes its own job table again on start.
COPIED = ("issues", "issue_stories", "issue_notes", "issue_compositions", "archive_pages", "deliveries",
          "left_out_rows", "suppressions", "complaints", "missed_sends", "marks", "issue_actions",
          "issue_proposals", "issue_approvals", "used_links")
_LIVE_FOR = 60.0  # a worker seen this recently may still be writing to the source


def copy_state(source: StateLocation, target: StateLocation, *, batch: int = 5000,
               now: float | None = None) -> dict[str, int]:
    """Copy every record from one state database into an empty one (SQLite to PostgreSQL, or back).

    Both are upgraded to HEAD first. The target is written in one transaction, so a failed copy
    leaves it empty; afterwards the row count of every table is compared with the source's.
    Claims on copies are not carried over (the processes that held them are the source's).
    Returns the rows copied per table."""
    if sqlalchemy_url(source) == sqlalchemy_url(target):
        raise StateError(f"{shown(source)}: is both the source and the target of the copy")
    _check_source(source, time.time() if now is None else now)
    upgrade(source)
    upgrade(target)
    source_engine = sa.create_engine(sqlalchemy_url(source), poolclass=sa.pool.NullPool)
    target_engine = sa.create_engine(sqlalchemy_url(target), poolclass=sa.pool.NullPool)
    try:
        with source_engine.connect() as reader, target_engine.connect() as writer:
            tables = sa.MetaData()
            tables.reflect(writer, only=COPIED)
            counts = {name: reader.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar_one() for name in COPIED}
            held = {name: n for name in COPIED if (n := writer.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar_one())}
            if held:
                raise StateError(f"{shown(target)}: already holds records ({_listed(held)}); copy into an empty database")
            for name in COPIED:
                _copy_table(reader, writer, tables.tables[name], batch)
            if is_postgres(target):
                for name in ("issues", "deliveries"):
                    writer.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                                           f"coalesce(max(id), 1), max(id) IS NOT NULL) FROM {name}"))
            copied = {name: writer.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar_one() for name in COPIED}
            if copied != counts:
                writer.rollback()
                differ = {name: f"{counts[name]} -> {copied[name]}" for name in COPIED if counts[name] != copied[name]}
                raise StateError(f"{shown(target)}: copy rolled back, row counts differ ({_listed(differ)})")
            writer.commit()
    except sa.exc.SQLAlchemyError as exc:
        raise StateError(f"copying {shown(source)} to {shown(target)} failed, nothing was written "
                         f"({_reason(exc)})") from None
    finally:
        source_engine.dispose()
        target_engine.dispose()
    return copied


def _copy_table(reader: sa.Connection, writer: sa.Connection, table: sa.Table, batch: int) -> None:
    names = [c.name for c in table.columns]
    order = ", ".join(c.name for c in table.primary_key.columns) or names[0]
    rows = reader.execution_options(stream_results=True, yield_per=batch).execute(
        sa.text(f"SELECT {', '.join(names)} FROM {table.name} ORDER BY {order}"))
    for chunk in rows.partitions(batch):
        values = [dict(zip(names, row)) for row in chunk]
        if table.name == "deliveries":
            for value in values:
                value["claimed_by"] = value["claim_until"] = None
        writer.execute(table.insert(), values)


def _check_source(source: StateLocation, now: float) -> None:
    """Refuse, before anything is written, a source that is no state database (SQLite opens a
    short file of anything as an empty one) or that a scheduler or sender still writes to (its
    later records would be missing from the copy)."""
    connection = Connection(source, create=False)
    try:
        if not connection.has_table("issues"):
            raise StateError(f"{shown(source)}: holds no digest tables, so it is not a state database to copy from")
        lease = connection.execute("SELECT name, owner FROM leases WHERE expires_at > ?", (now,)).fetchone() \
            if connection.has_table("leases") else None
        if lease is None and connection.has_table("workers"):
            lease = connection.execute("SELECT 'sender', name FROM workers WHERE seen_at > ?",
                                       (now - _LIVE_FOR,)).fetchone()
    finally:
        connection.close()
    if lease is not None:
        raise StateError(f"{shown(source)}: a {lease[0]} ({lease[1]}) is still using it; stop the scheduler "
                         "and every sender first, so no record is written after the copy")


def _listed(counts: dict[str, object]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items())


def _reason(exc: sa.exc.SQLAlchemyError) -> str:
    """The driver's own words on one line (libpq's span several)."""
    return " ".join(str(exc.orig if getattr(exc, "orig", None) else exc).split())
