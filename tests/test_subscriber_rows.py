"""A bad row of subscribers.csv costs that row only (issue 9, item 1).

Every physical line of the file is accounted for (header, kept, skipped with a reason, blank);
`check` says how many rows each edition lost; `send` says the file had errors and exits 1;
and the audience freeze records the rows it could not read, so a reader whose row is fixed
later is added to that issue by the next `digest send` of it.
"""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest
from conftest import DIGEST, digest_env, flat, run, time_limit
from smtp_faults import (
    DATE,
    FaultHandler,
    ThreadedServer,
    stored_by_reader,
    write_newsroom,
)

from digest.readers.subscribers import load_subscribers

EDITIONS = ("am", "pm", "denver", "des-moines", "twin-cities", "tampa-bay", "charlotte", "climate")
HEADER = "email,name,editions,status,city,joined\n"
BROKEN = 'broken@example.com,"Ana" Lucero,am,active,Minneapolis,2025-01-01\n'
D = DATE.isoformat()


def good_rows(count: int, edition: str = "am", start: int = 1) -> str:
    return "".join(f"reader{n:05d}@example.com,Reader {n},{edition},active,Testville,2025-01-01\n"
                   for n in range(start, start + count))


def broken_file(path: Path, good: int = 5000) -> Path:
    """Line 2 a good reader, line 3 the broken quote, then ``good`` good rows, then a blank line."""
    path.write_text(HEADER + "first@example.com,First Reader,am,active,X,2025-01-01\n" + BROKEN + good_rows(good) + "\n",
                    encoding="utf-8")
    return path


@pytest.fixture
def env(env, tmp_path):
    """The shared env (test key, tmp_path/state.db), run from tmp_path."""
    env.chdir(tmp_path)
    return env


@pytest.fixture(autouse=True)
def no_hang():
    """Two minutes here rather than the shared one: these commands read files of 5,000 rows."""
    with time_limit(120):
        yield


# --- reading -------------------------------------------------------------------------------------


def test_a_broken_quote_costs_its_own_row_only(tmp_path):
    load = load_subscribers(broken_file(tmp_path / "subscribers.csv"), EDITIONS)
    assert len(load.audience("am")) == 5001
    assert [(e.line, e.field) for e in load.errors] == [(3, None)]
    assert "cannot be read" in load.errors[0].message
    lines = load.lines
    assert (lines.total, lines.header, lines.kept, lines.skipped, lines.blank) == (5004, 1, 5001, 1, 1)
    assert lines.header + lines.kept + lines.skipped + lines.blank == lines.total
    # The broken row still says which edition it was for, as far as it can be made out.
    assert load.lost == {"am": 1}
    assert load.lost_unknown == 0


def test_an_unclosed_quote_resynchronises_at_the_next_line(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text(HEADER + 'open@example.com,"Ana Lucero,am,active,X,2025\n' + good_rows(30), encoding="utf-8")
    load = load_subscribers(path, EDITIONS)
    assert [e.line for e in load.errors] == [2]
    assert len(load.audience("am")) == 30
    lines = load.lines
    assert (lines.total, lines.kept, lines.skipped) == (32, 30, 1)
    assert load.lost == {"am": 1}


def test_a_row_that_runs_over_lines_says_so_in_its_error(tmp_path):
    """A quoted field may span lines; when that joins a name with the next row, the error says
    which lines the record covers and every one of them is counted as skipped."""
    path = tmp_path / "s.csv"
    path.write_text(HEADER + 'x@example.com,"Ana Lucero,am,active\n' + 'y@example.com,Bo",am,active\n' + good_rows(2),
                    encoding="utf-8")
    load = load_subscribers(path, EDITIONS)
    assert [(e.line, e.field) for e in load.errors] == [(2, "name")]
    assert "lines 2-3" in load.errors[0].message
    assert len(load.audience("am")) == 2
    assert (load.lines.total, load.lines.kept, load.lines.skipped) == (5, 2, 2)


def test_a_correctly_quoted_multiline_field_is_one_record(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("email,name,editions,status,note\n" + 'a@example.com,Ana,am,active,"two\nlines"\n'
                    + "b@example.com,Bo,am,active,x\n", encoding="utf-8")
    load = load_subscribers(path, EDITIONS)
    assert load.errors == []
    assert [s.line for s in load.subscribers] == [2, 4]
    assert dict(load.subscribers[0].fields)["note"] == "two\nlines"
    assert (load.lines.total, load.lines.kept) == (4, 3)


def test_a_quote_left_open_to_the_end_of_the_file_costs_one_row(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text(HEADER + good_rows(3) + 'z@example.com,"Zed,pm,active\n' + good_rows(3, start=10), encoding="utf-8")
    load = load_subscribers(path, EDITIONS)
    assert [e.line for e in load.errors] == [5]
    assert len(load.audience("am")) == 6
    assert load.lost == {"pm": 1}


def test_rows_whose_edition_cannot_be_made_out_are_counted_apart(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text(HEADER + good_rows(2) + '"a"b@example.com,"x"y,"am"z\n' + "bad@,Bad,pm,active\n", encoding="utf-8")
    load = load_subscribers(path, EDITIONS)
    assert [e.line for e in load.errors] == [4, 5]
    assert load.lost == {"pm": 1}
    assert load.lost_unknown == 1


# --- check ---------------------------------------------------------------------------------------


def test_check_names_the_row_and_prints_what_each_edition_lost(tmp_path):
    config = write_newsroom(tmp_path / "newsroom", port=25)
    broken_file(config.with_name("subscribers.csv"))
    result = subprocess.run([str(DIGEST), "--config", str(config), "check", "am", "--date", D],
                            env=digest_env(tmp_path / "state.db"), capture_output=True, text=True, timeout=120)
    out = flat(result.stdout)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "subscribers.csv:3" in out and "cannot be read" in out
    assert "5,001" in out or "5001" in out
    assert "1 row for am left out" in out
    assert "5,004 lines" in out and "1 left out," in out and "1 blank" in out


# --- send ----------------------------------------------------------------------------------------


def issue_state(state_db: Path) -> list[tuple[str, str]]:
    db = sqlite3.connect(state_db)
    try:
        return list(db.execute("SELECT email, state FROM deliveries ORDER BY id"))
    finally:
        db.close()


def test_send_with_a_broken_row_sends_the_rest_says_so_and_exits_1(capsys, tmp_path, env):
    with ThreadedServer(FaultHandler()) as server:
        config = write_newsroom(tmp_path / "newsroom", port=server.port, pool_size=4)
        # 500 rows after the broken one: a quote that swallowed the rest of the file would lose them all
        # (the load test above reads 5,000; sending them proves no more and took 40 s).
        broken_file(config.with_name("subscribers.csv"), good=500)
        code, out, err = run(capsys, "--config", str(config), "send", "am", "--date", D)
        received = stored_by_reader(server.handler.received)
    text = flat(out + err)
    assert code == 1, text[-2000:]
    assert len(received) == 501 and "broken@example.com" not in received
    assert "501 sent" in text
    assert "subscriber file had errors" in text and "line 3" in text
    assert "done:" not in text


def test_the_freeze_records_the_lost_row_and_a_fixed_row_is_added_later(capsys, tmp_path, env):
    with ThreadedServer(FaultHandler()) as server:
        config = write_newsroom(tmp_path / "newsroom", port=server.port, pool_size=2)
        subscribers = config.with_name("subscribers.csv")
        broken_file(subscribers, good=20)
        code, out, err = run(capsys, "--config", str(config), "send", "am", "--date", D)
        assert code == 1, out + err
        assert "broken@example.com" not in stored_by_reader(server.handler.received)

        code, out, err = run(capsys, "--config", str(config), "status", "am", "--date", D)
        text = flat(out + err)
        assert "frozen with 1 subscriber row meant for this edition left out" in text and "line 3" in text
        assert code == 1

        # Sending again with the row still broken adds nobody and still says so.
        code, out, err = run(capsys, "--config", str(config), "send", "am", "--date", D)
        assert code == 1 and "subscriber file had errors" in flat(out + err)

        subscribers.write_text(subscribers.read_text(encoding="utf-8").replace('"Ana" Lucero', "Ana Lucero"), encoding="utf-8")
        code, out, err = run(capsys, "--config", str(config), "send", "am", "--date", D)
        text = flat(out + err)
        assert code == 0, text
        assert "added 1 reader whose row was fixed since" in text
        assert len(stored_by_reader(server.handler.received)["broken@example.com"]) == 1
        assert ("broken@example.com", "sent") in issue_state(tmp_path / "state.db")

        code, out, err = run(capsys, "--config", str(config), "status", "am", "--date", D)
        assert code == 0, out + err
        assert "left out" not in flat(out)


def test_a_reader_added_to_the_file_after_the_freeze_is_not_added(capsys, tmp_path, env):
    """Only rows that were unusable at freeze time are added: a new sign-up waits for the next issue."""
    with ThreadedServer(FaultHandler()) as server:
        config = write_newsroom(tmp_path / "newsroom", port=server.port, pool_size=2)
        subscribers = config.with_name("subscribers.csv")
        broken_file(subscribers, good=3)
        assert run(capsys, "--config", str(config), "send", "am", "--date", D)[0] == 1
        text = subscribers.read_text(encoding="utf-8").replace('"Ana" Lucero', "Ana Lucero")
        subscribers.write_text(text + "late@example.com,Late,am,active,X,2025-01-01\n", encoding="utf-8")
        code, out, err = run(capsys, "--config", str(config), "send", "am", "--date", D)
        received = stored_by_reader(server.handler.received)
    assert code == 0, out + err
    assert "broken@example.com" in received and "late@example.com" not in received


def test_an_existing_database_is_upgraded_in_place(tmp_path):
    """A state database from before this change gains the new table and column on open."""
    from digest.state.ledger import Ledger

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE issues (id INTEGER PRIMARY KEY, edition TEXT NOT NULL, issue_date TEXT NOT NULL,
            send_time TEXT NOT NULL, created_at TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'open', note TEXT,
            UNIQUE (edition, issue_date));
        CREATE TABLE deliveries (id INTEGER PRIMARY KEY, issue_id INTEGER NOT NULL REFERENCES issues(id),
            email TEXT NOT NULL, name TEXT NOT NULL, key TEXT NOT NULL, state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0, next_at REAL, message_id TEXT, last_code INTEGER,
            last_text TEXT, updated_at TEXT NOT NULL, UNIQUE (issue_id, key));
        INSERT INTO issues VALUES (1, 'am', '2026-11-30', '2026-11-30T06:00:00-06:00', 'x', 'done', NULL);
        INSERT INTO deliveries VALUES (1, 1, 'a@example.com', 'Ana Lucero', 'a@example.com', 'sent', 1, NULL, '<m@x>', 250, 'ok', 'x');
    """)
    db.close()
    ledger = Ledger(path)
    try:
        assert ledger.left_out(1) == []
        assert [d.email for d in ledger.deliveries(1)] == ["a@example.com"]
        assert ledger.deliveries(1)[0].first_name is None
    finally:
        ledger.close()


@pytest.mark.parametrize("name, code", [("Evil\x1b[2JName", "U+001B"), ("Bell\x07", "U+0007"),
                                        ("abc\u202eevil", "U+202E"), ("Tab\tName", "U+0009"), ("C1\x9bx", "U+009B")])
def test_a_control_character_in_a_name_is_a_finding_naming_line_and_field(tmp_path, name, code):
    """Found by a newcomer: ESC, BEL and U+202E in a name passed without a word into To: and exports."""
    path = tmp_path / "subscribers.csv"
    path.write_text(HEADER + f"ok@example.com,Ok,am,active,X,2025-01-01\nbad@example.com,{name},am,active,X,2025-01-01\n",
                    encoding="utf-8")
    load = load_subscribers(path, set(EDITIONS))
    assert [s.email for s in load.subscribers] == ["ok@example.com"]
    [error] = load.errors
    assert error.line == 3 and error.field == "name" and code in str(error)


def test_right_to_left_marks_in_a_name_are_kept(tmp_path):
    path = tmp_path / "subscribers.csv"
    path.write_text(HEADER + "rtl@example.com,\u200fנועה כהן,am,active,X,2025-01-01\n", encoding="utf-8")
    load = load_subscribers(path, set(EDITIONS))
    assert not load.errors and load.subscribers[0].name == "\u200fנועה כהן"
