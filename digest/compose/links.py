"""Signed links that let an editor act from an email: approve an issue (and, later, sign in).

    token = b64(payload) "." b64(HMAC-SHA256(key for the purpose, payload))
    payload = "v1" | key id | purpose | expires (epoch seconds) | nonce | field | field ...

Unlike a reader's unsubscribe token, such a link grants a power, so it expires and is used once:
``read_link`` checks the signature and the expiry, and the caller spends the nonce in the state
database (``Ledger.use_link``) when it acts. The key for each purpose is derived from the newsroom's
signing key, so an unsubscribe token can never pass for an approve link.
"""

from __future__ import annotations

import binascii
import hmac
import secrets
import time
from dataclasses import dataclass

from ..models import SigningKey
from .personalise import IMPLICIT_KEY_ID, b64, unb64

_SEP = "|"
_VERSION = "v1"


@dataclass(frozen=True, slots=True)
class SignedLink:
    """What a valid link says."""

    purpose: str
    expires: int  # epoch seconds
    nonce: str
    fields: tuple[str, ...]


class LinkRefused(Exception):
    """A link that is not valid (``reason`` 'invalid') or no longer (``reason`` 'expired')."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def sign_link(keys: tuple[SigningKey, ...], purpose: str, fields: tuple[str, ...], *, expires: float) -> str:
    """A token for ``purpose`` carrying ``fields`` (no '|' in any), valid until ``expires``."""
    if any(_SEP in part for part in (purpose, *fields)):
        raise ValueError(f"a signed link's fields cannot contain {_SEP!r}")
    key = keys[0]
    payload = _SEP.join((_VERSION, key.key_id, purpose, str(int(expires)), secrets.token_hex(16), *fields)).encode()
    return f"{b64(payload)}.{b64(_mac(key, purpose, payload))}"


def read_link(keys: tuple[SigningKey, ...], purpose: str, token: str, *, now: float | None = None) -> SignedLink:
    """What ``token`` says, if one of ``keys`` signed it for ``purpose``; ``LinkRefused`` otherwise."""
    try:
        payload_text, mac_text = token.split(".")
        payload, mac = unb64(payload_text), unb64(mac_text)
        version, key_id, found_purpose, expires, nonce, *fields = payload.decode().split(_SEP)
        expires_at = int(expires)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise LinkRefused("invalid") from None
    if version != _VERSION or found_purpose != purpose:
        raise LinkRefused("invalid")
    candidates = keys if key_id == IMPLICIT_KEY_ID else [key for key in keys if key.key_id == key_id]
    if not any(hmac.compare_digest(_mac(key, purpose, payload), mac) for key in candidates):
        raise LinkRefused("invalid")
    if (time.time() if now is None else now) >= expires_at:
        raise LinkRefused("expired")
    return SignedLink(purpose, expires_at, nonce, tuple(fields))


def _mac(key: SigningKey, purpose: str, payload: bytes) -> bytes:
    subkey = hmac.digest(key.secret, f"digest link {purpose}".encode(), "sha256")
    return hmac.digest(subkey, payload, "sha256")
