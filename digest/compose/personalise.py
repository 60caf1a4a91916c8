"""Per-reader values: placeholders, greetings, signed unsubscribe tokens and Message-IDs.

The rendered issue carries placeholders such as ``%%D3f09c2a1b7e4d6c8_EMAIL%%``. The random
part is new for every composed issue, so story text cannot contain a placeholder by accident or
on purpose (a story that quotes one prints it literally). ``message.py`` splices each reader's
values in place of the placeholders.

Tokens are ``base64url(payload).base64url(HMAC-SHA256(key, payload))`` with the payload
``v1|key id|edition|address``. They never expire; the first configured key signs, every
configured key verifies, so keys can be rotated without breaking links already sent. A bare
secret (DIGEST_SECRET_KEY without an id) signs under the implicit id ``k0``; when the operator
later names that secret (``new:NEW,old:OLD``), its tokens still verify: a ``k0`` token is checked
against every configured secret, since any of them may be the one that was bare.

Each part must be canonical unpadded URL-safe base64 (exactly what ``b64`` writes), so a token
has one spelling: no ``=`` padding, no stray characters, no unused low bits set.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from urllib.parse import quote

from ..models import Edition, Settings, SigningKey, Subscriber
from ..readers.addresses import address_key
from ..readers.names import greeting_name

READER_FIELDS = ("greeting", "email", "unsubscribe_url")
IMPLICIT_KEY_ID = "k0"  # the id config.parse_signing_keys gives a bare secret
_SEP = "|"
_B64 = re.compile(r"[A-Za-z0-9_-]*")


@dataclass(frozen=True, slots=True)
class Placeholders:
    """The per-issue placeholder strings for the reader fields."""

    nonce: str

    @classmethod
    def new(cls) -> Placeholders:
        return cls(secrets.token_hex(8))

    def marker(self, field: str) -> str:
        return f"%%D{self.nonce}_{field.upper()}%%"

    def context(self) -> dict[str, str]:
        """The ``reader`` mapping handed to templates."""
        return {field: self.marker(field) for field in READER_FIELDS}

    def pattern(self) -> re.Pattern[str]:
        """Matches any of this issue's placeholders; group 1 is the field name, upper case."""
        return re.compile(rf"%%D{self.nonce}_([A-Z_]+)%%")


@dataclass(frozen=True, slots=True)
class Recipient:
    """Everything that differs between two copies of the same issue."""

    email: str
    name: str
    greeting: str
    unsubscribe_url: str
    unsubscribe_mailto: str
    message_id: str

    def values(self) -> dict[str, str]:
        """This reader's values for the template's reader fields (``READER_FIELDS``)."""
        return reader_values(self.greeting, self.email, self.unsubscribe_url)


def reader_values(greeting: str, email: str = "", unsubscribe_url: str = "") -> dict[str, str]:
    """The value of each reader field (``READER_FIELDS``), filled in one place for every copy and page.

    The public archive page passes only the greeting: it carries no reader's address or link.
    """
    # A literal, not dict(zip(READER_FIELDS, ...)): this runs twice per copy, and the literal is 6x
    # cheaper; a test holds its keys to READER_FIELDS.
    return {"greeting": greeting, "email": email, "unsubscribe_url": unsubscribe_url}


def b64(data: bytes) -> str:
    """URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    """The inverse of ``b64``, strictly: ValueError for any text ``b64`` would not have written."""
    if not _B64.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not unpadded URL-safe base64")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64(data) != text:  # the last character carried bits the data does not use
        raise ValueError("not canonical base64")
    return data


def sign_token(keys: tuple[SigningKey, ...], email: str, edition: str) -> str:
    """A token that lets ``email`` leave ``edition`` (or, by the page's choice, every edition)."""
    key = keys[0]
    payload = _SEP.join(("v1", key.key_id, edition, email)).encode()
    return f"{b64(payload)}.{b64(hmac.digest(key.secret, payload, 'sha256'))}"


def verify_token(keys: tuple[SigningKey, ...], token: str) -> tuple[str, str] | None:
    """(email, edition) if ``token`` was signed by one of ``keys``; None for anything else."""
    try:
        payload_text, mac_text = token.split(".")
        payload, mac = unb64(payload_text), unb64(mac_text)
        version, key_id, edition, email = payload.decode().split(_SEP)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    if version != "v1":
        return None
    # Each candidate is a secret the operator configured to verify, so trying several lets in
    # only tokens one of them signed; the id just saves trying them all.
    candidates = keys if key_id == IMPLICIT_KEY_ID else [key for key in keys if key.key_id == key_id]
    for key in candidates:
        expected = hmac.digest(key.secret, payload, "sha256")
        if hmac.compare_digest(expected, mac):
            return email, edition
    return None


def _subkey(keys: tuple[SigningKey, ...], purpose: bytes) -> bytes:
    """A key for one purpose, derived from the signing key, so no two uses share a key."""
    return hmac.digest(keys[0].secret, purpose, "sha256")


def boundary(keys: tuple[SigningKey, ...], edition: str, date: str) -> str:
    """The MIME boundary of an issue: fixed per issue, so a dry run and a send give the same bytes.

    It cannot occur in a body part: quoted-printable writes every '=' in the text as '=3D', so no
    encoded line can start with '--=='.
    """
    tag = hmac.new(_subkey(keys, b"digest boundary"), _SEP.join((edition, date)).encode(), hashlib.sha256).hexdigest()[:24]
    return f"==digest-{tag}=="


def greeting(salutation: str, first: str) -> str:
    """'Good morning, Ana.' or, without a name, 'Good morning.' (``first`` is the name to use)."""
    return f"{salutation}, {first}." if first else f"{salutation}."


class RecipientFactory:
    """Turns a subscriber into the per-reader values of one issue."""

    def __init__(self, settings: Settings, edition: Edition, issue_date: str) -> None:
        if not settings.signing_keys:
            raise ValueError("no signing key configured")
        self.keys = settings.signing_keys
        self.edition = edition
        self.date = issue_date
        self.domain = settings.newsroom.domain
        self.unsubscribe_base = f"{settings.base_url}/u/"
        self.mailto = f"unsubscribe@{settings.newsroom.domain}"
        self._message_id_key = _subkey(self.keys, b"digest message-id")  # once per issue, not per reader

    def for_subscriber(self, subscriber: Subscriber) -> Recipient:
        return self.for_address(subscriber.email, subscriber.name, greet_name=subscriber.greet_name)

    def message_id_for(self, email: str) -> str:
        """A Message-ID fixed for (issue, reader) and unguessable without the secret key."""
        subject = _SEP.join((self.edition.slug, self.date, address_key(email))).encode()
        return f"<{hmac.new(self._message_id_key, subject, hashlib.sha256).hexdigest()[:32]}@{self.domain}>"

    def for_address(self, email: str, name: str = "", *, message_id: str | None = None,
                    greet_name: str | None = None) -> Recipient:
        """The reader's values; ``message_id`` is the one the ledger recorded, when it has one.

        ``greet_name`` is what the greeting calls the reader, worked out once when the row was
        read ('' for none); None derives it from ``name``.
        """
        token = sign_token(self.keys, email, self.edition.slug)
        return Recipient(
            email=email,
            name=name,
            greeting=greeting(self.edition.greeting, greeting_name(name) if greet_name is None else greet_name),
            unsubscribe_url=self.unsubscribe_base + token,
            unsubscribe_mailto=f"mailto:{self.mailto}?subject={quote('unsubscribe ' + token)}",
            message_id=message_id or self.message_id_for(email),
        )

