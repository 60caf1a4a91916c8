"""DKIM: every sample copy, as built and as received over SMTP, verifies with dkimpy.

dkimpy is the verifier throughout (offline: its DNS lookup is answered from a dict); the signer
under test is digest.compose.dkim's own (OpenSSL through ``cryptography``).
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import dkim as dkimpy
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from dkim.util import parse_tag_value

from digest.compose.dkim import (
    DkimError,
    DkimSigner,
    load_private_key,
    public_txt_record,
    signer_from_settings,
    txt_record_name,
    verify,
    zone_entry,
)
from digest.compose.pipeline import compose
from digest.compose.planning import choose_stories
from digest.deliver.capture import CaptureServer
from digest.deliver.transport import Envelope, SmtpConnection, always_send
from digest.errors import DigestError, MessageIntegrityError
from digest.models import DkimSettings, SmtpSettings

DOMAIN = "northline.example.org"
SELECTOR = "digest2026"
RETURN_PATH = "bounces@northline.example.org"
SMTP_SINK = shutil.which("smtp-sink") or shutil.which("smtp-sink", path="/usr/sbin:/usr/local/sbin")


# --- keys, signer, DNS stub ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem_of(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_key(path: Path, data: bytes, mode: int = 0o600) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)  # whatever the umask
    return path


@pytest.fixture
def key_file(tmp_path: Path, rsa_key) -> Path:
    return write_key(tmp_path / "dkim.pem", pem_of(rsa_key))


@pytest.fixture(scope="module")
def signer(rsa_key, tmp_path_factory) -> DkimSigner:
    path = write_key(tmp_path_factory.mktemp("dkim") / "dkim.pem", pem_of(rsa_key))
    return DkimSigner(DOMAIN, SELECTOR, load_private_key(path))


@pytest.fixture(scope="module")
def dns(rsa_key) -> dict[bytes, bytes]:
    return {txt_record_name(SELECTOR, DOMAIN): public_txt_record(rsa_key)}


@pytest.fixture(scope="module")
def samples(sample_settings, composed_sample, sample_subscribers) -> list[tuple[str, str, bytes]]:
    """(edition, recipient, bytes) for every reader of every edition's sample issue."""
    out = []
    for edition in sample_settings.editions:
        composed = composed_sample(edition.slug)
        for subscriber in sample_subscribers.audience(edition.slug):
            out.append((edition.slug, subscriber.email, composed.message(composed.recipient(subscriber))))
    assert len({slug for slug, _, _ in out}) == len(sample_settings.editions)
    return out


def head_of(message: bytes) -> bytes:
    return message[:message.index(b"\r\n\r\n")]


def header_fields(message: bytes) -> list[bytes]:
    return re.split(rb"\r?\n(?![ \t])", re.split(rb"\r?\n\r?\n", message, maxsplit=1)[0])


def signature_tags(message: bytes) -> dict[bytes, bytes]:
    [field] = [f for f in header_fields(message) if f.lower().startswith(b"dkim-signature:")]
    return parse_tag_value(re.sub(rb"\r?\n", b"", field.split(b":", 1)[1]))


def signed_names(message: bytes) -> list[bytes]:
    return [n.strip() for n in signature_tags(message)[b"h"].split(b":")]


# --- every sample copy -----------------------------------------------------------------------------

REQUIRED = [b"from", b"to", b"subject", b"date", b"message-id", b"list-id", b"list-unsubscribe",
            b"list-unsubscribe-post"]


def test_every_sample_copy_of_every_edition_verifies(samples, signer, dns):
    failed = [(slug, rcpt) for slug, rcpt, message in samples if not verify(signer.sign(message), dns)]
    assert not failed, f"dkimpy did not verify: {failed}"


def test_signature_covers_the_unsubscribe_headers_and_the_identity(samples, signer):
    for _, _, message in samples[:: max(1, len(samples) // 8)]:
        names = signed_names(signer.sign(message))
        assert set(REQUIRED) <= set(names)
        assert {b"reply-to", b"mime-version", b"content-type"} <= set(names)  # present in the samples
        assert all(names.count(n) <= 2 for n in names)
        for once in (b"date", b"message-id", b"list-id", b"mime-version", b"content-type"):
            assert names.count(once) == 1
        for twice in (b"from", b"to", b"subject", b"list-unsubscribe", b"list-unsubscribe-post"):
            assert names.count(twice) == 2, "oversigned: one more of these breaks the signature"
        tags = signature_tags(signer.sign(message))
        assert (tags[b"v"], tags[b"a"], tags[b"c"], tags[b"d"], tags[b"s"]) == (
            b"1", b"rsa-sha256", b"relaxed/simple", DOMAIN.encode(), SELECTOR.encode())


def test_a_test_copy_with_an_unsigned_extra_header_verifies(sample_settings, sample_stories, sample_subscribers,
                                                            signer, dns):
    edition = sample_settings.edition("am")
    issue = choose_stories(edition, sample_settings.demo_date, sample_stories.stories, words_per_minute=sample_settings.newsroom.words_per_minute)
    composed = compose(sample_settings, issue, test_copy=True)
    message = composed.message(composed.recipient(sample_subscribers.audience("am")[0]))
    assert b"\r\nX-Digest-Test: " in message
    assert verify(signer.sign(message), dns)


def test_signing_adds_one_header_and_changes_nothing_else(samples, signer):
    for _, _, message in samples:
        signed = signer.sign(message)
        assert signed.endswith(message)
        added = signed[:len(signed) - len(message)]
        assert added.startswith(b"DKIM-Signature: ") and added.endswith(b"\r\n")
        assert len(header_fields(added + b"\r\n")) == 1
        assert [f[:15].lower() for f in header_fields(signed)].count(b"dkim-signature:") == 1
        assert max(map(len, signed.split(b"\r\n"))) <= 998
        assert max(map(len, added.split(b"\r\n"))) <= 78  # folded where possible
        assert signed.count(b"\n") == signed.count(b"\r\n") and signed.isascii()


def test_all_sample_senders_are_aligned_with_the_signing_domain(sample_settings, signer):
    for edition in sample_settings.editions:
        signer.check_alignment(edition.sender.address)
    signer.check_alignment("news@sub.northline.example.org")
    with pytest.raises(DkimError, match="not aligned"):
        signer.check_alignment("news@other.example.com")
    with pytest.raises(DkimError, match="not aligned"):
        signer.check_alignment("news@evilnorthline.example.org")


# --- tampering -------------------------------------------------------------------------------------

def _change_one_body_byte(signed: bytes) -> bytes:
    body = signed.index(b"\r\n\r\n") + 4
    at = signed.index(b"Council", body) if b"Council" in signed[body:] else body + (len(signed) - body) // 2
    while not signed[at:at + 1].isalpha():
        at += 1
    swapped = b"x" if signed[at:at + 1] != b"x" else b"y"
    return signed[:at] + swapped + signed[at + 1:]


def _change_subject(signed: bytes) -> bytes:
    return re.sub(rb"\r\nSubject: ", b"\r\nSubject: Re: ", signed, count=1)


def _extra_unsubscribe_on_top(signed: bytes) -> bytes:
    return b"List-Unsubscribe: <https://evil.example/u/x>\r\n" + signed


def _extra_unsubscribe_below(signed: bytes) -> bytes:
    end = signed.index(b"\r\n\r\n")
    return signed[:end] + b"\r\nList-Unsubscribe: <https://evil.example/u/x>" + signed[end:]


def _extra_one_click_on_top(signed: bytes) -> bytes:
    return b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" + signed


def _extra_from_on_top(signed: bytes) -> bytes:
    return b"From: Someone Else <ceo@northline.example.org>\r\n" + signed


def _drop_the_last_body_line(signed: bytes) -> bytes:
    return signed[: signed.rindex(b"\r\n", 0, len(signed) - 2) + 2]


@pytest.mark.parametrize("tamper", [
    _change_one_body_byte, _change_subject, _extra_unsubscribe_on_top, _extra_unsubscribe_below,
    _extra_one_click_on_top, _extra_from_on_top, _drop_the_last_body_line,
])
def test_tampered_copies_fail(samples, signer, dns, tamper):
    _, _, message = samples[0]
    signed = signer.sign(message)
    assert verify(signed, dns)
    tampered = tamper(signed)
    assert tampered != signed
    assert not verify(tampered, dns)


def test_what_relays_may_do_still_verifies(samples, signer, dns):
    """Trace headers on top, re-folded or unfolded headers (relaxed), LF line ends on local delivery."""
    _, _, message = samples[0]
    signed = signer.sign(message)
    trace = (b"Received: from digest.northline.example.org (digest [192.0.2.1])\r\n\tby mx.example.com "
             b"with ESMTPS id 4Xyz; Tue, 01 Dec 2026 11:00:01 +0000\r\n"
             b"Return-Path: <" + RETURN_PATH.encode() + b">\r\n")
    assert verify(trace + signed, dns)
    assert b",\r\n <mailto:" in signed
    assert verify(signed.replace(b",\r\n <mailto:", b", <mailto:"), dns)  # unfolded
    assert verify(signed.replace(b"\r\nSubject: ", b"\r\nSubject:\t ", 1), dns)  # white space changed
    assert verify(signed.replace(b"\r\n", b"\n"), dns)
    assert verify(signed + b"\r\n\r\n", dns)  # empty lines added at the end (simple body ignores them)


def test_wrong_or_missing_dns_record_fails(samples, signer, dns, rsa_key):
    _, _, message = samples[0]
    signed = signer.sign(message)
    assert not verify(signed, {})
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert not verify(signed, {txt_record_name(SELECTOR, DOMAIN): public_txt_record(other)})


# --- over SMTP -------------------------------------------------------------------------------------

async def _send_all(port: int, messages: list[tuple[str, bytes]]) -> tuple[list[int], bool]:
    connection = SmtpConnection(SmtpSettings("127.0.0.1", port, "none", timeout=10.0, data_timeout=10.0))
    codes = []
    try:
        for recipient, data in messages:
            reply = await connection.deliver(Envelope(RETURN_PATH, recipient), data, before_body=always_send)
            codes.append(reply.code if reply is not None else -1)
        offered_8bitmime = "8bitmime" in connection.extensions
    finally:
        await connection.close()
    return codes, offered_8bitmime


def _message_id(message: bytes) -> bytes:
    return re.search(rb"(?im)^Message-ID:\s*(<[^>\r\n]+>)", message).group(1)


def test_signed_copies_received_by_aiosmtpd_verify(samples, signer, dns):
    outgoing = [(rcpt, signer.sign(message)) for _, rcpt, message in samples]

    async def run():
        async with CaptureServer() as server:
            codes, _ = await _send_all(server.port, outgoing)
            return codes, server.handler.received

    codes, received = asyncio.run(run())
    assert codes == [250] * len(outgoing)
    assert len(received) == len(outgoing)
    for (rcpt, sent), got in zip(outgoing, received, strict=True):
        assert got.recipients == (rcpt,)
        assert got.data == sent, "the server stored other bytes than were signed"
        assert verify(got.data, dns)
        assert verify(b"Received: from digest (localhost [127.0.0.1])\r\n\tby capture.localhost; "
                      b"Tue, 01 Dec 2026 11:00:01 +0000\r\n" + got.data, dns)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_listening(port: int, process: subprocess.Popen, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False


@pytest.fixture
def smtp_sink(tmp_path: Path):
    """Postfix's smtp-sink on loopback without 8BITMIME (-8), dumping each message to a file (-d)."""
    if SMTP_SINK is None:
        pytest.skip("Postfix's smtp-sink is not installed (Debian: apt-get install postfix)")
    dump = tmp_path / "sink"
    dump.mkdir()
    for _ in range(3):
        port = _free_port()
        command = [SMTP_SINK, "-8", "-d", f"{dump}/msg."]
        if os.geteuid() == 0:
            command += ["-u", "root"]  # required when run as root; it keeps writing to our tmp_path
        command += [f"127.0.0.1:{port}", "100"]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if _wait_listening(port, process):
            break
        process.kill()
        process.wait()
    else:
        pytest.skip(f"smtp-sink did not start: {process.stderr.read().decode(errors='replace')[:200]}")
    try:
        yield port, dump
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stderr.close()


def test_signed_copies_through_smtp_sink_without_8bitmime_verify(samples, signer, dns, smtp_sink):
    port, dump = smtp_sink
    outgoing = {_message_id(message): (rcpt, signer.sign(message)) for _, rcpt, message in samples}
    codes, offered_8bitmime = asyncio.run(_send_all(port, list(outgoing.values())))
    assert codes == [250] * len(outgoing)
    assert not offered_8bitmime, "smtp-sink -8 must not announce 8BITMIME"

    deadline = time.monotonic() + 5
    while len(list(dump.iterdir())) < len(outgoing) and time.monotonic() < deadline:
        time.sleep(0.02)
    stored = [path.read_bytes() for path in sorted(dump.iterdir())]
    assert len(stored) == len(outgoing)
    seen = set()
    for data in stored:
        # smtp-sink stores LF line ends and puts its own X-Client-*, X-*-Args and Received headers on
        # top; a mailbox reader turns LF back into CRLF. Both forms must verify.
        assert data.startswith(b"X-Client-Addr: 127.0.0.1\n")
        assert b"\nReceived: from " in data.split(b"\nDKIM-Signature:", 1)[0]
        message_id = _message_id(data)
        rcpt, sent = outgoing[message_id]
        assert f"X-Rcpt-Args: <{rcpt}>".encode() in data
        assert data.replace(b"\n", b"\r\n").find(sent) > 0, "the stored copy differs from what was signed"
        assert verify(data, dns), f"LF copy of {message_id!r} did not verify"
        assert verify(data.replace(b"\n", b"\r\n"), dns), f"CRLF copy of {message_id!r} did not verify"
        seen.add(message_id)
    assert seen == set(outgoing)


# --- key files -------------------------------------------------------------------------------------

def _assert_no_key_material(text: str, key) -> None:
    """No run of 12+ base64 characters from the private PEM or the public key appears in ``text``."""
    secret = b"".join(pem_of(key).splitlines()[1:-1]).decode()
    public = public_txt_record(key).decode().split("p=", 1)[1]
    for run in re.findall(r"[A-Za-z0-9+/=]{12,}", text):
        assert run not in secret and run not in public, f"key material in error text: {run!r}"


@pytest.mark.parametrize("mode", [0o640, 0o644, 0o604, 0o660, 0o606], ids=oct)
def test_key_file_open_to_group_or_others_is_refused(tmp_path, rsa_key, mode):
    path = write_key(tmp_path / "dkim.pem", pem_of(rsa_key), mode)
    with pytest.raises(DkimError) as caught:
        load_private_key(path)
    error = caught.value
    text = str(error)
    assert str(path) in text and "chmod 600" in text and f"{mode:04o}" in text
    assert error.exit_code == 2 and isinstance(error, DigestError) and error.file == str(path)
    _assert_no_key_material(text + repr(error) + repr(error.args), rsa_key)


@pytest.mark.parametrize("mode", [0o600, 0o400], ids=oct)
def test_private_key_files_load(tmp_path, rsa_key, mode):
    path = write_key(tmp_path / "dkim.pem", pem_of(rsa_key), mode)
    key = load_private_key(path)
    assert key.private_numbers() == rsa_key.private_numbers()
    der = write_key(tmp_path / "dkim.der", rsa_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
    assert load_private_key(der).private_numbers() == rsa_key.private_numbers()


def test_a_1024_bit_key_is_refused(tmp_path):
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    path = write_key(tmp_path / "small.pem", pem_of(small))
    with pytest.raises(DkimError, match="1024-bit") as caught:
        load_private_key(path)
    assert str(path) in str(caught.value)
    _assert_no_key_material(str(caught.value), small)
    with pytest.raises(DkimError, match="1024-bit"):
        DkimSigner(DOMAIN, SELECTOR, small)


def test_missing_file_is_refused(tmp_path):
    path = tmp_path / "nowhere.pem"
    with pytest.raises(DkimError, match="does not exist") as caught:
        load_private_key(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("content, match", [
    (b"not a key at all\n", "does not hold a PEM or DER private key"),
    (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "does not hold a PEM or DER private key"),
    (b"", "does not hold a PEM or DER private key"),
])
def test_files_without_a_key_are_refused(tmp_path, content, match):
    path = write_key(tmp_path / "junk.pem", content)
    with pytest.raises(DkimError, match=match):
        load_private_key(path)


def test_encrypted_public_and_non_rsa_keys_are_refused(tmp_path, rsa_key):
    encrypted = rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.BestAvailableEncryption(b"passphrase"))
    with pytest.raises(DkimError, match="passphrase") as caught:
        load_private_key(write_key(tmp_path / "enc.pem", encrypted))
    _assert_no_key_material(str(caught.value), rsa_key)
    public = rsa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(DkimError, match="private key"):
        load_private_key(write_key(tmp_path / "pub.pem", public))
    ec_key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(DkimError, match="RSA"):
        load_private_key(write_key(tmp_path / "ec.pem", pem_of(ec_key)))
    with pytest.raises(DkimError, match="not a regular file"):
        os.chmod(tmp_path, 0o700)
        load_private_key(tmp_path)


def test_signer_settings_are_checked(rsa_key):
    with pytest.raises(DkimError, match="not a domain name"):
        DkimSigner("northline", SELECTOR, rsa_key)
    with pytest.raises(DkimError, match="not a domain name"):
        DkimSigner("north;line.example.org", SELECTOR, rsa_key)
    with pytest.raises(DkimError, match="selector"):
        DkimSigner(DOMAIN, "bad selector", rsa_key)
    with pytest.raises(DkimError, match="List-Unsubscribe"):
        DkimSigner(DOMAIN, SELECTOR, rsa_key, headers=("From", "To", "Subject", "Date", "Message-ID", "List-Id"))
    assert "BEGIN" not in repr(DkimSigner(DOMAIN, SELECTOR, rsa_key))


def test_signer_from_settings(key_file, rsa_key, dns):
    assert signer_from_settings(DkimSettings()) is None
    built = signer_from_settings(DkimSettings(key_file, SELECTOR, DOMAIN))
    assert built is not None and built.record_name == b"digest2026._domainkey.northline.example.org."
    assert built.public_record() == dns[built.record_name]
    built.self_check()
    os.chmod(key_file, 0o644)
    with pytest.raises(DkimError, match="chmod 600"):
        signer_from_settings(DkimSettings(key_file, SELECTOR, DOMAIN))


def test_zone_entry_splits_the_record_into_dns_strings(rsa_key):
    entry = zone_entry(SELECTOR, DOMAIN, rsa_key)
    assert entry.startswith("digest2026._domainkey.northline.example.org. IN TXT ( \"v=DKIM1; k=rsa; p=")
    strings = re.findall(r'"([^"]*)"', entry)
    assert all(len(s) <= 255 for s in strings) and "".join(strings).encode() == public_txt_record(rsa_key)
    der = base64.b64decode(public_txt_record(rsa_key).split(b"p=")[1])
    assert serialization.load_der_public_key(der).public_numbers() == rsa_key.public_key().public_numbers()


# --- messages the signer refuses, body edge cases ----------------------------------------------------

HEAD = (b"From: Northline AM <am@northline.example.org>\r\nTo: reader@example.com\r\nSubject: Hello\r\n"
        b"Date: Tue, 01 Dec 2026 06:00:00 -0500\r\nMessage-ID: <1@northline.example.org>\r\n"
        b"List-Id: Northline AM <am.northline.example.org>\r\nList-Unsubscribe: <https://x.example/u/t>\r\n"
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")


@pytest.mark.parametrize("body", [b"", b"\r\n", b"\r\n\r\n\r\n", b"text", b"text\r\n", b"text\r\n\r\n\r\n",
                                  b"a\r\n\r\nb\r\n", b"a  \r\n\tb\r\n \r\n", b"line\r\n.\r\n.. dots\r\n"])
def test_body_hash_matches_dkimpy_for_edge_bodies(signer, dns, rsa_key, body):
    message = HEAD + b"\r\n" + body
    signed = signer.sign(message)
    assert verify(signed, dns)
    theirs = dkimpy.sign(message, SELECTOR.encode(), DOMAIN.encode(), pem_of(rsa_key),
                         canonicalize=(b"relaxed", b"simple"), include_headers=[b"from"])
    assert signature_tags(signed)[b"bh"] == signature_tags(theirs + message)[b"bh"]


@pytest.mark.parametrize("message, match", [
    (HEAD + b"\r\nZo\xc3\xab\r\n", "8-bit"),
    (HEAD.replace(b"List-Unsubscribe: <https://x.example/u/t>\r\n", b"") + b"\r\nbody\r\n",
     "no list-unsubscribe header"),
    (HEAD + b"Subject: Again\r\n\r\nbody\r\n", "Subject appears more than once"),
    (b"DKIM-Signature: v=1; b=x\r\n" + HEAD + b"\r\nbody\r\n", "already DKIM-signed"),
    (HEAD + b"no colon here\r\n\r\nbody\r\n", "without a colon"),
    (HEAD.rstrip(b"\r\n"), "no end of headers"),
])
def test_messages_that_are_not_ours_are_refused(signer, message, match):
    with pytest.raises(MessageIntegrityError, match=match):
        signer.sign(message)


def test_timestamp_and_clock(rsa_key, dns):
    fixed = DkimSigner(DOMAIN, SELECTOR, rsa_key, clock=lambda: 1_796_000_000.7)
    signed = fixed.sign(HEAD + b"\r\nbody\r\n")
    assert signature_tags(signed)[b"t"] == b"1796000000" and verify(signed, dns)
    untimed = DkimSigner(DOMAIN, SELECTOR, rsa_key, timestamp=False).sign(HEAD + b"\r\nbody\r\n")
    assert b"t" not in signature_tags(untimed) and verify(untimed, dns)


# --- cost --------------------------------------------------------------------------------------------

def test_signing_is_much_cheaper_than_dkimpys_signer(samples, signer, rsa_key):
    """Ratios hold across machines better than times: ours must beat dkimpy's pure-Python RSA by 5x."""
    message = max((m for _, _, m in samples), key=len)
    pem = pem_of(rsa_key)
    start = time.perf_counter()
    for _ in range(3):
        dkimpy.sign(message, SELECTOR.encode(), DOMAIN.encode(), pem, canonicalize=(b"relaxed", b"simple"))
    theirs = (time.perf_counter() - start) / 3
    start = time.perf_counter()
    for _ in range(30):
        signer.sign(message)
    ours = (time.perf_counter() - start) / 30
    assert ours * 5 < theirs, f"ours {ours * 1e3:.2f} ms vs dkimpy {theirs * 1e3:.2f} ms per message"


def test_feedback_id_is_signed_and_oversigned(samples, signer, dns):
    """Gmail trusts a Feedback-ID only under a DKIM signature; one added in transit must break it."""
    _, _, message = samples[0]
    signed = signer.sign(message)
    assert signed_names(signed).count(b"feedback-id") == 2
    forged = signer.sign(message).replace(b"\r\nFrom: ", b"\r\nFeedback-ID: spam:x:evil.example\r\nFrom: ", 1)
    assert forged != signed and not verify(forged, dns)
    changed = signed.replace(b"Feedback-ID: am:", b"Feedback-ID: pm:", 1)
    assert changed != signed and not verify(changed, dns)
