"""Editors' control of an issue: `digest hold|pause|resume|cancel`, across real processes.

The sends are real `digest send --workers 2` processes into aiosmtpd on 127.0.0.1; the commands
are real `digest` processes too; the state is a SQLite file or a real PostgreSQL database.
"""

from __future__ import annotations

import collections
import time
from contextlib import closing

import pytest
from smtp_faults import DATE, FaultHandler, ThreadedServer, finish, ledger_rows, start_digest, wait_for, write_newsroom
from test_workers import query

from digest.state.ledger import Ledger

D = DATE.isoformat()


def sent_count(state) -> int:
    return query(state, "SELECT count(*) FROM deliveries WHERE state = 'sent'")[0][0] if query(
        state, "SELECT 1 FROM issues LIMIT 1") else 0


def pending_ids(state) -> set[int]:
    return {row[0] for row in query(state, "SELECT d.id FROM deliveries d JOIN issues i ON i.id = d.issue_id "
                                           "WHERE i.edition = 'am' AND d.state = 'pending'")}


def run(config, state, *args: str, timeout: float = 60) -> tuple[int, str, str]:
    process = start_digest(config, state, *args)
    out, err = finish(process, timeout=timeout)
    return process.returncode, out, err


def small_issue(config) -> None:
    """Two stories instead of the sample day's seven: the capture server's time per copy is in its bytes."""
    for story in (config.parent / "stories").glob("*.md"):
        if story.name not in ("2026-11-30-senate-rail-safety-bill.md", "2026-12-01-stopgap-spending-vote.md"):
            story.unlink()


def received_once(handler: FaultHandler) -> collections.Counter[str]:
    return collections.Counter(m.recipients[0] for m in handler.received)


def start_sending(tmp_path, server: ThreadedServer, state, readers: int, batch: int, until: int):
    """`digest send am --workers 2` to ``readers`` readers of a small issue, once ``until`` copies are sent."""
    config = write_newsroom(tmp_path / "newsroom", port=server.port, pool_size=4, readers=readers,
                            delivery={"batch": batch})
    small_issue(config)
    send = start_digest(config, state, "send", "am", "--date", D, "--workers", "2")
    assert wait_for(lambda: sent_count(state) >= until, timeout=60, interval=0.1), finish(send)
    return config, send


def test_pause_mid_send_starts_nothing_after_it_returns_and_resume_sends_each_reader_once(tmp_path, state_db):
    readers = 10_000
    with ThreadedServer(FaultHandler()) as server:
        config, send = start_sending(tmp_path, server, state_db, readers, batch=100, until=1_000)
        code, out, err = run(config, state_db, "pause", "am", "--date", D, "--reason", "wrong photo", "--by", "desk@news")
        returned = time.monotonic()
        waiting = pending_ids(state_db)  # not started when the command returned
        assert code == 0, (out, err)
        assert "paused" in out
        out, err = finish(send, timeout=60)
        assert send.returncode != 0 and "paused by desk@news" in out + err, (out, err)
        assert len(waiting) > 1_000, "the pause came too late to prove anything"
        still = pending_ids(state_db)
        assert waiting <= still, f"{len(waiting - still)} copies started after `digest pause` returned"
        time.sleep(max(0.0, returned + 1.0 - time.monotonic()))
        paused_at = len(server.handler.received)

        code, out, err = run(config, state_db, "send", "am", "--date", D)
        assert code != 0 and "paused by desk@news" in out + err  # `digest send` does not override a person
        assert len(server.handler.received) == paused_at

        code, out, err = run(config, state_db, "status", "am", "--date", D)
        history = " ".join(out.split())
        assert "paused" in history and "desk@news" in history and "wrong photo" in history, out

        code, out, _ = run(config, state_db, "resume", "am", "--date", D, "--by", "desk@news")
        assert code == 0, out
        code, out, err = run(config, state_db, "send", "am", "--date", D, "--workers", "2", timeout=120)
        assert code == 0 and f"done: {readers} sent" in out, (out, err)
        got = received_once(server.handler)
    assert len(got) == readers and set(got.values()) == {1}, "a reader got the issue twice or not at all"


def test_cancel_mid_send_records_exactly_how_many_readers_had_it(tmp_path, state_db):
    readers = 2_000
    with ThreadedServer(FaultHandler(data_delay=lambda: 0.002)) as server:
        config, send = start_sending(tmp_path, server, state_db, readers, batch=50, until=200)
        code, out, err = run(config, state_db, "cancel", "am", "--date", D, "--reason", "story pulled", "--by", "eic")
        assert code == 0, (out, err)
        finish(send, timeout=60)
        time.sleep(0.5)
        received = received_once(server.handler)
        rows = ledger_rows(state_db)
        states = collections.Counter(state for _, state, _, _ in rows)
        delivered = query(state_db, "SELECT delivered FROM issue_actions WHERE action = 'cancel'")[0][0]
        assert delivered == states["sent"] == len(received), (delivered, states, len(received))
        assert f"{delivered} reader(s) had received it" in out
        assert states["sent"] + states["cancelled"] == readers and states["sending"] == 0, states
        assert set(received.values()) == {1}

        # final: neither resume nor send brings it back
        code, out, err = run(config, state_db, "resume", "am", "--date", D)
        assert code != 0 and "final" in out + err
        code, out, err = run(config, state_db, "send", "am", "--date", D)
        assert code != 0 and "cancelled by eic" in out + err
        assert len(server.handler.received) == delivered
        code, out, _ = run(config, state_db, "status", "am", "--date", D)
        assert "story pulled" in out and "cancelled" in out
    with closing(Ledger(state_db)) as ledger:  # some readers had it; the web archive shows it to nobody
        assert ledger.public_issue("am", DATE) == (False, None) and DATE not in ledger.public_dates("am")


def test_a_hold_before_the_issue_exists_keeps_it_from_being_created_until_resumed(tmp_path, env):
    state_db = tmp_path / "state.db"
    with ThreadedServer(FaultHandler()) as server:
        config = write_newsroom(tmp_path / "newsroom", port=server.port, readers=5)
        code, out, err = run(config, state_db, "hold", "am", "--date", D, "--reason", "election night", "--by", "desk")
        assert code == 0 and "held before it was created" in out, (out, err)
        code, out, err = run(config, state_db, "pause", "am", "--date", D)
        assert code == 2 and "has not started" in out + err
        code, out, err = run(config, state_db, "send", "am", "--date", D)
        assert code != 0 and "held by desk" in out + err and "nothing sent" in out + err
        assert server.handler.received == [] and ledger_rows(state_db) == []
        code, out, _ = run(config, state_db, "status", "am", "--date", D)
        assert "not created yet" in out and "election night" in out
        code, out, _ = run(config, state_db, "resume", "am", "--date", D)
        assert code == 0
        code, out, err = run(config, state_db, "send", "am", "--date", D)
        assert code == 0 and "done: 5 sent" in out, (out, err)
        code, out, err = run(config, state_db, "hold", "am", "--date", D)
        assert code == 2 and "finished sending" in out + err


@pytest.mark.parametrize("reason", ["two\nlines", "cr\rhere"])
def test_a_reason_is_one_line(tmp_path, env, reason):
    config = write_newsroom(tmp_path / "newsroom", port=25, readers=1)
    code, out, err = run(config, tmp_path / "state.db", "hold", "am", "--date", D, "--reason", reason)
    assert code == 2 and "one line" in out + err

