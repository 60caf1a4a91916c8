"""Which sender started each copy's delivery: with many workers, the one to ask about a copy in doubt.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa

from digest.state.migrations.tables import add_column

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_column("deliveries", sa.Column("sent_by", sa.Text()))  # the sender (host:pid:n, or a worker's name#n) of the last attempt


def downgrade() -> None:
    raise NotImplementedError("digest does not go back to a schema that cannot hold its records")
