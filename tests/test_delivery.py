"""Delivery against a real aiosmtpd server on 127.0.0.1, with faults injected.

Every scenario ends with the same checks (tests/smtp_faults.py): each reader's ledger state
agrees with what the server actually stored ('sent' <=> stored, never 'sent' without a copy),
nothing deliverable is lost, hard bounces were asked exactly once and are suppressed, and
duplicate copies carry the same Message-ID.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
import shutil
import socket
import time
from contextlib import closing

import pytest
from hypothesis import given
from hypothesis import strategies as st
from conftest import ROOT, isolate
from smtp_faults import (
    AM_READERS,
    DATE,
    Drop,
    FaultHandler,
    Reply,
    Stall,
    by_email,
    check_consistent,
    check_hard_bounce,
    check_nothing_lost,
    message_id,
    rcpt_counts,
    settings_for,
    suppressions,
)

from digest.cli import main
from digest.deliver.capture import CaptureServer
from digest.deliver.locks import AlreadyRunning, issue_lock
from digest.deliver.runner import send_issue
from digest.deliver.transport import Envelope, SmtpConnection, SmtpSetupError, always_send, dot_stuff
from digest.readers.addresses import address_key
from digest.models import SmtpSettings
from digest.state.ledger import Ledger

ANA, JOSE, MARCUS, LENA, ELLIE, CHEN = AM_READERS[:6]
OLU = AM_READERS[-1]




async def send(settings, slug: str = "am", date=DATE, *, within: float = 30.0, stop: asyncio.Event | None = None,
               **options):
    """send_issue, failing the test instead of hanging it when a run does not end ``within`` seconds.

    At ``within`` the run is asked to stop as SIGTERM would ask it (cancelling it could hang on
    workers that wait for the relay); if it does not end even then, the test fails too."""
    stop = stop or asyncio.Event()
    expired: list[bool] = []

    def expire() -> None:
        expired.append(True)
        stop.set()

    timer = asyncio.get_running_loop().call_later(within, expire)
    try:
        report = await asyncio.wait_for(send_issue(settings, settings.edition(slug), date, stop=stop, **options),
                                        within + 5)
    except asyncio.TimeoutError:
        pytest.fail(f"send_issue({slug}, {date}) ignored a stop request made after {within} s")
    finally:
        timer.cancel()
    if expired:
        pytest.fail(f"send_issue({slug}, {date}) did not finish within {within} s (stopped: {report.counts})")
    return report

def send_once(handler, sample_settings, state_db):
    """Send the sample AM issue once to a fresh server running ``handler``: (settings, report)."""

    async def scenario():
        async with CaptureServer(handler) as server:
            settings = settings_for(sample_settings, state_db, server.port)
            return settings, await send(settings)

    return asyncio.run(scenario())



def ledger_state(settings, slug: str = "am", date=DATE):
    """(issue record, deliveries) as the ledger has them now."""
    with closing(Ledger(settings.state_db)) as ledger:
        record = ledger.find_issue(slug, date)
        assert record is not None, f"no issue {slug} {date}"
        return record, ledger.deliveries(record.id)


def finish(settings, handler, *, deliverable=AM_READERS, slug: str = "am"):
    """The checks every scenario ends with; returns (record, rows, stored copies by reader)."""
    record, rows = ledger_state(settings, slug)
    sender = settings.edition(slug).sender.address
    received = [m for m in handler.received if m.sender == sender]  # this edition's copies
    stored = check_consistent(rows, received)
    check_nothing_lost(rows, received, deliverable)
    return record, rows, stored


# --- 1. happy path --------------------------------------------------------------------------------


def test_happy_path_sends_each_reader_the_bytes_render_writes(sample_settings, composed_sample, sample_subscribers,
                                                             tmp_path, state_db, monkeypatch, capsys):
    handler = FaultHandler()

    settings, report = send_once(handler, sample_settings, state_db)
    assert report.stopped is None and report.ok
    assert report.counts["sent"] == 11 and report.this_run == {"sent": 11}
    record, rows, stored = finish(settings, handler)
    assert record.status == "done"
    assert {k: len(v) for k, v in stored.items()} == {r: 1 for r in AM_READERS}
    assert all(d.attempts == 1 and d.last_code == 250 for d in rows)
    sender = settings.edition("am").sender.address
    assert {m.sender for m in handler.received} == {sender}

    # The bytes on the wire are the bytes the composer builds for that reader ...
    composed = composed_sample("am")
    for subscriber in sample_subscribers.audience("am"):
        (copy,) = stored[subscriber.email.casefold()]
        assert copy.data == composed.message(composed.recipient(subscriber)), subscriber.email

    # ... and the bytes `digest render` writes to disk for that reader.
    isolate(monkeypatch)
    out = tmp_path / "render"
    assert main(["--config", str(ROOT / "digest.toml"), "render", "am", "--date", DATE.isoformat(), "--out", str(out)]) == 0
    capsys.readouterr()
    rendered = {}
    for path in (out / "am" / DATE.isoformat()).glob("*.eml"):  # a folder per issue under --out
        (to,) = email.message_from_bytes(path.read_bytes(), policy=email.policy.default).get_all("To")
        rendered[to.addresses[0].addr_spec.casefold()] = path.read_bytes()
    assert set(rendered) == set(AM_READERS)
    for reader, (copy,) in stored.items():
        assert copy.data == rendered[reader], f"{reader}: sent bytes differ from `digest render`"


# --- 2. hard bounce -------------------------------------------------------------------------------------


def test_hard_bounce_fails_suppresses_and_is_never_retried(sample_settings, tmp_path, state_db):
    # The script would bounce her every time: a retry would show as a second RCPT.
    handler = FaultHandler(rcpt_script={ANA: [Reply("550 5.1.1 <ana.lucero@example.com>: user unknown")] * 5})

    async def scenario():
        async with CaptureServer(handler) as server:
            settings = settings_for(sample_settings, state_db, server.port)
            first = await send(settings)
            again = await send(settings)  # a resume must not ask again
            later = await send(settings, "pm")  # a later issue: she is frozen out of it
            return settings, first, again, later

    settings, first, again, later = asyncio.run(scenario())
    assert first.counts["failed"] == 1 and first.counts["sent"] == 10
    assert again.this_run == {}
    record, rows, stored = finish(settings, handler, deliverable=[r for r in AM_READERS if r != ANA])
    ana = by_email(rows)[ANA]
    assert ana.last_code == 550 and "5.1.1" in (ana.last_text or "")
    assert ANA not in stored
    with closing(Ledger(settings.state_db)) as ledger:
        check_hard_bounce(ledger, handler, rows, ANA)
        assert ledger.is_suppressed(address_key(ANA), "pm") and ledger.is_suppressed(address_key(ANA), "climate")
    _, pm_rows = ledger_state(settings, "pm")
    assert by_email(pm_rows)[ANA].state == "suppressed"
    assert later.counts["suppressed"] == 1 and later.counts["sent"] == len(pm_rows) - 1
    assert rcpt_counts(handler)[ANA] == 1  # across the am run, the resume and the pm issue
    finish(settings, handler, slug="pm", deliverable=[d.email for d in pm_rows if d.email != ANA])


def test_copies_whose_bodies_go_together_share_one_commit_and_each_is_sent_once(sample_settings, state_db,
                                                                              monkeypatch):
    # The ledger itself is real; the wrapper only notes how many copies each 'sending' commit carried.
    batches: list[int] = []
    real = Ledger.mark_sending_many

    def noted(ledger, starting, *args, **kwargs):
        batches.append(len(starting))
        return real(ledger, starting, *args, **kwargs)

    monkeypatch.setattr(Ledger, "mark_sending_many", noted)
    handler = FaultHandler()

    async def scenario():
        async with CaptureServer(handler) as server:
            settings = settings_for(sample_settings, state_db, server.port, smtp={"pool_size": 4})
            return settings, await send(settings)

    settings, report = asyncio.run(scenario())
    assert report.ok and report.counts["sent"] == len(AM_READERS)
    _, _, stored = finish(settings, handler)
    assert {k: len(v) for k, v in stored.items()} == {r: 1 for r in AM_READERS}
    assert sum(batches) == len(AM_READERS), batches  # every copy marked once, none twice
    assert max(batches) > 1, f"four connections never shared a commit: {batches}"


# --- 3, 4. temporary failures -----------------------------------------------------------------------------


def test_451_twice_then_accepted_ends_sent_after_three_attempts(sample_settings, tmp_path, state_db):
    handler = FaultHandler(rcpt_script={JOSE: [Reply("451 4.3.0 try again later")] * 2})

    settings, report = send_once(handler, sample_settings, state_db)
    assert report.ok
    _, rows, stored = finish(settings, handler)
    jose = by_email(rows)[JOSE]
    assert jose.state == "sent" and jose.attempts == 3
    assert rcpt_counts(handler)[JOSE] == 3 and len(stored[JOSE]) == 1


def test_452_defers_then_sends_and_endless_451_gives_up_after_max_attempts(sample_settings, tmp_path, state_db):
    handler = FaultHandler(rcpt_script={MARCUS: [Reply("452 4.2.2 mailbox full, try later")],
                                        LENA: [Reply("451 4.7.1 greylisted")] * 50})

    async def scenario():
        async with CaptureServer(handler) as server:
            settings = settings_for(sample_settings, state_db, server.port, delivery={"max_attempts": 4})
            return settings, await send(settings)

    settings, report = asyncio.run(scenario())
    assert report.complete and not report.ok and report.counts["failed"] == 1
    _, rows, stored = finish(settings, handler, deliverable=[r for r in AM_READERS if r != LENA])
    rows = by_email(rows)
    assert rows[MARCUS].state == "sent" and rows[MARCUS].attempts == 2 and len(stored[MARCUS]) == 1
    lena = rows[LENA]
    assert lena.state == "failed" and "gave up" in (lena.last_text or "") and lena.last_code == 451
    assert lena.attempts == 4 and rcpt_counts(handler)[LENA] == 4
    assert LENA not in stored
    with closing(Ledger(settings.state_db)) as ledger:
        assert suppressions(ledger, LENA) == {}  # a temporary failure never suppresses


# --- 5. 421 mid-session -------------------------------------------------------------------------------------


def test_421_mid_session_retries_on_a_new_connection(sample_settings, tmp_path, state_db):
    handler = FaultHandler(rcpt_script={MARCUS: [Reply("421 4.3.2 service shutting down", close=True)]})

    async def scenario():
        async with CaptureServer(handler) as server:
            settings = settings_for(sample_settings, state_db, server.port, smtp={"pool_size": 1})
            return settings, await send(settings)

    settings, report = asyncio.run(scenario())
    assert report.ok
    _, rows, stored = finish(settings, handler)
    assert handler.connections > 1
    assert rcpt_counts(handler)[MARCUS] == 2 and len(stored[MARCUS]) == 1
    assert all(len(copies) == 1 for copies in stored.values())


# --- 6. DATA-phase 451 -------------------------------------------------------------------------------------


def test_451_after_the_body_defers_then_sends(sample_settings, tmp_path, state_db):
    handler = FaultHandler(data_script={ELLIE: [Reply("451 4.3.0 queue busy, try again")]})

    settings, report = send_once(handler, sample_settings, state_db)
    assert report.ok
    _, rows, stored = finish(settings, handler)
    ellie = by_email(rows)[ELLIE]
    assert ellie.state == "sent" and ellie.attempts == 2
    assert handler.data_seen.count(ELLIE) == 2 and len(stored[ELLIE]) == 1


# --- 7. dropped after the final dot ---------------------------------------------------------------------


@pytest.mark.parametrize("kept", [True, False], ids=["server-kept-it", "server-lost-it"])
def test_drop_after_the_body_is_uncertain_and_resent_with_the_same_message_id(sample_settings, tmp_path, state_db, kept):
    handler = FaultHandler(data_script={CHEN: [Drop(keep=kept)]})

    async def scenario():
        async with CaptureServer(handler) as server:
            settings = settings_for(sample_settings, state_db, server.port,
                                    delivery={"uncertain": "resend"})
            first = await send(settings)
            _, rows = ledger_state(settings)
            after_first = by_email(rows)[CHEN]
            check_consistent(rows, handler.received)
            runs = [first]
            while not runs[-1].complete and len(runs) < 4:  # the next run resends
                runs.append(await send(settings))
            return settings, runs, after_first

    settings, runs, after_first = asyncio.run(scenario())
    assert runs[0].this_run.get("uncertain") == 1, runs[0].this_run
    assert after_first.state in ("uncertain", "sent")
    assert runs[-1].ok, runs[-1].counts
    _, rows, stored = finish(settings, handler)
    assert by_email(rows)[CHEN].state == "sent"
    assert handler.data_seen.count(CHEN) == 2  # the body went twice: once lost in doubt, once resent
    copies = stored[CHEN]
    assert len(copies) == (2 if kept else 1)
    assert len({message_id(c.data) for c in copies}) == 1
    assert after_first.message_id == message_id(copies[0].data)
    assert all(len(v) == 1 for k, v in stored.items() if k != CHEN)


def test_drop_after_the_body_with_hold_stays_uncertain_and_is_not_resent(sample_settings, tmp_path, state_db):
    handler = FaultHandler(data_script={CHEN: [Drop(keep=True)]})

    async def scenario():
        async with CaptureServer(handler) as server:
            settings = settings_for(sample_settings, state_db, server.port, delivery={"uncertain": "hold"})
            return settings, await send(settings), await send(settings)

    settings, first, second = asyncio.run(scenario())
    assert first.this_run.get("uncertain") == 1 and first.counts["uncertain"] == 1
    assert second.this_run == {} and second.counts["uncertain"] == 1
    _, rows, stored = finish(settings, handler, deliverable=[r for r in AM_READERS if r != CHEN])
    assert by_email(rows)[CHEN].state == "uncertain"
    assert handler.data_seen.count(CHEN) == 1 and len(stored[CHEN]) == 1


# --- 8. slow server -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kept", [True, False], ids=["stored-before-stall", "stored-after-reply"])
def test_slow_reply_after_the_body_is_uncertain_not_sent_and_not_lost(sample_settings, tmp_path, state_db, kept):
    handler = FaultHandler(data_script={LENA: [Stall(1.5, keep_first=kept)]})

    async def scenario():
        async with CaptureServer(handler) as server:
            settings = settings_for(sample_settings, state_db, server.port, smtp={"data_timeout": 0.3})
            runs = [await send(settings)]
            _, rows = ledger_state(settings)
            after_first = by_email(rows)[LENA]
            check_consistent(rows, handler.received)
            while not runs[-1].complete and len(runs) < 4:
                runs.append(await send(settings))
            return settings, runs, after_first

    settings, runs, after_first = asyncio.run(scenario())
    assert runs[0].this_run.get("uncertain") == 1, runs[0].this_run
    assert after_first.state != "sent" or handler.data_seen.count(LENA) == 2
    assert "timeout" in (after_first.last_text or "").lower() or after_first.state == "sent"
    _, rows, stored = finish(settings, handler)
    assert runs[-1].ok
    assert len(stored[LENA]) == (2 if kept else 1)


# --- 9. a server that closes after K messages ------------------------------------------------------------


def test_server_closing_after_three_messages_gets_every_copy_exactly_once(sample_settings, tmp_path, state_db):
    handler = FaultHandler(close_after=3)

    settings, report = send_once(handler, sample_settings, state_db)
    assert report.ok and report.counts["sent"] == 11
    _, rows, stored = finish(settings, handler)
    assert {k: len(v) for k, v in stored.items()} == {r: 1 for r in AM_READERS}
    assert handler.connections >= 4


# --- 10, 11. setup failures: missing STARTTLS, refused credentials ----------------------------------------


async def _send_expecting_setup_error(settings):
    """The message of the setup error, whether send_issue raises it or reports it as its stop reason."""
    try:
        report = await send(settings, within=10)
    except SmtpSetupError as exc:
        return str(exc), None
    assert report.stopped, f"the send was not stopped: {report.counts}"
    return report.stopped, report


def test_starttls_required_but_not_offered_sends_nothing_and_never_auths(sample_settings, tmp_path, state_db):
    handler = FaultHandler()

    async def scenario():
        async with CaptureServer(handler, credentials=("u", "p"), auth_require_tls=False) as server:
            settings = settings_for(sample_settings, state_db, server.port,
                                    smtp={"tls": "starttls", "username": "u", "password": "p"})
            return settings, await _send_expecting_setup_error(settings)

    settings, (message, report) = asyncio.run(scenario())
    assert "STARTTLS" in message
    assert handler.received == [] and handler.rcpt_seen == []
    assert handler.auth_attempts == []  # no AUTH ever reached the server in clear
    if report is not None:
        assert report.counts["sent"] == report.counts["failed"] == 0


def test_wrong_password_stops_at_once_and_leaves_every_copy_pending(sample_settings, tmp_path, state_db):
    handler = FaultHandler()

    async def scenario():
        async with CaptureServer(handler, credentials=("u", "p"), auth_require_tls=False) as server:
            settings = settings_for(sample_settings, state_db, server.port,
                                    smtp={"username": "u", "password": "wrong"})
            return settings, await _send_expecting_setup_error(settings)

    settings, (message, report) = asyncio.run(scenario())
    assert "credentials" in message
    assert handler.received == [] and handler.rcpt_seen == []
    assert handler.auth_attempts and handler.connections <= settings.smtp.pool_size  # no retries
    _, rows = ledger_state(settings)
    assert [d.state for d in rows] == ["pending"] * 11
    assert all(d.attempts == 0 for d in rows)


# --- 12. circuit breaker on policy rejections ---------------------------------------------------------------


def test_policy_rejections_pause_the_issue_without_suppressing(sample_settings, tmp_path, state_db):
    rejected = set(AM_READERS[0::2])
    handler = FaultHandler(rcpt_default=lambda a: "550 5.7.1 message refused by policy" if a.casefold() in rejected else None)

    async def scenario():
        async with CaptureServer(handler) as server:
            settings = settings_for(sample_settings, state_db, server.port,
                                    delivery={"breaker_min_rejections": 3, "breaker_ratio": 0.2})
            paused = await send(settings)
            record, rows = ledger_state(settings)
            alerts = [m for m in handler.received if b"\r\nX-Digest-Alert: " in m.data]
            handler.received[:] = [m for m in handler.received if m not in alerts]
            # the editors hear of it: one alert to the edition's desk, through the same relay
            assert [m.recipients for m in alerts] == [("am-desk@northline.example.org",)]
            assert b"paused by the circuit breaker" in alerts[0].data
            check_consistent(rows, handler.received)
            asked = rcpt_counts(handler)
            got_body = {r for m in handler.received for r in m.recipients}
            handler.rcpt_default = None  # the relay is fixed; the editor resumes
            resumed = await send(settings)
            return settings, paused, record, rows, asked, got_body, resumed

    settings, paused, record, rows, asked, got_body, resumed = asyncio.run(scenario())
    assert paused.stopped == "paused" and record.status == "paused"
    by_state = {d.email: d.state for d in rows}
    failed = {e for e, s in by_state.items() if s == "failed"}
    assert len(failed) >= 3 and failed <= rejected
    assert all(asked[e] == 1 for e in failed)
    pending = {e for e, s in by_state.items() if s == "pending"}
    assert pending, "the breaker paused nothing"
    # Once the breaker paused the issue no copy's body went: a reader left 'pending' was at most
    # named in a RCPT by a connection already under way (the body is refused at the 'sending' commit).
    assert not pending & got_body, "a reader left 'pending' was sent the message"
    assert all(asked[e] <= 1 for e in pending)
    # readers not yet attempted stay pending
    assert set(by_state) == failed | pending | {e for e, s in by_state.items() if s == "sent"}
    with closing(Ledger(settings.state_db)) as ledger:
        for reader in failed:
            assert suppressions(ledger, reader) == {}, f"{reader} suppressed for a policy rejection"
            assert by_email(rows)[reader].last_code == 550 and "5.7.1" in by_email(rows)[reader].last_text
    # the resume sends the rest and does not retry the rejected copies
    assert resumed.stopped is None and resumed.counts["pending"] == 0
    _, final, stored = finish(settings, handler, deliverable=[r for r in AM_READERS if r not in failed])
    assert all(rcpt_counts(handler)[e] == 1 for e in failed)
    assert all(len(v) == 1 for v in stored.values())


# --- 13. unsubscribe during the send -------------------------------------------------------------------------


def test_reader_who_unsubscribes_during_the_send_gets_nothing(sample_settings, tmp_path, state_db):
    done = []

    def unsubscribe_last_reader(handler, server, session, envelope):
        if not done:
            done.append(True)
            with closing(Ledger(state_db)) as ledger:
                ledger.suppress(address_key(OLU), "am", "unsubscribed")

    handler = FaultHandler(on_data=unsubscribe_last_reader)

    async def scenario():
        async with CaptureServer(handler) as server:
            settings = settings_for(sample_settings, state_db, server.port, smtp={"pool_size": 1})
            return settings, await send(settings)

    settings, report = asyncio.run(scenario())
    assert report.counts["suppressed"] == 1 and report.counts["sent"] == 10
    _, rows, stored = finish(settings, handler, deliverable=AM_READERS[:-1])
    assert by_email(rows)[OLU].state == "suppressed"
    assert OLU not in stored, "the server got a copy for a reader who had unsubscribed"
    assert handler.data_seen.count(OLU) == 0, "the body went to a reader who had unsubscribed"


# --- 14. resume ---------------------------------------------------------------------------------------------


def test_resuming_a_finished_issue_sends_nothing(sample_settings, tmp_path, state_db):
    handler = FaultHandler()

    async def scenario():
        async with CaptureServer(handler) as server:
            settings = settings_for(sample_settings, state_db, server.port)
            first = await send(settings)
            seen = len(handler.rcpt_seen)
            second = await send(settings)
            return settings, first, second, seen

    settings, first, second, seen = asyncio.run(scenario())
    assert first.ok and second.ok and second.this_run == {}
    assert len(handler.rcpt_seen) == seen == 11 and len(handler.received) == 11
    finish(settings, handler)


def test_resume_uses_the_audience_frozen_when_the_issue_was_created(sample_settings, tmp_path, state_db):
    csv = tmp_path / "subscribers.csv"
    shutil.copy(ROOT / "subscribers.csv", csv)
    newcomer = "newcomer@example.com"
    stop = asyncio.Event()

    def stop_after_three(handler, server, session, envelope):
        if len(handler.data_seen) >= 3:
            stop.set()  # as SIGTERM does: finish what is in flight, take no more readers

    handler = FaultHandler(on_data=stop_after_three)

    async def scenario():
        async with CaptureServer(handler) as server:
            base = dataclasses.replace(sample_settings, paths=dataclasses.replace(sample_settings.paths, subscribers=csv))
            settings = settings_for(base, state_db, server.port)
            first = await send(settings, stop=stop)
            _, rows = ledger_state(settings)
            check_consistent(rows, handler.received)
            with csv.open("a", encoding="utf-8") as handle:
                handle.write(f"{newcomer},New Comer,am,active,Boston,2026-11-30\n")
            handler.on_data = None
            second = await send(settings)
            return settings, first, rows, second

    settings, first, rows_after_stop, second = asyncio.run(scenario())
    assert first.stopped == "signal" and first.counts["pending"] > 0
    assert not any(d.state == "sending" for d in rows_after_stop)
    assert second.ok
    _, rows, stored = finish(settings, handler)
    assert newcomer not in by_email(rows) and newcomer not in stored and rcpt_counts(handler)[newcomer] == 0
    assert len(rows) == 11 and all(len(v) == 1 for v in stored.values())


# --- 15. one sender per issue --------------------------------------------------------------------------------


def test_a_second_send_of_the_same_issue_in_one_process_is_refused(sample_settings, tmp_path, state_db):
    handler = FaultHandler()

    async def scenario():
        async with CaptureServer(handler) as server:
            settings = settings_for(sample_settings, state_db, server.port)
            with issue_lock(settings.state_db, "am", DATE.isoformat()):
                with pytest.raises(AlreadyRunning, match="already running"):
                    await send(settings)
            assert handler.connections == 0
            with closing(Ledger(settings.state_db)) as ledger:
                assert ledger.find_issue("am", DATE) is None  # refused before anything was created
            both = await asyncio.gather(send(settings), send(settings), return_exceptions=True)
            return settings, both

    settings, both = asyncio.run(scenario())
    refused = [r for r in both if isinstance(r, AlreadyRunning)]
    reports = [r for r in both if not isinstance(r, BaseException)]
    assert len(refused) == 1 and len(reports) == 1, both
    assert "already running" in str(refused[0])
    assert reports[0].ok
    _, rows, stored = finish(settings, handler)
    assert all(len(v) == 1 for v in stored.values())


# --- 16. rate limit ---------------------------------------------------------------------------------------------


def test_rate_limit_spaces_messages_and_no_limit_is_faster(sample_settings, tmp_path):
    rate = 20.0

    async def timed(name: str, smtp: dict):
        handler = FaultHandler()
        async with CaptureServer(handler) as server:
            settings = settings_for(sample_settings, tmp_path / name, server.port, smtp=smtp)
            start = time.monotonic()
            report = await send(settings)
            elapsed = time.monotonic() - start
        finish(settings, handler)
        assert report.ok
        return elapsed

    limited = asyncio.run(timed("limited.db", {"rate": rate, "pool_size": 2}))
    free = asyncio.run(timed("free.db", {"pool_size": 2}))
    # 11 messages at 20 a second: at least 10 gaps of 1/20 s, whatever the pool size (a bit of slack).
    assert limited >= 0.8 * (11 - 1) / rate, f"11 messages at {rate}/s took only {limited:.3f} s"
    assert free < limited


# --- 17. STARTTLS and authentication, verified -------------------------------------------------------------------


def test_starttls_with_a_verified_certificate_and_auth_sends(sample_settings, tmp_path, state_db, tls):
    server_context, ca_file = tls
    handler = FaultHandler()

    async def scenario():
        async with CaptureServer(handler, tls_context=server_context, require_starttls=True,
                                 credentials=("u", "p"), auth_require_tls=True) as server:
            settings = settings_for(sample_settings, state_db, server.port,
                                    smtp={"tls": "starttls", "username": "u", "password": "p", "ca_file": ca_file,
                                          "pool_size": 1})
            return settings, await send(settings)

    settings, report = asyncio.run(scenario())
    assert report.ok and report.counts["sent"] == 11
    assert handler.auth_attempts == ["u"]
    finish(settings, handler)


def test_starttls_with_an_unverifiable_certificate_sends_nothing_and_never_auths(sample_settings, tmp_path, state_db, tls):
    server_context, _ = tls  # the client is not given the CA: the certificate cannot be verified
    handler = FaultHandler()

    async def scenario():
        async with CaptureServer(handler, tls_context=server_context, require_starttls=True,
                                 credentials=("u", "p"), auth_require_tls=True) as server:
            settings = settings_for(sample_settings, state_db, server.port,
                                    smtp={"tls": "starttls", "username": "u", "password": "p", "pool_size": 1},
                                    delivery={"max_attempts": 2})
            return settings, await _send_expecting_setup_error(settings)

    settings, (message, _report) = asyncio.run(scenario())
    assert handler.received == [] and handler.rcpt_seen == [] and handler.auth_attempts == []
    assert "certificate" in message.lower()
    # A relay that cannot be verified is a setup problem, like refused credentials: the send stops
    # at once and no reader is charged an attempt or marked failed for it.
    _, rows = ledger_state(settings)
    assert [d.state for d in rows] == ["pending"] * 11


# --- the relay cannot be reached ------------------------------------------------------------------------------


def test_unreachable_relay_spends_no_readers_attempts(sample_settings, tmp_path, state_db):
    with socket.socket() as probe:  # a port on loopback that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def scenario():
        settings = settings_for(sample_settings, state_db, port, smtp={"pool_size": 1},
                                delivery={"max_attempts": 3})
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(1.0, stop.set)
        report = await send(settings, stop=stop, within=15)
        return settings, report

    settings, report = asyncio.run(scenario())
    _, rows = ledger_state(settings)
    # README: "A relay that cannot be reached is waited for with backoff without spending any
    # reader's attempts." The relay being down is not the readers' fault: none may end 'failed'.
    assert not [d.email for d in rows if d.state == "failed"], [(d.email, d.last_text) for d in rows][:2]
    assert all(d.attempts == 0 for d in rows), [(d.email, d.attempts) for d in rows]
    assert all(d.state in ("pending", "deferred") for d in rows)


# --- the relay refuses the envelope sender ------------------------------------------------------------------


def test_sender_address_rejected_stops_without_failing_or_suppressing_readers(sample_settings, tmp_path, state_db):
    # "550 5.1.0" here is about OUR address (MAIL FROM), not the reader's: it must not be read as
    # a hard bounce of every reader (which would suppress the whole list for every edition).
    handler = FaultHandler(mail_default=lambda sender: "550 5.1.0 <%s>: sender address rejected" % sender)

    async def scenario():
        async with CaptureServer(handler) as server:
            settings = settings_for(sample_settings, state_db, server.port, smtp={"pool_size": 1})
            return settings, await send(settings, within=15)

    settings, report = asyncio.run(scenario())
    _, rows = ledger_state(settings)
    with closing(Ledger(settings.state_db)) as ledger:
        suppressed = {r: suppressions(ledger, r) for r in AM_READERS if suppressions(ledger, r)}
    assert suppressed == {}, f"readers suppressed because the relay refused the sender: {suppressed}"
    assert not [d.email for d in rows if d.state == "failed"], [(d.email, d.last_text) for d in rows if d.state == "failed"]
    assert handler.received == [] and handler.rcpt_seen == []
    assert report.stopped, "a relay that refuses the sender address must stop the send with a clear reason"


# --- a stop signal while a copy is stuck in flight -----------------------------------------------------------


def test_stop_abandons_a_stuck_copy_after_the_grace_period_and_the_resume_resends_it(sample_settings, tmp_path, state_db,
                                                                                     monkeypatch):
    import digest.deliver.send
    monkeypatch.setattr(digest.deliver.send, "STOP_GRACE", 0.5)  # the real grace is 10 s
    handler = FaultHandler(data_script={MARCUS: [Stall(30, keep_first=True)]})
    stop = asyncio.Event()

    def stop_when_marcus_is_stuck(handler, server, session, envelope):
        if envelope.rcpt_tos[0] == MARCUS:
            asyncio.get_running_loop().call_later(0.2, stop.set)

    handler.on_data = stop_when_marcus_is_stuck

    async def scenario():
        async with CaptureServer(handler) as server:
            settings = settings_for(sample_settings, state_db, server.port,
                                    smtp={"pool_size": 1, "data_timeout": 60})
            started = time.monotonic()
            first = await send(settings, stop=stop, within=5)
            took = time.monotonic() - started
            _, rows = ledger_state(settings)
            handler.on_data = None
            second = await send(settings)
            return settings, first, took, rows, second

    settings, first, took, rows_after_stop, second = asyncio.run(scenario())
    assert first.stopped == "signal"
    assert took < 5, f"a stop with a stuck copy took {took:.1f} s"
    marcus = by_email(rows_after_stop)[MARCUS]
    assert marcus.state != "sent"  # the server never answered: the copy is in doubt, not sent
    assert second.ok
    _, rows, stored = finish(settings, handler)
    assert len(stored[MARCUS]) == 2  # kept by the server once in doubt, and resent with the same Message-ID


# --- clear text only on loopback -------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["mail.example.com", "10.0.0.5", "192.0.2.1"])
def test_tls_none_is_refused_for_a_relay_that_is_not_loopback(host):
    from digest.deliver.runner import connection_factory
    from digest.models import SmtpSettings

    with pytest.raises(SmtpSetupError, match="loopback"):
        connection_factory(SmtpSettings(host, 25, "none"))
    connection_factory(SmtpSettings(host, 25, "none", allow_insecure=True))  # forced: allowed, no password
    with pytest.raises(SmtpSetupError, match="credentials"):
        connection_factory(SmtpSettings(host, 25, "none", username="u", password="p", allow_insecure=True))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.1.2.3"])
def test_tls_none_is_allowed_on_loopback(host):
    from digest.deliver.runner import connection_factory
    from digest.models import SmtpSettings

    connection_factory(SmtpSettings(host, 25, "none", username="u", password="p"))


# --- cancelling a send (what a scheduler does on shutdown or timeout) ----------------------------------------


_ABANDONED: list[asyncio.AbstractEventLoop] = []


def test_a_cancel_that_arrives_as_the_relay_refuses_is_not_lost():
    # aiosmtplib's asyncio.wait_for (Python 3.11) returned the refusal instead of the cancellation
    # when both came in the same turn of the loop; the send rested and tried again (CI saw a hang).
    # Cancels land at every point of a refused connect; each attempt must end cancelled, not rest.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def attempt(connection: SmtpConnection) -> str:
        try:
            await connection.open()
        except ConnectionError:
            await asyncio.sleep(0.05)  # the rest the pool would take: a cancel pending here ends it
            return "rested"
        return "connected"

    async def cancelled_after(turns: int) -> str:
        task = asyncio.create_task(attempt(SmtpConnection(SmtpSettings("127.0.0.1", port, "none", timeout=2))))
        for _ in range(turns):
            await asyncio.sleep(0)
        task.cancel()
        try:
            return await task
        except asyncio.CancelledError:
            return "cancelled"

    async def scenario() -> list[str]:
        return [await cancelled_after(turns) for _ in range(15) for turns in range(24)]

    outcomes = asyncio.run(scenario())
    assert set(outcomes) == {"cancelled"}, f"{outcomes.count('rested')} of {len(outcomes)} cancels were lost"


def test_cancelling_a_send_while_the_relay_is_down_ends_it_promptly(sample_settings, tmp_path, state_db):
    import threading

    with socket.socket() as probe:  # nothing listens here: the workers wait for the relay
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = settings_for(sample_settings, state_db, port, smtp={"pool_size": 1})
    outcome: dict[str, object] = {}
    loop = asyncio.new_event_loop()

    async def scenario():
        task = asyncio.create_task(send_issue(settings, settings.edition("am"), DATE))
        await asyncio.sleep(0.5)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=5)
        outcome["ended"] = bool(done)

    def run_in_thread():  # a hang must not take the test run (asyncio.run would wait for it forever)
        try:
            loop.run_until_complete(scenario())
        except RuntimeError:
            pass  # stopped from outside below

    thread = threading.Thread(target=run_in_thread, daemon=True)
    thread.start()
    thread.join(15)
    if not outcome.get("ended"):
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        _ABANDONED.append(loop)  # its stuck tasks stay referenced: no teardown noise from them
    assert outcome.get("ended"), "send_issue was still running 5 s after it was cancelled"
    _, rows = ledger_state(settings)
    assert not [d.email for d in rows if d.state in ("sending", "sent", "failed")]


# --- the transaction on the wire: pipelined (RFC 2920) when offered, one command at a time when not ----------


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-at-a-time"])
def test_one_connection_carries_refusals_an_abandoned_body_and_good_copies_either_way(pipelining):
    handler = FaultHandler(pipelining=pipelining, rcpt_script={"nobody@example.com": [Reply("550 5.1.1 no such user")]},
                           mail_default=lambda sender: "451 4.3.0 try later" if sender.startswith("busy@") else None)
    body = b"Subject: x\r\n\r\n.a line that starts with a dot\r\nbye\r\n"

    async def never_send() -> bool:
        return False

    async def scenario():
        async with CaptureServer(handler) as server:
            connection = SmtpConnection(SmtpSettings("127.0.0.1", server.port, "none", timeout=10.0, data_timeout=10.0))
            try:
                replies = [await connection.deliver(Envelope("desk@example.org", "ana@example.com"), body, always_send)]
                offered = connection.pipelining
                replies.append(await connection.deliver(Envelope("desk@example.org", "nobody@example.com"), body, always_send))
                replies.append(await connection.deliver(Envelope("busy@example.org", "ben@example.com"), body, always_send))
                replies.append(await connection.deliver(Envelope("desk@example.org", "cy@example.com"), body, never_send))
                replies.append(await connection.deliver(Envelope("desk@example.org", "dee@example.com"), body, always_send))
            finally:
                await connection.close()
            return offered, replies, handler.connections

    offered, replies, connections = asyncio.run(scenario())
    assert offered is pipelining
    assert [(r.code, r.phase, r.body_sent) if r else None for r in replies] == [
        (250, "body", True), (550, "rcpt", False), (451, "mail", False), None, (250, "body", True)]
    assert [m.recipients for m in handler.received] == [("ana@example.com",), ("dee@example.com",)]
    assert all(m.data == body for m in handler.received), "dot-stuffing was not undone by the server"
    assert handler.rcpt_seen == ["ana@example.com", "nobody@example.com", "cy@example.com", "dee@example.com"]
    assert connections == 2, "refusals should keep the connection; only the abandoned body drops it"


def test_an_envelope_address_with_a_line_break_never_reaches_the_wire():
    async def scenario():
        async with CaptureServer(FaultHandler()) as server:
            connection = SmtpConnection(SmtpSettings("127.0.0.1", server.port, "none", timeout=10.0, data_timeout=10.0))
            try:
                with pytest.raises(ValueError, match="line break"):
                    await connection.deliver(Envelope("desk@example.org", "a@example.com\r\nRCPT TO:<b@example.com>"),
                                             b"x\r\n", always_send)
            finally:
                await connection.close()

    asyncio.run(scenario())


@given(st.lists(st.sampled_from([b"", b".", b"..", b".a", b"a.", b"a", b" .", b"x.y", b"\r", b"\n."]), max_size=12))
def test_dot_stuffing_doubles_a_leading_dot_on_every_line_and_touches_nothing_else(pieces):
    data = b"\r\n".join(pieces)
    # What RFC 5321 4.5.2 asks, line by line (a bare LF does not end a line: message.py forbids one anyway).
    expected = b"\r\n".join(b"." + line if line.startswith(b".") else line for line in data.split(b"\r\n"))
    assert dot_stuff(data) == expected
