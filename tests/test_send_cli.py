"""`digest send`, `digest status` and `digest demo` against a real SMTP server on 127.0.0.1.

The commands run in-process through ``digest.cli.main`` (they start their own event loop), with
the server in a thread; the lock test runs two real `digest send` processes at once.
"""

from __future__ import annotations

import asyncio
import csv
import email
import email.policy
import io
import re
import subprocess
from contextlib import closing
from pathlib import Path

import pytest
from conftest import flat, run
from smtp_faults import (
    AM_READERS,
    DATE,
    FaultHandler,
    Reply,
    ThreadedServer,
    headers,
    ledger_rows,
    message_id,
    start_digest,
    stored_by_reader,
    wait_for,
    write_newsroom,
)

import digest.cli
import digest.deliver.demo
from digest.deliver.capture import CaptureServer
from digest.readers.export import COLUMNS, safe_cell
from digest.state.ledger import Ledger

ANA, JOSE, MARCUS, LENA = AM_READERS[:4]
READERS_PER_EDITION = {"am": 11, "pm": 11, "denver": 6, "des-moines": 6, "twin-cities": 7,
                       "tampa-bay": 7, "charlotte": 5, "climate": 11}
D = DATE.isoformat()
pytestmark = pytest.mark.usefixtures("no_hang")  # an in-process command that hangs fails its test


@pytest.fixture
def env(env, tmp_path):
    """The shared env (test key, tmp_path/state.db), run from tmp_path."""
    env.chdir(tmp_path)
    return env


@pytest.fixture
def server():
    with ThreadedServer(FaultHandler()) as running:
        yield running


@pytest.fixture
def newsroom(tmp_path, env, server) -> Path:
    """A copy of the sample newsroom pointed at the test server; returns its digest.toml."""
    return write_newsroom(tmp_path / "newsroom", port=server.port, pool_size=2)


def send(capsys, config: Path, *args: str) -> tuple[int, str, str]:
    return run(capsys, "--config", str(config), "send", *args)


def issue_rows(tmp_path: Path, edition: str = "am"):
    return ledger_rows(tmp_path / "state.db", edition)


# --- exit codes ----------------------------------------------------------------------------------------------


def test_send_exits_0_when_every_copy_is_sent(capsys, newsroom, server, tmp_path):
    code, out, err = send(capsys, newsroom, "am", "--date", D)
    assert code == 0, out + err
    assert "11 sent" in out
    assert sorted(stored_by_reader(server.handler.received)) == sorted(AM_READERS)
    assert {state for _, state, _, _ in issue_rows(tmp_path)} == {"sent"}
    code, out, _ = run(capsys, "--config", str(newsroom), "status", "am", "--date", D)
    assert code == 0 and "sent" in out and "11" in out


def test_send_exits_1_when_a_copy_failed(capsys, newsroom, server, tmp_path):
    server.handler.rcpt_script = {ANA: [Reply("550 5.1.1 <ana.lucero@example.com>: user unknown")]}
    code, out, err = send(capsys, newsroom, "am", "--date", D)
    assert code == 1, out + err
    assert "failed" in out


def test_send_exits_1_when_deferred_copies_remain(capsys, newsroom, server, tmp_path):
    server.handler.rcpt_script = {ANA: [Reply("451 4.3.0 try again later")] * 20}
    code, out, err = send(capsys, newsroom, "am", "--date", D, "--no-wait")
    assert code == 1, out + err
    states = {email: state for email, state, _, _ in issue_rows(tmp_path)}
    assert states[ANA] == "deferred" and list(states.values()).count("sent") == 10


def test_send_exits_1_when_the_issue_is_paused(capsys, tmp_path, env, server):
    config = write_newsroom(tmp_path / "newsroom", port=server.port, pool_size=1,
                            delivery={"breaker_min_rejections": 3, "breaker_ratio": 0.2})
    server.handler.rcpt_default = lambda address: "550 5.7.1 refused by policy"
    code, out, err = send(capsys, config, "am", "--date", D)
    assert code == 1, out + err
    assert "paused" in out
    assert "pending" in {state for _, state, _, _ in issue_rows(tmp_path)}


@pytest.mark.parametrize("args", [["nope", "--date", D], ["am", "--date", "2026-13-01"], ["am", "--date", "tomorrow"]],
                         ids=["unknown-edition", "impossible-date", "not-a-date"])
def test_send_exits_2_for_bad_input(capsys, newsroom, server, tmp_path, args):
    code, out, err = send(capsys, newsroom, *args)
    assert code == 2, out + err
    assert server.handler.connections == 0
    assert not (tmp_path / "state.db").exists() or issue_rows(tmp_path) == []


def test_send_exits_2_without_the_signing_key(capsys, newsroom, server, tmp_path, env):
    env.delenv("DIGEST_SECRET_KEY")
    code, out, err = send(capsys, newsroom, "am", "--date", D)
    assert code == 2
    assert "DIGEST_SECRET_KEY" in err
    assert server.handler.connections == 0


def test_send_exits_1_with_a_clear_message_when_the_relay_refuses_the_password(tmp_path, env):
    with ThreadedServer(FaultHandler(), credentials=("u", "p"), auth_require_tls=False) as relay:
        config = write_newsroom(tmp_path / "newsroom", port=relay.port, pool_size=1, smtp={"timeout": 3})
        state = tmp_path / "state.db"
        process = start_digest(config, state, "send", "am", "--date", D,
                               DIGEST_SMTP_USERNAME="u", DIGEST_SMTP_PASSWORD="not-the-password")
        try:
            out, err = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            pytest.fail(f"`digest send` with a refused password did not stop within 20 s:\n{out}\n{err}")
        assert process.returncode == 1, out + err
        assert "credentials" in out + err and "not-the-password" not in out + err  # names the problem, not the secret
        assert relay.handler.received == [] and relay.handler.rcpt_seen == []
    assert {state for _, state, _, _ in ledger_rows(tmp_path / "state.db")} == {"pending"}


# --- test copies -----------------------------------------------------------------------------------------------


def test_send_to_sends_marked_test_copies_and_records_no_issue(capsys, newsroom, server, tmp_path):
    code, out, err = send(capsys, newsroom, "am", "--date", D, "--to", "a@example.com", "--to", "b@example.com")
    assert code == 0, out + err
    received = server.handler.received
    assert sorted(m.recipients[0] for m in received) == ["a@example.com", "b@example.com"]
    for message in received:
        parsed = headers(message.data)
        assert str(parsed["Subject"]).startswith("[TEST]"), parsed["Subject"]
        assert parsed["X-Digest-Test"] is not None
    code, out, _ = run(capsys, "--config", str(newsroom), "status", "am", "--date", D)
    assert code == 1 and "not sent" in out
    state = tmp_path / "state.db"
    if state.exists():
        with closing(Ledger(state)) as ledger:
            assert ledger.find_issue("am", DATE) is None


def test_send_to_as_renders_the_copy_as_that_subscriber_gets_it(capsys, newsroom, server):
    code, out, err = send(capsys, newsroom, "am", "--date", D, "--to", "qa@example.com", "--as", ANA)
    assert code == 0, out + err
    (message,) = server.handler.received
    assert message.recipients == ("qa@example.com",)
    parsed = email.message_from_bytes(message.data, policy=email.policy.default)
    text = parsed.get_body(("plain",)).get_content()
    assert "Good morning, Ana." in text
    assert str(parsed["Subject"]).startswith("[TEST]")


def test_a_test_copy_does_not_share_the_real_copys_message_id(capsys, newsroom, server):
    # A test copy to a reader's own address must not carry the Message-ID of the issue that reader
    # will get: mail systems drop a second message with a Message-ID they have already seen.
    code, _, _ = send(capsys, newsroom, "am", "--date", D, "--to", ANA)
    assert code == 0
    code, _, _ = send(capsys, newsroom, "am", "--date", D)
    assert code == 0
    copies = stored_by_reader(server.handler.received)[ANA.casefold()]
    assert len(copies) == 2
    test_copy, real_copy = copies
    assert headers(test_copy.data)["X-Digest-Test"] is not None and headers(real_copy.data)["X-Digest-Test"] is None
    test_id, real_id = message_id(test_copy.data), message_id(real_copy.data)
    assert test_id != real_id, f"the test copy reused the issue's Message-ID {real_id}"


@pytest.mark.parametrize("bad", ["bad", "a@", "x@example.com\r\nBcc: y@example.com"])
def test_send_to_a_bad_address_exits_2_and_sends_nothing(capsys, newsroom, server, bad):
    code, out, err = send(capsys, newsroom, "am", "--date", D, "--to", "ok@example.com", "--to", bad)
    assert code == 2, out + err
    assert server.handler.received == [] and server.handler.connections == 0


# --- status and export ------------------------------------------------------------------------------------------


def test_status_lists_counts_and_failures_and_exports_defused_csv(capsys, newsroom, server, tmp_path):
    server.handler.rcpt_script = {
        ANA: [Reply("550 5.1.1 <ana.lucero@example.com>: mailbox unknown")],
        LENA: [Reply('550 =HYPERLINK("http://x")')],
        JOSE: [Reply("554 5.7.1 @SUM(1+1)*cmd|' /C calc'!A0")],
    }
    code, _, _ = send(capsys, newsroom, "am", "--date", D)
    assert code == 1
    out_csv = tmp_path / "out.csv"
    code, out, err = run(capsys, "--config", str(newsroom), "status", "am", "--date", D, "--export", str(out_csv))
    assert code == 1  # failures remain
    text = flat(out)
    assert "sent" in text and "8" in text and "failed" in text and "3" in text
    assert ANA in text and "mailbox unknown" in text and "550" in text
    assert LENA in text and JOSE in text
    rows = list(csv.reader(io.StringIO(out_csv.read_text(encoding="utf-8"), newline="")))
    assert tuple(rows[0]) == COLUMNS
    assert len(rows) == 1 + 11
    body = [dict(zip(COLUMNS, row)) for row in rows[1:]]
    assert sorted(r["email"] for r in body) == sorted(AM_READERS)
    lena = next(r for r in body if r["email"] == LENA)
    assert lena["state"] == "failed"
    assert "HYPERLINK" in lena["last_reply"] and lena["last_reply"].startswith("'")
    for row in body:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), f"unsafe cell {value!r}"


@pytest.mark.parametrize("value", ["=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1", '=HYPERLINK("http://x")'])
def test_safe_cell_defuses_formula_starts(value):
    assert safe_cell(value) == "'" + value


@pytest.mark.parametrize("value", ["ana@example.com", "250 2.0.0 OK", "", None, 3, "a=b"])
def test_safe_cell_leaves_plain_values(value):
    assert safe_cell(value) == ("" if value is None else str(value))


def test_status_of_an_issue_never_sent_exits_1(capsys, newsroom, server):
    code, out, err = run(capsys, "--config", str(newsroom), "status", "am", "--date", D)
    assert code == 1
    assert "not sent" in out


# --- demo -------------------------------------------------------------------------------------------------------


def test_demo_sends_every_edition_over_smtp_and_saves_what_the_server_received(capsys, tmp_path, env, monkeypatch):
    config = write_newsroom(tmp_path / "newsroom", port=2525)
    servers: list[CaptureServer] = []

    class Recording(CaptureServer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            servers.append(self)

    monkeypatch.setattr(digest.deliver.demo, "CaptureServer", Recording)  # where the demo runs its server
    code, out, err = run(capsys, "--config", str(config), "demo")
    assert code == 0, out + err
    (server,) = servers
    received = {m.data for m in server.handler.received}
    out_dir = config.parent / "out"
    total = 0
    for slug, readers in READERS_PER_EDITION.items():
        files = sorted((out_dir / slug / D).glob("*.eml"))
        assert len(files) == readers, slug
        for path in files:
            assert path.read_bytes() in received, f"{path} is not what the server received"
        total += readers
    assert len(server.handler.received) == total
    assert not (tmp_path / "state.db").exists()  # the demo never touches the real state database


# --- one sender per issue, across processes ----------------------------------------------------------------------


def test_two_send_processes_for_one_issue_one_sends_the_other_exits_already_running(tmp_path, env):
    gate = asyncio.Event()

    async def hold_first_copy(handler, server, session, envelope):
        await gate.wait()  # the first process stays busy (and holds the lock) until released

    with ThreadedServer(FaultHandler(on_data=hold_first_copy)) as relay:
        config = write_newsroom(tmp_path / "newsroom", port=relay.port, pool_size=2)
        state = tmp_path / "state.db"
        first = start_digest(config, state, "send", "am", "--date", D)
        try:
            try:
                assert wait_for(lambda: len(relay.handler.data_seen) >= 1, 30), "the first send never reached DATA"
                second = start_digest(config, state, "send", "am", "--date", D)
                out, err = second.communicate(timeout=30)
                assert second.returncode == 1, out + err
                assert "already running" in out + err
                assert first.poll() is None  # the two really overlapped
            finally:
                relay.call(gate.set)
            out, err = first.communicate(timeout=60)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
        assert first.returncode == 0, out + err
        rows = ledger_rows(state)
        assert {s for _, s, _, _ in rows} == {"sent"}
        stored = stored_by_reader(relay.handler.received)
        assert sorted(stored) == sorted(AM_READERS) and all(len(v) == 1 for v in stored.values())
        assert len(relay.handler.rcpt_seen) == 11  # the second process asked the server nothing


def test_send_as_without_to_exits_2(capsys, newsroom, server):
    code, out, err = send(capsys, newsroom, "am", "--date", D, "--as", ANA)
    assert code == 2, out + err
    assert server.handler.connections == 0


# --- status: every copy not sent, failures by class (issue 9, item 12a) ----------------------------------------


def cells(text: str) -> str:
    """Table output with the rules and borders gone: ``failed (hard bounce) 1``."""
    return " ".join(re.sub(r"[\u2500-\u257f]", " ", text).split())


def _export(capsys, config: Path, tmp_path: Path, edition: str) -> tuple[int, str, dict[str, dict[str, str]]]:
    out_csv = tmp_path / f"{edition}.csv"
    code, out, _ = run(capsys, "--config", str(config), "status", edition, "--date", D, "--export", str(out_csv))
    rows = list(csv.reader(io.StringIO(out_csv.read_text(encoding="utf-8"), newline="")))
    return code, out, {row[0]: dict(zip(rows[0], row)) for row in rows[1:]}


def test_status_tells_failures_apart_by_class_in_the_table_and_the_export(capsys, newsroom, server, tmp_path):
    server.handler.rcpt_script = {
        ANA: [Reply("550 5.1.1 <ana.lucero@example.com>: mailbox unknown")],
        JOSE: [Reply("554 5.7.1 rejected by policy")],
        MARCUS: [Reply("451 4.3.0 try again later")] * 50,
        LENA: [Reply("554 transaction failed")],
    }
    assert send(capsys, newsroom, "am", "--date", D)[0] == 1
    code, out, rows = _export(capsys, newsroom, tmp_path, "am")
    assert code == 1
    expected = {ANA: "hard bounce", JOSE: "policy rejection", MARCUS: "gave up after retries", LENA: "permanent failure"}
    assert {email: rows[email]["failure"] for email in expected} == expected
    assert all(rows[email]["state"] == "failed" for email in expected)
    assert {r["failure"] for e, r in rows.items() if e not in expected} == {""}
    text = cells(out)
    for label in expected.values():
        assert f"failed ({label}) 1" in text, text  # the counts table, one row per class
    assert "failed 4" in text  # after the total


def test_status_says_a_copy_failed_because_the_deadline_passed(capsys, tmp_path, env, server):
    # A deadline of 0 hours has passed for the sample day: a deferred copy is given up at once.
    late = write_newsroom(tmp_path / "late", port=server.port, pool_size=2, delivery={"deadline_hours": 0})
    server.handler.rcpt_script = {address: [Reply("451 4.7.1 greylisted, try again later")] * 5 for address in AM_READERS}
    assert send(capsys, late, "pm", "--date", D)[0] == 1
    code, out, rows = _export(capsys, late, tmp_path, "pm")
    assert code == 1
    failed = {email: row["failure"] for email, row in rows.items() if row["state"] == "failed"}
    assert failed and set(failed.values()) == {"deadline passed"}, rows
    assert f"failed (deadline passed) {len(failed)}" in cells(out)


def test_status_lists_pending_copies_too_capped_with_a_pointer_to_the_export(capsys, newsroom, tmp_path):
    import datetime as dt

    readers = [(f"reader{n:03d}@example.com", f"Reader {n}", f"reader{n:03d}@example.com") for n in range(60)]
    with closing(Ledger(tmp_path / "state.db")) as ledger:
        ledger.create_issue("am", DATE, dt.datetime(2026, 12, 1, 11, 0, tzinfo=dt.timezone.utc), [], audience=readers)
    code, out, _ = run(capsys, "--config", str(newsroom), "status", "am", "--date", D)
    assert code == 1
    listed = [email for email, _, _ in readers if email in out]
    assert len(listed) == 50, out
    assert "... and 10 more; --export for all" in out
    assert "pending" in out
