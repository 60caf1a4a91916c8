"""Editors' control of an issue: every hold, pause, resume and cancel, who did it, when and why.

An action is recorded against (edition, issue date), not the issue's row, so a hold can be placed
before the issue exists (tomorrow's AM, before its send time). The issue's status column remains
what senders check; this table is the history `digest status` shows.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa

from digest.state.migrations.tables import ROW_ID, SECONDS, create_index, create_table

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_table(
        "issue_actions",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("edition", sa.Text(), nullable=False),
        sa.Column("issue_date", sa.Text(), nullable=False),   # YYYY-MM-DD in the edition's zone
        sa.Column("action", sa.Text(), nullable=False),       # hold | pause | resume | cancel
        sa.Column("actor", sa.Text(), nullable=False),        # who: an editor, an operator, "circuit breaker"
        sa.Column("at", SECONDS, nullable=False),             # epoch seconds
        sa.Column("reason", sa.Text()),
        sa.Column("delivered", sa.Integer()),                 # copies sent when it took effect (cancel: final)
    )
    create_index("issue_actions_by_issue", "issue_actions", ["edition", "issue_date"])


def downgrade() -> None:
    raise NotImplementedError("digest does not go back to a schema that cannot hold its records")
