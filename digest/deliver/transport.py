"""Where a byte goes on the wire: one SMTP connection to the relay (the only aiosmtplib import).

A transport takes an envelope and the exact bytes of one message; building never touches it and
it never builds. The dry run's transport, which writes .eml files instead, is ``deliver.eml``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiosmtplib

from ..errors import DigestError
from ..models import SmtpSettings
from ..outcomes import Phase, SmtpReply
from .wire import Replies, Reply


@dataclass(frozen=True, slots=True)
class Envelope:
    """SMTP envelope: the return path and the one recipient of this copy."""

    sender: str
    recipient: str


class SmtpSetupError(DigestError):
    """The relay cannot be used safely or at all (no STARTTLS, AUTH refused, TLS fails)."""

    exit_code = 1


class RelayUnreachable(ConnectionError):
    """The relay cannot be reached now (worth waiting for). ``reason`` is short enough for one line."""

    def __init__(self, where: str, reason: str, detail: str, *, answered: bool = False) -> None:
        super().__init__(f"{where} {reason}")
        self.where = where
        self.reason = reason
        self.detail = detail
        self.answered = answered  # the relay is up and said no (e.g. 421 at its connection limit)


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps: aiosmtplib raises SMTPConnectError ``from`` the OSError."""
    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain


def tls_diagnosis(exc: BaseException, where: str, tls: str) -> str | None:
    """What a TLS failure anywhere in ``exc``'s chain means for the settings, or None if it is not one."""
    failure = next((e for e in _causes(exc) if isinstance(e, ssl.SSLError)), None)
    if failure is None:
        return None
    if isinstance(failure, ssl.SSLCertVerificationError):
        return (f"the certificate of {where} cannot be verified ({failure.verify_message}); if the relay uses a "
                f"private CA, set [smtp] ca_file to it. Nothing was sent and no credentials were offered")
    reason = failure.reason or str(failure)
    if tls == "tls" and reason in ("WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL", "RECORD_LAYER_FAILURE",
                                   "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST"):
        return (f"tls = 'tls' (implicit TLS) but {where} does not speak TLS on connect ({reason}); a relay on "
                f"port 587 or 25 usually wants tls = 'starttls' (DIGEST_SMTP_TLS=starttls)")
    return f"TLS with {where} failed: {reason}"


def _unreachable(exc: BaseException, where: str, timeout: float) -> RelayUnreachable:
    """The one-line reason a connection attempt failed."""
    chain = _causes(exc)
    detail = f"{type(exc).__name__}: {exc}"
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return RelayUnreachable(where, "refused the connection", detail)
    if any(isinstance(e, (asyncio.TimeoutError, aiosmtplib.SMTPTimeoutError)) for e in chain):
        return RelayUnreachable(where, f"did not answer within {timeout:g} s", detail)
    if any(isinstance(e, socket.gaierror) for e in chain):
        return RelayUnreachable(where, "is a host name that does not resolve", detail)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return RelayUnreachable(where, f"refused the session ({exc.code} {exc.message.strip()})", detail, answered=True)
    if any(isinstance(e, aiosmtplib.SMTPServerDisconnected) for e in chain):
        return RelayUnreachable(where, "closed the connection before the session began", detail)
    oserror = next((e for e in chain if isinstance(e, OSError) and e.strerror), None)
    if oserror is not None:
        return RelayUnreachable(where, f"cannot be reached ({oserror.strerror})", detail)
    return RelayUnreachable(where, f"cannot be reached ({exc})", detail)


_DOT_AFTER_LF = re.compile(rb"\n[.]")


def dot_stuff(data: bytes) -> bytes:
    """RFC 5321 4.5.2: a line that starts with '.' gets another '.' in front on the wire."""
    # Most copies have no such line. Looking for one with this regex (a memchr for LF, then one
    # byte) takes 16 us for a 45 KB copy, against 35 for bytes.replace's scan.
    stuffed = data.replace(b"\r\n.", b"\r\n..") if _DOT_AFTER_LF.search(data) else data
    return b"." + stuffed if stuffed.startswith(b".") else stuffed


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine (where clear-text SMTP cannot be overheard)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_smtp_settings(smtp: SmtpSettings) -> None:
    """Refuse settings that would send mail or a password where it can be read in transit."""
    relay = f" (relay {smtp.where})" if smtp.name else ""
    if smtp.tls == "none" and not is_loopback(smtp.host) and not smtp.allow_insecure:
        raise SmtpSetupError(f"tls = 'none' is only allowed for a loopback relay, not {smtp.host}; "
                             "use starttls or tls (or set [smtp] allow_insecure = true to force it)")
    if smtp.tls == "none" and smtp.username and not is_loopback(smtp.host):
        raise SmtpSetupError(f"refusing to send SMTP credentials without TLS{relay}")
    if bool(smtp.username) != bool(smtp.password):
        raise SmtpSetupError(f"set both {smtp.username_env} and {smtp.password_env}, or neither{relay}")
    if not smtp.username and smtp.username_env != "DIGEST_SMTP_USERNAME":
        # Variables named on purpose that are not set: sending without AUTH would only get refused later.
        raise SmtpSetupError(f"{smtp.username_env} and {smtp.password_env} (username_env and password_env{relay}) "
                             "are not set in the environment")


def _resume_cancellation() -> None:
    """Raise CancelledError if this task was asked to stop while aiosmtplib held it.

    aiosmtplib waits with asyncio.wait_for, which on Python 3.11 drops a cancellation that arrives
    as the awaited step ends (the refusal is returned instead); the send would then rest and try
    the relay again instead of stopping. ``Task.cancelling()`` still counts the request.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def always_send() -> bool:
    """A ``before_body`` for copies no ledger tracks (test copies): the body always goes."""
    return True


class SmtpConnection:
    """One connection to the relay, used for one message at a time, reopened when it drops.

    aiosmtplib sets the session up (connect, EHLO, STARTTLS, AUTH); then ``wire.Replies`` takes the
    connection over, so that MAIL, RCPT and DATA go in one write when the relay offers PIPELINING.
    """

    def __init__(self, settings: SmtpSettings, tls_context: ssl.SSLContext | None = None) -> None:
        self.settings = settings
        self.relay = settings.relay_name  # what the ledger records as the relay that had the copy
        self.tls_context = tls_context
        self.wire: Replies | None = None
        self.extensions: frozenset[str] = frozenset()  # what the relay's last EHLO offered, lower case
        self.messages = 0

    @property
    def connected(self) -> bool:
        return self.wire is not None and self.wire.open

    @property
    def pipelining(self) -> bool:
        return "pipelining" in self.extensions

    async def open(self) -> None:
        """Connect, secure and authenticate.

        Raises RelayUnreachable (a ConnectionError) when the relay cannot be reached now (worth
        waiting for) and SmtpSetupError when it cannot be used safely or refuses us (stop: waiting
        will not help). A TLS failure is a setting to fix, whichever exception aiosmtplib wraps it in.
        """
        s = self.settings
        where = s.where
        client = aiosmtplib.SMTP(
            hostname=s.host, port=s.port, timeout=s.timeout, use_tls=s.tls == "tls", start_tls=False,
            validate_certs=True, tls_context=self.tls_context, local_hostname=s.local_hostname,
        )
        try:
            try:
                await client.connect()
                await client.ehlo()
            except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
                diagnosis = tls_diagnosis(exc, where, s.tls)
                if diagnosis is not None:
                    raise SmtpSetupError(diagnosis) from None
                raise _unreachable(exc, where, s.timeout) from None
            if s.tls == "starttls":
                if not client.supports_extension("starttls"):
                    raise SmtpSetupError(f"{where} does not offer STARTTLS and tls = 'starttls' requires it; "
                                         "nothing was sent and no credentials were offered")
                try:
                    await client.starttls(tls_context=self.tls_context)
                    await client.ehlo()
                except (aiosmtplib.SMTPException, OSError, ssl.SSLError, asyncio.TimeoutError) as exc:
                    diagnosis = tls_diagnosis(exc, where, s.tls)
                    raise SmtpSetupError(f"STARTTLS with {where} failed: {diagnosis or exc}") from None
            if s.username:
                try:
                    await client.login(s.username, s.password or "")
                except aiosmtplib.SMTPAuthenticationError as exc:
                    raise SmtpSetupError(f"the relay refused the credentials ({exc.code} {exc.message})") from None
                except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
                    raise SmtpSetupError(f"logging in to {where} failed; check the credentials and the relay's "
                                         f"AUTH settings ({type(exc).__name__}: {exc})") from None
            transport = client.transport
            if transport is None or not client.is_connected:
                raise RelayUnreachable(where, "closed the connection before the session began", "lost after EHLO")
            _resume_cancellation()
        except BaseException:
            client.close()
            _resume_cancellation()
            raise
        self.extensions = frozenset(client.esmtp_extensions)
        self.wire = Replies.take_over(transport)  # type: ignore[arg-type]
        self.messages = 0

    async def close(self) -> None:
        """QUIT (waiting at most 5 s for the reply) and close."""
        wire, self.wire = self.wire, None
        if wire is None:
            return
        try:
            if wire.open:
                wire.write(b"QUIT\r\n")
                await wire.reply(min(5.0, self.settings.timeout))
        except (OSError, asyncio.TimeoutError):
            pass
        finally:
            wire.close()

    def drop(self) -> None:
        """Forget a connection that failed, without talking to the server again."""
        wire, self.wire = self.wire, None
        if wire is not None:
            wire.close()

    async def deliver(self, envelope: Envelope, data: bytes, before_body: Callable[[], Awaitable[bool]]) -> SmtpReply | None:
        """MAIL, RCPT, DATA, then ``await before_body()`` (record 'sending'), then the body.

        Never raises for SMTP replies. When ``before_body()`` returns False the transaction is
        abandoned (the connection dropped) before the body, and None is returned: nothing was sent.

        A reused connection that the server closed while idle fails at MAIL, before anything of
        this message went; that case reconnects and tries once more before reporting.
        """
        reused = self.connected and self.messages > 0
        reply = await self._deliver_once(envelope, data, before_body)
        if reused and reply is not None and reply.code == 0 and reply.phase == "mail":
            reply = await self._deliver_once(envelope, data, before_body)
        return reply

    async def _deliver_once(self, envelope: Envelope, data: bytes, before_body: Callable[[], Awaitable[bool]]) -> SmtpReply | None:
        if not self.connected:
            await self.open()
        wire = self.wire
        assert wire is not None
        timeout = self.settings.timeout
        if any(c in address for address in (envelope.sender, envelope.recipient) for c in "\r\n\0"):
            raise ValueError("an envelope address holds a line break or NUL")  # never reaches the wire
        commands = (b"MAIL FROM:<" + envelope.sender.encode("ascii") + b">\r\n",
                    b"RCPT TO:<" + envelope.recipient.encode("ascii") + b">\r\n",
                    b"DATA\r\n")
        phase: Phase = "mail"
        try:
            if self.pipelining:  # RFC 2920: the three at once, then their three replies in order
                wire.write(b"".join(commands))
            steps = (("mail", (250,)), ("rcpt", (250, 251)), ("data", (354,)))
            for (phase, wanted), command, after in zip(steps, commands, (2, 1, 0)):
                if not self.pipelining:
                    wire.write(command)
                reply = await wire.reply(timeout)
                if reply.code not in wanted:
                    if self.pipelining:
                        await self._skip_replies(after)  # the replies to the commands written after it
                    return await self._refused(reply, phase)
            if not await before_body():
                self.drop()  # after a 354 only the body or a dropped connection ends the transaction
                return None
            # Our bytes are CRLF-only (message.py checks it), so only dot-stuffing is needed here.
            wire.write(dot_stuff(data) + b".\r\n")
            phase = "body"
            reply = await wire.reply(self.settings.data_timeout)
            if reply.code != 250:
                return await self._refused(reply, phase)
            self.messages += 1
            return SmtpReply(reply.code, reply.text, "body", body_sent=True)
        except (OSError, asyncio.TimeoutError) as exc:
            self.drop()
            reason = "no reply within the timeout" if isinstance(exc, asyncio.TimeoutError) else str(exc)
            return SmtpReply(0, f"{type(exc).__name__}: {reason}", phase, body_sent=phase == "body")

    async def _skip_replies(self, count: int) -> None:
        """Read the replies to the pipelined commands after a refused one (a 503 each, usually).

        A server that answers DATA with 354 after refusing the recipient wants a body: the
        connection is dropped instead. One that hangs up meanwhile leaves nothing to read.
        """
        wire = self.wire
        try:
            for _ in range(count):
                if wire is None or (await wire.reply(self.settings.timeout)).code == 354:
                    self.drop()
                    return
        except (OSError, asyncio.TimeoutError):
            self.drop()

    async def _refused(self, reply: Reply, phase: Phase) -> SmtpReply:
        """A reply other than success: keep the connection usable (RSET) or drop it (421)."""
        if reply.code == 421 or not self.connected:
            self.drop()
        elif phase != "body":
            await self._reset()
        return SmtpReply(reply.code, reply.text, phase, body_sent=phase == "body")

    async def _reset(self) -> None:
        """RSET after a refused command so the next message starts clean; drop if that fails."""
        wire = self.wire
        try:
            if wire is not None and wire.open:
                wire.write(b"RSET\r\n")
                if (await wire.reply(self.settings.timeout)).code != 250:
                    self.drop()
        except (OSError, asyncio.TimeoutError):
            self.drop()
