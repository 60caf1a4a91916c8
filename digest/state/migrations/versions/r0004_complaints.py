"""Complaints: an ARF feedback report (a reader pressed "spam") recorded against the copy it was about.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa

from digest.state.migrations.tables import ROW_ID, create_table

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_table(
        "complaints",
        sa.Column("delivery_id", ROW_ID, sa.ForeignKey("deliveries.id"), primary_key=True),  # one per copy
        sa.Column("feedback_type", sa.Text(), nullable=False),  # abuse | fraud | virus | other ...
        sa.Column("source", sa.Text(), nullable=False),         # the mailbox item it was read from
        sa.Column("received_at", sa.Text(), nullable=False),    # when digest read it (UTC, ISO 8601)
    )


def downgrade() -> None:
    raise NotImplementedError("digest does not go back to a schema that cannot hold its records")
