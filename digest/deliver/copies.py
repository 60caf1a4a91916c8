"""An issue's per-reader copies: the one loop that turns readers into (reader, envelope, bytes).

``digest render`` writes each copy to an .eml file, ``digest send`` (through the dispatcher) and
its test copies hand each to SMTP, and the demo sends through the same path. What differs is
only where a reader comes from (the audience, the ledger's due rows, a --to address) and how
its per-reader values are made, so both are given.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from .. import returnpath
from ..compose.personalise import Recipient
from ..compose.pipeline import ComposedIssue
from ..models import Settings
from ..state.ledger import Delivery
from .transport import Envelope

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Copy(Generic[R]):
    """One reader's copy of an issue, ready for a transport."""

    reader: R  # what it was made for: a Subscriber, a ledger Delivery, an address
    recipient: Recipient
    envelope: Envelope
    data: bytes


async def copies(composed: ComposedIssue, readers: Iterable[R], recipient_of: Callable[[R], Recipient],
                 sender: str | Callable[[R], str]) -> AsyncIterator[Copy[R]]:
    """Each reader's copy, in the order ``readers`` yields them, built (and DKIM-signed) when it is
    asked for, on the event loop's thread. ``sender`` is the envelope sender (MAIL FROM) of every
    copy, or the function that gives each reader's (a VERP return path naming the copy).

    Not on signing threads: their turns at the GIL cost more CPU than the signature they overlap
    (docs/design-notes.md); more signing capacity comes from more processes (--workers).
    """
    for reader in readers:
        recipient = recipient_of(reader)
        mail_from = sender(reader) if callable(sender) else sender
        yield Copy(reader, recipient, Envelope(mail_from, recipient.email), composed.message(recipient))


def ledger_envelope_sender(settings: Settings, composed: ComposedIssue) -> str | Callable[[Delivery], str]:
    """The MAIL FROM of an issue's copies from the ledger: the edition's From address, or with
    ``[bounces] return_path`` a VERP address signed for each copy (returnpath.py)."""
    if settings.return_path is None or not settings.signing_keys:
        return composed.template.headers.sender.address
    return_path, keys = settings.return_path, settings.signing_keys
    return lambda delivery: returnpath.address(return_path, keys, delivery.id)
