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

from ..compose.personalise import Recipient
from ..compose.pipeline import ComposedIssue
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
                 sender: str) -> AsyncIterator[Copy[R]]:
    """Each reader's copy, in the order ``readers`` yields them, built (and DKIM-signed) when it is
    asked for, on the event loop's thread. ``sender`` is the envelope sender (MAIL FROM) of every copy.

    Not on signing threads: their turns at the GIL cost more CPU than the signature they overlap
    (docs/design-notes.md); more signing capacity comes from more processes (--workers).
    """
    for reader in readers:
        recipient = recipient_of(reader)
        yield Copy(reader, recipient, Envelope(sender, recipient.email), composed.message(recipient))
