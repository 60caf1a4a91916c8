"""Approval pinned to bytes: the compositions editors were shown, their approvals, used links.

A proposal is an issue composed before it exists (for a preview, or an approval), kept whole so
that the bytes an editor approved are the bytes the issue is created with. Its fingerprint is the
one editors see. An approval names (edition, issue date, fingerprint): a change to any story
gives another fingerprint, which no approval names. A signed link is used once: its nonce is
recorded when it is.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa

from digest.state.migrations.tables import ROW_ID, SECONDS, create_index, create_table

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_table(
        "issue_proposals",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("edition", sa.Text(), nullable=False),
        sa.Column("issue_date", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),   # what editors see and approve
        sa.Column("format", sa.Integer(), nullable=False),     # the kept composition, as issue_compositions
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("checksum", sa.Text(), nullable=False),      # issue_compositions.fingerprint of body
        sa.Column("composed_at", SECONDS, nullable=False),
        sa.Column("previewed_at", SECONDS),                    # last preview sent of it, if any
        sa.Column("previewed_to", sa.Text()),                  # to whom, comma-separated
        sa.UniqueConstraint("edition", "issue_date", "fingerprint", name="issue_proposals_once"),
    )
    create_table(
        "issue_approvals",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("edition", sa.Text(), nullable=False),
        sa.Column("issue_date", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("at", SECONDS, nullable=False),
        sa.Column("via", sa.Text(), nullable=False),           # command | link | desk
    )
    create_index("issue_approvals_by_issue", "issue_approvals", ["edition", "issue_date"])
    create_table(
        "used_links",
        sa.Column("nonce", sa.Text(), primary_key=True),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("used_at", SECONDS, nullable=False),
    )


def downgrade() -> None:
    raise NotImplementedError("digest does not go back to a schema that cannot hold its records")
