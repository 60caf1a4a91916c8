"""More than one relay: copies spread by weight, a relay that refuses connections rested while the
others carry its copies, a rested relay used again when it answers, each relay's own rate, and
`digest status` per relay. Real aiosmtpd servers on 127.0.0.1 throughout; a relay that is down is
a loopback port bound by the test and not listening, so connections to it are refused."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from conftest import DIGEST, TEST_KEY, digest_env
from smtp_faults import (
    AM_READERS,
    DATE,
    FAR_DEADLINE_HOURS,
    FaultHandler,
    Reply,
    ThreadedServer,
    settings_for,
    stored_by_reader,
    write_newsroom,
)
from test_delivery import finish, ledger_state, send

from digest.config import load_settings, parse_signing_keys
from digest.deliver.capture import CaptureServer
from digest.deliver.relays import RelayPool
from digest.deliver.transport import SmtpSetupError
from digest.models import DeliverySettings, Settings, SmtpSettings
from digest.state.ledger import Ledger

ANA, JOSE = AM_READERS[:2]


def relay(name: str, port: int, **options) -> SmtpSettings:
    """A relay on 127.0.0.1:port, clear text (loopback), short timeouts."""
    values = dict(pool_size=2, timeout=2, data_timeout=2)
    values.update(options)
    return SmtpSettings("127.0.0.1", port, "none", name=name, **values)


def with_relays(settings: Settings, *relays: SmtpSettings) -> Settings:
    return dataclasses.replace(settings, smtp=relays[0], relays=relays)


def many_readers(folder: Path, count: int, state_db: Path, **delivery) -> Settings:
    """The sample newsroom with ``count`` readers of 'am', fast retries unless ``delivery`` says otherwise."""
    config = write_newsroom(folder, port=9, readers=count)
    settings = load_settings(config, environ={})
    values = dict(retry_base=0.01, retry_cap=0.05, max_attempts=4, deadline_hours=FAR_DEADLINE_HOURS)
    values.update(delivery)
    return dataclasses.replace(settings, state_db=state_db, signing_keys=parse_signing_keys(TEST_KEY),
                               delivery=DeliverySettings(**values))


@contextlib.contextmanager
def refusing_port() -> Iterator[tuple[socket.socket, int]]:
    """A loopback port bound and not listening: every connection to it is refused while it is held."""
    probe = socket.socket()
    try:
        probe.bind(("127.0.0.1", 0))
        yield probe, probe.getsockname()[1]
    finally:
        probe.close()


def relays_of(state_db: Path) -> dict[str, str | None]:
    """{reader: the relay the ledger recorded for its copy}."""
    with closing(Ledger(state_db)) as ledger:
        record = ledger.find_issue("am", DATE)
        assert record is not None
        return {d.email.casefold(): d.relay for d in ledger.deliveries(record.id)}


def check_once_each(handlers: dict[str, FaultHandler], readers, state_db: Path) -> dict[str, int]:
    """Every reader stored exactly once, by one relay, and the ledger names that relay; copies per relay."""
    stored: dict[str, str] = {}
    for name, handler in handlers.items():
        for reader, copies in stored_by_reader(handler.received).items():
            assert len(copies) == 1 and reader not in stored, f"{reader} stored more than once"
            stored[reader] = name
    assert set(stored) == {r.casefold() for r in readers}, "copies were lost"
    assert relays_of(state_db) == stored
    return {name: sum(1 for r in stored.values() if r == name) for name in handlers}


# --- weights ----------------------------------------------------------------------------------------


def test_copies_are_spread_across_two_relays_by_weight(tmp_path):
    a, b = FaultHandler(), FaultHandler()
    readers = [f"reader{n:04d}@example.com" for n in range(1, 401)]

    async def scenario():
        async with CaptureServer(a) as mx_a, CaptureServer(b) as mx_b:
            settings = with_relays(many_readers(tmp_path / "newsroom", 400, tmp_path / "state.db"),
                                   relay("mx-a", mx_a.port, weight=3, pool_size=3), relay("mx-b", mx_b.port, weight=1))
            return settings, await send(settings, within=60)

    settings, report = asyncio.run(scenario())
    assert report.ok, report
    shares = check_once_each({"mx-a": a, "mx-b": b}, readers, settings.state_db)
    assert 0.70 <= shares["mx-a"] / 400 <= 0.80, shares  # weights 3 and 1: 75% / 25%
    with closing(Ledger(settings.state_db)) as ledger:
        record = ledger.find_issue("am", DATE)
        assert ledger.relay_counts(record.id) == {"mx-a": {"sent": shares["mx-a"]}, "mx-b": {"sent": shares["mx-b"]}}


# --- a relay that refuses connections ------------------------------------------------------------------


def test_a_relay_that_refuses_connections_rests_while_the_other_carries_every_copy(sample_settings, tmp_path):
    # Rests of 30 s: a copy that waited for the refusing relay would show in the time the send takes.
    handler = FaultHandler()
    notices = []

    async def scenario():
        with refusing_port() as (_, closed):
            async with CaptureServer(handler) as mx_a:
                base = settings_for(sample_settings, tmp_path / "state.db", mx_a.port,
                                    delivery={"retry_base": 30, "retry_cap": 30})
                settings = with_relays(base, relay("mx-b", closed), relay("mx-a", mx_a.port))
                started = time.monotonic()
                report = await send(settings, within=20, notify=notices.append)
                return settings, report, time.monotonic() - started, closed

    settings, report, took, closed = asyncio.run(scenario())
    assert report.ok, report
    assert took < 5, f"the send took {took:.1f} s: copies waited for the refusing relay"
    _, rows, stored = finish(settings, handler)  # every reader sent, and stored by mx-a
    assert all(len(copies) == 1 for copies in stored.values())
    assert all(d.attempts == 1 for d in rows), [(d.email, d.attempts) for d in rows]  # the refusals cost nothing
    assert set(relays_of(settings.state_db).values()) == {"mx-a"}
    resting = [n.text for n in notices if n.event == "relay.resting"]
    assert len(resting) == 1, notices
    assert f"mx-b (127.0.0.1:{closed}) refused the connection" in resting[0] and "mx-a" in resting[0], resting[0]
    assert "resting it 30 s; its copies go to mx-a meanwhile" in resting[0], resting[0]
    assert "no reader's attempts are spent" in resting[0], resting[0]
    assert not [n for n in notices if n.event == "relay.unreachable"], notices


def test_a_rested_relay_that_answers_again_takes_its_share_again(tmp_path):
    a, b = FaultHandler(data_delay=lambda: 0.005), FaultHandler()
    readers = [f"reader{n:04d}@example.com" for n in range(1, 301)]
    notices = []
    started_at: list[int] = []  # how many copies mx-a had stored when mx-b began to listen

    async def scenario():
        with refusing_port() as (held, port):
            mx_b = CaptureServer(b, port=port)

            def bring_back(handler, server, session, envelope):
                if len(handler.received) >= 60 and not started_at:
                    started_at.append(len(handler.received))
                    held.close()  # the port is free for mx-b, which listens on it from now on
                    return mx_b.__aenter__()
                return None

            a.on_data = bring_back
            async with CaptureServer(a) as mx_a:
                settings = with_relays(
                    many_readers(tmp_path / "newsroom", 300, tmp_path / "state.db", retry_base=0.05, retry_cap=0.2),
                    relay("mx-a", mx_a.port), relay("mx-b", port))
                try:
                    return settings, await send(settings, within=60, notify=notices.append), port
                finally:
                    await mx_b.__aexit__()

    settings, report, port = asyncio.run(scenario())
    assert report.ok, report
    assert started_at, "mx-a never stored 60 copies: the scenario did not happen"
    shares = check_once_each({"mx-a": a, "mx-b": b}, readers, settings.state_db)
    remaining = 300 - started_at[0]
    # Back in the rotation with its weight (equal): about half of what was left, not a trickle.
    assert shares["mx-b"] >= 0.3 * remaining, (shares, remaining)
    events = [(n.event, n.text) for n in notices]
    assert any(e == "relay.resting" and f"mx-b (127.0.0.1:{port})" in t for e, t in events), events
    back = [t for e, t in events if e == "relay.reachable"]
    assert back and f"mx-b (127.0.0.1:{port}) answers again" in back[0], events
    with closing(Ledger(settings.state_db)) as ledger:
        assert all(d.attempts == 1 for d in ledger.deliveries(ledger.find_issue("am", DATE).id))


def test_every_relay_refusing_waits_as_for_one_relay_and_names_them_all(sample_settings, tmp_path):
    notices = []

    async def scenario():
        with refusing_port() as (_, one), refusing_port() as (_, two):
            base = settings_for(sample_settings, tmp_path / "state.db", one, delivery={"retry_base": 30, "retry_cap": 30})
            settings = with_relays(base, relay("mx-a", one), relay("mx-b", two))
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(1.0, stop.set)
            started = time.monotonic()
            report = await send(settings, within=20, stop=stop, notify=notices.append)
            return settings, report, time.monotonic() - started, one, two

    settings, report, took, one, two = asyncio.run(scenario())
    assert report.stopped == "signal" and took < 5, (report.stopped, took)
    _, rows = ledger_state(settings)
    assert {d.state for d in rows} == {"pending"} and all(d.attempts == 0 for d in rows)
    unreachable = [n.text for n in notices if n.event == "relay.unreachable"]
    assert len(unreachable) == 1, notices
    for where in (f"mx-a (127.0.0.1:{one}) refused the connection", f"mx-b (127.0.0.1:{two}) refused the connection"):
        assert where in unreachable[0] and where in report.relay_problem, (unreachable, report.relay_problem)
    assert "every relay is unreachable" in unreachable[0] and "every 30 s" in unreachable[0], unreachable[0]


# --- each relay's own rate ------------------------------------------------------------------------------


def test_each_relay_keeps_to_its_own_rate(tmp_path):
    arrivals: dict[str, list[float]] = {"mx-a": [], "mx-b": []}

    def clock(name):
        return lambda handler, server, session, envelope: arrivals[name].append(time.monotonic())

    a, b = FaultHandler(on_data=clock("mx-a")), FaultHandler(on_data=clock("mx-b"))
    readers = [f"reader{n:04d}@example.com" for n in range(1, 51)]

    async def scenario():
        async with CaptureServer(a) as mx_a, CaptureServer(b) as mx_b:
            settings = with_relays(many_readers(tmp_path / "newsroom", 50, tmp_path / "state.db"),
                                   relay("mx-a", mx_a.port, weight=4, rate=40, pool_size=4),
                                   relay("mx-b", mx_b.port, weight=1, rate=5))
            return settings, await send(settings, within=60)

    settings, report = asyncio.run(scenario())
    assert report.ok, report
    shares = check_once_each({"mx-a": a, "mx-b": b}, readers, settings.state_db)
    assert shares == {"mx-a": 40, "mx-b": 10}
    fast, slow = arrivals["mx-a"], arrivals["mx-b"]
    # Over any 3 intervals (4 copies), at most its rate with some slack for when a command's reply
    # is late and the next one's is not: mx-b at 5/s, 0.6 s; mx-a at 40/s over 8 intervals, 0.2 s.
    assert min(slow[i + 3] - slow[i] for i in range(len(slow) - 3)) >= 0.5, slow
    assert min(fast[i + 8] - fast[i] for i in range(len(fast) - 8)) >= 0.15, fast
    # mx-a goes faster than mx-b's limit: its own bucket, not one shared with mx-b.
    assert (len(fast) - 1) / (fast[-1] - fast[0]) > 2 * 5, fast


# --- test copies ---------------------------------------------------------------------------------------


def test_a_test_copy_goes_through_the_first_relay_that_takes_a_connection(sample_settings, tmp_path):
    from digest.deliver.runner import send_test_copies

    handler = FaultHandler()

    async def scenario():
        with refusing_port() as (_, closed):
            async with CaptureServer(handler) as mx_b:
                settings = with_relays(settings_for(sample_settings, tmp_path / "state.db", closed),
                                       relay("mx-a", closed), relay("mx-b", mx_b.port))
                return await send_test_copies(settings, settings.edition("am"), DATE, ["editor@example.org"])

    assert [(address, code) for address, code, _ in asyncio.run(scenario())] == [("editor@example.org", 250)]
    assert [m.recipients for m in handler.received] == [("editor@example.org",)]


# --- settings that cannot be used ---------------------------------------------------------------------


def test_credentials_named_for_a_relay_but_not_set_are_refused_before_anything_is_sent():
    named = relay("mx-a", 2525, username_env="MX_A_USER", password_env="MX_A_PASS")
    with pytest.raises(SmtpSetupError, match="MX_A_USER and MX_A_PASS .*mx-a"):
        RelayPool([relay("mx-b", 2526), named], DeliverySettings())


# --- digest send and digest status with two relays ---------------------------------------------------------


def two_relay_newsroom(folder: Path, port_a: int, port_b: int) -> Path:
    """The sample newsroom (its 11 AM readers) sending through mx-a and mx-b, each logging in as
    the user its own variables hold."""
    config = write_newsroom(folder, port=port_a, pool_size=2)
    text = config.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^(host|port) = .*\n", "", text)  # [smtp]'s: each relay names its own
    for name, port in (("mx-a", port_a), ("mx-b", port_b)):
        variable = name.upper().replace("-", "_")
        text += (f'\n[[smtp.relays]]\nname = "{name}"\nhost = "127.0.0.1"\nport = {port}\n'
                 f'username_env = "{variable}_USER"\npassword_env = "{variable}_PASS"\n')
    config.write_text(text, encoding="utf-8")
    return config


def digest(config: Path, state: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DIGEST), "--config", str(config), *args, "--date", DATE.isoformat()],
                          env=digest_env(state, **env), capture_output=True, text=True, timeout=60, cwd=config.parent)


def relay_row(out: str, name: str) -> list[int]:
    """The counts on the status table's row of relay ``name`` (sent, deferred, failed, uncertain)."""
    (line,) = [line for line in out.splitlines() if re.search(rf"\b{name}\b", line)]
    return [int(n) for n in re.findall(r"\b\d+\b", line)]


def test_digest_status_shows_what_each_relay_did(tmp_path):
    # Ana's mailbox does not exist (550) and Jose's server is busy (451) at either relay; --no-wait
    # leaves Jose deferred.
    def faults() -> FaultHandler:
        return FaultHandler(rcpt_script={ANA: [Reply("550 5.1.1 <ana>: mailbox unknown")],
                                         JOSE: [Reply("451 4.3.0 busy")]})

    a, b = faults(), faults()
    with ThreadedServer(a, credentials=("user-a", "pass-a"), auth_require_tls=False) as mx_a, \
            ThreadedServer(b, credentials=("user-b", "pass-b"), auth_require_tls=False) as mx_b:
        config = two_relay_newsroom(tmp_path / "newsroom", mx_a.port, mx_b.port)
        state = tmp_path / "state.db"
        secrets = {"MX_A_USER": "user-a", "MX_A_PASS": "pass-a", "MX_B_USER": "user-b", "MX_B_PASS": "pass-b"}
        sent = digest(config, state, "send", "am", "--no-wait", **secrets)
        assert sent.returncode == 1, sent.stdout + sent.stderr  # not complete: Jose is deferred
        status = digest(config, state, "status", "am")
    assert set(a.auth_attempts) == {"user-a"} and set(b.auth_attempts) == {"user-b"}  # each relay its own login
    assert status.returncode == 1, status.stdout + status.stderr
    assert "Per relay" in status.stdout, status.stdout
    with closing(Ledger(state)) as ledger:
        counts = ledger.relay_counts(ledger.find_issue("am", DATE).id)
    assert set(counts) == {"mx-a", "mx-b"}
    for name in ("mx-a", "mx-b"):
        assert relay_row(status.stdout, name) == [counts[name].get(s, 0) for s in ("sent", "deferred", "failed", "uncertain")]
    assert len(a.received) == relay_row(status.stdout, "mx-a")[0] and len(b.received) == relay_row(status.stdout, "mx-b")[0]
    assert sum(relay_row(status.stdout, n)[0] for n in ("mx-a", "mx-b")) == len(AM_READERS) - 2
    assert sum(relay_row(status.stdout, n)[1] for n in ("mx-a", "mx-b")) == 1  # Jose
    assert sum(relay_row(status.stdout, n)[2] for n in ("mx-a", "mx-b")) == 1  # Ana


def test_digest_status_of_a_send_through_one_relay_has_no_relay_table(tmp_path):
    with ThreadedServer(FaultHandler()) as server:
        config = write_newsroom(tmp_path / "newsroom", port=server.port)
        state = tmp_path / "state.db"
        assert digest(config, state, "send", "am").returncode == 0
        status = digest(config, state, "status", "am")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "Per relay" not in status.stdout
    assert set(relays_of(state).values()) == {f"127.0.0.1:{server.port}"}  # recorded all the same
