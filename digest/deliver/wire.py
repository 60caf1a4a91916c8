"""The server's replies on an SMTP connection whose session is set up: read in order, pipelined or not.

aiosmtplib connects, secures and authenticates a connection (transport.py); then this protocol
takes the connection over for the transactions. aiosmtplib reads one reply per command it wrote
and drops what arrives beyond it, so it cannot pipeline (RFC 2920); a copy would cost four round
trips (MAIL, RCPT, DATA, body) where two do. Here every complete reply is queued as it arrives,
and a transaction writes MAIL, RCPT and DATA at once when the server offers PIPELINING.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

MAX_LINE = 2048  # longer than any reply line a server sends (RFC 5321 allows 512)
MAX_PENDING = 64 * 1024  # bytes of an unfinished reply before the server is deemed broken


class ConnectionGone(ConnectionResetError):
    """The server closed the connection (or broke the protocol) before a reply arrived."""


@dataclass(frozen=True, slots=True)
class Reply:
    """One reply: its code and text (the lines of a multi-line reply joined by newlines)."""

    code: int
    text: str


class Replies(asyncio.Protocol):
    """Queues the server's replies in order; ``reply()`` takes the next, waiting for it if need be."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self._buffer = bytearray()
        self._lines: list[str] = []  # the lines so far of a multi-line reply
        self._replies: deque[Reply] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._gone: ConnectionGone | None = None

    @classmethod
    def take_over(cls, transport: asyncio.Transport) -> Replies:
        """From now on the replies on ``transport`` come here (no other protocol reads it)."""
        replies = cls(transport)
        transport.set_protocol(replies)
        return replies

    @property
    def open(self) -> bool:
        return self._gone is None and not self.transport.is_closing()

    def write(self, data: bytes) -> None:
        """Send ``data`` as it is (commands end in CRLF; a body is dot-stuffed and ends in CRLF.CRLF)."""
        if not self.open:
            raise self._gone or ConnectionGone("the connection is closed")
        self.transport.write(data)

    async def reply(self, timeout: float) -> Reply:
        """The next reply, within ``timeout`` seconds (TimeoutError), or ConnectionGone."""
        if not self._replies:
            if self._gone is not None:
                raise self._gone
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(timeout):
                    await self._waiter
            finally:
                self._waiter = None
            if not self._replies:
                raise self._gone or ConnectionGone("the connection closed")
        return self._replies.popleft()

    def close(self) -> None:
        self.transport.close()

    # --- asyncio.Protocol ---------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._buffer.extend(data)
        start = 0
        while (end := self._buffer.find(b"\n", start)) >= 0:
            line = bytes(self._buffer[start:end + 1])
            start = end + 1
            if len(line) > MAX_LINE or not line[:3].isdigit() or line[3:4] not in (b" ", b"-", b"\r", b"\n"):
                self._fail(ConnectionGone(f"the relay sent a malformed reply line: {line[:80]!r}"))
                return
            self._lines.append(line[4:].strip(b" \t\r\n").decode("utf-8", "surrogateescape"))
            if line[3:4] != b"-":
                self._replies.append(Reply(int(line[:3]), "\n".join(self._lines)))
                self._lines = []
        del self._buffer[:start]
        if len(self._buffer) > MAX_PENDING:
            self._fail(ConnectionGone("the relay sent a reply line that never ends"))
            return
        if self._replies:
            self._wake()

    def eof_received(self) -> bool:
        return False  # the transport closes; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self._gone is None:
            gone = ConnectionGone(f"the relay closed the connection{f' ({exc})' if exc else ''}")
            gone.__cause__ = exc
            self._gone = gone
        self._wake()

    def _fail(self, gone: ConnectionGone) -> None:
        self._gone = gone
        self.transport.abort()
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
