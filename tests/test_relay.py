"""The relay's side of a send: 503s, TLS set-up errors, connection limits, an unreachable relay,
and a send after its deadline. Real aiosmtpd servers on 127.0.0.1 throughout."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from zoneinfo import ZoneInfo

import pytest
from conftest import DIGEST, digest_env
from smtp_faults import (
    AM_READERS,
    DATE,
    FaultHandler,
    Reply,
    ThreadedServer,
    by_email,
    ledger_rows,
    rcpt_counts,
    settings_for,
    start_digest,
    wait_for,
    write_newsroom,
)
from test_delivery import finish, ledger_state, send

from digest.deliver.capture import CaptureServer

ANA, JOSE = AM_READERS[:2]


# --- 503: bad sequence of commands ----------------------------------------------------------------


def test_503_drops_the_connection_and_retries_on_a_new_one_without_spending_an_attempt(sample_settings, tmp_path):
    handler = FaultHandler(rcpt_script={ANA: [Reply("503 5.5.1 Error: need MAIL command")]})

    async def scenario():
        async with CaptureServer(handler) as server:
            settings = settings_for(sample_settings, tmp_path / "state.db", server.port, smtp={"pool_size": 1})
            return settings, await send(settings, within=15)

    settings, report = asyncio.run(scenario())
    assert report.ok, report
    _, rows, _ = finish(settings, handler)
    ana = by_email(rows)[ANA]
    # The 503 says the session is confused, not that the reader is: a fresh connection, and the
    # reader's attempts count only the one that went.
    assert handler.connections == 2, f"{handler.connections} connections: the 503 did not open a new one"
    assert ana.attempts == 1, ana
    assert rcpt_counts(handler)[ANA] == 2


def test_503_again_on_a_fresh_connection_stops_the_send_and_fails_no_reader(sample_settings, tmp_path):
    handler = FaultHandler(rcpt_default=lambda address: "503 5.5.1 Error: bad sequence of commands")

    async def scenario():
        async with CaptureServer(handler) as server:
            settings = settings_for(sample_settings, tmp_path / "state.db", server.port, smtp={"pool_size": 2})
            started = time.monotonic()
            report = await send(settings, within=15)
            return settings, report, time.monotonic() - started

    settings, report, took = asyncio.run(scenario())
    assert report.stopped and "503" in report.stopped, report.stopped
    assert took < 5
    _, rows = ledger_state(settings)
    assert {d.state for d in rows} == {"pending"}, [(d.email, d.state, d.last_text) for d in rows]
    assert all(d.attempts == 0 for d in rows)
    assert handler.received == []


# --- TLS failures are settings errors: they stop at once with their diagnosis ----------------------


def test_implicit_tls_against_a_plain_server_stops_at_once_and_says_so(sample_settings, tmp_path):
    handler = FaultHandler()

    async def scenario():
        async with CaptureServer(handler) as server:
            settings = settings_for(sample_settings, tmp_path / "state.db", server.port,
                                    smtp={"tls": "tls", "pool_size": 2}, delivery={"retry_base": 5, "retry_cap": 5})
            started = time.monotonic()
            report = await send(settings, within=20)
            return settings, report, time.monotonic() - started

    settings, report, took = asyncio.run(scenario())
    assert took < 5, f"a relay that does not speak TLS was retried for {took:.1f} s"
    assert report.stopped and "does not speak TLS" in report.stopped and "starttls" in report.stopped, report.stopped
    _, rows = ledger_state(settings)
    assert {d.state for d in rows} == {"pending"} and all(d.attempts == 0 for d in rows)
    assert handler.received == []


def test_implicit_tls_with_an_unverifiable_certificate_stops_at_once(sample_settings, tmp_path, tls):
    server_context, _ = tls  # the client is not given the CA
    handler = FaultHandler()

    async def scenario():
        async with CaptureServer(handler, tls_context=server_context, implicit_tls=True) as server:
            settings = settings_for(sample_settings, tmp_path / "state.db", server.port,
                                    smtp={"tls": "tls", "pool_size": 2}, delivery={"retry_base": 5, "retry_cap": 5})
            started = time.monotonic()
            report = await send(settings, within=20)
            return settings, report, time.monotonic() - started

    settings, report, took = asyncio.run(scenario())
    assert took < 5, f"a certificate that fails verification was retried for {took:.1f} s"
    assert report.stopped and "certificate" in report.stopped and "ca_file" in report.stopped, report.stopped
    _, rows = ledger_state(settings)
    assert {d.state for d in rows} == {"pending"}
    assert handler.received == [] and handler.rcpt_seen == []


def test_implicit_tls_with_a_verified_certificate_sends(sample_settings, tmp_path, tls):
    server_context, ca_file = tls
    handler = FaultHandler()

    async def scenario():
        async with CaptureServer(handler, tls_context=server_context, implicit_tls=True) as server:
            settings = settings_for(sample_settings, tmp_path / "state.db", server.port,
                                    smtp={"tls": "tls", "ca_file": ca_file, "pool_size": 2})
            return settings, await send(settings, within=20)

    settings, report = asyncio.run(scenario())
    assert report.ok, report
    finish(settings, handler)


# --- a relay's per-client connection limit ---------------------------------------------------------


def test_connections_the_relay_refuses_hand_their_readers_to_the_connections_it_accepted(sample_settings, tmp_path):
    # The relay takes 2 sessions at a time and answers 421 to the rest, as Postfix does at
    # smtpd_client_connection_count_limit. A refused connection's reader must not wait for the
    # relay-outage backoff (30 s here) while the accepted connections could carry it.
    handler = FaultHandler()
    notices: list[str] = []

    async def scenario():
        async with CaptureServer(handler, max_sessions=2) as server:
            settings = settings_for(sample_settings, tmp_path / "state.db", server.port, smtp={"pool_size": 5},
                                    delivery={"retry_base": 30, "retry_cap": 30})
            started = time.monotonic()
            report = await send(settings, within=20, notify=notices.append)
            return settings, report, time.monotonic() - started, server.refused

    settings, report, took, refused = asyncio.run(scenario())
    assert refused >= 1, "the server never refused a connection: the scenario did not happen"
    assert report.ok, report
    assert took < 5, f"the send took {took:.1f} s with connections idle"
    _, rows, stored = finish(settings, handler)
    assert all(len(copies) == 1 for copies in stored.values())
    assert all(d.attempts == 1 for d in rows), [(d.email, d.attempts) for d in rows]
    # The operator hears of it once, with the numbers to set pool_size by.
    limit = [n.text for n in notices if "421" in n.text]
    assert len(limit) == 1, notices
    assert "pool_size" in limit[0], limit[0]


# --- an unreachable relay is not silent ---------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as probe:  # a port on loopback that nothing listens on
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _lines_of(stream, into: list[str]) -> threading.Thread:
    thread = threading.Thread(target=lambda: into.extend(iter(stream.readline, "")), daemon=True)
    thread.start()
    return thread


def test_digest_send_to_a_closed_port_says_what_is_wrong_within_5_s_and_what_was_pending_on_sigterm(tmp_path):
    port = _closed_port()
    # The sample day's stories, with a deadline two days from now however long ago that day was.
    days_ago = (dt.datetime.now(ZoneInfo("America/Chicago")).date() - DATE).days
    config = write_newsroom(tmp_path / "newsroom", port=port, pool_size=3,
                            delivery={"retry_base": 30, "retry_cap": 30, "deadline_hours": 24 * (days_ago + 2)})
    state = tmp_path / "state.db"
    process = start_digest(config, state, "send", "am", "--date", DATE.isoformat())
    err: list[str] = []
    reader = _lines_of(process.stderr, err)
    try:
        assert wait_for(lambda: any("refused the connection" in line for line in err), timeout=5), err
        (notice,) = [line for line in err if "refused the connection" in line]
        assert f"127.0.0.1:{port} refused the connection" in notice
        assert "every 30 s" in notice and "the issue's deadline" in notice, notice
        assert "Ctrl-C stops" in notice and "resumes" in notice, notice
        time.sleep(1.5)  # three connections, several refusals: still one line
        assert len([line for line in err if "refused the connection" in line]) == 1, err
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=20)
        reader.join(5)
    assert process.returncode == 1
    assert "stopped by a signal" in out and "11 copies not sent" in out and "11 pending" in out, out
    assert f"127.0.0.1:{port} refused the connection" in out.split("stopped by a signal", 1)[1], out


def test_the_scheduler_logs_an_unreachable_relay_as_an_event(sample_settings, tmp_path, caplog):
    from digest.schedule import Scheduler

    settings = settings_for(sample_settings, tmp_path / "state.db", _closed_port(), smtp={"pool_size": 2},
                            delivery={"retry_base": 30, "retry_cap": 30})
    scheduler = Scheduler(settings)

    async def scenario():
        asyncio.get_running_loop().call_later(1.0, scheduler.stop.set)
        await asyncio.wait_for(scheduler.send_one(settings.edition("am"), DATE), 20)

    with caplog.at_level(logging.INFO, logger="digest"):
        asyncio.run(scenario())
    lines = [r.getMessage() for r in caplog.records]
    unreachable = [line for line in lines if "event=relay.unreachable" in line]
    assert len(unreachable) == 1, lines
    assert "level=warning" in unreachable[0] and "refused the connection" in unreachable[0]
    (stopped,) = [line for line in lines if "event=issue.stopped" in line]
    assert "refused the connection" in stopped, stopped


# --- a send after its issue's deadline --------------------------------------------------------------


def _issue_deadline(state) -> float | None:
    db = sqlite3.connect(state)
    try:
        return db.execute("SELECT deadline FROM issues WHERE edition = 'am' AND issue_date = ?",
                          (DATE.isoformat(),)).fetchone()[0]
    finally:
        db.close()


def test_a_send_after_the_deadline_says_so_first_and_deadline_gives_it_a_new_one(tmp_path):
    # The sample day (2026-12-01) was long ago: its 6-hour deadline has passed.
    handler = FaultHandler(rcpt_script={ANA: [Reply("451 4.7.1 greylisted, try again later")]})
    with ThreadedServer(handler) as server:
        config = write_newsroom(tmp_path / "newsroom", port=server.port, pool_size=2, delivery={"deadline_hours": 6})
        late = tmp_path / "late.db"
        run = subprocess.run([str(DIGEST), "--config", str(config), "send", "am", "--date", DATE.isoformat()],
                             env=digest_env(late), capture_output=True, text=True, timeout=60, cwd=config.parent)
        warning = next((line for line in run.stderr.splitlines() if "deadline" in line), "")
        assert "passed" in warning and "one attempt" in warning and "failed" in warning, run.stderr
        assert "--deadline" in warning, warning
        assert {row[0]: row[1] for row in ledger_rows(late)}[ANA] == "failed"

        resent = tmp_path / "resent.db"
        handler.rcpt_script[ANA] = [Reply("451 4.7.1 greylisted, try again later")]
        started = time.time()
        run = subprocess.run([str(DIGEST), "--config", str(config), "send", "am", "--date", DATE.isoformat(),
                              "--deadline", "2h"],
                             env=digest_env(resent), capture_output=True, text=True, timeout=60, cwd=config.parent)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "passed" not in run.stderr, run.stderr
        assert {row[0]: row[1] for row in ledger_rows(resent)}[ANA] == "sent"
        recorded = _issue_deadline(resent)
        assert recorded is not None and abs(recorded - (started + 7200)) < 60, recorded


@pytest.mark.parametrize("value, message", [("yesterday", "not a duration"), ("-2h", "not a duration"),
                                            ("2026-12-01T10:00:00-06:00", "already passed")])
def test_a_bad_deadline_is_refused_before_anything_is_sent(tmp_path, value, message):
    handler = FaultHandler()
    with ThreadedServer(handler) as server:
        config = write_newsroom(tmp_path / "newsroom", port=server.port)
        state = tmp_path / "state.db"
        run = subprocess.run([str(DIGEST), "--config", str(config), "send", "am", "--date", DATE.isoformat(),
                              "--deadline", value],
                             env=digest_env(state), capture_output=True, text=True, timeout=60, cwd=config.parent)
    assert run.returncode == 2, run.stdout + run.stderr
    assert message in run.stderr and "--deadline" in run.stderr, run.stderr
    assert handler.rcpt_seen == [] and not state.exists()
