"""A capture SMTP server on loopback: the only aiosmtpd import.

``digest demo`` sends through it so the whole SMTP path runs without any configuration, and
tests subclass ``CaptureHandler`` to inject faults a healthy server would never produce.
Every message is kept exactly as the server received it (``Received.data``).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session


@dataclass(frozen=True, slots=True)
class Received:
    """One message as the server stored it."""

    sender: str
    recipients: tuple[str, ...]
    data: bytes


@dataclass
class CaptureHandler:
    """Accepts everything and keeps it. Override ``rcpt``/``data`` replies to inject faults."""

    received: list[Received] = field(default_factory=list)
    auth_attempts: list[str] = field(default_factory=list)
    connections: int = 0
    pipelining: bool = True  # offer PIPELINING (RFC 2920), as Postfix does; aiosmtpd reads pipelined commands in order

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        if not self.pipelining:
            return responses
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]) -> str:
        reply = await self.rcpt(session, address)
        if reply.startswith("250"):
            envelope.rcpt_tos.append(address)
        return reply

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return await self.data(server, session, envelope)

    async def rcpt(self, session: Session, address: str) -> str:
        return "250 2.1.5 OK"

    async def data(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.keep(envelope)
        return "250 2.0.0 OK: queued"

    def keep(self, envelope: Envelope) -> None:
        data = envelope.original_content if envelope.original_content is not None else envelope.content
        self.received.append(Received(envelope.mail_from, tuple(envelope.rcpt_tos), bytes(data)))


class _Protocol(SMTP):
    def __init__(self, *args: Any, on_close: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_close = on_close

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.event_handler.connections += 1
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._on_close()
        super().connection_lost(error)


class _Refuse(asyncio.Protocol):
    """Answers one line and hangs up, as a relay at its connection limit does."""

    def __init__(self, greeting: str) -> None:
        self.greeting = greeting

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(self.greeting.encode("ascii") + b"\r\n")
        transport.close()


class CaptureServer:
    """``async with CaptureServer() as server:`` listens on 127.0.0.1 and a free port."""

    def __init__(self, handler: CaptureHandler | None = None, *, host: str = "127.0.0.1",
                 tls_context: ssl.SSLContext | None = None, require_starttls: bool = False,
                 credentials: tuple[str, str] | None = None, auth_require_tls: bool = True,
                 implicit_tls: bool = False, max_sessions: int | None = None, port: int = 0) -> None:
        """``implicit_tls`` speaks TLS from the first byte (port 465 style) with ``tls_context``;
        ``max_sessions`` answers 421 to a connection beyond that many open ones (a relay's
        per-client connection limit); ``port`` 0 is a free one."""
        self.handler = handler or CaptureHandler()
        self.implicit_tls = implicit_tls
        self.max_sessions = max_sessions
        self.sessions = 0
        self.refused = 0
        self.host = host
        self.port = port
        self.tls_context = tls_context
        self.require_starttls = require_starttls
        self.credentials = credentials
        self.auth_require_tls = auth_require_tls
        self.server: asyncio.AbstractServer | None = None

    def _authenticator(self) -> Callable[..., AuthResult] | None:
        if self.credentials is None:
            return None

        def check(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
            login = getattr(data, "login", b"")
            password = getattr(data, "password", b"")
            self.handler.auth_attempts.append(login.decode(errors="replace") if isinstance(login, bytes) else str(login))
            ok = (login, password) == tuple(c.encode() for c in self.credentials)
            return AuthResult(success=ok, handled=False)  # handled=True would mean "I replied already": no 535

        return check

    async def __aenter__(self) -> CaptureServer:
        loop = asyncio.get_running_loop()
        authenticator = self._authenticator()
        starttls_context = None if self.implicit_tls else self.tls_context

        def protocol() -> asyncio.Protocol:
            if self.max_sessions is not None and self.sessions >= self.max_sessions:
                self.refused += 1
                return _Refuse(f"421 4.7.0 capture.localhost Error: too many connections (limit {self.max_sessions})")
            self.sessions += 1  # counted here: several accepts can come before any connection_made
            return _Protocol(self.handler, hostname="capture.localhost", tls_context=starttls_context,
                             require_starttls=self.require_starttls, authenticator=authenticator,
                             auth_require_tls=self.auth_require_tls, decode_data=False,
                             # aiosmtpd offers any handler attribute named auth_* as a mechanism
                             auth_exclude_mechanism=["ATTEMPTS"], on_close=self._closed)

        self.server = await loop.create_server(protocol, host=self.host, port=self.port,
                                               ssl=self.tls_context if self.implicit_tls else None)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def _closed(self) -> None:
        self.sessions -= 1

    async def __aexit__(self, *exc: object) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
