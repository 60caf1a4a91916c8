"""DKIM signatures (RFC 6376) on our own finished messages: the only ``cryptography`` and
``dkim`` (dkimpy) import.

    key file (mode 0600) -> load_private_key (once) -> DkimSigner(domain, selector, key)
    per reader: message bytes -> DkimSigner.sign -> b"DKIM-Signature: ...\\r\\n" + the same bytes

Signing is ``rsa-sha256`` with ``c=relaxed/simple``, computed here with hashlib and OpenSSL
(through ``cryptography``): dkimpy's own signer does the RSA arithmetic in pure Python, about 25
times slower. dkimpy stays the verifier (``verify``, the tests, ``DkimSigner.self_check``).

Why these choices:

- The body is 7-bit quoted-printable with CRLF line ends (message.py), so a relay without
  8BITMIME has nothing to convert and *simple* body canonicalization survives transit; relaxed
  header canonicalization tolerates re-folding of header lines. ``sign`` refuses 8-bit bytes
  rather than sign something a relay would rewrite (CRLF-only is checked by message.py).
- ``h=`` names From, To, Subject, Date, Message-ID, List-Id, List-Unsubscribe and
  List-Unsubscribe-Post (RFC 8058 one-click needs both unsubscribe headers signed), plus Reply-To,
  MIME-Version, Content-Type and Feedback-ID when present. Each is signed once; the ones a reader
  sees or acts on, and Feedback-ID (Gmail counts complaints by it, so a forged one must not ride
  on our signature), are listed a second time ("oversigned"), so that a header of that name
  added in transit, above or below ours, breaks the signature instead of riding on it.
  Auto-Submitted and Precedence are not signed: they only ask responders to stay quiet, and
  nothing a receiver trusts depends on them.
- Only our own messages are parsed: CRLF line ends, continuation lines start with space or tab,
  every signed header at most once (a second one means the message is not what we built).

The private key is loaded once; no message, log line or error ever holds key material.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shlex
import stat
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ..errors import DigestError, MessageIntegrityError

if TYPE_CHECKING:
    from ..models import DkimSettings

#: Every header this module signs when the message has it, in ``h=`` order.
SIGNED_HEADERS: tuple[str, ...] = (
    "From", "To", "Subject", "Date", "Message-ID", "List-Id", "List-Unsubscribe", "List-Unsubscribe-Post",
    "Reply-To", "MIME-Version", "Content-Type", "Feedback-ID",
)
#: Headers every message must have and every signature must cover.
REQUIRED_HEADERS: tuple[str, ...] = SIGNED_HEADERS[:8]
#: Signed a second time (when present) so that a copy with one more such header fails.
OVERSIGNED_HEADERS: tuple[str, ...] = ("From", "To", "Subject", "Reply-To", "List-Unsubscribe", "List-Unsubscribe-Post",
                                       "Feedback-ID")
MIN_KEY_BITS = 2048
MAX_KEY_FILE_BYTES = 64 * 1024
MAX_LINE = 998
FOLD_AT = 78

_FIELD_START = re.compile(rb"\r\n(?![ \t])")
_WSP_RUN = re.compile(rb"[ \t]+")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"^{_LABEL}(?:\.{_LABEL})+$")
_SELECTOR_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
_SELECTOR = re.compile(rf"^{_SELECTOR_LABEL}(?:\.{_SELECTOR_LABEL})*$")
_ADDRESS_DOMAIN = re.compile(rb"@([A-Za-z0-9.-]+)>?\s*$")


class DkimError(DigestError):
    """A DKIM key or setting cannot be used (the operator must fix it). Never holds key material."""

    exit_code = 2

    def __init__(self, message: str, *, file: Path | str | None = None) -> None:
        super().__init__(message)
        self.file = str(file) if file is not None else None


# --- keys ---------------------------------------------------------------------------------------

def load_private_key(path: Path | str) -> rsa.RSAPrivateKey:
    """The RSA private key in ``path`` (PEM or DER, unencrypted), checked before use.

    Refused with ``DkimError``: a file group or others may read or write (``chmod 600``), a
    missing or unreadable file, anything but a regular file, a key that is not RSA, or one under
    2048 bits. The mode is checked on the opened file itself, so the file checked is the file read.
    """
    path = Path(path)
    shown = shlex.quote(str(path))
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise DkimError(f"DKIM key file {path} does not exist (DIGEST_DKIM_KEY_FILE names it)", file=path) from None
    except PermissionError:
        raise DkimError(f"DKIM key file {path} cannot be read by this user; it should belong to the user "
                        f"that runs digest, with mode 600", file=path) from None
    except OSError as exc:
        raise DkimError(f"DKIM key file {path} cannot be opened: {exc.strerror}", file=path) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise DkimError(f"DKIM key file {path} is not a regular file", file=path)
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as handle:
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise DkimError(
                f"DKIM key file {path} can be read or written by group or others (mode {mode:04o}); "
                f"a signing key must be private to its owner: chmod 600 {shown}", file=path)
        if info.st_size > MAX_KEY_FILE_BYTES:
            raise DkimError(f"DKIM key file {path} is {info.st_size} bytes, too large for a private key", file=path)
        try:
            data = handle.read(MAX_KEY_FILE_BYTES + 1)
        except OSError as exc:
            raise DkimError(f"DKIM key file {path} cannot be read: {exc.strerror}", file=path) from None
    try:
        key = _parse_key(data, path)
    finally:
        del data
    check_key(key, path)
    return key  # type: ignore[return-value]


def _parse_key(data: bytes, path: Path) -> object:
    # cryptography's messages do not quote the input, but none is passed on all the same.
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return serialization.load_pem_private_key(data, password=None)
        return serialization.load_der_private_key(data, password=None)
    except TypeError:
        raise DkimError(f"DKIM key file {path} is encrypted with a passphrase; digest needs it unencrypted, "
                        "protected by the file's mode (600) instead", file=path) from None
    except (ValueError, UnsupportedAlgorithm):
        raise DkimError(f"DKIM key file {path} does not hold a PEM or DER private key "
                        "(make one with: openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048)",
                        file=path) from None


def check_key(key: object, path: Path | str | None = None) -> None:
    """Refuse (``DkimError``) anything but an RSA private key of at least 2048 bits."""
    where = f"DKIM key file {path}" if path is not None else "the DKIM key"
    if not isinstance(key, rsa.RSAPrivateKey):
        kind = type(key).__name__.lstrip("_").removesuffix("PrivateKey") or "non-RSA"
        raise DkimError(f"{where} holds a {kind} key; DKIM signing needs an RSA private key (rsa-sha256, "
                        f"at least {MIN_KEY_BITS} bits)", file=path)
    if key.key_size < MIN_KEY_BITS:
        raise DkimError(f"{where} is a {key.key_size}-bit RSA key; receivers distrust keys under "
                        f"{MIN_KEY_BITS} bits: make a new one (openssl genpkey -algorithm RSA "
                        f"-pkeyopt rsa_keygen_bits:{MIN_KEY_BITS}) and publish it under a new selector", file=path)


def txt_record_name(selector: str, domain: str) -> bytes:
    """Where receivers look up the public key: ``b"selector._domainkey.domain."``."""
    return f"{selector}._domainkey.{domain.rstrip('.')}.".lower().encode("ascii")


def public_txt_record(private_key: rsa.RSAPrivateKey) -> bytes:
    """The DNS TXT record value for ``private_key``: ``b"v=DKIM1; k=rsa; p=<base64 SPKI DER>"``.

    The value is longer than 255 octets; a zone file splits it into several quoted strings
    (``zone_entry``), which resolvers join again.
    """
    der = private_key.public_key().public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    return b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


def zone_entry(selector: str, domain: str, private_key: rsa.RSAPrivateKey) -> str:
    """The record to publish, as a zone-file line with the value split into <= 255-octet strings."""
    value = public_txt_record(private_key).decode("ascii")
    strings = " ".join(f'"{value[i:i + 255]}"' for i in range(0, len(value), 255))
    return f"{txt_record_name(selector, domain).decode('ascii')} IN TXT ( {strings} )"


# --- signing ------------------------------------------------------------------------------------

def _relaxed(value: bytes) -> bytes:
    """RFC 6376 3.4.2 for one header value: unfold, runs of WSP to one space, trimmed."""
    return _WSP_RUN.sub(b" ", value.replace(b"\r\n", b"")).strip(b" ")


def _fold(pieces: Iterable[tuple[bytes, bytes]], start: bytes) -> list[bytes]:
    """Lines of a header: each piece is (separator, text); a new line starts where one would pass 78."""
    lines, line = [], start
    for separator, text in pieces:
        if len(line) + len(separator) + len(text) <= FOLD_AT or line == start:
            line += separator + text
        else:
            lines.append(line)
            line = b" " + text
    lines.append(line)
    return lines


def _head_end(message: bytes) -> int:
    """Where the header block ends (the blank line's first CRLF); refuses what cannot be signed."""
    head_end = message.find(b"\r\n\r\n")
    if head_end < 0:
        raise MessageIntegrityError("cannot DKIM-sign: the message has no end of headers")
    if not message.isascii():
        raise MessageIntegrityError("cannot DKIM-sign 8-bit bytes: a relay without 8BITMIME would "
                                    "re-encode them and break the signature")
    # CRLF-only is message.py's guarantee (check_structure: every header block, and the whole
    # message once per issue); scanning 40 KB for bare CR/LF again would cost a fifth of a signature.
    return head_end


def _body_hash(message: bytes, start: int) -> bytes:
    """``bh=``: base64 SHA-256 of the body from ``start``, simple canonicalization (RFC 6376 3.4.3).

    Empty lines at the end are dropped, and a body that does not end with CRLF (or is empty)
    gets one. The message is hashed in place, not copied.
    """
    end = len(message)
    while (end > start and message[end - 2:end] == b"\r\n"
           and (end - 2 == start or message[end - 4:end - 2] == b"\r\n")):
        end -= 2
    body_hash = hashlib.sha256(memoryview(message)[start:end])
    if end == start or message[end - 2:end] != b"\r\n":
        body_hash.update(b"\r\n")
    return base64.b64encode(body_hash.digest())


def _folded_signature(signature: bytes, last_line: int) -> bytes:
    """The ``b=`` value: what fits on the last tag line, then continuation lines of 78."""
    room = max(FOLD_AT - last_line, 0)
    chunks = [signature[:room]] + [signature[i:i + FOLD_AT - 1] for i in range(room, len(signature), FOLD_AT - 1)]
    return b"\r\n ".join(chunks)


def _check_names(domain: object, selector: object) -> None:
    """Refuse (``DkimError``) a ``d=`` that is not a domain name or an ``s=`` that is not a DNS name."""
    if not isinstance(domain, str) or not _DOMAIN.match(domain.rstrip(".")) or len(domain) > 253:
        raise DkimError(f"DKIM domain {domain!r} is not a domain name (d= must be the From domain or its parent)")
    if not isinstance(selector, str) or not _SELECTOR.match(selector) or len(selector) > 253:
        raise DkimError(f"DKIM selector {selector!r} is not a DNS name (letters, digits, '-', '_', '.')")


def _signed_names(headers: Iterable[str]) -> tuple[str, ...]:
    """The header names to sign, lower-case, each once, in order; refuses a list without ``REQUIRED_HEADERS``."""
    names = tuple(dict.fromkeys(h.strip().lower() for h in headers))
    missing = [h for h in REQUIRED_HEADERS if h.lower() not in names]
    if missing:
        raise DkimError(f"DKIM headers must include {', '.join(missing)} "
                        f"(always signed: {', '.join(REQUIRED_HEADERS)})")
    return names


class DkimSigner:
    """Signs finished messages for one signing domain (``d=``) and selector (``s=``).

    Make one per run (the key is loaded once) and call ``sign`` for each reader's copy.
    """

    def __init__(self, domain: str, selector: str, private_key: rsa.RSAPrivateKey,
                 headers: Iterable[str] = SIGNED_HEADERS, *, oversign: Iterable[str] = OVERSIGNED_HEADERS,
                 timestamp: bool = True, clock: Callable[[], float] = time.time) -> None:
        check_key(private_key)
        _check_names(domain, selector)
        names = _signed_names(headers)
        self.domain = domain.rstrip(".").lower()
        self.selector = selector.lower()
        self.headers = tuple(n.encode("ascii") for n in names)
        self.oversign = tuple(n.encode("ascii") for n in dict.fromkeys(h.strip().lower() for h in oversign)
                              if n in names)
        self._signed = frozenset(self.headers)
        self._required = tuple(h.lower().encode("ascii") for h in REQUIRED_HEADERS)
        self._key = private_key
        self._padding = padding.PKCS1v15()
        self._hash = hashes.SHA256()
        self._timestamp = timestamp
        self._clock = clock
        self._fixed = ((b" ", b"v=1;"), (b" ", b"a=rsa-sha256;"), (b" ", b"c=relaxed/simple;"),
                       (b" ", b"d=" + self.domain.encode("ascii") + b";"),
                       (b" ", b"s=" + self.selector.encode("ascii") + b";"))
        self._h_tags: dict[tuple[bytes, ...], tuple[tuple[bytes, bytes], ...]] = {}

    def __repr__(self) -> str:  # never the key
        return f"DkimSigner(domain={self.domain!r}, selector={self.selector!r}, bits={self._key.key_size})"

    @property
    def record_name(self) -> bytes:
        return txt_record_name(self.selector, self.domain)

    def public_record(self) -> bytes:
        return public_txt_record(self._key)

    def _h_tag(self, present: tuple[bytes, ...]) -> tuple[tuple[bytes, bytes], ...]:
        """``h=`` as fold pieces (a line may break after any colon), cached per header set."""
        tag = self._h_tags.get(present)
        if tag is None:
            names = present + tuple(n for n in self.oversign if n in present)
            parts = [b"h=" + names[0], *names[1:]]
            # a folded line restarts with " " + piece, so each break falls just after a colon
            tag = tuple((b" " if i == 0 else b"", p + (b":" if i < len(parts) - 1 else b";"))
                        for i, p in enumerate(parts))
            self._h_tags[present] = tag
        return tag

    def sign(self, message: bytes) -> bytes:
        """``DKIM-Signature: ...\\r\\n`` + ``message``, unchanged.

        Raises ``MessageIntegrityError`` for a message this signer will not vouch for: no header
        end, 8-bit bytes, a required header missing, a signed header twice, or a DKIM-Signature
        already present. Line ends must be CRLF only, as message.py builds them.
        """
        head_end = _head_end(message)
        fields = self._signed_fields(message[:head_end])
        present = tuple(n for n in self.headers if n in fields)
        lines = _fold(self._tag_pieces(present, _body_hash(message, head_end + 4)), b"DKIM-Signature:")
        unsigned = b"\r\n".join(lines)
        # Header hash (relaxed): the signed headers in h= order (an oversigned name has no further
        # instance and adds nothing), then this header with an empty b= and no final CRLF.
        data = b"".join([n + b":" + _relaxed(fields[n]) + b"\r\n" for n in present]
                        + [b"dkim-signature:" + _relaxed(unsigned[len(b"DKIM-Signature:"):])])
        signature = base64.b64encode(self._key.sign(data, self._padding, self._hash))
        return b"".join((unsigned, _folded_signature(signature, len(lines[-1])), b"\r\n", message))

    def _signed_fields(self, head: bytes) -> dict[bytes, bytes]:
        """The signed headers' values by lower-case name; refuses a repeat, a DKIM-Signature or a missing one."""
        fields: dict[bytes, bytes] = {}
        for field in _FIELD_START.split(head):
            name, colon, value = field.partition(b":")
            if not colon:
                raise MessageIntegrityError(f"cannot DKIM-sign: header line without a colon: {field[:40]!r}")
            key = name.rstrip(b" \t").lower()
            if key in self._signed:
                if key in fields:
                    raise MessageIntegrityError(f"cannot DKIM-sign: {name.decode()} appears more than once")
                fields[key] = value
            elif key == b"dkim-signature":
                raise MessageIntegrityError("message is already DKIM-signed; sign once, just before sending")
        for key in self._required:
            if key not in fields:
                raise MessageIntegrityError(f"cannot DKIM-sign: the message has no {key.decode()} header")
        return fields

    def _tag_pieces(self, present: tuple[bytes, ...], bh: bytes) -> list[tuple[bytes, bytes]]:
        """The DKIM-Signature tags as fold pieces, ending with an empty ``b=``."""
        pieces = list(self._fixed)
        if self._timestamp:
            pieces.append((b" ", b"t=%d;" % int(self._clock())))
        pieces += self._h_tag(present)
        pieces += [(b" ", b"bh=" + bh + b";"), (b" ", b"b=")]
        return pieces

    def check_alignment(self, from_address: str) -> None:
        """Refuse (``DkimError``) a From address whose domain DMARC would not see aligned with ``d=``.

        Relaxed alignment is approximated without the public suffix list: the From domain must be
        ``d=`` or a subdomain of it, or ``d=`` a subdomain of the From domain.
        """
        match = _ADDRESS_DOMAIN.search(from_address.encode("ascii", "replace"))
        sender = match.group(1).decode().lower().rstrip(".") if match else ""
        d = self.domain
        if not sender or not (sender == d or sender.endswith("." + d) or d.endswith("." + sender)):
            raise DkimError(f"DKIM domain {d} is not aligned with the From address {from_address}: DMARC "
                            f"receivers would not count the signature; set [dkim] domain to {sender or 'its domain'} "
                            "or a parent of it")

    def self_check(self) -> None:
        """Sign a small message and verify it with dkimpy against this key's own public record.

        Run once at start-up: it proves the signer and the key work together (~10 ms), without
        DNS. It cannot prove the published record matches; ``zone_entry`` gives what to publish.
        """
        probe = (b"From: probe@" + self.domain.encode() + b"\r\nTo: reader@example.com\r\nSubject: DKIM self-check\r\n"
                 b"Date: Thu, 01 Jan 2026 00:00:00 +0000\r\nMessage-ID: <dkim-self-check@" + self.domain.encode()
                 + b">\r\nList-Id: Self-check <check." + self.domain.encode() + b">\r\n"
                 b"List-Unsubscribe: <https://example.com/u/x>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
                 b"\r\nbody\r\n")
        if not verify(self.sign(probe), {self.record_name: self.public_record()}):
            raise DkimError("DKIM self-check failed: a message signed with this key did not verify")


def signer_from_settings(settings: DkimSettings) -> DkimSigner | None:
    """The signer ``[dkim]`` and DIGEST_DKIM_KEY_FILE ask for, or None when signing is off."""
    if settings.key_file is None:
        return None
    if not settings.selector or not settings.domain:
        raise DkimError("DIGEST_DKIM_KEY_FILE is set, so [dkim] selector and domain are needed")
    # No t= tag: the signature is then a pure function of the bytes (RSA PKCS#1 v1.5 is
    # deterministic), so a dry run writes exactly what a send puts on the wire.
    return DkimSigner(settings.domain, settings.selector, load_private_key(settings.key_file), timestamp=False)


# --- verifying (dkimpy) -------------------------------------------------------------------------

def verify(message: bytes, dns_txt: Mapping[bytes, bytes]) -> bool:
    """Whether dkimpy verifies the first DKIM-Signature of ``message`` with DNS answered from ``dns_txt``.

    ``dns_txt`` maps a record name (``b"selector._domainkey.domain."``) to its TXT value
    (``public_txt_record``); nothing is looked up on the network.
    """
    import dkim  # dkimpy: only the verifier, so sending never waits for its import

    return bool(dkim.verify(message, dnsfunc=lambda name, timeout=5: dns_txt.get(name)))

