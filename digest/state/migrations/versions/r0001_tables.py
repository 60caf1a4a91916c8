"""The tables as digest 0.1 kept them; a database an older digest created is adopted as it is.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa

from digest.state.migrations.tables import ROW_ID, SECONDS, add_column, create_index, create_table

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TEXT = sa.Text()


def upgrade() -> None:
    create_table(
        "issues",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("edition", TEXT, nullable=False),
        sa.Column("issue_date", TEXT, nullable=False),      # YYYY-MM-DD in the edition's zone
        sa.Column("send_time", TEXT, nullable=False),       # ISO 8601 with offset
        sa.Column("created_at", TEXT, nullable=False),
        sa.Column("status", TEXT, nullable=False, server_default="open"),  # open | paused | done
        sa.Column("note", TEXT),
        sa.Column("deadline", SECONDS),                     # from `send --deadline`; NULL: send time + deadline_hours
        sa.UniqueConstraint("edition", "issue_date"),
    )
    create_table(
        "deliveries",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("issue_id", ROW_ID, sa.ForeignKey("issues.id"), nullable=False),
        sa.Column("email", TEXT, nullable=False),
        sa.Column("name", TEXT, nullable=False),
        sa.Column("key", TEXT, nullable=False),             # casefolded address
        sa.Column("state", TEXT, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_at", SECONDS),                      # epoch seconds before which a deferred copy waits
        sa.Column("message_id", TEXT),
        sa.Column("last_code", sa.Integer()),
        sa.Column("last_text", TEXT),
        sa.Column("updated_at", TEXT, nullable=False),
        sa.Column("failure", TEXT),                         # why a failed copy failed: outcomes.FAILURE_CLASSES
        sa.Column("first_name", TEXT),                      # the greeting's name; NULL: derive from name
        sa.UniqueConstraint("issue_id", "key"),
    )
    # Columns digest 0.1 added to its own older databases when it opened them.
    add_column("deliveries", sa.Column("first_name", TEXT))
    add_column("issues", sa.Column("deadline", SECONDS))
    add_column("deliveries", sa.Column("failure", TEXT))
    create_index("deliveries_state", "deliveries", ["issue_id", "state"])
    create_table(
        "missed_sends",
        sa.Column("edition", TEXT, primary_key=True),
        sa.Column("issue_date", TEXT, primary_key=True),
        sa.Column("send_time", TEXT, nullable=False),
        sa.Column("noticed_at", TEXT, nullable=False),
        sa.Column("detail", TEXT, nullable=False),
    )
    create_table(
        "marks",
        sa.Column("name", TEXT, primary_key=True),          # e.g. 'scheduler.last_seen'
        sa.Column("value", SECONDS, nullable=False),
    )
    create_table(
        "leases",
        sa.Column("name", TEXT, primary_key=True),          # e.g. 'scheduler'
        sa.Column("owner", TEXT, nullable=False),           # host:pid
        sa.Column("expires_at", SECONDS, nullable=False),   # epoch seconds; renewed while the owner lives
    )
    create_table(
        "suppressions",
        sa.Column("key", TEXT, primary_key=True),           # casefolded address
        sa.Column("edition", TEXT, primary_key=True),       # a slug, or '*' for every edition
        sa.Column("reason", TEXT, nullable=False),          # unsubscribed | bounced | complaint | ...
        sa.Column("detail", TEXT),
        sa.Column("created_at", TEXT, nullable=False),
    )
    create_table(
        "issue_stories",
        sa.Column("issue_id", ROW_ID, sa.ForeignKey("issues.id"), primary_key=True),
        sa.Column("position", sa.Integer(), primary_key=True),
        sa.Column("story_id", TEXT, nullable=False),
        sa.UniqueConstraint("issue_id", "story_id"),
    )
    create_index("issue_stories_story", "issue_stories", ["story_id"])
    create_table(
        "left_out_rows",                                    # subscriber rows the audience freeze could not use
        sa.Column("issue_id", ROW_ID, sa.ForeignKey("issues.id"), primary_key=True),
        sa.Column("line", sa.Integer(), primary_key=True),  # line of subscribers.csv at the time
        sa.Column("key", TEXT),                             # casefolded address, when it could be read
        sa.Column("reason", TEXT, nullable=False),
        sa.Column("added_at", TEXT),                        # when the reader, row fixed, was added to the issue
    )
    create_table(
        "archive_pages",
        sa.Column("issue_id", ROW_ID, sa.ForeignKey("issues.id"), primary_key=True),
        sa.Column("html", TEXT, nullable=False),            # the public "view in browser" page, as sent
        sa.Column("stored_at", TEXT, nullable=False),
    )
    create_table(
        "issue_notes",
        sa.Column("issue_id", ROW_ID, sa.ForeignKey("issues.id"), primary_key=True),
        sa.Column("source", TEXT, nullable=False),          # the note file it was read from
        sa.Column("markdown", TEXT, nullable=False),        # its text when the issue was created
    )


def downgrade() -> None:
    raise NotImplementedError("the first revision cannot be undone: it holds every delivery record")
