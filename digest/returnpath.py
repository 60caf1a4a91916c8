"""VERP return paths: each copy's envelope sender names the copy, signed, so a bounce finds its reader.

With ``[bounces] return_path = "bounce@news.example.org"`` every copy goes out with MAIL FROM
``bounce+<id>-<mac>@news.example.org``: ``id`` is the copy's row in the ledger (issue x reader),
``mac`` the first 12 hex digits (48 bits) of an HMAC of it under a key derived from
DIGEST_SECRET_KEY. A bounce is delivered to that address, so it maps to its issue and reader
even when the relay rewrote the Message-ID or the bounce quotes nothing of the original; a
token someone made up, or one with a changed id, verifies as nothing (any of the configured
keys may have signed it, so rotating the key keeps old bounces readable). Lower-case hex and
digits only: some mail systems lower-case local parts.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from .models import SigningKey

_PURPOSE = b"digest verp"
_MAC_DIGITS = 12
_TOKEN = re.compile(rf"(\d{{1,19}})-([0-9a-f]{{{_MAC_DIGITS}}})")


def _mac(secret: bytes, copy_id: int) -> str:
    key = hmac.digest(secret, _PURPOSE, "sha256")
    return hmac.new(key, str(copy_id).encode(), hashlib.sha256).hexdigest()[:_MAC_DIGITS]


def token(keys: tuple[SigningKey, ...], copy_id: int) -> str:
    """The VERP token of one copy (its ledger id, signed with the first key)."""
    return f"{copy_id}-{_mac(keys[0].secret, copy_id)}"


def address(return_path: str, keys: tuple[SigningKey, ...], copy_id: int) -> str:
    """The envelope sender of one copy: ``local+TOKEN@domain`` from ``local@domain``."""
    local, _, domain = return_path.rpartition("@")
    return f"{local}+{token(keys, copy_id)}@{domain}"


def copy_id(keys: tuple[SigningKey, ...], text: str) -> int | None:
    """The copy a token names, if one of ``keys`` signed it; None for anything else."""
    match = _TOKEN.fullmatch(text.strip().lower())
    if match is None or not keys:
        return None
    found = int(match[1])
    for key in keys:
        if hmac.compare_digest(_mac(key.secret, found), match[2]):
            return found
    return None
