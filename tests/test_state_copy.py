"""`digest state migrate` and `digest state copy`: a newsroom moves from SQLite to PostgreSQL
without losing a delivery record, and an older SQLite file upgrades in place.

The copy runs over a real send (aiosmtpd on loopback) into a real SQLite file, then into a
throwaway PostgreSQL database; the send after the move must find every reader already served.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing

import pytest
from conftest import flat, run
from smtp_faults import AM_READERS, DATE, FaultHandler, ThreadedServer, stored_by_reader, write_newsroom
from test_ledger import OLD_CLASSES, _old_database

from digest.state.ledger import Ledger, state_path
from digest.state.revision import HEAD

D = DATE.isoformat()
pytestmark = pytest.mark.usefixtures("no_hang")


@pytest.fixture
def server():
    with ThreadedServer(FaultHandler()) as running:
        yield running


@pytest.fixture
def newsroom(tmp_path, env, server):
    env.chdir(tmp_path)
    return write_newsroom(tmp_path / "newsroom", port=server.port, pool_size=2)


def copies(location) -> list[tuple[str, str, int, str]]:
    """(email, state, attempts, message_id) of every copy of the am issue, through the Ledger."""
    ledger = Ledger.read_only(location)
    assert ledger is not None
    with closing(ledger):
        record = ledger.find_issue("am", DATE)
        assert record is not None
        return sorted((d.email, d.state, d.attempts, d.message_id) for d in ledger.deliveries(record.id))


def test_migrate_upgrades_an_older_database_in_place_and_then_has_nothing_to_do(capsys, tmp_path, env):
    path = tmp_path / "state.db"
    _old_database(path)
    code, out, err = run(capsys, "state", "migrate")
    assert code == 0, out + err
    assert f"upgraded from revision none (an older digest) to {HEAD}" in flat(out)
    code, out, _ = run(capsys, "state", "migrate")
    assert code == 0 and f"already at revision {HEAD}" in flat(out)
    with closing(Ledger.read_only(path)) as ledger:
        assert {d.email: d.failure for d in ledger.deliveries(1)} == OLD_CLASSES


def test_copy_moves_a_sent_issue_to_postgresql_and_the_next_send_resends_nobody(
        capsys, newsroom, server, tmp_path, env, postgres_url):
    code, out, err = run(capsys, "--config", str(newsroom), "send", "am", "--date", D)
    assert code == 0, out + err
    before = copies(tmp_path / "state.db")
    assert len(before) == len(AM_READERS)

    code, out, err = run(capsys, "state", "copy", f"sqlite:///{tmp_path / 'state.db'}", postgres_url)
    assert code == 0, out + err
    assert "row counts checked against the source" in flat(out)
    assert copies(state_path(postgres_url, tmp_path)) == before

    env.setenv("DIGEST_STATE_URL", postgres_url)
    code, out, err = run(capsys, "--config", str(newsroom), "send", "am", "--date", D)
    assert code == 0, out + err
    assert sorted(stored_by_reader(server.handler.received)) == sorted(AM_READERS)  # nobody twice
    code, out, _ = run(capsys, "--config", str(newsroom), "status", "am", "--date", D)
    assert code == 0 and "sent" in out and str(len(AM_READERS)) in out

    # and back again, into a new SQLite file: the same records
    back = tmp_path / "back.db"
    code, out, err = run(capsys, "state", "copy", postgres_url, str(back))
    assert code == 0, out + err
    assert copies(back) == before


def test_copy_refuses_a_target_that_holds_records_and_writes_nothing(capsys, tmp_path, env):
    source, target = tmp_path / "source.db", tmp_path / "target.db"
    _old_database(source)
    _old_database(target)
    code, out, err = run(capsys, "state", "copy", str(source), str(target))
    assert code == 1
    assert "already holds records (issues 1, deliveries 6)" in flat(out + err)
    assert sqlite3.connect(target).execute("SELECT count(*) FROM deliveries").fetchone() == (6,)


def test_copy_refuses_a_source_a_scheduler_still_writes_to(capsys, tmp_path, env):
    source, target = tmp_path / "source.db", tmp_path / "target.db"
    _old_database(source)
    with closing(Ledger(source)) as ledger:
        ledger.db.execute("INSERT INTO leases (name, owner, expires_at) VALUES ('scheduler', 'host:42', ?)",
                          (time.time() + 60,))
    code, out, err = run(capsys, "state", "copy", str(source), str(target))
    assert code == 1
    assert "a scheduler (host:42) is still using it" in flat(out + err)
    assert not target.exists()  # refused before the target was created


@pytest.mark.parametrize("args, message", [
    (("nowhere/state.db", "x.db"), "no state database there to copy from"),
    (("same.db", "sqlite:///same.db"), "is both the source and the target"),
    (("junk.db", "x.db"), "holds no digest tables, so it is not a state database"),
    (("old.db", "mysql://db/digest"), "state URLs are sqlite:///path or postgresql://"),
])
def test_copy_names_a_bad_path_or_url(capsys, tmp_path, env, args, message):
    env.chdir(tmp_path)
    _old_database(tmp_path / "same.db")
    _old_database(tmp_path / "old.db")
    (tmp_path / "junk.db").write_bytes(b"x")
    code, out, err = run(capsys, "state", "copy", *args)
    assert code in (1, 2)
    assert message in flat(out + err)
    assert (tmp_path / "junk.db").read_bytes() == b"x" and not (tmp_path / "x.db").exists()


def test_migrate_where_there_is_no_database_says_it_created_one(capsys, tmp_path, env):
    code, out, err = run(capsys, "state", "migrate")
    assert code == 0, out + err
    assert f"no state database was there; created one at revision {HEAD}" in flat(out)
    assert (tmp_path / "state.db").exists()


def test_copy_to_a_postgresql_server_that_is_not_there_says_so_on_one_line(capsys, tmp_path, env):
    _old_database(tmp_path / "old.db")
    code, out, err = run(capsys, "state", "copy", str(tmp_path / "old.db"), "postgresql://nobody@127.0.0.1:1/digest")
    assert code == 1
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert "127.0.0.1" in line and "Connection refused" in line and "\\n" not in line


def test_the_revision_digest_expects_is_alembics_head():
    from digest.state.migrate import script_head

    assert HEAD == script_head()


def test_another_programs_sqlite_file_is_refused_and_left_as_it_was(capsys, tmp_path, env, newsroom):
    other = tmp_path / "photos.db"
    with closing(sqlite3.connect(other)) as db:
        db.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, caption TEXT)")
        db.commit()
    env.setenv("DIGEST_STATE_URL", str(other))
    for command in (["--config", str(newsroom), "state", "migrate"],
                    ["--config", str(newsroom), "send", "am", "--date", DATE.isoformat()]):
        code, out, err = run(capsys, *command)
        assert code == 1 and "not a digest state database (it holds the tables photos" in flat(err), (command, out, err)
    with closing(sqlite3.connect(other)) as db:
        assert [name for (name,) in db.execute("SELECT name FROM sqlite_master")] == ["photos"]
