"""Fault injection for delivery tests: a scriptable aiosmtpd handler, a server in a thread,
newsroom copies pointed at it, and the checks every delivery scenario ends with.

The handler is ``digest.deliver.capture.CaptureHandler`` with per-recipient scripts::

    handler = FaultHandler(rcpt_script={"ana.lucero@example.com": [Reply("451 4.3.0 busy")] * 2},
                           data_script={"marcus.bell@example.com": [Drop()]})

Each RCPT (or DATA) for an address takes the next action of its script; when the script is used
up the server behaves normally. Everything the server saw is logged (``rcpt_seen``), and only
what it accepted is stored (``received``), exactly as a real relay would have it.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import email.parser
import email.policy
import re
import shutil
import sqlite3
import ssl
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conftest import DIGEST, copy_newsroom, digest_env

from digest.deliver.capture import CaptureHandler, CaptureServer, Received
from digest.models import DeliverySettings, Settings, SmtpSettings
from digest.state.ledger import Delivery, Ledger

DATE = dt.date(2026, 12, 1)
# A deadline far away: the sample day is a fixed date, and a deadline that has passed on the
# machine's clock would expire every deferred copy at once and make retry tests depend on the date.
FAR_DEADLINE_HOURS = 24 * 365 * 50.0
AM_READERS = (
    "ana.lucero@example.com", "jose.alvarez@example.net", "marcus.bell@example.net", "lena.kowalczyk@example.com",
    "ellie.marsh@example.net", "chen.wei@example.org", "j.whitaker@example.com", "beatriz.souza@example.com",
    "leilani.kahale@example.org", "moses.adeyemi@example.net", "olu.bankole@example.com",
)


# --- scripted faults -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """Answer with ``text``; with ``close`` the server closes the connection right after the reply."""

    text: str
    close: bool = False


@dataclass(frozen=True)
class Drop:
    """DATA only: the body arrived; the connection is cut without any reply.

    ``keep`` says whether the server had already stored the message (the worst case for
    duplicates: the relay has it, the sender cannot know)."""

    keep: bool = True


@dataclass(frozen=True)
class Stall:
    """DATA only: wait ``seconds`` before answering ``then``; ``keep_first`` stores before waiting."""

    seconds: float
    keep_first: bool = True
    then: str = "250 2.0.0 OK: queued"


Action = Reply | Drop | Stall
DataHook = Callable[["FaultHandler", Any, Any, Any], Awaitable[None] | None]


def _key(address: str) -> str:
    return address.strip().strip("<>").casefold()


@dataclass
class FaultHandler(CaptureHandler):
    """A capture handler that follows per-recipient scripts of faults and logs what it saw."""

    rcpt_script: dict[str, list[Action]] = field(default_factory=dict)
    data_script: dict[str, list[Action]] = field(default_factory=dict)
    mail_default: Callable[[str], str | None] | None = None  # a reply to MAIL FROM instead of 250
    rcpt_default: Callable[[str], str | None] | None = None  # a reply for any RCPT not scripted
    data_delay: Callable[[], float] | None = None  # seconds every DATA waits (after storing)
    close_after: int | None = None  # close each connection after this many messages (250 first)
    on_data: DataHook | None = None  # awaited at the start of every DATA
    rcpt_seen: list[str] = field(default_factory=list)  # every RCPT address, in order
    data_seen: list[str] = field(default_factory=list)  # every recipient whose body arrived
    _per_session: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rcpt_script = {_key(k): list(v) for k, v in self.rcpt_script.items()}
        self.data_script = {_key(k): list(v) for k, v in self.data_script.items()}

    async def handle_MAIL(self, server, session, envelope, address, options):
        if self.mail_default is not None:
            reply = self.mail_default(address)
            if reply is not None:
                return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, options):
        self.rcpt_seen.append(address)
        script = self.rcpt_script.get(_key(address))
        if script:
            action = script.pop(0)
            assert isinstance(action, Reply), action
            if action.text.startswith("250"):
                envelope.rcpt_tos.append(address)
            if action.close:
                asyncio.get_running_loop().call_soon(_close, server)
            return action.text
        if self.rcpt_default is not None:
            reply = self.rcpt_default(address)
            if reply is not None:
                return reply
        return await super().handle_RCPT(server, session, envelope, address, options)

    async def handle_DATA(self, server, session, envelope):
        recipient = envelope.rcpt_tos[0]
        self.data_seen.append(recipient)
        if self.on_data is not None:
            pending = self.on_data(self, server, session, envelope)
            if pending is not None:
                await pending
        script = self.data_script.get(_key(recipient))
        if script:
            action = script.pop(0)
            if isinstance(action, Drop):
                if action.keep:
                    self.keep(envelope)
                server.transport.abort()  # no reply ever goes out
                await asyncio.Event().wait()  # cancelled when the connection is lost
            if isinstance(action, Stall):
                if action.keep_first:
                    self.keep(envelope)
                await asyncio.sleep(action.seconds)  # cancelled if the client gives up first
                if not action.keep_first and action.then.startswith("250"):
                    self.keep(envelope)
                return action.then
            assert isinstance(action, Reply)
            if action.text.startswith("250"):
                self.keep(envelope)
            if action.close:
                asyncio.get_running_loop().call_soon(_close, server)
            return action.text
        self.keep(envelope)
        if self.data_delay is not None:
            await asyncio.sleep(self.data_delay())
        if self.close_after is not None:
            count = self._per_session[id(session)] = self._per_session.get(id(session), 0) + 1
            if count >= self.close_after:
                asyncio.get_running_loop().call_soon(_close, server)
        return "250 2.0.0 OK: queued"


def _close(server) -> None:
    if server.transport is not None:
        server.transport.close()


# --- reading what the server stored ------------------------------------------------------------------


def headers(data: bytes):
    return email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(data)


def message_id(data: bytes) -> str:
    return str(headers(data)["Message-ID"]).strip()


def stored_by_reader(received: Iterable[Received]) -> dict[str, list[Received]]:
    """The server's stored copies by reader (casefolded envelope recipient)."""
    found: dict[str, list[Received]] = collections.defaultdict(list)
    for message in received:
        assert len(message.recipients) == 1, f"one recipient per message, got {message.recipients}"
        found[_key(message.recipients[0])].append(message)
    return found


def rcpt_counts(handler: FaultHandler) -> collections.Counter[str]:
    return collections.Counter(_key(a) for a in handler.rcpt_seen)


# --- the checks every scenario ends with --------------------------------------------------------------


def check_consistent(rows: list[Delivery], received: Iterable[Received]) -> dict[str, list[Received]]:
    """The ledger agrees with what the server stored.

    - 'sent' => stored at least once; stored => 'sent' or 'uncertain' (never failed, pending,
      deferred or suppressed); no row is left in 'sending';
    - every stored copy went to a reader of the frozen audience and carries the Message-ID the
      ledger recorded for that reader, so duplicates carry the same one.
    """
    stored = stored_by_reader(received)
    by_key = {_key(d.email): d for d in rows}
    assert set(stored) <= set(by_key), f"the server got copies for non-readers: {set(stored) - set(by_key)}"
    for key, row in by_key.items():
        copies = stored.get(key, [])
        assert row.state != "sending", f"{row.email} left in 'sending'"
        if row.state == "sent":
            assert copies, f"{row.email} is 'sent' but the server never stored a copy"
        if copies:
            assert row.state in ("sent", "uncertain"), f"{row.email}: server stored {len(copies)} but ledger says {row.state}"
            ids = {message_id(c.data) for c in copies}
            assert len(ids) == 1, f"{row.email}: copies carry different Message-IDs {ids}"
            assert row.message_id in ids, f"{row.email}: ledger Message-ID {row.message_id} but stored {ids}"
    return stored


def check_nothing_lost(rows: list[Delivery], received: Iterable[Received], deliverable: Iterable[str]) -> None:
    """Every deliverable reader is 'sent' and the server holds at least one copy for them."""
    stored = stored_by_reader(received)
    states = {_key(d.email): d.state for d in rows}
    for address in deliverable:
        key = _key(address)
        assert states.get(key) == "sent", f"{address}: ledger says {states.get(key)}"
        assert len(stored.get(key, [])) >= 1, f"{address}: never stored"


def suppressions(ledger: Ledger, address: str) -> dict[str, str]:
    """{edition: reason} of the suppressions recorded for an address."""
    rows = ledger.db.execute("SELECT edition, reason FROM suppressions WHERE key = ?", (_key(address),))
    return dict(rows)


def check_hard_bounce(ledger: Ledger, handler: FaultHandler, rows: list[Delivery], address: str) -> None:
    """A hard bounce: failed, asked exactly once (never retried), suppressed for every edition."""
    row = next(d for d in rows if _key(d.email) == _key(address))
    assert row.state == "failed", row
    assert rcpt_counts(handler)[_key(address)] == 1, f"{address} was asked {rcpt_counts(handler)[_key(address)]} times"
    assert suppressions(ledger, address).get("*") == "bounced", suppressions(ledger, address)


def by_email(rows: list[Delivery]) -> dict[str, Delivery]:
    return {_key(d.email): d for d in rows}


# --- settings --------------------------------------------------------------------------------------


def settings_for(base: Settings, state_db: Path, port: int, *, smtp: dict[str, Any] | None = None,
                  delivery: dict[str, Any] | None = None, **replace: Any) -> Settings:
    """``base`` sending to 127.0.0.1:port with short timeouts and fast retries."""
    smtp_args = dict(pool_size=2, timeout=2, data_timeout=2)
    smtp_args.update(smtp or {})
    tls = smtp_args.pop("tls", "none")
    delivery_args = dict(retry_base=0.01, retry_cap=0.05, max_attempts=4, deadline_hours=FAR_DEADLINE_HOURS)
    delivery_args.update(delivery or {})
    return dataclasses.replace(base, state_db=state_db, smtp=SmtpSettings("127.0.0.1", port, tls, **smtp_args),
                               delivery=DeliverySettings(**delivery_args), **replace)



# --- a server in a thread (for code that runs its own event loop: the CLI, subprocesses) ----------------


class ThreadedServer:
    """``with ThreadedServer(handler) as server:`` a CaptureServer on 127.0.0.1 in its own thread and loop."""

    def __init__(self, handler: CaptureHandler | None = None, **options: Any) -> None:
        self.handler = handler or FaultHandler()
        self.options = options
        self.loop = asyncio.new_event_loop()
        self.server: CaptureServer | None = None
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        self.server = CaptureServer(self.handler, **self.options)
        asyncio.run_coroutine_threadsafe(self.server.__aenter__(), self.loop).result(10)
        return self

    def call(self, function: Callable[[], None]) -> None:
        """Run ``function`` in the server's loop (e.g. to set an asyncio.Event there)."""
        self.loop.call_soon_threadsafe(function)

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        try:
            asyncio.run_coroutine_threadsafe(self.server.__aexit__(), self.loop).result(10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


def fire_scheduled(config: Path, slug: str, now: str) -> list[Received]:
    """Let a Scheduler on ``config`` fire ``slug``'s job at the UTC time ``now`` ("...Z"), sending
    to a fresh capture server; what the server received."""
    from digest.config import load_settings
    from digest.schedule import Scheduler

    clock = dt.datetime.fromisoformat(now.replace("Z", "+00:00"))

    async def scenario() -> list[Received]:
        async with CaptureServer(FaultHandler()) as server:
            base = load_settings(config)
            settings = dataclasses.replace(base, smtp=dataclasses.replace(base.smtp, port=server.port))
            await Scheduler(settings, clock=lambda: clock).fire(slug)
            return list(server.handler.received)

    return asyncio.run(scenario())


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0, interval: float = 0.01) -> bool:
    """Poll until ``predicate()`` is true; False on timeout (callers assert on it)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# --- a newsroom on disk for `digest` subprocesses ------------------------------------------------------


def write_newsroom(folder: Path, *, port: int, pool_size: int = 3, readers: int | None = None,
                   smtp: dict[str, Any] | None = None, delivery: dict[str, Any] | None = None) -> Path:
    """Copy the sample newsroom (stories, notes, subscribers) into ``folder``, pointed at 127.0.0.1:port; return its digest.toml.

    ``readers`` replaces subscribers.csv with that many active readers of 'am' (reader0001@...).
    """
    subscribers = None
    if readers is not None:
        lines = ["email,name,editions,status,city,joined"]
        lines += [f"reader{n:04d}@example.com,Reader {n},am,active,Testville,2025-01-01" for n in range(1, readers + 1)]
        subscribers = "\n".join(lines) + "\n"
    smtp_values = {"host": '"127.0.0.1"', "port": str(port), "tls": '"none"', "pool_size": str(pool_size)}
    smtp_values.update({k: _toml(v) for k, v in (smtp or {}).items()})
    delivery_values = {"retry_base": "0.01", "retry_cap": "0.05", "deadline_hours": str(FAR_DEADLINE_HOURS)}
    delivery_values.update({k: _toml(v) for k, v in (delivery or {}).items()})

    def edit(text: str) -> str:
        return _set_table(_set_table(text, "smtp", smtp_values), "delivery", delivery_values)

    return copy_newsroom(folder, edit=edit, subscribers=subscribers, notes=True)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def _set_table(text: str, table: str, values: dict[str, str]) -> str:
    """Set ``key = value`` lines inside ``[table]`` (replacing existing keys, appending new ones)."""
    lines = text.splitlines()
    start = lines.index(f"[{table}]")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines))
    body = lines[start + 1:end]
    todo = dict(values)
    for i, line in enumerate(body):
        match = re.match(r"^(\w+)\s*=", line)
        if match and match[1] in todo:
            body[i] = f"{match[1]} = {todo.pop(match[1])}"
    body += [f"{k} = {v}" for k, v in todo.items()]
    return "\n".join([*lines[:start + 1], *body, *lines[end:]]) + "\n"


def start_digest(config: Path, state_db: Path, *args: str, **extra_env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([str(DIGEST), "--config", str(config), *args], env=digest_env(state_db, **extra_env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            cwd=config.parent)


def finish(process: subprocess.Popen[str], timeout: float = 30) -> tuple[str, str]:
    """(stdout, stderr) of a started `digest` process once it exits; the test fails if it runs past ``timeout``."""
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"`digest {' '.join(process.args[3:5])}` did not finish within {timeout} s:\n{out}\n{err}")


def ledger_rows(state_db: Path, edition: str = "am", date: dt.date = DATE) -> list[tuple[str, str, int, str | None]]:
    """(email, state, attempts, message_id) of every copy, read without the Ledger class (no writes)."""
    query = ("SELECT d.email, d.state, d.attempts, d.message_id FROM deliveries d JOIN issues i ON i.id = d.issue_id "
             "WHERE i.edition = ? AND i.issue_date = ? ORDER BY d.id")
    if isinstance(state_db, str) and state_db.startswith("postgresql://"):
        import psycopg
        with psycopg.connect(state_db, autocommit=True) as pg:
            return [tuple(row) for row in pg.execute(query.replace("?", "%s"), (edition, date.isoformat()))]
    db = sqlite3.connect(state_db, timeout=30)
    try:
        return list(db.execute(query, (edition, date.isoformat())))
    finally:
        db.close()


# --- TLS material ---------------------------------------------------------------------------------------


def tls_material(folder: Path) -> tuple[ssl.SSLContext, Path] | None:
    """A server context with a certificate for 127.0.0.1/localhost and the CA file that signs it.

    trustme when it is installed, else the ``openssl`` command; None when neither is available."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import trustme
    except ImportError:
        trustme = None
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca_file = folder / "ca.pem"
    if trustme is not None:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        cert.configure_cert(server)
        ca.cert_pem.write_to_path(str(ca_file))
        return server, ca_file
    if shutil.which("openssl") is None:
        return None
    ext = folder / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n"
                   "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
                   "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    commands = [
        ["openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=digest test CA",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
         "-addext", "subjectKeyIdentifier=hash"],
        ["openssl", "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"],
        ["openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
         "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf"],
    ]
    for command in commands:
        subprocess.run(command, cwd=folder, check=True, capture_output=True)
    server.load_cert_chain(folder / "server.pem", folder / "server.key")
    return server, ca_file
