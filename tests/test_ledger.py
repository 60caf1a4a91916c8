"""The state database's issue records, and how planning uses them (real SQLite files)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from conftest import ROOT, SECRET_KEY

from digest.cli import main
from digest.compose.planning import plan_issue
from digest.errors import ConfigError, StoryError
from digest.state.ledger import Ledger, Outcome, Starting, state_path

DATE = dt.date(2026, 12, 1)


@pytest.fixture
def settings(sample_settings, tmp_path: Path):
    return dataclasses.replace(sample_settings, state_db=tmp_path / "state" / "digest.sqlite3")


def test_an_issue_is_created_once_and_keeps_its_first_story_list(settings) -> None:
    ledger = Ledger(settings.state_db)
    send = dt.datetime(2026, 12, 1, 6, tzinfo=dt.timezone.utc)
    first, created = ledger.create_issue("am", DATE, send, ["a", "b"])
    again, created_again = ledger.create_issue("am", DATE, send, ["c"])
    assert created and not created_again
    assert again == first and again.story_ids == ("a", "b")
    assert ledger.used_story_ids("am", DATE + dt.timedelta(days=1)) == {"a", "b"}
    assert ledger.used_story_ids("am", DATE) == frozenset()  # only earlier issues count
    assert ledger.used_story_ids("pm", DATE + dt.timedelta(days=1)) == frozenset()  # per edition


def test_a_second_connection_sees_the_same_single_issue(settings) -> None:
    send = dt.datetime(2026, 12, 1, 6, tzinfo=dt.timezone.utc)
    one, two = Ledger(settings.state_db), Ledger(settings.state_db)
    record_one, _ = one.create_issue("denver", DATE, send, ["x"])
    record_two, created = two.create_issue("denver", DATE, send, ["y"])
    assert not created and record_two.id == record_one.id
    count = sqlite3.connect(settings.state_db).execute("SELECT COUNT(*) FROM issues").fetchone()[0]
    assert count == 1


def test_planning_skips_stories_an_earlier_issue_carried(settings, sample_stories) -> None:
    edition = settings.edition("am")
    fresh = plan_issue(settings, edition, DATE, sample_stories.stories)
    assert len(fresh.stories) == 6
    carried = fresh.stories[0].id
    Ledger(settings.state_db).create_issue("am", DATE - dt.timedelta(days=1), fresh.send_time, [carried])
    again = plan_issue(settings, edition, DATE, sample_stories.stories)
    assert carried not in {s.id for s in again.stories}
    assert len(again.stories) == 5


def test_planning_reuses_a_recorded_issue_in_its_recorded_order(settings, sample_stories) -> None:
    edition = settings.edition("am")
    fresh = plan_issue(settings, edition, DATE, sample_stories.stories)
    chosen = [fresh.stories[2].id, fresh.stories[0].id]
    Ledger(settings.state_db).create_issue("am", DATE, fresh.send_time, chosen)
    recorded = plan_issue(settings, edition, DATE, sample_stories.stories)
    assert [s.id for s in recorded.stories] == chosen


def test_a_recorded_story_that_vanished_is_an_error_not_a_different_issue(settings, sample_stories) -> None:
    edition = settings.edition("am")
    Ledger(settings.state_db).create_issue("am", DATE, dt.datetime(2026, 12, 1, 11, tzinfo=dt.timezone.utc), ["gone-story"])
    with pytest.raises(StoryError, match="gone-story"):
        plan_issue(settings, edition, DATE, sample_stories.stories)


def test_a_dry_run_does_not_create_the_state_database(tmp_path: Path, monkeypatch, sample_settings) -> None:
    monkeypatch.setenv("DIGEST_SECRET_KEY", SECRET_KEY)
    state = tmp_path / "nowhere" / "digest.sqlite3"
    monkeypatch.setenv("DIGEST_STATE_URL", f"sqlite:///{state}")
    code = main(["--config", str(sample_settings.config_file), "render", "charlotte", "--date", "2026-12-01",
                 "--out", str(tmp_path / "out")])
    assert code == 0
    assert not state.exists() and not state.parent.exists()


@pytest.mark.parametrize("url, expected", [
    ("sqlite:////var/lib/digest/state.db", "/var/lib/digest/state.db"),
    ("sqlite:///relative/state.db", "relative/state.db"),
    ("sqlite:relative/state.db", "relative/state.db"),
    ("/plain/path.db", "/plain/path.db"),
])
def test_state_url_forms(url: str, expected: str) -> None:
    assert state_path(url, Path("default")) == Path(expected)


def test_a_postgresql_url_is_kept_as_a_url_and_shown_without_its_password() -> None:
    from digest.state.ledger import PostgresUrl, shown

    location = state_path("postgresql://digest:s3cret@db.internal:5432/digest", Path("default"))
    assert isinstance(location, PostgresUrl) and location == "postgresql://digest:s3cret@db.internal:5432/digest"
    assert shown(location) == "postgresql://digest:***@db.internal:5432/digest"
    assert state_path("postgres://db/x", Path("default")) == "postgresql://db/x"


@pytest.mark.parametrize("url", ["mysql://db/digest", "postgresql:///no-host-here"])
def test_an_unsupported_or_hostless_state_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="DIGEST_STATE_URL|sqlite"):
        state_path(url, Path("default"))


def test_an_issue_whose_only_unsent_copies_are_held_is_not_unfinished(settings) -> None:
    """Held uncertain copies wait for a person; the scheduler must not resume them forever."""
    ledger = Ledger(settings.state_db)
    send = dt.datetime(2026, 12, 1, 6, tzinfo=dt.timezone.utc)
    record, _ = ledger.create_issue("am", DATE, send, ["a"], audience=[("x@example.com", "X", "x@example.com"),
                                                                     ("y@example.com", "Y", "y@example.com")])
    first, second = ledger.deliveries(record.id)
    ledger.mark(first.id, "sent", 250, "ok")
    ledger.mark(second.id, "uncertain", None, "held after 8 attempts", next_at=float("inf"))
    assert ledger.unfinished_issues() == []
    ledger.mark(second.id, "uncertain", None, "resend me", next_at=0.0)
    assert ledger.unfinished_issues() == [("am", DATE)]


# --- failure classes, and a database from before they were kept (issue 9, item 12a) ---------------


def _old_database(path: Path) -> None:
    """A state database as the previous digest created it: deliveries without the failure column."""
    SCHEMA = (ROOT / "tests" / "data" / "state-0.1.sql").read_text()
    old = SCHEMA.replace("    failure     TEXT,                     -- why a failed copy failed: outcomes.FAILURE_CLASSES\n", "")
    assert old != SCHEMA
    db = sqlite3.connect(path)
    db.executescript(old)
    db.execute("INSERT INTO issues (id, edition, issue_date, send_time, created_at) VALUES "
               "(1, 'am', '2026-12-01', '2026-12-01T06:00:00-05:00', '2026-12-01T10:00:00+00:00')")
    rows = [
        ("ana@example.com", "failed", 550, "5.1.1 <ana@example.com>: mailbox unknown"),
        ("jose@example.com", "failed", 554, "5.7.1 rejected by policy"),
        ("marcus@example.com", "failed", 451, "gave up after 8 attempts: 4.3.0 try again later"),
        ("lena@example.com", "failed", 451, "gave up: the issue's delivery deadline passed (last reply: 4.7.1 greylisted)"),
        ("olu@example.com", "failed", 554, "transaction failed"),
        ("chen@example.com", "sent", 250, "2.0.0 OK"),
    ]
    db.executemany("INSERT INTO deliveries (issue_id, email, name, key, state, last_code, last_text, updated_at) "
                   "VALUES (1, ?, '', ?, ?, ?, ?, '2026-12-01T11:00:00+00:00')",
                   [(email, email, state, code, text) for email, state, code, text in rows])
    db.commit()
    db.close()


OLD_CLASSES = {"ana@example.com": "hard_bounce", "jose@example.com": "policy", "marcus@example.com": "retries",
               "lena@example.com": "deadline", "olu@example.com": "permanent", "chen@example.com": None}


def test_an_old_database_is_read_without_upgrading_it_and_classes_are_derived(tmp_path):
    path = tmp_path / "old.db"
    _old_database(path)
    ledger = Ledger.read_only(path)
    assert ledger is not None
    with closing(ledger):
        assert {d.email: d.failure for d in ledger.deliveries(1)} == OLD_CLASSES
        assert ledger.failure_counts(1) == {"hard_bounce": 1, "policy": 1, "retries": 1, "deadline": 1, "permanent": 1}
    columns = {row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(deliveries)")}
    assert "failure" not in columns  # a read-only look changed nothing


def test_an_old_database_is_upgraded_in_place_keeping_its_rows(tmp_path):
    path = tmp_path / "old.db"
    _old_database(path)
    with closing(Ledger(path)) as ledger:
        assert {d.email: d.failure for d in ledger.deliveries(1)} == OLD_CLASSES
        pending = ledger.db.execute("INSERT INTO deliveries (issue_id, email, name, key, state, updated_at) VALUES "
                                    "(1, 'new@example.com', '', 'new@example.com', 'pending', 'x')").lastrowid
        ledger.mark(pending, "failed", 250, "gave up", failure="deadline")
        assert ledger.deliveries(1)[-1].failure == "deadline"
        ledger.expire_deferred(1, "gave up")
    with closing(Ledger(path)) as again:  # a second open finds the column and leaves it alone
        assert len(again.deliveries(1)) == 7


def test_a_recorded_failure_class_is_kept_and_cleared_when_the_copy_is_sent_later(tmp_path):
    with closing(Ledger(tmp_path / "state.db")) as ledger:
        record, _ = ledger.create_issue("am", dt.date(2026, 12, 1), dt.datetime(2026, 12, 1, 11, tzinfo=dt.timezone.utc),
                                        [], audience=[("a@example.com", "A", "a@example.com")])
        (copy,) = ledger.deliveries(record.id)
        ledger.mark(copy.id, "failed", 451, "gave up after 2 attempts: busy", failure="retries")
        assert ledger.deliveries(record.id)[0].failure == "retries"
        ledger.mark(copy.id, "sent", 250, "OK")
        assert ledger.deliveries(record.id)[0].failure is None


def test_a_composition_is_kept_once_with_its_issue_and_an_older_database_reads_as_none(settings) -> None:
    send = dt.datetime(2026, 12, 1, 6, tzinfo=dt.timezone.utc)
    with closing(Ledger(settings.state_db)) as ledger:
        record, _ = ledger.create_issue("am", DATE, send, ["a"], composition=(1, '{"format":1}', "0123456789abcdef"),
                                        archive_page="<html>page</html>")
        assert ledger.composition(record.id) == (1, '{"format":1}', "0123456789abcdef")
        assert ledger.has_archive_page(record.id)  # kept in the same transaction
        ledger.keep_composition(record.id, 2, "{}", "ffffffffffffffff")  # a later writer: the first one stays
        assert ledger.composition(record.id) == (1, '{"format":1}', "0123456789abcdef")
        older, _ = ledger.create_issue("pm", DATE, send, ["b"])  # as an older digest created it
        assert ledger.composition(older.id) is None
        ledger.keep_composition(older.id, 1, '{"format":1,"x":1}', "fedcba9876543210")
        assert ledger.composition(older.id)[2] == "fedcba9876543210"
        ledger.db.execute("DROP TABLE issue_compositions")  # as a database from before compositions were kept:
        ledger.db.execute("UPDATE alembic_version SET version_num = '0001'")  # at the first revision
    with closing(Ledger.read_only(settings.state_db)) as old:
        assert not old.has_table("issue_compositions")
        assert old.composition(record.id) is None
    with closing(Ledger(settings.state_db)) as upgraded:  # opened for writing, it gains the table
        assert upgraded.has_table("issue_compositions") and upgraded.composition(record.id) is None


# --- the relay that gave each copy's outcome -------------------------------------------------------


def test_the_relay_of_each_copys_last_outcome_is_kept_and_counted(tmp_path):
    audience = [(f"{n}@example.com", n, f"{n}@example.com") for n in ("a", "b", "c", "d", "e")]
    with closing(Ledger(tmp_path / "state.db")) as ledger:
        record, _ = ledger.create_issue("am", DATE, dt.datetime(2026, 12, 1, 11, tzinfo=dt.timezone.utc), [],
                                        audience=audience)
        a, b, c, d, _ = ledger.deliveries(record.id)
        ledger.mark(a.id, "sent", 250, "OK", relay="mx-a")
        ledger.mark(b.id, "deferred", 451, "busy", next_at=0.0, relay="mx-b")
        ledger.mark(b.id, "sent", 250, "OK", relay="mx-a")  # retried through another relay: the last one counts
        ledger.mark(c.id, "sent", 250, "OK", relay="mx-b")
        ledger.mark(c.id, "failed", 550, "5.1.1 mailbox unknown")  # a bounce read later keeps the relay
        ledger.mark(d.id, "deferred", 451, "busy", next_at=0.0, relay="mx-b")
        assert ledger.relay_counts(record.id) == {"mx-a": {"sent": 2}, "mx-b": {"failed": 1, "deferred": 1}}
        assert [copy.relay for copy in ledger.deliveries(record.id)] == ["mx-a", "mx-a", "mx-b", "mx-b", None]


def test_a_database_from_before_relays_has_no_relay_counts_read_only_and_gains_the_column_when_opened(tmp_path):
    path = tmp_path / "old.db"
    _old_database(path)
    ledger = Ledger.read_only(path)
    assert ledger is not None
    with closing(ledger):
        assert ledger.relay_counts(1) == {}
        assert {copy.relay for copy in ledger.deliveries(1)} == {None}
    with closing(Ledger(path)) as upgraded:
        first = upgraded.deliveries(1)[0]
        upgraded.mark(first.id, "sent", 250, "OK", relay="mx-a")
        assert upgraded.relay_counts(1) == {"mx-a": {"sent": 1}}


def test_a_claim_takes_out_the_readers_who_left_after_the_audience_was_frozen(state_db):
    audience = [(f"{n}@example.com", n, f"{n}@example.com") for n in ("a", "b", "c", "d")]
    with closing(Ledger(state_db)) as ledger:
        record, _ = ledger.create_issue("am", DATE, dt.datetime(2026, 12, 1, 11, tzinfo=dt.timezone.utc), [],
                                        audience=audience)
        ledger.suppress("b@example.com", "am", "unsubscribed")
        ledger.suppress("c@example.com", "*", "bounced")
        ledger.suppress("d@example.com", "pm", "unsubscribed")  # another edition: d still gets 'am'
        claimed = ledger.claim(record.id, "sender-1", 1000.0, 60, include_uncertain=False, edition="am")
        assert [d.email for d in claimed.due] == ["a@example.com", "d@example.com"]
        assert [d.email for d in claimed.suppressed] == ["b@example.com", "c@example.com"]
        rows = {d.email: d for d in ledger.deliveries(record.id)}
        assert {e: d.state for e, d in rows.items()} == {"a@example.com": "pending", "b@example.com": "suppressed",
                                                        "c@example.com": "suppressed", "d@example.com": "pending"}
        assert rows["b@example.com"].attempts == 0 and ledger.claim_owners(record.id) == ["sender-1"]
        again = ledger.claim(record.id, "sender-2", 1000.0, 60, include_uncertain=False, edition="am")
        assert again.due == [] and again.suppressed == [], "the suppressed copies were handed out again"


def test_copies_starting_together_are_marked_in_one_statement_each_with_its_own_answer(state_db):
    audience = [(f"{n}@example.com", n, f"{n}@example.com") for n in ("a", "b", "c", "d", "e")]
    with closing(Ledger(state_db)) as ledger:
        record, _ = ledger.create_issue("am", DATE, dt.datetime(2026, 12, 1, 11, tzinfo=dt.timezone.utc), [],
                                        audience=audience)
        mine = ledger.claim(record.id, "sender-1", 1000.0, 60, include_uncertain=False, edition="am", limit=4)
        theirs = ledger.claim(record.id, "sender-2", 1000.0, 60, include_uncertain=False, edition="am")
        assert [d.email for d in theirs.due] == ["e@example.com"]
        ids = {d.email: d.id for d in mine.due + theirs.due}
        ledger.suppress("b@example.com", "*", "unsubscribed")  # left after the claim, before the body
        ledger.mark_sending(ids["a@example.com"], "<a@x>", "a@example.com", "am", "sender-1")
        ledger.record_outcomes([Outcome(ids["a@example.com"], "sent", 250, "OK")])
        answers = ledger.mark_sending_many(
            [Starting(ids[e], f"<{e[0]}@x>", e) for e in ("b@example.com", "c@example.com", "d@example.com", "e@example.com")],
            "am", "sender-1", outcomes=[Outcome(ids["a@example.com"], "sent", 250, "2.0.0 OK again")])
        assert answers == ["suppressed", "sending", "sending", "taken"]
        rows = {d.email: d for d in ledger.deliveries(record.id)}
        assert {e: d.state for e, d in rows.items()} == {"a@example.com": "sent", "b@example.com": "suppressed",
                                                        "c@example.com": "sending", "d@example.com": "sending",
                                                        "e@example.com": "pending"}
        assert rows["a@example.com"].last_text == "2.0.0 OK again", "the outcomes went in with the marks"
        assert (rows["c@example.com"].message_id, rows["c@example.com"].attempts) == ("<c@x>", 1)
        assert (rows["e@example.com"].message_id, rows["e@example.com"].attempts) == (None, 0)
        assert ledger.mark_sending_many([], "am", "sender-1") == []


@pytest.mark.parametrize("together", [1, 2], ids=["one-copy", "two-copies"])
@pytest.mark.parametrize("with_outcomes", [False, True], ids=["alone", "with-outcomes"])
def test_each_form_of_the_sending_mark_records_the_same(state_db, together, with_outcomes):
    audience = [(f"{n}@example.com", n, f"{n}@example.com") for n in ("a", "b", "c")]
    with closing(Ledger(state_db)) as ledger:
        record, _ = ledger.create_issue("am", DATE, dt.datetime(2026, 12, 1, 11, tzinfo=dt.timezone.utc), [],
                                        audience=audience)
        ids = {d.email: d.id for d in ledger.claim(record.id, "s1", 1000.0, 60, include_uncertain=False,
                                                    edition="am").due}
        assert ledger.mark_sending(ids["a@example.com"], "<a@x>", "a@example.com", "am", "s1") == "sending"
        outcomes = [Outcome(ids["a@example.com"], "sent", 250, "OK")] if with_outcomes else []
        starting = [Starting(ids[e], f"<{e[0]}@x>", e) for e in ("b@example.com", "c@example.com")[:together]]
        assert ledger.mark_sending_many(starting, "am", "s1", outcomes=outcomes) == ["sending"] * together
        states = {d.email: (d.state, d.message_id, d.attempts) for d in ledger.deliveries(record.id)}
        assert states["a@example.com"][0] == ("sent" if with_outcomes else "sending")
        assert states["b@example.com"] == ("sending", "<b@x>", 1)
        assert states["c@example.com"] == (("sending", "<c@x>", 1) if together == 2 else ("pending", None, 0))
