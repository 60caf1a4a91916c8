"""flufl.bounce (Mailman's bounce detector; the only import of it): which addresses a bounce names.

The library knows the layouts of many MTAs (Postfix, Exim, qmail, Yahoo, Exchange, GroupWise,
and plain "simple" bounces) and sorts what it finds into temporary and permanent failures. It
says nothing about status codes, Message-IDs or our readers: dsn.py adds those.

Two things are changed on the way out: an address the library made up (AOL's bare screen name
with ``@aol.com`` added, Yale's rebuilt addresses) is dropped, since only an address written in
the message may ever suppress a reader; and a detector that raises on an odd message becomes a
``LibraryFailed`` with the detector's complaint, so one message never stops a mailbox.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from email.message import Message

from flufl.bounce import all_failures

# The library logs each detector that raises before re-raising it; we report it ourselves.
logging.getLogger("flufl.bounce").propagate = False
logging.getLogger("flufl.bounce").addHandler(logging.NullHandler())


class LibraryFailed(Exception):
    """The bounce detector could not read a message (the message is then read by dsn.py alone)."""


@dataclass(frozen=True, slots=True)
class Failures:
    """The addresses a bounce names, as written in it, in the order first found."""

    permanent: tuple[str, ...]
    temporary: tuple[str, ...]


def failures(msg: Message, text: str) -> Failures:
    """The permanent and temporary failures flufl.bounce finds in ``msg`` whose address occurs in
    ``text`` (the message's raw and decoded text, lower-cased)."""
    try:
        temporary, permanent = all_failures(msg)
    except Exception as exc:  # noqa: BLE001 -- a detector's own bug on an odd message
        raise LibraryFailed(f"{type(exc).__name__}: {exc}") from None
    return Failures(_written(permanent, text), _written(temporary - permanent, text))


def _written(found: set[bytes] | set[str], text: str) -> tuple[str, ...]:
    addresses = []
    for raw in sorted(found):
        address = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        address = address.strip().strip("<>")
        if "@" in address and address.lower() in text and address not in addresses:
            addresses.append(address)
    return tuple(addresses)
