"""Email address checks: the only email_validator import.

Syntax only, never DNS: digest must be able to check a million-row list offline.
"""

from __future__ import annotations

import functools
import re

from email_validator import EmailNotValidError, validate_email

from ..errors import HeaderInjectionError

_UNSAFE = re.compile(r"[\r\n\x00]")
# "Display Name <local@domain>" or a bare address; the name may be quoted.
_MAILBOX = re.compile(r'^\s*(?:"(?P<qname>[^"]*)"|(?P<name>[^"<>]*?))\s*<(?P<addr>[^<>]*)>\s*$')


class AddressError(ValueError):
    """The address is not usable; the message says why in plain words."""


# RFC 5322 dot-atom local part (atext runs joined by single dots): what nearly every list holds.
_PLAIN_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")


def check_address(address: str) -> str:
    """Return ``address`` unchanged if it is a deliverable-looking ASCII address, else raise.

    The value is never rewritten: a caller that needs a canonical form asks ``address_key``.
    A plain dot-atom local part is checked here and its domain by email-validator once per
    domain (a list repeats a few thousand domains a million times); anything else goes through
    email-validator whole.
    """
    if _UNSAFE.search(address):
        raise HeaderInjectionError("address", address)
    if not address.isascii():
        raise AddressError("internationalised (non-ASCII) addresses are not supported yet")
    local, at, domain = address.rpartition("@")
    if at and len(address) <= 254 and len(local) <= 64 and _PLAIN_LOCAL.match(local) and _domain_ok(domain):
        return address
    _validate(address)
    return address


def _validate(address: str) -> None:
    try:
        validate_email(address, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise AddressError(str(exc)) from None


@functools.lru_cache(maxsize=65536)
def _domain_ok(domain: str) -> bool:
    """Whether email-validator accepts ``domain`` (asked with a local part it always accepts)."""
    try:
        _validate(f"a@{domain}")
    except AddressError:
        return False
    return True


def address_key(address: str) -> str:
    """The form two addresses are compared in: case-insensitive, as the subscriber list treats them."""
    return address.casefold()


def parse_mailbox(value: str) -> tuple[str, str]:
    """Split ``Name <addr>`` (or a bare address) into (name, address) and check the address."""
    if _UNSAFE.search(value):
        raise HeaderInjectionError("mailbox", value)
    match = _MAILBOX.match(value)
    if match:
        name = match.group("qname") if match.group("qname") is not None else match.group("name")
        address = match.group("addr").strip()
    else:
        name, address = "", value.strip()
    return name.strip(), check_address(address)
