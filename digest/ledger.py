"""The state database: issues, their stories, one delivery row per issue x reader, suppressions.

SQLite by default (``DIGEST_STATE_URL``, else ``state/digest.sqlite3`` beside digest.toml),
written only through this module, in short transactions, so another backend can take its place.
An issue is created once per (edition, date) and its story list is frozen when it is created;
asking again returns the issue as it was first recorded. The audience is frozen when the issue is created. A dry run reads this
database and never writes it.

Delivery states (one row per issue x reader)::

    pending -> sending -> sent
                       -> deferred   (temporary failure; retried later with the same Message-ID)
                       -> failed     (permanent: hard bounce, policy rejection, gave up)
                       -> uncertain  (connection lost after the body; a restart finds `sending`
                                      rows and marks them so)
    pending/deferred/uncertain -> suppressed (unsubscribed or bounced before this copy went)

``sending`` is committed before the DATA body and ``sent`` right after the server's 250, each in
its own transaction, so a crash leaves at most the copies in flight in doubt.
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
CREATE TABLE IF NOT EXISTS archive_pages (   -- added later: an older database gains it when opened
    issue_id    INTEGER PRIMARY KEY REFERENCES issues(id),
    html        TEXT NOT NULL,            -- the public "view in browser" page, as the issue was sent
    stored_at   TEXT NOT NULL
);
"""


STATES = ("pending", "sending", "sent", "deferred", "failed", "uncertain", "suppressed")
FINAL = ("sent", "failed", "suppressed")


@dataclass(frozen=True, slots=True)
class IssueRecord:
    id: int
    edition: str
    issue_date: dt.date
    story_ids: tuple[str, ...]
    status: str = "open"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One reader's copy of one issue, as the ledger has it."""

    id: int
    email: str
    name: str
    state: str
    attempts: int
    message_id: str | None
    last_code: int | None = None
    last_text: str | None = None
    updated_at: str | None = None
    next_at: float | None = None


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


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
            # NORMAL in WAL mode survives a killed process (what a crash of digest is); only a
            # power cut can lose the last commits, and then a copy is resent with its Message-ID.
            self.db.execute("PRAGMA synchronous=NORMAL")
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
        row = self.db.execute("SELECT id, status FROM issues WHERE edition = ? AND issue_date = ?",
                              (edition, date.isoformat())).fetchone()
        if row is None:
            return None
        stories = self.db.execute("SELECT story_id FROM issue_stories WHERE issue_id = ? ORDER BY position", (row[0],))
        return IssueRecord(row[0], edition, date, tuple(r[0] for r in stories), row[1])

    def create_issue(self, edition: str, date: dt.date, send_time: dt.datetime, story_ids: Iterable[str],
                     now: dt.datetime | None = None,
                     audience: Iterable[tuple[str, str, str]] = ()) -> tuple[IssueRecord, bool]:
        """Create the issue once, freezing its stories and its audience of (email, name, key).

        A later call returns the first record and ignores its arguments. (record, created now?)
        Readers already suppressed for this edition are recorded as ``suppressed``.
        """
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
            issue_id = cursor.lastrowid
            self.db.executemany("INSERT INTO issue_stories (issue_id, position, story_id) VALUES (?, ?, ?)",
                                [(issue_id, n, story_id) for n, story_id in enumerate(ids)])
            stamp = now.isoformat()
            self.db.executemany(
                "INSERT INTO deliveries (issue_id, email, name, key, state, updated_at) VALUES (?, ?, ?, ?, 'pending', ?)",
                ((issue_id, email, name, key, stamp) for email, name, key in audience),
            )
            self.db.execute(
                "UPDATE deliveries SET state = 'suppressed', last_text = 'suppressed before the issue was created' "
                "WHERE issue_id = ? AND key IN (SELECT key FROM suppressions WHERE edition IN (?, '*'))",
                (issue_id, edition),
            )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return IssueRecord(cursor.lastrowid, edition, date, ids), True

    # --- deliveries -------------------------------------------------------------------------

    def recover_interrupted(self, issue_id: int) -> int:
        """Mark copies left in ``sending`` by a crashed sender as ``uncertain``. Returns how many.

        Only call this while holding the issue's send lock: then no live sender owns them.
        """
        cursor = self.db.execute(
            "UPDATE deliveries SET state = 'uncertain', last_text = 'sender stopped during delivery; outcome unknown', "
            "updated_at = ? WHERE issue_id = ? AND state = 'sending'", (_now(), issue_id))
        return cursor.rowcount

    def due(self, issue_id: int, now: float, *, include_uncertain: bool, after_id: int = 0, limit: int = 1000) -> list[Delivery]:
        """Copies to attempt now, in audience order, from ``after_id`` on."""
        states = ("pending", "deferred", "uncertain") if include_uncertain else ("pending", "deferred")
        rows = self.db.execute(
            f"SELECT id, email, name, state, attempts, message_id FROM deliveries WHERE issue_id = ? AND id > ? "
            f"AND state IN ({','.join('?' * len(states))}) AND (next_at IS NULL OR next_at <= ?) ORDER BY id LIMIT ?",
            (issue_id, after_id, *states, now, limit),
        )
        return [Delivery(*row) for row in rows]

    def next_retry_at(self, issue_id: int, *, include_uncertain: bool = False) -> float | None:
        """When the earliest deferred (and, if asked, uncertain but not held) copy may be tried again."""
        states = "('deferred', 'uncertain')" if include_uncertain else "('deferred')"
        row = self.db.execute(f"SELECT MIN(next_at) FROM deliveries WHERE issue_id = ? AND state IN {states} "
                              "AND next_at < 9e999", (issue_id,)).fetchone()
        return row[0]

    def mark_sending(self, delivery_id: int, message_id: str, key: str, edition: str) -> bool:
        """Committed before the DATA body goes: a crash from here on leaves the copy in doubt.

        In the same statement the reader's suppressions are checked once more; False (and the
        copy marked 'suppressed') when the reader left after the copy was queued.
        """
        stamp = _now()
        cursor = self.db.execute(
            "UPDATE deliveries SET state = 'sending', message_id = ?, attempts = attempts + 1, updated_at = ? "
            "WHERE id = ? AND NOT EXISTS (SELECT 1 FROM suppressions WHERE key = ? AND edition IN (?, '*'))",
            (message_id, stamp, delivery_id, key, edition))
        if cursor.rowcount:
            return True
        self.db.execute("UPDATE deliveries SET state = 'suppressed', last_text = 'left before this copy went', "
                        "updated_at = ? WHERE id = ?", (stamp, delivery_id))
        return False

    def mark(self, delivery_id: int, state: str, code: int | None, text: str | None, *,
             next_at: float | None = None, count_attempt: bool = False) -> None:
        """Record an outcome (committed at once)."""
        if state not in STATES:
            raise ValueError(state)
        self.db.execute(
            "UPDATE deliveries SET state = ?, last_code = ?, last_text = ?, next_at = ?, "
            "attempts = attempts + ?, updated_at = ? WHERE id = ?",
            (state, code, text, next_at, 1 if count_attempt else 0, _now(), delivery_id))

    def expire_deferred(self, issue_id: int, reason: str) -> int:
        """Give up on every deferred copy (deadline or attempts exhausted); they become failed."""
        cursor = self.db.execute(
            "UPDATE deliveries SET state = 'failed', last_text = ? || coalesce(' (last reply: ' || last_text || ')', ''), "
            "next_at = NULL, updated_at = ? WHERE issue_id = ? AND state = 'deferred'", (reason, _now(), issue_id))
        return cursor.rowcount

    def counts(self, issue_id: int) -> dict[str, int]:
        """Copies per state (every state present, zero when none)."""
        found = dict(self.db.execute("SELECT state, COUNT(*) FROM deliveries WHERE issue_id = ? GROUP BY state", (issue_id,)))
        return {state: found.get(state, 0) for state in STATES}

    def deliveries(self, issue_id: int, states: Iterable[str] | None = None) -> list[Delivery]:
        """Every copy of an issue (optionally only some states), in audience order."""
        query = ("SELECT id, email, name, state, attempts, message_id, last_code, last_text, updated_at, next_at "
                 "FROM deliveries WHERE issue_id = ?")
        args: list[object] = [issue_id]
        if states is not None:
            wanted = tuple(states)
            query += f" AND state IN ({','.join('?' * len(wanted))})"
            args += wanted
        return [Delivery(*row) for row in self.db.execute(query + " ORDER BY id", args)]

    def set_status(self, issue_id: int, status: str, note: str | None = None) -> None:
        self.db.execute("UPDATE issues SET status = ?, note = ? WHERE id = ?", (status, note, issue_id))

    # --- suppressions -----------------------------------------------------------------------

    def suppress(self, key: str, edition: str, reason: str, detail: str | None = None) -> None:
        """Stop sending ``edition`` (or ``'*'``: every edition) to this address. Idempotent."""
        self.db.execute(
            "INSERT INTO suppressions (key, edition, reason, detail, created_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (key, edition) DO NOTHING", (key, edition, reason, detail, _now()))

    def is_suppressed(self, key: str, edition: str) -> bool:
        row = self.db.execute("SELECT 1 FROM suppressions WHERE key = ? AND edition IN (?, '*') LIMIT 1", (key, edition)).fetchone()
        return row is not None


    # --- the public archive -----------------------------------------------------------------

    def has_archive_page(self, issue_id: int) -> bool:
        return self.db.execute("SELECT 1 FROM archive_pages WHERE issue_id = ?", (issue_id,)).fetchone() is not None

    def keep_archive_page(self, issue_id: int, html: str) -> None:
        """Store the issue's public page once; a later call keeps the first one."""
        self.db.execute("INSERT INTO archive_pages (issue_id, html, stored_at) VALUES (?, ?, ?) "
                        "ON CONFLICT (issue_id) DO NOTHING", (issue_id, html, _now()))

    def public_issue(self, edition: str, date: dt.date) -> tuple[bool, str | None]:
        """(was a copy sent?, its stored public page or None) for the archive. Reads only."""
        row = self.db.execute(
            "SELECT i.id FROM issues i WHERE i.edition = ? AND i.issue_date = ? AND EXISTS "
            "(SELECT 1 FROM deliveries d WHERE d.issue_id = i.id AND d.state = 'sent')",
            (edition, date.isoformat())).fetchone()
        if row is None:
            return False, None
        if not self._has_archive_table():
            return True, None
        page = self.db.execute("SELECT html FROM archive_pages WHERE issue_id = ?", (row[0],)).fetchone()
        return True, page[0] if page else None

    def public_dates(self, edition: str, limit: int = 1000) -> list[dt.date]:
        """Dates of the edition's issues the archive can show (a copy sent, a page kept), newest first."""
        if not self._has_archive_table():
            return []
        rows = self.db.execute(
            "SELECT i.issue_date FROM issues i JOIN archive_pages a ON a.issue_id = i.id WHERE i.edition = ? AND "
            "EXISTS (SELECT 1 FROM deliveries d WHERE d.issue_id = i.id AND d.state = 'sent') "
            "ORDER BY i.issue_date DESC LIMIT ?", (edition, limit))
        return [dt.date.fromisoformat(row[0]) for row in rows]

    def _has_archive_table(self) -> bool:
        # A read-only connection to a database no newer digest has opened for writing yet.
        return self.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'archive_pages'").fetchone() is not None

    # --- the scheduler's records ------------------------------------------------------------

    def record_missed(self, edition: str, date: dt.date, send_time: dt.datetime, detail: str) -> bool:
        """Remember a send the scheduler missed beyond its grace. True the first time."""
        cursor = self.db.execute(
            "INSERT INTO missed_sends (edition, issue_date, send_time, noticed_at, detail) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (edition, issue_date) DO NOTHING",
            (edition, date.isoformat(), send_time.isoformat(), _now(), detail))
        return cursor.rowcount == 1

    def missed(self, edition: str | None = None) -> list[tuple[str, dt.date, str, str]]:
        """Missed sends with no issue since: (edition, date, send time, detail), newest first."""
        query = ("SELECT m.edition, m.issue_date, m.send_time, m.detail FROM missed_sends m WHERE NOT EXISTS "
                 "(SELECT 1 FROM issues i WHERE i.edition = m.edition AND i.issue_date = m.issue_date)")
        args: tuple = ()
        if edition is not None:
            query += " AND m.edition = ?"
            args = (edition,)
        rows = self.db.execute(query + " ORDER BY m.issue_date DESC", args)
        return [(e, dt.date.fromisoformat(d), t, x) for e, d, t, x in rows]

    def unfinished_issues(self) -> list[tuple[str, dt.date]]:
        """Issues a crash or a stop left with copies still to send (not paused: a person decides those)."""
        rows = self.db.execute(
            "SELECT i.edition, i.issue_date FROM issues i WHERE i.status = 'open' AND EXISTS "
            "(SELECT 1 FROM deliveries d WHERE d.issue_id = i.id AND (d.state IN ('pending', 'sending', 'deferred') "
            "OR (d.state = 'uncertain' AND (d.next_at IS NULL OR d.next_at < 9e999))))"  # held copies wait for a person
            " ORDER BY i.issue_date")
        return [(e, dt.date.fromisoformat(d)) for e, d in rows]

    def acquire_lease(self, name: str, owner: str, ttl: float, now: float, stale_prefix: str | None = None) -> str | None:
        """Take or renew the lease; None on success, else the live owner that holds it.

        A lease whose owner starts with ``stale_prefix`` is taken over even if unexpired (the
        caller knows that owner is dead).
        """
        self.db.execute("BEGIN IMMEDIATE")
        try:
            row = self.db.execute("SELECT owner, expires_at FROM leases WHERE name = ?", (name,)).fetchone()
            stale = row is not None and stale_prefix is not None and row[0].startswith(stale_prefix)
            if row is not None and row[0] != owner and row[1] > now and not stale:
                self.db.execute("COMMIT")
                return row[0]
            self.db.execute("INSERT INTO leases (name, owner, expires_at) VALUES (?, ?, ?) ON CONFLICT (name) "
                            "DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at", (name, owner, now + ttl))
            self.db.execute("COMMIT")
            return None
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def release_lease(self, name: str, owner: str) -> None:
        self.db.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))

    def lease(self, name: str) -> tuple[str, float] | None:
        """(owner, expires_at) of a lease, if any."""
        row = self.db.execute("SELECT owner, expires_at FROM leases WHERE name = ?", (name,)).fetchone()
        return (row[0], row[1]) if row else None

    def set_mark(self, name: str, value: float) -> None:
        self.db.execute("INSERT INTO marks (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                        (name, value))

    def mark_value(self, name: str) -> float | None:
        row = self.db.execute("SELECT value FROM marks WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None
