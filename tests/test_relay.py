"""The relay's side of a send: 503s, TLS set-up errors, connection limits, an unreachable relay,
and a send after its deadline. Real aiosmtpd servers on 127.0.0.1 throughout."""

from __future__ import annotations

import asyncio
import time

import pytest

from digest.capture import CaptureServer
from smtp_faults import AM_READERS, FaultHandler, Reply, by_email, rcpt_counts, settings_for, tls_material
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


# --- TLS failures are settings errors: they stop at once with their diagnosis ----------------------


@pytest.fixture
def tls(tmp_path):
    material = tls_material(tmp_path / "tls")
    if material is None:
        pytest.skip("neither trustme nor the openssl command is available to make a test CA")
    return material


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
