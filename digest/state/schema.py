"""The state database's tables, and opening one: created or upgraded in place, or read only.

SQLite today. What the rest of ``state`` needs from a backend is here: a connection in
autocommit mode (each ``Ledger`` method runs its own short transaction), the tables created or
gained, and whether an older database has a table or a column.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ..errors import StateError

SCHEMA = """
CREATE TABLE IF NOT EXISTS issues (
    id          INTEGER PRIMARY KEY,
    edition     TEXT NOT NULL,
    issue_date  TEXT NOT NULL,            -- YYYY-MM-DD in the edition's zone
    send_time   TEXT NOT NULL,            -- ISO 8601 with offset
    created_at  TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'open',   -- open | paused | done
    note        TEXT,
    UNIQUE (edition, issue_date)
);
CREATE TABLE IF NOT EXISTS deliveries (
    id          INTEGER PRIMARY KEY,
    issue_id    INTEGER NOT NULL REFERENCES issues(id),
    email       TEXT NOT NULL,
    name        TEXT NOT NULL,
    key         TEXT NOT NULL,            -- casefolded address
    state       TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     REAL,                     -- epoch seconds before which a deferred copy waits
    message_id  TEXT,
    last_code   INTEGER,
    last_text   TEXT,
    updated_at  TEXT NOT NULL,
    failure     TEXT,                     -- why a failed copy failed: outcomes.FAILURE_CLASSES
    UNIQUE (issue_id, key)
);
CREATE INDEX IF NOT EXISTS deliveries_state ON deliveries(issue_id, state);
CREATE TABLE IF NOT EXISTS missed_sends (
    edition     TEXT NOT NULL,
    issue_date  TEXT NOT NULL,
    send_time   TEXT NOT NULL,
    noticed_at  TEXT NOT NULL,
    detail      TEXT NOT NULL,
    PRIMARY KEY (edition, issue_date)
);
CREATE TABLE IF NOT EXISTS marks (
    name        TEXT PRIMARY KEY,         -- e.g. 'scheduler.last_seen'
    value       REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    name        TEXT PRIMARY KEY,         -- e.g. 'scheduler'
    owner       TEXT NOT NULL,            -- host:pid
    expires_at  REAL NOT NULL             -- epoch seconds; renewed while the owner lives
);
CREATE TABLE IF NOT EXISTS suppressions (
    key         TEXT NOT NULL,            -- casefolded address
    edition     TEXT NOT NULL,            -- a slug, or '*' for every edition
    reason      TEXT NOT NULL,            -- unsubscribed | bounced | complaint | ...
    detail      TEXT,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (key, edition)
);
CREATE TABLE IF NOT EXISTS issue_stories (
    issue_id    INTEGER NOT NULL REFERENCES issues(id),
    position    INTEGER NOT NULL,
    story_id    TEXT NOT NULL,
    PRIMARY KEY (issue_id, position),
    UNIQUE (issue_id, story_id)
);
CREATE INDEX IF NOT EXISTS issue_stories_story ON issue_stories(story_id);
CREATE TABLE IF NOT EXISTS left_out_rows (  -- subscriber rows that could not be used when the audience was frozen
    issue_id    INTEGER NOT NULL REFERENCES issues(id),
    line        INTEGER NOT NULL,         -- line of subscribers.csv at the time
    key         TEXT,                     -- casefolded address, when it could be read
    reason      TEXT NOT NULL,
    added_at    TEXT,                     -- when the reader, row fixed, was added to the issue
    PRIMARY KEY (issue_id, line)
);
CREATE TABLE IF NOT EXISTS archive_pages (   -- added later: an older database gains it when opened
    issue_id    INTEGER PRIMARY KEY REFERENCES issues(id),
    html        TEXT NOT NULL,            -- the public "view in browser" page, as the issue was sent
    stored_at   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS issue_notes (     -- added later: an older database gains it when opened
    issue_id    INTEGER PRIMARY KEY REFERENCES issues(id),
    source      TEXT NOT NULL,            -- the note file it was read from
    markdown    TEXT NOT NULL             -- its text when the issue was created: every copy shows this
);
CREATE TABLE IF NOT EXISTS issue_compositions (   -- added later: an older database gains it when opened
    issue_id    INTEGER PRIMARY KEY REFERENCES issues(id),
    format      INTEGER NOT NULL,         -- of body: compose/pipeline.py STORED_FORMAT
    body        TEXT NOT NULL,            -- the composed issue as JSON: every sender rebuilds its copies from it
    fingerprint TEXT NOT NULL,            -- 16 hex digits of SHA-256 over body's canonical JSON
    stored_at   TEXT NOT NULL
);
"""
# Columns added to tables of an existing database when it is opened (name, table, declaration).
UPGRADES = (
    ("deliveries", "first_name", "TEXT"),  # what the greeting calls the reader; NULL: derive from name
    ("issues", "deadline", "REAL"),  # epoch seconds from `send --deadline`; NULL: send time + deadline_hours
    ("deliveries", "failure", "TEXT"),  # failed copies: a key of outcomes.FAILURE_CLASSES; NULL: derive from the reply
)


def connect(path: Path, *, create: bool) -> sqlite3.Connection:
    """A connection to the database at ``path``: created and upgraded when ``create``, else read only.

    StateError (naming the file) when it cannot be opened.
    """
    try:
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, isolation_level=None, timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a killed process (what a crash of digest is); only a
            # power cut can lose the last commits, and then a copy is resent with its Message-ID.
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(SCHEMA)
            _upgrade(db)
        else:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=30)
            db.execute("SELECT 1 FROM sqlite_master LIMIT 1")  # fail here, naming the file, not at a query
        db.execute("PRAGMA foreign_keys=ON")
    except sqlite3.OperationalError as exc:
        # SQLite names no file and no errno; a read-only or full disk, or a folder in the way, lands here.
        raise StateError(f"{path}: cannot open the state database ({exc}); check that its folder "
                         "exists, is writable and has space") from None
    except sqlite3.DatabaseError as exc:
        raise StateError(f"{path}: is not a state database ({exc}); check [paths] state and DIGEST_STATE_URL, "
                         "or restore the database from its backup") from None
    return db


def check_state_path(path: Path) -> None:
    """Refuse a state database path that can never hold one, naming it and why."""
    if path.exists():
        if not path.is_file():
            raise StateError(f"{path}: the state database path is {'a folder' if path.is_dir() else 'not a regular file'}, "
                             "not a database file; check [paths] state and DIGEST_STATE_URL")
        return
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise StateError(f"{path}: {parent} is a file, not a folder, so no state database can be there; "
                                 "check [paths] state and DIGEST_STATE_URL")
            return


def has_table(db: sqlite3.Connection, name: str) -> bool:
    """Whether the database has this table (one from an older digest, opened read only, may not)."""
    return db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone() is not None


def has_column(db: sqlite3.Connection, table: str, column: str) -> bool:
    """Whether ``table`` has ``column`` (one from an older digest, opened read only, may not)."""
    return any(row[1] == column for row in db.execute(f"PRAGMA table_info({table})"))


def _upgrade(db: sqlite3.Connection) -> None:
    """Add the columns a database created by an older digest lacks; its rows stay as they are."""
    for table, column, declaration in UPGRADES:
        if not has_column(db, table, column):
            try:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
            except sqlite3.OperationalError as exc:  # another process upgraded it a moment ago
                if "duplicate column" not in str(exc):
                    raise
