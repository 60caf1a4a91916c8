"""The state database: issues, their stories, one delivery row per issue x reader, suppressions.

SQLite by default (``state/digest.sqlite3`` beside digest.toml), PostgreSQL when
``DIGEST_STATE_URL`` names one; read and written only through ``Ledger``'s named methods, in short
transactions (opening a database: schema.py; the tables: migrations/; the drivers: connection.py).
An issue is created once per (edition, date) and its story list is frozen when it is created,
with its composition (the JSON every sender rebuilds its copies from; compose/pipeline.py);
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
its own transaction, so a crash leaves at most the copies in flight in doubt. Each outcome also
records the relay (by name) that gave it, which ``relay_counts`` counts for `digest status`.

Many senders share one issue through claims: a sender takes a batch of due copies with a lease
(``claim``: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, SQLite's single writer elsewhere), renews
it while it works, and clears it as each copy settles. A batch whose lease lapsed (its sender
died) is taken over by the next claim: its ``sending`` copies become ``uncertain`` first.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, StateError, StateQueryError
from ..outcomes import failure_of_record
from .connection import PostgresUrl, StateConnectionLost, StateLocation, shown, sqlalchemy_url, state_location
from .schema import check_state_path, connect, exists, has_column, has_table
from .schema import exists as state_exists

__all__ = ["FINAL", "HELD", "STATES", "BounceChange", "Delivery", "IssueRecord", "Ledger", "PostgresUrl",
           "SentCopy", "StateError", "StateLocation", "StateQueryError", "check_state_path", "job_store", "shown",
           "state_exists", "state_path"]

STATES = ("pending", "sending", "sent", "deferred", "failed", "uncertain", "suppressed", "cancelled")
FINAL = ("sent", "failed", "suppressed", "cancelled")
HELD = float("inf")  # next_at of an uncertain copy that is no longer resent automatically: a person decides


@dataclass(frozen=True, slots=True)
class IssueRecord:
    id: int
    edition: str
    issue_date: dt.date
    story_ids: tuple[str, ...]
    status: str = "open"


@dataclass(frozen=True, slots=True)
class Action:
    """One hold, pause, resume or cancel of an issue, as `digest status` lists it."""

    action: str
    actor: str
    at: float  # epoch seconds
    reason: str | None
    delivered: int | None  # copies sent when it took effect


@dataclass(frozen=True, slots=True)
class Preview:
    """A preview of one composition of an issue, sent to its editors."""

    fingerprint: str
    at: float  # epoch seconds
    to: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Approval:
    """An editor's approval of an issue as it composes to one fingerprint."""

    fingerprint: str
    actor: str
    at: float  # epoch seconds
    via: str  # command | link | desk


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
    first_name: str | None = None  # the greeting's name as read at freeze time ('' none); None: derive
    failure: str | None = None  # failed copies: a key of outcomes.FAILURE_CLASSES (derived for old rows)
    relay: str | None = None  # the relay that gave the last outcome (its name); None: no attempt yet, or an older row


@dataclass(frozen=True, slots=True)
class SentCopy:
    """A copy a bounce report may be about: the reader's address and the issue it belonged to."""

    id: int
    email: str
    key: str
    state: str
    message_id: str | None
    edition: str
    issue_date: str


@dataclass(frozen=True, slots=True)
class BounceChange:
    """What ``Ledger.apply_bounce`` did (or, not writing, would do)."""

    suppressed: bool = False            # the reader is suppressed for every edition from now on
    earlier_reason: str | None = None   # why they already were, when they were
    failed: bool = False                # the copy is marked failed



@dataclass(frozen=True, slots=True)
class Claimed:
    """What one claim took: the copies to send, those of readers who had left (marked 'suppressed'),
    and the last audience position it reached (where the next claim of the pass starts)."""

    due: list[Delivery]
    suppressed: list[Delivery]
    last_id: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one copy, to be recorded (``Ledger.mark``'s arguments)."""

    delivery_id: int
    state: str
    code: int | None
    text: str | None
    next_at: float | None = None
    count_attempt: bool = False
    failure: str | None = None
    relay: str | None = None


@dataclass(frozen=True, slots=True)
class Starting:
    """A copy whose body is about to go: ``Ledger.mark_sending_many`` records it as 'sending'."""

    delivery_id: int
    message_id: str
    key: str  # the reader's address key, for the last look at suppressions


_BATCH = 500  # values per IN (...) list: SQLite allows 32,766 parameters, other backends fewer
_OUTCOME_COLUMNS = "id, state, code, text, next_at, inc, stamp, failure, relay"
_PG_OUTCOME_ROW = ("(?::bigint, ?::text, ?::integer, ?::text, ?::double precision, ?::integer, ?::text, ?::text, "
                   "?::text)")  # PostgreSQL types a VALUES list's columns from its first row: say them
_OUTCOMES_UPDATE = ("UPDATE deliveries SET state = v.state, last_code = v.code, last_text = v.text, next_at = v.next_at, "
                    "attempts = deliveries.attempts + v.inc, updated_at = v.stamp, failure = v.failure, "
                    "relay = coalesce(v.relay, deliveries.relay), claimed_by = NULL, claim_until = NULL "
                    "FROM v WHERE deliveries.id = v.id")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def state_path(url: str | None, default: Path) -> StateLocation:
    """The state named by DIGEST_STATE_URL (a SQLite file or a PostgreSQL URL), else ``default``."""
    return state_location(url, default)


def job_store(state_db: StateLocation) -> dict[str, str]:
    """The scheduler's job store, kept in the state database, as APScheduler's configuration by
    plugin name: the scheduler builds it, so apscheduler stays imported in schedule.py alone and
    only this package knows which driver the database speaks. A new dict each call (APScheduler
    consumes it)."""
    return {"type": "sqlalchemy", "url": sqlalchemy_url(state_db)}


class Ledger:
    """A connection to the state database."""

    def __init__(self, path: StateLocation, *, create: bool = True) -> None:
        self.path = path
        check_state_path(path)
        self.db = connect(path, create=create)
        # A read-only look at a database from an older digest may lack the newer columns.
        self._first_name = "first_name" if has_column(self.db, "deliveries", "first_name") else "NULL"
        self._failure = "failure" if has_column(self.db, "deliveries", "failure") else "NULL"
        self._relay = "relay" if has_column(self.db, "deliveries", "relay") else "NULL"

    @classmethod
    def read_only(cls, path: StateLocation) -> Ledger | None:
        """Open an existing database without writing to it; None when there is none yet.

        A path that cannot be a database (a folder, a device, a file where a folder should be) is
        a ``StateError``, never "nothing sent yet": an operator told that might send again.
        """
        check_state_path(path)
        return cls(path, create=False) if exists(path) else None

    @property
    def shared(self) -> bool:
        """Whether the state is a database server (PostgreSQL) that senders on many machines share."""
        return self.db.postgres

    def close(self) -> None:
        self.db.close()

    def has_table(self, name: str) -> bool:
        """Whether the database has this table: one an older digest left, opened read only, may lack
        the newer ones (and a file that is not ours has none)."""
        return has_table(self.db, name)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction, taken at once (so two senders do not both read and then write)."""
        with self.db.transaction():
            yield

    @property
    def where(self) -> str:
        """The database as an operator should see it named (a URL's password hidden)."""
        return shown(self.path)

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
                     audience: Iterable[tuple[str, ...]] = (),
                     left_out: Iterable[tuple[int, str | None, str]] = (),
                     note: tuple[str, str] | None = None,
                     composition: tuple[int, str, str] | None = None,
                     archive_page: str | None = None) -> tuple[IssueRecord, bool]:
        """Create the issue once, freezing its stories, its note (source, Markdown) and its audience
        of (email, name, key[, first name]), with its composition (format, body, fingerprint) and
        its public page: in one transaction, so no issue is ever found without them.

        A later call returns the first record and ignores its arguments. (record, created now?)
        Readers already suppressed for this edition are recorded as ``suppressed``.
        ``left_out`` lists the subscriber rows that could not be used, as (line, key or None,
        reason); it is read after ``audience`` has been consumed, so a reader of the file may
        fill it while streaming the audience. A row whose address is in the audience anyway
        (a duplicate) is not recorded.
        """
        now = now or dt.datetime.now(dt.timezone.utc)
        with self._transaction():
            existing = self.find_issue(edition, date)
            if existing is not None:
                return existing, False
            issue_id = self.db.execute(
                "INSERT INTO issues (edition, issue_date, send_time, created_at) VALUES (?, ?, ?, ?) RETURNING id",
                (edition, date.isoformat(), send_time.isoformat(), now.isoformat()),
            ).fetchone()[0]
            ids = tuple(story_ids)
            self.db.executemany("INSERT INTO issue_stories (issue_id, position, story_id) VALUES (?, ?, ?)",
                                [(issue_id, n, story_id) for n, story_id in enumerate(ids)])
            if note is not None:
                self.db.execute("INSERT INTO issue_notes (issue_id, source, markdown) VALUES (?, ?, ?)",
                                (issue_id, note[0], note[1]))
            if composition is not None:
                self.keep_composition(issue_id, *composition)
            if archive_page is not None:
                self.keep_archive_page(issue_id, archive_page)
            stamp = now.isoformat()
            self.db.executemany(
                "INSERT INTO deliveries (issue_id, email, name, key, first_name, state, updated_at) "
                "VALUES (?, ?, ?, ?, ?, 'pending', ?)",
                ((issue_id, reader[0], reader[1], reader[2], reader[3] if len(reader) > 3 else None, stamp)
                 for reader in audience),
            )
            self.db.execute(
                "UPDATE deliveries SET state = 'suppressed', last_text = 'suppressed before the issue was created' "
                "WHERE issue_id = ? AND key IN (SELECT key FROM suppressions WHERE edition IN (?, '*'))",
                (issue_id, edition),
            )
            for line, key, reason in left_out:
                if key is None or self.db.execute("SELECT 1 FROM deliveries WHERE issue_id = ? AND key = ?",
                                                  (issue_id, key)).fetchone() is None:
                    self.db.execute("INSERT INTO left_out_rows (issue_id, line, key, reason) VALUES (?, ?, ?, ?) "
                                    "ON CONFLICT DO NOTHING", (issue_id, line, key, reason))
        return IssueRecord(issue_id, edition, date, ids), True

    def issue_note(self, issue_id: int) -> tuple[str, str] | None:
        """(source, Markdown) of the note kept with the issue when it was created; None: it had none.

        An issue created before notes were kept had none (digest showed no notes then).
        """
        if not self.has_table("issue_notes"):
            return None
        row = self.db.execute("SELECT source, markdown FROM issue_notes WHERE issue_id = ?", (issue_id,)).fetchone()
        return (row[0], row[1]) if row is not None else None

    def keep_composition(self, issue_id: int, format: int, body: str, fingerprint: str) -> None:
        """Keep the issue's composition (its format, JSON text and fingerprint) once; a later call
        keeps the first one, so every sender of the issue rebuilds the same copies."""
        self.db.execute("INSERT INTO issue_compositions (issue_id, format, body, fingerprint, stored_at) "
                        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (issue_id) DO NOTHING",
                        (issue_id, format, body, fingerprint, _now()))

    def composition(self, issue_id: int) -> tuple[int, str, str] | None:
        """(format, body, fingerprint) kept with the issue; None for an issue an older digest created
        (a read-only database from before compositions were kept has no table for them)."""
        if not self.has_table("issue_compositions"):
            return None
        row = self.db.execute("SELECT format, body, fingerprint FROM issue_compositions WHERE issue_id = ?",
                              (issue_id,)).fetchone()
        return (row[0], row[1], row[2]) if row is not None else None

    def left_out(self, issue_id: int, *, pending_only: bool = False) -> list[tuple[int, str | None, str, str | None]]:
        """Subscriber rows the audience freeze could not use: (line, key, reason, added_at), by line.

        ``pending_only``: only those whose reader has not been added since.
        """
        if not self.has_table("left_out_rows"):
            return []
        query = "SELECT line, key, reason, added_at FROM left_out_rows WHERE issue_id = ?"
        if pending_only:
            query += " AND added_at IS NULL"
        return list(self.db.execute(query + " ORDER BY line", (issue_id,)))

    def add_fixed_readers(self, issue_id: int, edition: str, readers: Iterable[tuple[str, ...]]) -> int:
        """Add to the issue each of ``readers`` (email, name, key[, first name]) whose row was left
        out when its audience was frozen and who is not in it yet. Returns how many were added.

        Matched by address: a reader new to the file since the freeze is not added (the next
        issue has them); a row whose address could not be read cannot be matched.
        """
        waiting = {key for _, key, _, _ in self.left_out(issue_id, pending_only=True) if key is not None}
        if not waiting:
            return 0
        stamp = _now()
        added = 0
        with self._transaction():
            for reader in readers:
                key = reader[2]
                if key not in waiting:
                    continue
                waiting.discard(key)
                cursor = self.db.execute(
                    "INSERT INTO deliveries (issue_id, email, name, key, first_name, state, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, 'pending', ?) ON CONFLICT (issue_id, key) DO NOTHING",
                    (issue_id, reader[0], reader[1], key, reader[3] if len(reader) > 3 else None, stamp))
                added += cursor.rowcount
                self.db.execute("UPDATE left_out_rows SET added_at = ? WHERE issue_id = ? AND key = ? AND added_at IS NULL",
                                (stamp, issue_id, key))
            self.db.execute(
                "UPDATE deliveries SET state = 'suppressed', last_text = 'suppressed before the reader was added' "
                "WHERE issue_id = ? AND state = 'pending' AND updated_at = ? AND key IN "
                "(SELECT key FROM suppressions WHERE edition IN (?, '*'))", (issue_id, stamp, edition))
        return added

    # --- deliveries -------------------------------------------------------------------------

    def recover_interrupted(self, issue_id: int, now: float, dead: Iterable[str] = ()) -> int:
        """Mark copies left in ``sending`` by a sender that died as ``uncertain``. Returns how many.

        A copy a live sender holds (its claim's lease not lapsed at ``now``) is left alone, unless
        its holder is one of ``dead`` (senders known to have stopped: see ``sending_owners``).
        """
        gone = tuple(dead)
        if gone:  # what a stopped sender held and had not started is free again at once
            self.db.execute(f"UPDATE deliveries SET claimed_by = NULL, claim_until = NULL WHERE issue_id = ? "
                            f"AND state <> 'sending' AND claimed_by IN ({','.join('?' * len(gone))})", (issue_id, *gone))
        cursor = self.db.execute(
            "UPDATE deliveries SET state = 'uncertain', last_text = 'sender stopped during delivery; outcome unknown', "
            "updated_at = ?, claimed_by = NULL, claim_until = NULL WHERE issue_id = ? AND state = 'sending' "
            f"AND (claim_until IS NULL OR claim_until < ?{' OR claimed_by IN (' + ','.join('?' * len(gone)) + ')' if gone else ''})",
            (_now(), issue_id, now, *gone))
        return cursor.rowcount

    def claim_owners(self, issue_id: int) -> list[str]:
        """The senders holding copies of this issue (their names are host:pid:n)."""
        # "+issue_id": look the few claimed rows up by their claims index, never the issue's whole
        # audience (a scan per claim made a million-reader send quadratic).
        rows = self.db.execute("SELECT DISTINCT claimed_by FROM deliveries WHERE claimed_by IS NOT NULL "
                               "AND +issue_id = ?", (issue_id,))
        return [row[0] for row in rows]

    def abandon(self, owner: str) -> int:
        """``owner`` gave up copies it had started (stopped mid-delivery): they are in doubt now."""
        return self.db.execute(
            "UPDATE deliveries SET state = 'uncertain', last_text = 'sender stopped during delivery; outcome unknown', "
            "updated_at = ?, claimed_by = NULL, claim_until = NULL WHERE claimed_by = ? AND state = 'sending'",
            (_now(), owner)).rowcount

    def claim(self, issue_id: int, owner: str, now: float, lease: float, *, include_uncertain: bool,
              limit: int = 200, dead: Iterable[str] = (), after_id: int = 0,
              edition: str | None = None) -> Claimed:
        """Take up to ``limit`` copies due now that no live sender holds, for ``lease`` seconds, in
        audience order from ``after_id`` on (a pass tries each copy once). Copies whose sender died
        mid-delivery become ``uncertain`` first.

        With ``edition``, the claimed copies of readers who left that edition (or every edition)
        since the audience was frozen are marked 'suppressed' in the same transaction, and
        counted apart: they are never named to a relay. (``mark_sending`` looks once more, for a
        reader who leaves while the batch is being sent.)

        Only an open issue's copies are handed out: a paused or finished one gives none.
        """
        states = ("pending", "deferred", "uncertain") if include_uncertain else ("pending", "deferred")
        for attempt in range(3):
            try:
                with self.db.transaction(serialised=False):
                    self.recover_interrupted(issue_id, now, dead)
                    # SQLite: "+" keeps the planner off the state index, whose rows it would sort
                    # whole for every batch; audience order from after_id on stops at `limit`.
                    plain = "" if self.db.postgres else "+"
                    rows = self.db.execute(
                        f"UPDATE deliveries SET claimed_by = ?, claim_until = ? WHERE id IN (SELECT id FROM deliveries "
                        f"WHERE {plain}issue_id = ? AND id > ? AND {plain}state IN ({','.join('?' * len(states))}) AND (next_at IS NULL OR next_at <= ?) "
                        "AND (claim_until IS NULL OR claim_until < ?) AND EXISTS (SELECT 1 FROM issues "
                        "WHERE issues.id = ? AND issues.status = 'open') ORDER BY id LIMIT ?"
                        f"{' FOR UPDATE SKIP LOCKED' if self.db.postgres else ''}) "
                        "RETURNING id, email, name, state, attempts, message_id, first_name",
                        (owner, now + lease, issue_id, after_id, *states, now, now, issue_id, limit)).fetchall()
                due = sorted((Delivery(*row[:6], first_name=row[6]) for row in rows), key=lambda d: d.id)
                left: set[int] = set()
                if due and edition is not None:
                    left = {row[0] for row in self.db.execute(
                        "UPDATE deliveries SET state = 'suppressed', last_code = NULL, last_text = 'left before this "
                        "copy went', next_at = NULL, updated_at = ?, failure = NULL, claimed_by = NULL, claim_until = NULL "
                        f"WHERE claimed_by = ? AND id >= ? AND id <= ? AND state IN ({','.join('?' * len(states))}) "
                        "AND EXISTS (SELECT 1 FROM suppressions WHERE suppressions.key = deliveries.key "
                        "AND suppressions.edition IN (?, '*')) RETURNING id",
                        (_now(), owner, due[0].id, due[-1].id, *states, edition)).fetchall()}
                return Claimed([d for d in due if d.id not in left], [d for d in due if d.id in left],
                               due[-1].id if due else after_id)
            except StateConnectionLost:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def renew_claims(self, owner: str, until: float) -> int:
        """Extend the lease on every copy ``owner`` holds; how many it holds."""
        return self.db.execute("UPDATE deliveries SET claim_until = ? WHERE claimed_by = ?", (until, owner)).rowcount

    def release_claims(self, owner: str) -> int:
        """Give back the copies ``owner`` holds and has not started (a copy in ``sending`` keeps its claim:
        whether it arrived is unknown until its lease lapses)."""
        return self.db.execute("UPDATE deliveries SET claimed_by = NULL, claim_until = NULL "
                               "WHERE claimed_by = ? AND state <> 'sending'", (owner,)).rowcount

    def held_by_others(self, issue_id: int, owner: str) -> int:
        """How many unsettled copies of the issue other senders hold: being sent elsewhere, or (a
        lapsed lease) waiting for the next claim to take them over or mark them in doubt."""
        row = self.db.execute(
            "SELECT COUNT(*) FROM deliveries WHERE +issue_id = ? AND claimed_by IS NOT NULL AND claimed_by <> ? "
            "AND state IN ('pending', 'deferred', 'uncertain', 'sending') "
            "AND EXISTS (SELECT 1 FROM issues WHERE issues.id = ? AND issues.status = 'open')",  # paused: wait for no one
            (issue_id, owner, issue_id)).fetchone()
        return row[0]

    def issues_with_work(self, now: float, *, include_uncertain: bool) -> list[int]:
        """Open issues with copies due now that no live sender holds, oldest issue first."""
        states = "('pending', 'deferred', 'uncertain')" if include_uncertain else "('pending', 'deferred')"
        rows = self.db.execute(
            "SELECT i.id FROM issues i WHERE i.status = 'open' AND EXISTS (SELECT 1 FROM deliveries d "
            f"WHERE d.issue_id = i.id AND ((d.state IN {states} AND (d.next_at IS NULL OR d.next_at <= ?) "
            "AND (d.claim_until IS NULL OR d.claim_until < ?)) OR (d.state = 'sending' AND d.claim_until < ?))) "
            "ORDER BY i.id", (now, now, now))
        return [row[0] for row in rows]

    def issue_by_id(self, issue_id: int) -> tuple[IssueRecord, str] | None:
        """(record, send time as recorded) of the issue with this id, if it exists."""
        row = self.db.execute("SELECT edition, issue_date, send_time FROM issues WHERE id = ?", (issue_id,)).fetchone()
        if row is None:
            return None
        record = self.find_issue(row[0], dt.date.fromisoformat(row[1]))
        assert record is not None
        return record, row[2]

    def beat(self, worker: str, now: float, issue_id: int | None, sent: int, started_at: str) -> None:
        """Record that sender ``worker`` is alive (for ``digest status``)."""
        self.db.execute("INSERT INTO workers (name, started_at, seen_at, issue_id, sent) VALUES (?, ?, ?, ?, ?) "
                        "ON CONFLICT (name) DO UPDATE SET seen_at = excluded.seen_at, issue_id = excluded.issue_id, "
                        "sent = excluded.sent", (worker, started_at, now, issue_id, sent))

    def forget_worker(self, worker: str) -> None:
        self.db.execute("DELETE FROM workers WHERE name = ?", (worker,))

    def workers(self, since: float) -> list[tuple[str, float, int | None, int]]:
        """Senders seen since ``since``: (name, last seen, issue id, copies sent), by name."""
        if not self.has_table("workers"):
            return []
        return [tuple(row) for row in self.db.execute(  # type: ignore[misc]
            "SELECT name, seen_at, issue_id, sent FROM workers WHERE seen_at >= ? ORDER BY name", (since,))]

    def due(self, issue_id: int, now: float, *, include_uncertain: bool, after_id: int = 0, limit: int = 1000) -> list[Delivery]:
        """Copies to attempt now, in audience order, from ``after_id`` on."""
        states = ("pending", "deferred", "uncertain") if include_uncertain else ("pending", "deferred")
        rows = self.db.execute(
            f"SELECT id, email, name, state, attempts, message_id, {self._first_name} FROM deliveries WHERE issue_id = ? AND id > ? "
            f"AND state IN ({','.join('?' * len(states))}) AND (next_at IS NULL OR next_at <= ?) ORDER BY id LIMIT ?",
            (issue_id, after_id, *states, now, limit),
        )
        return [Delivery(*row[:6], first_name=row[6]) for row in rows]

    def next_retry_at(self, issue_id: int, *, include_uncertain: bool = False) -> float | None:
        """When the earliest deferred (and, if asked, uncertain but not held) copy may be tried again;
        0 for one due at once (a copy found in doubt after the pass had gone by it)."""
        states = "('deferred', 'uncertain')" if include_uncertain else "('deferred')"
        row = self.db.execute(f"SELECT MIN(coalesce(next_at, 0)) FROM deliveries WHERE issue_id = ? AND state IN {states} "
                              "AND (next_at IS NULL OR next_at < ?)", (issue_id, HELD)).fetchone()
        return row[0]

    def mark_sending(self, delivery_id: int, message_id: str, key: str, edition: str, owner: str | None = None,
                     *, outcomes: Sequence[Outcome] = ()) -> str:
        """Committed before the DATA body goes: a crash from here on leaves the copy in doubt.

        In the same statement the reader's suppressions are checked once more, and (``owner``) that
        the copy is still this sender's: one whose lease lapsed while it stalled may have been
        taken over. Returns 'sending'; 'suppressed' (and the copy marked so) when the reader left
        after the copy was queued; 'taken' when another sender holds it now (nothing changed).

        ``outcomes`` (of copies this sender finished since its last commit) are written in the
        same transaction: one commit per copy, not two.
        """
        return self.mark_sending_many([Starting(delivery_id, message_id, key)], edition, owner, outcomes=outcomes)[0]

    def mark_sending_many(self, starting: Sequence[Starting], edition: str, owner: str | None = None,
                          *, outcomes: Sequence[Outcome] = ()) -> list[str]:
        """``mark_sending`` for several copies (of one edition and sender) in one statement and one
        commit: copies whose bodies are about to go on different connections at once. One result
        per copy, in order."""
        if not starting:
            return []
        stamp = _now()
        still_ours = ("AND deliveries.claimed_by = ? ", (owner,)) if owner is not None else ("", ())
        # The issue must still be open: once `digest pause`, `hold` or `cancel` has committed, no
        # copy of it starts, in any process on any machine.
        suppressed = "AND EXISTS (SELECT 1 FROM issues WHERE issues.id = deliveries.issue_id AND issues.status = 'open') " \
                     "AND NOT EXISTS (SELECT 1 FROM suppressions WHERE suppressions.key = {key} " \
                     "AND suppressions.edition IN (?, '*')) RETURNING deliveries.id"
        if len(starting) == 1:  # the values inline: a one-row VALUES list costs SQLite a quarter more
            (one,) = starting
            marks = ""
            sending = ("UPDATE deliveries SET state = 'sending', message_id = ?, attempts = deliveries.attempts + 1, "
                       f"updated_at = ?, sent_by = ? WHERE deliveries.id = ? {still_ours[0]}{suppressed.format(key='?')}")
            params: list[object] = [one.message_id, stamp, owner, one.delivery_id, *still_ours[1], one.key, edition]
        else:
            row = "(?::bigint, ?::text, ?::text)" if self.db.postgres else "(?, ?, ?)"
            marks = f"m(id, message_id, key) AS (VALUES {', '.join([row] * len(starting))})"
            sending = ("UPDATE deliveries SET state = 'sending', message_id = m.message_id, "
                       "attempts = deliveries.attempts + 1, updated_at = ?, sent_by = ? FROM m "
                       f"WHERE deliveries.id = m.id {still_ours[0]}{suppressed.format(key='m.key')}")
            params = [value for s in starting for value in (s.delivery_id, s.message_id, s.key)]
            params += (stamp, owner, *still_ours[1], edition)
        if outcomes and self.db.postgres:  # one statement, one round trip: the outcomes ride along as CTEs
            values, outcome_params = self._outcome_values(outcomes, stamp)
            done = f"done AS ({_OUTCOMES_UPDATE} RETURNING 1)"
            rows = self.db.execute(f"{values}, {done}{', ' + marks if marks else ''} {sending}",
                                   (*outcome_params, *params)).fetchall()
        else:
            with self.db.transaction(serialised=False) if outcomes else nullcontext():
                if outcomes:
                    self._write_outcomes(outcomes, stamp)
                rows = self.db.execute(f"WITH {marks} {sending}" if marks else sending, params).fetchall()
        went = {r[0] for r in rows}  # all rows fetched: a SQLite statement left unfinished keeps its lock
        return [("sending" if s.delivery_id in went else self._not_sending(s, edition, owner, stamp)) for s in starting]

    def _not_sending(self, starting: Starting, edition: str, owner: str | None, stamp: str) -> str:
        """Why a copy was not marked 'sending': 'stopped' (its issue is no longer open: held,
        paused or cancelled; nothing changed), 'taken' by another sender, or 'suppressed' (marked so)."""
        row = self.db.execute("SELECT i.status FROM deliveries d JOIN issues i ON i.id = d.issue_id WHERE d.id = ?",
                              (starting.delivery_id,)).fetchone()
        if row is not None and row[0] != "open":
            return "stopped"
        if owner is not None and not self.is_suppressed(starting.key, edition):
            return "taken"
        self.db.execute("UPDATE deliveries SET state = 'suppressed', last_text = 'left before this copy went', "
                        "updated_at = ? WHERE id = ?", (stamp, starting.delivery_id))
        return "suppressed"

    def mark(self, delivery_id: int, state: str, code: int | None, text: str | None, *,
             next_at: float | None = None, count_attempt: bool = False, failure: str | None = None,
             relay: str | None = None) -> None:
        """Record an outcome (committed at once); ``failure`` says why a failed copy failed, ``relay``
        which relay gave it (None keeps the one recorded, e.g. for a bounce that arrives later)."""
        self.record_outcomes([Outcome(delivery_id, state, code, text, next_at, count_attempt, failure, relay)])

    def record_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        """Record several outcomes at once (a sender's finished copies since its last commit)."""
        self._write_outcomes(outcomes, _now())

    def _write_outcomes(self, outcomes: Sequence[Outcome], stamp: str) -> None:
        for start in range(0, len(outcomes), _BATCH):
            values, params = self._outcome_values(outcomes[start:start + _BATCH], stamp)
            self.db.execute(f"{values} {_OUTCOMES_UPDATE}", params)

    def _outcome_values(self, outcomes: Sequence[Outcome], stamp: str) -> tuple[str, list[object]]:
        """``WITH v(...) AS (VALUES ...)`` for ``_OUTCOMES_UPDATE``, and its parameters."""
        params: list[object] = []
        for o in outcomes:
            if o.state not in STATES:
                raise ValueError(o.state)
            failure = (o.failure or failure_of_record(o.code, o.text)) if o.state == "failed" else None
            params += (o.delivery_id, o.state, o.code, o.text, o.next_at, 1 if o.count_attempt else 0, stamp, failure,
                       o.relay)
        row = _PG_OUTCOME_ROW if self.db.postgres else "(?, ?, ?, ?, ?, ?, ?, ?, ?)"
        return f"WITH v({_OUTCOME_COLUMNS}) AS (VALUES {', '.join([row] * len(outcomes))})", params

    def expire_deferred(self, issue_id: int, reason: str, failure: str = "deadline") -> int:
        """Give up on every deferred copy (deadline or attempts exhausted); they become failed."""
        cursor = self.db.execute(
            "UPDATE deliveries SET state = 'failed', last_text = ? || coalesce(' (last reply: ' || last_text || ')', ''), "
            "next_at = NULL, updated_at = ?, failure = ? WHERE issue_id = ? AND state = 'deferred'",
            (reason, _now(), failure, issue_id))
        return cursor.rowcount

    def counts(self, issue_id: int) -> dict[str, int]:
        """Copies per state (every state present, zero when none)."""
        found = dict(self.db.execute("SELECT state, COUNT(*) FROM deliveries WHERE issue_id = ? GROUP BY state", (issue_id,)))
        return {state: found.get(state, 0) for state in STATES}

    def deliveries(self, issue_id: int, states: Iterable[str] | None = None) -> list[Delivery]:
        """Every copy of an issue (optionally only some states), in audience order."""
        query = ("SELECT id, email, name, state, attempts, message_id, last_code, last_text, updated_at, next_at, "
                 f"{self._first_name}, {self._failure}, {self._relay} FROM deliveries WHERE issue_id = ?")
        args: list[object] = [issue_id]
        if states is not None:
            wanted = tuple(states)
            query += f" AND state IN ({','.join('?' * len(wanted))})"
            args += wanted
        found = []
        for row in self.db.execute(query + " ORDER BY id", args):
            delivery = Delivery(*row)
            if delivery.state == "failed" and delivery.failure is None:  # a row from before classes were kept
                delivery = dataclasses.replace(delivery, failure=failure_of_record(delivery.last_code, delivery.last_text))
            found.append(delivery)
        return found

    def failure_counts(self, issue_id: int) -> dict[str, int]:
        """Failed copies per failure class (only the classes present)."""
        counts: dict[str, int] = {}
        for delivery in self.deliveries(issue_id, ["failed"]):
            counts[delivery.failure or "permanent"] = counts.get(delivery.failure or "permanent", 0) + 1
        return counts

    def relay_counts(self, issue_id: int) -> dict[str, dict[str, int]]:
        """Copies per relay that gave their last outcome, and per state: ``{"mx-a": {"sent": 9, ...}}``.

        Copies no relay has answered for (pending, suppressed before sending) are not counted, nor
        rows from before relays were recorded.
        """
        if self._relay == "NULL":  # a read-only look at a database from before the column
            return {}
        found: dict[str, dict[str, int]] = {}
        rows = self.db.execute("SELECT relay, state, COUNT(*) FROM deliveries WHERE issue_id = ? AND relay IS NOT NULL "
                               "GROUP BY relay, state ORDER BY relay", (issue_id,))
        for relay, state, count in rows:
            found.setdefault(relay, {})[state] = count
        return found

    def sender_counts(self, issue_id: int) -> dict[str, int]:
        """Copies sent per sender of the last attempt (``sent_by``), for an issue several processes sent."""
        if not has_column(self.db, "deliveries", "sent_by"):
            return {}
        rows = self.db.execute("SELECT sent_by, COUNT(*) FROM deliveries WHERE issue_id = ? AND state = 'sent' "
                               "AND sent_by IS NOT NULL GROUP BY sent_by", (issue_id,))
        return dict(rows)  # type: ignore[arg-type]

    def deadline(self, issue_id: int) -> float | None:
        """The deadline an operator gave the issue (``digest send --deadline``), or None: the computed one."""
        try:
            row = self.db.execute("SELECT deadline FROM issues WHERE id = ?", (issue_id,)).fetchone()
        except StateError:  # a read-only database from before the column
            return None
        return row[0] if row else None

    def set_deadline(self, issue_id: int, deadline: float) -> None:
        """Record a new delivery deadline for the issue; every later run keeps to it."""
        self.db.execute("UPDATE issues SET deadline = ? WHERE id = ?", (deadline, issue_id))

    def reopen(self, issue_id: int) -> None:
        """An issue paused (by the circuit breaker) or done (readers were added since) is open again;
        a held or cancelled one is not."""
        self.db.execute("UPDATE issues SET status = 'open', note = NULL WHERE id = ? AND status IN ('paused', 'done')",
                        (issue_id,))

    def finish_issue(self, issue_id: int) -> None:
        """An open issue whose every copy has settled is done."""
        self.db.execute("UPDATE issues SET status = 'done' WHERE id = ? AND status = 'open'", (issue_id,))

    def set_status(self, issue_id: int, status: str, note: str | None = None) -> None:
        self.db.execute("UPDATE issues SET status = ?, note = ? WHERE id = ?", (status, note, issue_id))

    # --- editors' actions: hold, pause, resume, cancel ----------------------------------------

    def record_action(self, edition: str, date: dt.date, action: str, actor: str, reason: str | None,
                      *, status: str | None = None, delivered: int | None = None) -> Action:
        """Record an editor's action on issue (edition, date) and, with ``status``, set the issue's
        status in the same transaction (an issue not created yet keeps only the record)."""
        now = time.time()
        with self.db.transaction(serialised=False):
            if status is not None:
                self.db.execute("UPDATE issues SET status = ?, note = ? WHERE edition = ? AND issue_date = ?",
                                (status, f"{action} by {actor}" + (f": {reason}" if reason else ""),
                                 edition, date.isoformat()))
            self.db.execute("INSERT INTO issue_actions (edition, issue_date, action, actor, at, reason, delivered) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?)", (edition, date.isoformat(), action, actor, now, reason, delivered))
        return Action(action, actor, now, reason, delivered)

    def actions(self, edition: str, date: dt.date) -> list[Action]:
        """Every recorded action on issue (edition, date), oldest first (none on an older database)."""
        if not self.has_table("issue_actions"):
            return []
        rows = self.db.execute("SELECT action, actor, at, reason, delivered FROM issue_actions "
                               "WHERE edition = ? AND issue_date = ? ORDER BY id", (edition, date.isoformat()))
        return [Action(*row) for row in rows]

    def released_holds(self) -> list[tuple[str, dt.date]]:
        """(edition, date) held before the issue existed and resumed since, still with no issue:
        the scheduler sends them (its own fire time for them has passed)."""
        rows = self.db.execute(
            "SELECT a.edition, a.issue_date FROM issue_actions a WHERE a.id = (SELECT max(b.id) FROM issue_actions b "
            "WHERE b.edition = a.edition AND b.issue_date = a.issue_date) AND a.action = 'resume' AND NOT EXISTS "
            "(SELECT 1 FROM issues i WHERE i.edition = a.edition AND i.issue_date = a.issue_date) ORDER BY a.issue_date")
        return [(e, dt.date.fromisoformat(d)) for e, d in rows]

    def cancel_copies(self, issue_id: int) -> int:
        """Every copy of the issue not yet started becomes 'cancelled' (final); how many."""
        return self.db.execute(
            "UPDATE deliveries SET state = 'cancelled', last_text = 'the issue was cancelled before this copy went', "
            "next_at = NULL, updated_at = ?, claimed_by = NULL, claim_until = NULL "
            "WHERE issue_id = ? AND state IN ('pending', 'deferred', 'uncertain')", (_now(), issue_id)).rowcount

    # --- approval: proposals shown to editors, approvals, single-use links -------------------

    def keep_proposal(self, edition: str, date: dt.date, fingerprint: str, format: int, body: str,
                      checksum: str) -> None:
        """Keep a composition of issue (edition, date) that editors are shown; once per fingerprint
        (the first one kept is the one an approval of that fingerprint creates the issue with)."""
        self.db.execute(
            "INSERT INTO issue_proposals (edition, issue_date, fingerprint, format, body, checksum, composed_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (edition, issue_date, fingerprint) DO NOTHING",
            (edition, date.isoformat(), fingerprint, format, body, checksum, time.time()))

    def proposal(self, edition: str, date: dt.date, fingerprint: str) -> tuple[int, str, str] | None:
        """The kept composition (format, body, checksum) of that fingerprint, or None."""
        if not self.has_table("issue_proposals"):
            return None
        row = self.db.execute("SELECT format, body, checksum FROM issue_proposals WHERE edition = ? "
                              "AND issue_date = ? AND fingerprint = ?", (edition, date.isoformat(), fingerprint)).fetchone()
        return (int(row[0]), row[1], row[2]) if row else None

    def has_proposal(self, edition: str, date: dt.date) -> bool:
        """Whether issue (edition, date) was composed for editors (previewed, approved or held for approval)."""
        if not self.has_table("issue_proposals"):
            return False
        return self.db.execute("SELECT 1 FROM issue_proposals WHERE edition = ? AND issue_date = ? LIMIT 1",
                               (edition, date.isoformat())).fetchone() is not None

    def mark_previewed(self, edition: str, date: dt.date, fingerprint: str, to: tuple[str, ...]) -> None:
        """A preview of that kept proposal went to ``to``."""
        self.db.execute("UPDATE issue_proposals SET previewed_at = ?, previewed_to = ? WHERE edition = ? "
                        "AND issue_date = ? AND fingerprint = ?",
                        (time.time(), ",".join(to), edition, date.isoformat(), fingerprint))

    def previews(self, edition: str, date: dt.date) -> list[Preview]:
        """The previews sent of issue (edition, date), oldest first."""
        if not self.has_table("issue_proposals"):
            return []
        rows = self.db.execute("SELECT fingerprint, previewed_at, previewed_to FROM issue_proposals WHERE edition = ? "
                               "AND issue_date = ? AND previewed_at IS NOT NULL ORDER BY previewed_at",
                               (edition, date.isoformat()))
        return [Preview(f, at, tuple(to.split(",")) if to else ()) for f, at, to in rows]

    def record_approval(self, edition: str, date: dt.date, fingerprint: str, actor: str, via: str) -> Approval:
        """Record that ``actor`` approved issue (edition, date) as it composes to ``fingerprint``."""
        now = time.time()
        self.db.execute("INSERT INTO issue_approvals (edition, issue_date, fingerprint, actor, at, via) "
                        "VALUES (?, ?, ?, ?, ?, ?)", (edition, date.isoformat(), fingerprint, actor, now, via))
        return Approval(fingerprint, actor, now, via)

    def approvals(self, edition: str, date: dt.date) -> list[Approval]:
        """Every approval of issue (edition, date), oldest first (none on an older database)."""
        if not self.has_table("issue_approvals"):
            return []
        rows = self.db.execute("SELECT fingerprint, actor, at, via FROM issue_approvals WHERE edition = ? "
                               "AND issue_date = ? ORDER BY id", (edition, date.isoformat()))
        return [Approval(*row) for row in rows]

    def link_used(self, nonce: str) -> bool:
        """Whether a single-use link with this nonce has been used."""
        if not self.has_table("used_links"):
            return False
        return self.db.execute("SELECT 1 FROM used_links WHERE nonce = ?", (nonce,)).fetchone() is not None

    def use_link(self, nonce: str, purpose: str) -> bool:
        """Spend a single-use link: True the first time its nonce is seen, False ever after."""
        return self.db.execute("INSERT INTO used_links (nonce, purpose, used_at) VALUES (?, ?, ?) "
                               "ON CONFLICT (nonce) DO NOTHING", (nonce, purpose, time.time())).rowcount == 1

    # --- suppressions -----------------------------------------------------------------------

    def suppress(self, key: str, edition: str, reason: str, detail: str | None = None) -> None:
        """Stop sending ``edition`` (or ``'*'``: every edition) to this address. Idempotent."""
        self.db.execute(
            "INSERT INTO suppressions (key, edition, reason, detail, created_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (key, edition) DO NOTHING", (key, edition, reason, detail, _now()))

    def is_suppressed(self, key: str, edition: str) -> bool:
        """Whether this address is suppressed for ``edition``, by itself or by every edition (``'*'``)."""
        row = self.db.execute("SELECT 1 FROM suppressions WHERE key = ? AND edition IN (?, '*') LIMIT 1", (key, edition)).fetchone()
        return row is not None

    def suppression_reason(self, key: str, edition: str) -> str | None:
        """Why this address is suppressed for exactly ``edition`` (``'*'``: every edition), or None."""
        row = self.db.execute("SELECT reason FROM suppressions WHERE key = ? AND edition = ?", (key, edition)).fetchone()
        return row[0] if row is not None else None

    def suppressions(self) -> list[tuple[str, str, str]]:
        """Every suppression as (key, edition or ``'*'``, reason), in the order they were recorded."""
        return list(self.db.execute("SELECT key, edition, reason FROM suppressions"))

    # --- bounces ----------------------------------------------------------------------------

    def copies_by_message_id(self, message_ids: Iterable[str]) -> dict[str, list[SentCopy]]:
        """The copies that carried each of these Message-IDs, newest issue first."""
        return self._copies("message_id", message_ids)

    def copies_by_id(self, ids: Iterable[int]) -> dict[int, SentCopy]:
        """The copies with these ledger ids (a VERP token names one), those that exist."""
        return {i: copies[0] for i, copies in self._copies("id", ids).items()}

    def copies_to_addresses(self, keys: Iterable[str]) -> dict[str, list[SentCopy]]:
        """The copies attempted to each of these addresses (casefolded keys), newest issue first."""
        return self._copies("key", keys)

    def _copies(self, column: str, values: Iterable) -> dict:
        # A few scans in batches of _BATCH values, not one query per bounce report.
        found: dict[str, list[SentCopy]] = {}
        wanted = sorted(set(values))
        extra = " AND d.message_id IS NOT NULL" if column in ("key", "id") else ""  # only copies that went
        for start in range(0, len(wanted), _BATCH):
            chunk = wanted[start:start + _BATCH]
            rows = self.db.execute(
                "SELECT d.id, d.email, d.key, d.state, d.message_id, i.edition, i.issue_date "
                f"FROM deliveries d JOIN issues i ON i.id = d.issue_id WHERE d.{column} IN ({','.join('?' * len(chunk))})"
                f"{extra} ORDER BY i.issue_date DESC, d.id DESC", chunk)
            for row in rows:
                copy = SentCopy(*row)
                found.setdefault(getattr(copy, column), []).append(copy)
        return found

    def apply_bounce(self, copy: SentCopy, *, suppress: str | None, fail: tuple[int | None, str] | None,
                     reason: str = "bounced", complaint: tuple[str, str] | None = None,
                     write: bool = True) -> BounceChange:
        """Act on a bounce or complaint matched to ``copy``, in one transaction.

        ``suppress`` (a detail): suppress the reader for every edition with ``reason``, unless they
        already are. ``fail`` (code, text): mark the copy failed, if the ledger still has it as
        ``sent`` or ``uncertain``. ``complaint`` (Feedback-Type, where it was read): record it
        against the copy, once. With ``write=False`` nothing is written and the change says what
        would have been done.
        """
        if suppress is None and fail is None and complaint is None:
            return BounceChange()
        if not write:
            return self._bounce_change(copy, suppress, fail)
        with self._transaction():
            change = self._bounce_change(copy, suppress, fail)
            if change.suppressed:
                self.suppress(copy.key, "*", reason, suppress)
            if change.failed and fail is not None:
                self.mark(copy.id, "failed", fail[0], fail[1])
            if complaint is not None:
                self.db.execute("INSERT INTO complaints (delivery_id, feedback_type, source, received_at) "
                                "VALUES (?, ?, ?, ?) ON CONFLICT (delivery_id) DO NOTHING",
                                (copy.id, complaint[0][:100], complaint[1][:500], _now()))
        return change

    def complaint_count(self, issue_id: int) -> int:
        """How many readers of this issue complained (marked it as spam), as ARF reports said."""
        row = self.db.execute("SELECT count(*) FROM complaints c JOIN deliveries d ON d.id = c.delivery_id "
                              "WHERE d.issue_id = ?", (issue_id,)).fetchone()
        return int(row[0]) if row else 0

    def _bounce_change(self, copy: SentCopy, suppress: str | None, fail: tuple[int | None, str] | None) -> BounceChange:
        earlier = self.suppression_reason(copy.key, "*") if suppress is not None else None
        failed = False
        if fail is not None:
            row = self.db.execute("SELECT state FROM deliveries WHERE id = ?", (copy.id,)).fetchone()
            failed = row is not None and row[0] in ("sent", "uncertain")
        return BounceChange(suppressed=suppress is not None and earlier is None, earlier_reason=earlier, failed=failed)


    # --- the public archive -----------------------------------------------------------------

    def has_archive_page(self, issue_id: int) -> bool:
        return self.db.execute("SELECT 1 FROM archive_pages WHERE issue_id = ?", (issue_id,)).fetchone() is not None

    def keep_archive_page(self, issue_id: int, html: str) -> None:
        """Store the issue's public page once; a later call keeps the first one."""
        self.db.execute("INSERT INTO archive_pages (issue_id, html, stored_at) VALUES (?, ?, ?) "
                        "ON CONFLICT (issue_id) DO NOTHING", (issue_id, html, _now()))

    def public_issue(self, edition: str, date: dt.date) -> tuple[bool, str | None]:
        """(was a copy sent?, its stored public page or None) for the archive; a cancelled issue is
        never shown (it was stopped for a reason). Reads only."""
        row = self.db.execute(
            "SELECT i.id FROM issues i WHERE i.edition = ? AND i.issue_date = ? AND i.status <> 'cancelled' AND EXISTS "
            "(SELECT 1 FROM deliveries d WHERE d.issue_id = i.id AND d.state = 'sent')",
            (edition, date.isoformat())).fetchone()
        if row is None:
            return False, None
        if not self.has_table("archive_pages"):
            return True, None
        page = self.db.execute("SELECT html FROM archive_pages WHERE issue_id = ?", (row[0],)).fetchone()
        return True, page[0] if page else None

    def public_dates(self, edition: str, limit: int = 1000) -> list[dt.date]:
        """Dates of the edition's issues the archive can show (a copy sent, a page kept), newest first."""
        if not self.has_table("archive_pages"):
            return []
        rows = self.db.execute(
            "SELECT i.issue_date FROM issues i JOIN archive_pages a ON a.issue_id = i.id WHERE i.edition = ? AND "
            "i.status <> 'cancelled' AND EXISTS (SELECT 1 FROM deliveries d WHERE d.issue_id = i.id AND d.state = 'sent') "
            "ORDER BY i.issue_date DESC LIMIT ?", (edition, limit))
        return [dt.date.fromisoformat(row[0]) for row in rows]

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
            "OR (d.state = 'uncertain' AND (d.next_at IS NULL OR d.next_at < ?))))"  # held copies wait for a person
            " ORDER BY i.issue_date", (HELD,))
        return [(e, dt.date.fromisoformat(d)) for e, d in rows]

    def acquire_lease(self, name: str, owner: str, ttl: float, now: float, stale_prefix: str | None = None) -> str | None:
        """Take or renew the lease; None on success, else the live owner that holds it.

        A lease whose owner starts with ``stale_prefix`` is taken over even if unexpired (the
        caller knows that owner is dead).
        """
        with self._transaction():
            row = self.db.execute("SELECT owner, expires_at FROM leases WHERE name = ?", (name,)).fetchone()
            stale = row is not None and stale_prefix is not None and row[0].startswith(stale_prefix)
            if row is not None and row[0] != owner and row[1] > now and not stale:
                return row[0]
            self.db.execute("INSERT INTO leases (name, owner, expires_at) VALUES (?, ?, ?) ON CONFLICT (name) "
                            "DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at", (name, owner, now + ttl))
            return None

    def release_lease(self, name: str, owner: str) -> None:
        self.db.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))

    def lease(self, name: str) -> tuple[str, float] | None:
        """(owner, expires_at) of a lease, if any; StateQueryError when the database cannot say
        (one no scheduler has written, opened read only, has no leases table)."""
        try:
            row = self.db.execute("SELECT owner, expires_at FROM leases WHERE name = ?", (name,)).fetchone()
        except StateError as exc:
            raise StateQueryError(f"{self.path}: cannot read the lease '{name}' ({exc})") from exc
        return (row[0], row[1]) if row else None

    def leases_named(self, prefix: str, now: float) -> list[tuple[str, str, float]]:
        """Unexpired leases whose name starts with ``prefix``: (name, owner, expires_at), by name."""
        if not self.has_table("leases"):
            return []
        rows = self.db.execute("SELECT name, owner, expires_at FROM leases WHERE substr(name, 1, ?) = ? "
                               "AND expires_at >= ? ORDER BY name", (len(prefix), prefix, now))
        return [tuple(row) for row in rows]  # type: ignore[misc]

    def set_mark(self, name: str, value: float) -> None:
        self.db.execute("INSERT INTO marks (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                        (name, value))

    def mark_value(self, name: str) -> float | None:
        row = self.db.execute("SELECT value FROM marks WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None
