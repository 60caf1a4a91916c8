"""The state database: which issues exist and which stories each one carried.

SQLite by default (``DIGEST_STATE_URL``, else ``state/digest.sqlite3`` beside digest.toml),
written only through this module, in short transactions, so another backend can take its place.
An issue is created once per (edition, date) and its story list is frozen when it is created;
asking again returns the issue as it was first recorded. A dry run reads this database and never
writes it.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

SCHEMA = """
CREATE TABLE IF NOT EXISTS issues (
    id          INTEGER PRIMARY KEY,
    edition     TEXT NOT NULL,
    issue_date  TEXT NOT NULL,            -- YYYY-MM-DD in the edition's zone
    send_time   TEXT NOT NULL,            -- ISO 8601 with offset
    created_at  TEXT NOT NULL,
    UNIQUE (edition, issue_date)
);
CREATE TABLE IF NOT EXISTS issue_stories (
    issue_id    INTEGER NOT NULL REFERENCES issues(id),
    position    INTEGER NOT NULL,
    story_id    TEXT NOT NULL,
    PRIMARY KEY (issue_id, position),
    UNIQUE (issue_id, story_id)
);
CREATE INDEX IF NOT EXISTS issue_stories_story ON issue_stories(story_id);
"""


@dataclass(frozen=True, slots=True)
class IssueRecord:
    id: int
    edition: str
    issue_date: dt.date
    story_ids: tuple[str, ...]


def state_path(url: str | None, default: Path) -> Path:
    """The SQLite file named by DIGEST_STATE_URL, as SQLAlchemy spells it (``sqlite:///rel.db``,
    ``sqlite:////abs/path.db``), or a plain path."""
    if not url:
        return default
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):])
    if url.startswith("sqlite:"):
        return Path(url[len("sqlite:"):])
    if "://" in url:
        raise ConfigError(f"only SQLite state URLs are supported so far (sqlite:///path), not '{url.split('://')[0]}'",
                          field="DIGEST_STATE_URL")
    return Path(url)


class Ledger:
    """A connection to the state database."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = path
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, isolation_level=None, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(SCHEMA)
        else:
            self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=30)
        self.db.execute("PRAGMA foreign_keys=ON")

    @classmethod
    def read_only(cls, path: Path) -> Ledger | None:
        """Open an existing database without writing to it; None when there is none yet."""
        return cls(path, create=False) if path.exists() else None

    def close(self) -> None:
        self.db.close()

    def used_story_ids(self, edition: str, before: dt.date) -> frozenset[str]:
        """Stories carried by issues of ``edition`` dated before ``before``."""
        rows = self.db.execute(
            "SELECT s.story_id FROM issue_stories s JOIN issues i ON i.id = s.issue_id "
            "WHERE i.edition = ? AND i.issue_date < ?",
            (edition, before.isoformat()),
        )
        return frozenset(row[0] for row in rows)

    def find_issue(self, edition: str, date: dt.date) -> IssueRecord | None:
        """The recorded issue, if it exists."""
        row = self.db.execute("SELECT id FROM issues WHERE edition = ? AND issue_date = ?",
                              (edition, date.isoformat())).fetchone()
        if row is None:
            return None
        stories = self.db.execute("SELECT story_id FROM issue_stories WHERE issue_id = ? ORDER BY position", (row[0],))
        return IssueRecord(row[0], edition, date, tuple(r[0] for r in stories))

    def create_issue(self, edition: str, date: dt.date, send_time: dt.datetime, story_ids: Iterable[str],
                     now: dt.datetime | None = None) -> tuple[IssueRecord, bool]:
        """Create the issue once; a later call returns the first record. (record, created now?)"""
        now = now or dt.datetime.now(dt.timezone.utc)
        self.db.execute("BEGIN IMMEDIATE")
        try:
            existing = self.find_issue(edition, date)
            if existing is not None:
                self.db.execute("COMMIT")
                return existing, False
            cursor = self.db.execute(
                "INSERT INTO issues (edition, issue_date, send_time, created_at) VALUES (?, ?, ?, ?)",
                (edition, date.isoformat(), send_time.isoformat(), now.isoformat()),
            )
            ids = tuple(story_ids)
            self.db.executemany("INSERT INTO issue_stories (issue_id, position, story_id) VALUES (?, ?, ?)",
                                [(cursor.lastrowid, n, story_id) for n, story_id in enumerate(ids)])
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return IssueRecord(cursor.lastrowid, edition, date, ids), True
