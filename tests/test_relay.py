"""The relay's side of a send: 503s, TLS set-up errors, connection limits, an unreachable relay,
and a send after its deadline. Real aiosmtpd servers on 127.0.0.1 throughout."""

from __future__ import annotations

import asyncio
import time

from digest.capture import CaptureServer
from smtp_faults import AM_READERS, FaultHandler, Reply, by_email, rcpt_counts, settings_for
from test_delivery import finish, ledger_state, send

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
