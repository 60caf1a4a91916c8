"""Many senders, one issue: claims with leases on copies, the composed issue kept, relays, workers.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa

from digest.state.migrations.tables import ROW_ID, SECONDS, add_column, create_index, create_table

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TEXT = sa.Text()


def upgrade() -> None:
    add_column("deliveries", sa.Column("claimed_by", TEXT))     # the sender (host:pid:n) that holds this copy
    add_column("deliveries", sa.Column("claim_until", SECONDS))  # its lease; a lapsed one may be taken over
    add_column("deliveries", sa.Column("relay", TEXT))           # the relay that took the copy
    create_table(
        "issue_compositions",                       # the composed issue: every sender builds copies from this
        sa.Column("issue_id", ROW_ID, sa.ForeignKey("issues.id"), primary_key=True),
        sa.Column("format", sa.Integer(), nullable=False),
        sa.Column("body", TEXT, nullable=False),
        sa.Column("fingerprint", TEXT, nullable=False),
        sa.Column("stored_at", TEXT, nullable=False),
    )
    create_table(
        "workers",                                  # senders alive now: what `digest status` shows
        sa.Column("name", TEXT, primary_key=True),  # host:pid
        sa.Column("started_at", TEXT, nullable=False),
        sa.Column("seen_at", SECONDS, nullable=False),
        sa.Column("issue_id", ROW_ID),
        sa.Column("sent", sa.Integer(), nullable=False, server_default="0"),
    )
    create_index("deliveries_claims", "deliveries", ["claimed_by"])


def downgrade() -> None:
    raise NotImplementedError("digest does not go back to a schema that cannot hold its records")
