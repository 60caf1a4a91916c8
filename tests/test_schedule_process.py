"""`digest schedule` as real processes: killed mid-send and restarted, a second instance refused,
SIGTERM mid-send.

Each test writes a newsroom whose 'am' edition is due now (a couple of minutes ago, so the
scheduler's start catches it up within its grace, or a few seconds ahead, so APScheduler's own job
fires it), with a story published half an hour ago and 200 readers, pointed at a loopback SMTP
server running in a thread of this process that takes a few milliseconds per message.
"""

from __future__ import annotations

import datetime as dt
import re
import signal
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from smtp_faults import (
    FaultHandler,
    ThreadedServer,
    check_consistent,
    ledger_rows,
    start_digest,
    wait_for,
    write_newsroom,
)

from digest.state.ledger import Delivery

READERS = 200
POOL = 2
ZONE = ZoneInfo("America/New_York")  # the 'am' edition's zone in digest.toml
ALL_DAYS = '["mon", "tue", "wed", "thu", "fri", "sat", "sun"]'


def audience() -> list[str]:
    return [f"reader{n:04d}@example.com" for n in range(1, READERS + 1)]


def newsroom(tmp_path: Path, port: int, *, due: str) -> tuple[Path, dt.date]:
    """A newsroom whose 'am' edition is due: ``due="past"``: two minutes ago (whole minutes, as an
    editor writes it); ``due="soon"``: five seconds from now. Returns (digest.toml, issue date)."""
    config = write_newsroom(tmp_path / "newsroom", port=port, pool_size=POOL, readers=READERS)
    now = dt.datetime.now(dt.UTC)
    if due == "past":
        when = (now - dt.timedelta(minutes=2)).astimezone(ZONE).replace(second=0, microsecond=0)
        send_at = f"{when:%H:%M}"
    else:
        when = (now + dt.timedelta(seconds=5)).astimezone(ZONE).replace(microsecond=0)
        send_at = f"{when:%H:%M:%S}"
    text = config.read_text(encoding="utf-8")
    start = text.index('slug = "am"')
    end = text.index("[[editions]]", start)
    block = re.sub(r'(?m)^send_at = "[^"]*"', f'send_at = "{send_at}"', text[start:end], count=1)
    assert f'send_at = "{send_at}"' in block
    block = block.rstrip("\n") + f"\ndays = {ALL_DAYS}\ngrace_minutes = 120\n\n"
    config.write_text(text[:start] + block + text[end:], encoding="utf-8")
    published = (now - dt.timedelta(minutes=30)).isoformat(timespec="seconds")
    (config.parent / "stories" / "zz-just-in.md").write_text(
        f'---\nheadline: "Just in: the council votes tonight"\npublished: {published}\neditions: [am]\n---\n'
        "The council meets at seven to vote on the budget, its last meeting of the year.\n", encoding="utf-8")
    return config, when.date()


def rows(state: Path, date: dt.date) -> list[tuple[str, str, int, str | None]]:
    if not state.exists():
        return []
    try:
        return ledger_rows(state, "am", date)
    except sqlite3.OperationalError:  # tables not created yet
        return []


def as_deliveries(found) -> list[Delivery]:
    return [Delivery(0, email, "", st, attempts, mid) for email, st, attempts, mid in found]


def lease_holder(state: Path) -> str | None:
    if not state.exists():
        return None
    try:
        with closing(sqlite3.connect(state, timeout=30)) as db:
            row = db.execute("SELECT owner, expires_at FROM leases WHERE name = 'scheduler'").fetchone()
    except sqlite3.OperationalError:
        return None
    return row[0] if row and row[1] > time.time() else None


def stop(process: subprocess.Popen[str], sig: int, timeout: float) -> tuple[str, str, float]:
    """Send ``sig`` and wait for the exit; (stdout, stderr, seconds it took). Fails the test on a hang."""
    process.send_signal(sig)
    signalled = time.monotonic()
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"`digest schedule` did not exit within {timeout} s of signal {sig}:\n{out}\n{err}")
    return out, err, time.monotonic() - signalled


def reap(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
    process.communicate()


def exited_early(process: subprocess.Popen[str]) -> str:
    out, err = process.communicate()
    return f"`digest schedule` exited with {process.returncode}:\n{out}\n{err}"


def test_killed_during_a_send_the_restarted_scheduler_finishes_the_issue(tmp_path):
    handler = FaultHandler(data_delay=lambda: 0.02)  # stored at once, answered 20 ms later
    with ThreadedServer(handler) as server:
        config, date = newsroom(tmp_path, server.port, due="past")
        state = tmp_path / "s.db"

        first = start_digest(config, state, "schedule")
        try:
            assert wait_for(lambda: len(handler.received) >= 30 or first.poll() is not None, 20)
            assert first.poll() is None, exited_early(first)
            first.send_signal(signal.SIGKILL)
        finally:
            reap(first)
        assert first.returncode == -signal.SIGKILL
        at_kill = rows(state, date)
        in_flight = {email for email, st, _, _ in at_kill if st == "sending"}
        assert len(in_flight) <= POOL, f"{len(in_flight)} copies in flight with a pool of {POOL}"
        assert any(st == "pending" for _, st, _, _ in at_kill), "the kill came too late to matter"

        second = start_digest(config, state, "schedule")
        try:
            settled = wait_for(lambda: second.poll() is not None or
                               (len(found := rows(state, date)) == READERS and {r[1] for r in found} == {"sent"}), 20)
            assert second.poll() is None, exited_early(second)
            assert settled, f"not every copy settled within 20 s: {sorted({r[1] for r in rows(state, date)})}"
            out, err, took = stop(second, signal.SIGTERM, 15)
        finally:
            reap(second)
        received = list(handler.received)

    assert second.returncode == 0, out + err
    assert took < 5, f"exited {took:.1f} s after SIGTERM with nothing to send"
    assert re.search(r"event=issue\.(started|finished).*edition=am", err), err
    final = rows(state, date)
    assert len(final) == READERS and {st for _, st, _, _ in final} == {"sent"}
    stored = check_consistent(as_deliveries(final), received)  # twins carry one Message-ID, the ledger's
    assert sorted(stored) == audience(), "a reader never received the issue"
    duplicates = {reader: len(copies) for reader, copies in stored.items() if len(copies) > 1}
    assert set(duplicates) <= in_flight, f"duplicates beyond the copies in flight at the kill: {duplicates} vs {in_flight}"
    assert all(n == 2 for n in duplicates.values()), duplicates


def test_a_second_schedule_on_the_same_state_database_exits_promptly_saying_already_running(tmp_path):
    with ThreadedServer(FaultHandler()) as server:
        config, _ = newsroom(tmp_path, server.port, due="past")
        state = tmp_path / "s.db"
        first = start_digest(config, state, "schedule")
        try:
            assert wait_for(lambda: first.poll() is not None or lease_holder(state) is not None, 20)
            assert first.poll() is None, exited_early(first)
            started = time.monotonic()
            second = start_digest(config, state, "schedule")
            try:
                out, err = second.communicate(timeout=15)
            finally:
                reap(second)
            took = time.monotonic() - started
            assert second.returncode not in (0, None), (second.returncode, out, err)
            assert "already running" in (out + err).lower(), out + err
            assert took < 10, f"the second scheduler took {took:.1f} s to give up"
            assert first.poll() is None, "the refused second scheduler disturbed the first"
            assert lease_holder(state) is not None
            _, err, _ = stop(first, signal.SIGTERM, 15)
        finally:
            reap(first)
    assert first.returncode == 0, err


@pytest.mark.parametrize("due", ["past", "soon"], ids=["caught-up-at-start", "fired-by-its-job"])
def test_sigterm_mid_send_exits_soon_leaving_no_copy_in_flight(tmp_path, due):
    handler = FaultHandler(data_delay=lambda: 0.05)
    with ThreadedServer(handler) as server:
        config, date = newsroom(tmp_path, server.port, due=due)
        state = tmp_path / "s.db"
        process = start_digest(config, state, "schedule")
        try:
            assert wait_for(lambda: len(handler.received) >= 20 or process.poll() is not None, 20)
            assert process.poll() is None, exited_early(process)
            out, err, took = stop(process, signal.SIGTERM, 12)
        finally:
            reap(process)
        received = list(handler.received)

    if due == "soon":
        assert not re.search(r"event=issue\.catch_up edition=am ", err), "the send was caught up at start, not fired by the edition's job"
    assert took < 12, f"exited {took:.1f} s after SIGTERM"
    assert process.returncode == 0, (process.returncode, out, err)
    final = rows(state, date)
    assert len(final) == READERS
    assert [email for email, st, _, _ in final if st == "sending"] == [], "a copy was left in flight"
    assert [email for email, st, _, _ in final if st == "uncertain"] == []
    assert any(st == "pending" for _, st, _, _ in final), "the signal came too late to matter"
    check_consistent(as_deliveries(final), received)  # every copy the server stored is recorded 'sent'
    assert "event=issue.stopped" in err and "edition=am" in err, err
    assert "event=scheduler.stopped" in err, err


def _scheduler(config: Path, state: str, log: Path) -> subprocess.Popen[str]:
    """`digest schedule` with its log lines in ``log`` (read while it runs)."""
    from smtp_faults import DIGEST, digest_env
    return subprocess.Popen([str(DIGEST), "--config", str(config), "schedule"], env=digest_env(state),
                            stdout=subprocess.DEVNULL, stderr=log.open("w"), stdin=subprocess.DEVNULL, text=True,
                            cwd=config.parent)


def _health(config: Path, state: str) -> tuple[int, str]:
    from smtp_faults import DIGEST, digest_env
    done = subprocess.run([str(DIGEST), "--config", str(config), "schedule", "--health"], env=digest_env(state),
                          capture_output=True, text=True, cwd=config.parent, timeout=30)
    return done.returncode, " ".join((done.stdout + done.stderr).split())


@pytest.mark.postgres
def test_two_schedulers_on_one_postgresql_one_leads_and_the_standby_takes_over_a_kill_within_60_s(tmp_path, postgres_url):
    from digest.state.ledger import state_path
    state = state_path(postgres_url, tmp_path)
    pace = [0.08]  # 8 s for the whole issue: the kill lands mid-send; the standby's part need not be slow
    handler = FaultHandler(data_delay=lambda: pace[0])
    with ThreadedServer(handler) as server:
        config, date = newsroom(tmp_path, server.port, due="past")
        leader = _scheduler(config, state, tmp_path / "leader.log")
        standby = None
        try:
            assert wait_for(lambda: len(handler.received) >= 30 or leader.poll() is not None, 30)
            assert leader.poll() is None, (tmp_path / "leader.log").read_text()
            standby = _scheduler(config, state, tmp_path / "standby.log")
            assert wait_for(lambda: "event=scheduler.standby" in (tmp_path / "standby.log").read_text(), 20), \
                (tmp_path / "standby.log").read_text()
            code, said = _health(config, state)
            assert code == 0 and f":{leader.pid} is alive (leader)" in said and f"standby: " in said \
                and f":{standby.pid}" in said, said
            before = {email for email, _, _, _ in rows_pg(state, date)}
            leader.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            leader.communicate()
            pace[0] = 0.01
            at_kill = rows_pg(state, date)
            in_flight = {email for email, st, _, _ in at_kill if st == "sending"}
            assert any(st == "pending" for _, st, _, _ in at_kill), "the kill came too late to matter"
            assert wait_for(lambda: "event=scheduler.takeover" in (tmp_path / "standby.log").read_text(), 60), \
                (tmp_path / "standby.log").read_text()
            took_over = time.monotonic() - killed
            print(f"the standby led {took_over:.1f} s after the leader's kill")  # shown with -s
            assert wait_for(lambda: {r[1] for r in rows_pg(state, date)} == {"sent"}, 30), \
                sorted({r[1] for r in rows_pg(state, date)})
            code, said = _health(config, state)
            assert code == 0 and f":{standby.pid} is alive (leader)" in said and "standby:" not in said, said
            _, _, _ = stop(standby, signal.SIGTERM, 15)
        finally:
            reap(leader)
            if standby is not None:
                reap(standby)
        received = list(handler.received)
    assert took_over <= 60, f"the standby took {took_over:.0f} s to lead"
    assert before and len(before) == READERS
    final = rows_pg(state, date)
    stored = check_consistent(as_deliveries(final), received)
    assert sorted(stored) == audience()
    duplicates = {reader for reader, copies in stored.items() if len(copies) > 1}
    assert duplicates <= in_flight, (duplicates, in_flight)
    issues = ledger_issue_count(state)
    assert issues == 1


def rows_pg(state: str, date: dt.date) -> list[tuple[str, str, int, str | None]]:
    try:
        return ledger_rows(state, "am", date)
    except Exception:  # tables not created yet
        return []


def ledger_issue_count(state: str) -> int:
    import psycopg
    with psycopg.connect(state, autocommit=True) as pg:
        return pg.execute("SELECT count(*) FROM issues").fetchone()[0]
