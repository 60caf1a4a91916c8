"""The address check's per-domain cache must agree with email-validator on every address."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email
from hypothesis import example, given, settings
from hypothesis import strategies as st

from digest.readers.addresses import AddressError, check_address

LOCAL_CHARS = "abcXYZ019.!#$%&'*+/=?^_`{|}~-\"(),:;<>@[\\] "
DOMAIN_LABELS = ["example", "com", "org", "net", "mail", "a", "xn--bcher-kva", "x" * 63, "y" * 64, "-bad", "bad-",
                 "123", "localhost", "local", "test", "invalid", "arpa", "onion", "co", "uk", "museum", "1a", ""]

local_parts = st.text(alphabet=LOCAL_CHARS, min_size=0, max_size=70)
domains = st.lists(st.sampled_from(DOMAIN_LABELS), min_size=1, max_size=4).map(".".join)


def library_accepts(address: str) -> bool:
    try:
        validate_email(address, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError:
        return False
    return True


def ours_accepts(address: str) -> bool:
    try:
        check_address(address)
    except AddressError:
        return False
    return True


@settings(max_examples=3000, deadline=None)
@given(local=local_parts, domain=domains)
@example(local="a..b", domain="example.com")
@example(local=".a", domain="example.com")
@example(local="a" * 64, domain="example.com")
@example(local="a" * 65, domain="example.com")
@example(local="a", domain="localhost")
@example(local="a", domain="example.test")
@example(local="a", domain="example.123")
@example(local='"quoted local"', domain="example.com")
def test_fast_path_agrees_with_email_validator(local: str, domain: str) -> None:
    address = f"{local}@{domain}"
    assert ours_accepts(address) == library_accepts(address), address


def test_very_long_address_is_refused_like_the_library() -> None:
    address = "a" * 64 + "@" + ".".join(["b" * 63] * 4) + ".com"
    assert len(address) > 254
    assert ours_accepts(address) is library_accepts(address) is False
