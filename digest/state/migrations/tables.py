"""What the migrations share: column types that mean the same on both backends, and guards that
let the first revision adopt a database an older digest created (tables and columns already there)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# Epoch seconds need a double: PostgreSQL's REAL is single precision (7 digits).
SECONDS = sa.Float(precision=53)
# Row ids: 64-bit on PostgreSQL (billions of copies over the years); SQLite's INTEGER PRIMARY KEY is 64-bit already.
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def has_table(name: str) -> bool:
    return sa.inspect(op.get_bind()).has_table(name)


def has_column(table: str, column: str) -> bool:
    return any(c["name"] == column for c in sa.inspect(op.get_bind()).get_columns(table))


def has_index(table: str, name: str) -> bool:
    return any(i["name"] == name for i in sa.inspect(op.get_bind()).get_indexes(table))


def create_table(name: str, *columns: sa.schema.SchemaItem) -> None:
    """Create the table unless an older digest already did."""
    if not has_table(name):
        op.create_table(name, *columns)


def add_column(table: str, column: sa.Column) -> None:
    """Add the column unless the table has it already."""
    if not has_column(table, column.name):
        op.add_column(table, column)


def create_index(name: str, table: str, columns: list[str]) -> None:
    if not has_index(table, name):
        op.create_index(name, table, columns)
