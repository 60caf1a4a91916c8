"""Bounces that arrive later: DSN fixtures from several MTAs, matching against a real SQLite ledger."""

from __future__ import annotations

import datetime as dt
import mailbox
import shutil
from pathlib import Path

import pytest

from digest.errors import InputError
from digest.readers.addresses import address_key
from digest.readers.bounces import (
    apply,
    classify,
    parse_dsn,
    process,
    read_messages,
    scan,
)
from digest import returnpath
from digest.models import SigningKey
from digest.state.ledger import Ledger

DATA = Path(__file__).parent / "data" / "bounces"
DOMAIN = "northline.example.org"
DATE = dt.date(2026, 12, 1)


def mid(hex32: str) -> str:
    return f"<{hex32}@{DOMAIN}>"


# fixture -> (recipient, action, status, class, kind, the original Message-ID, edition it went out in)
EXPECTED = {
    "postfix-hard.eml": ("tomas.ferreira@example.com", "failed", "5.1.1", "hard", "dsn", mid("db5b4ada7df6ed2a4b75c9ed4c9a8d18"), "am"),
    "exim-hard.eml": ("lena.brandt@example.net", "failed", "5.1.1", "hard", "dsn", mid("0d829834e905acdf54b1279c7985ec40"), "am"),
    "gmail-hard.eml": ("priya.natarajan@example.org", "failed", "5.1.1", "hard", "dsn", mid("ae06d381887f14c2d8324eb74f1627b5"), "pm"),
    "microsoft-hard.eml": ("jordan.okafor@example.net", "failed", "5.1.10", "hard", "dsn", mid("614c52a3f922c8c4659c6be8379112be"), "am"),
    "postfix-delayed.eml": ("marta.ilves@example.org", "delayed", "4.4.1", "soft", "dsn", mid("3e09b635b9ab2a363bffee702144ed5a"), "am"),
    "mailbox-full.eml": ("owen.gallagher@example.com", "failed", "5.2.2", "policy", "dsn", mid("0953903cf4175f59effb1d76d072c9a4"), "am"),
    "policy.eml": ("ines.moreau@example.org", "failed", "5.7.1", "policy", "dsn", mid("413c315396df4b3f9d47dac3318e3097"), "am"),
    "plain-text-bounce.eml": ("sam.whitfield@example.net", "failed", "5.1.1", "hard", "text", mid("93a65ea4b5e69f336f66fe533bea7cc7"), "am"),
    "autoreply.eml": (None, None, None, "auto-reply", "auto-reply", None, "am"),
}
AUTOREPLY_READER = ("hannah.lindqvist@example.com", mid("602565d2aca7088e6e431fe0b1e526b3"))
BYSTANDER = ("ruth.adeyemi@example.com", mid("a01bb49d0e0a678142132decbfd12699"))  # bounced nowhere
HARD = {v[0] for v in EXPECTED.values() if v[3] == "hard"}


def fixture_bytes(name: str) -> bytes:
    return (DATA / name).read_bytes()


def complaint_bytes() -> bytes:
    """An ARF report (RFC 5965) about BYSTANDER's copy, as a feedback loop sends it."""
    return (DATA.parent / "complaints" / "arf-complaint.eml").read_bytes()


# --- parsing ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_fixture_parses_to_its_recipient_action_status_and_message_id(name: str) -> None:
    recipient, action, status, category, kind, message_id, _ = EXPECTED[name]
    reports = parse_dsn(fixture_bytes(name), name)
    assert len(reports) == 1
    report = reports[0]
    assert (report.recipient, report.action, report.status, report.category, report.kind) == \
        (recipient, action, status, category, kind)
    assert report.message_id == message_id
    assert report.source == name
    assert report.reason  # always says why


def test_dsn_fields_are_read_without_their_types() -> None:
    postfix = parse_dsn(fixture_bytes("postfix-hard.eml"))[0]
    assert postfix.original_recipient == "tomas.ferreira@example.com"  # "rfc822;" stripped
    assert postfix.remote_mta == "mx1.example.com"  # "dns; " stripped
    assert postfix.reporting_mta == "mail.northline.example.org"
    assert postfix.diagnostic == ("550 5.1.1 <tomas.ferreira@example.com>: Recipient address rejected: "
                                  "User unknown in virtual mailbox table")  # "smtp; " stripped, unfolded
    assert postfix.smtp_code == 550
    assert "User unknown" in postfix.reason


def test_exim_status_5_0_0_gives_way_to_the_code_in_its_diagnostic() -> None:
    exim = parse_dsn(fixture_bytes("exim-hard.eml"))[0]
    assert exim.status == "5.1.1" and exim.remote_mta == "mail.example.net"


def test_gmail_multiline_reply_is_one_clean_line() -> None:
    gmail = parse_dsn(fixture_bytes("gmail-hard.eml"))[0]
    assert gmail.diagnostic.startswith("550 5.1.1 The email account that you tried to reach does not exist.")
    assert "550-5.1.1" not in gmail.diagnostic and gmail.diagnostic.count("5.1.1") == 1
    assert gmail.reporting_mta == "googlemail.com"


def test_microsoft_ndr_keeps_its_resolver_reason() -> None:
    ms = parse_dsn(fixture_bytes("microsoft-hard.eml"))[0]
    assert "RESOLVER.ADR.RecipientNotFound" in ms.reason
    assert ms.reporting_mta == "DM6PR11MB4657.namprd11.prod.outlook.com"


def test_soft_reasons_say_what_happened() -> None:
    assert "policy" in parse_dsn(fixture_bytes("policy.eml"))[0].reason
    assert "mailbox full" in parse_dsn(fixture_bytes("mailbox-full.eml"))[0].reason
    assert "delayed" in parse_dsn(fixture_bytes("postfix-delayed.eml"))[0].reason
    assert "auto-reply" in parse_dsn(fixture_bytes("autoreply.eml"))[0].reason


@pytest.mark.parametrize(("action", "status", "diagnostic", "expected"), [
    ("failed", "5.1.1", None, "hard"),
    ("failed", "5.1.10", None, "hard"),
    ("failed", "5.2.1", None, "hard"),       # mailbox disabled
    ("failed", "5.4.4", None, "hard"),       # the domain has no mail host
    ("failed", "5.0.0", "550 no such user", "hard"),
    ("failed", "5.0.0", "552 storage exceeded", "policy"),  # refused for good, not for the address
    ("failed", "5.2.2", None, "policy"),     # mailbox full
    ("failed", "5.2.3", None, "policy"),     # our message too large
    ("failed", "5.7.1", None, "policy"),     # policy
    ("failed", "5.7.26", None, "policy"),    # DMARC / authentication
    ("failed", "5.3.4", None, "policy"),     # message too big for the system: not the address
    ("failed", "5.4.7", None, "policy"),     # delivery time expired
    ("failed", "5.6.0", None, "policy"),     # content
    ("failed", "4.4.7", None, "policy"),     # gave up after temporary failures: final, reader kept
    ("failed", None, None, "soft"),          # failed, no code: never enough to drop a reader
    ("delayed", "4.2.2", None, "soft"),
    ("delivered", "2.0.0", None, "other"),
    ("relayed", "2.0.0", None, "other"),
    ("expanded", "2.0.0", None, "other"),
    ("failed", "5.3.0", "553 5.3.0 No such user here", "hard"),  # the words say the address is gone
    ("failed", None, "550 Requested action not taken: mailbox unavailable", "hard"),  # no enhanced code
    ("failed", None, "553 Exceeded maximum inbound message size", "policy"),
    ("failed", None, "554 delivery error", "policy"),
    ("failed", None, None, "soft"),

])
def test_classification(action, status, diagnostic, expected) -> None:
    assert classify(action, status, diagnostic)[0] == expected


def test_a_success_notification_is_ignored() -> None:
    data = fixture_bytes("postfix-hard.eml").replace(b"Action: failed", b"Action: delivered").replace(
        b"Status: 5.1.1", b"Status: 2.0.0")
    report = parse_dsn(data)[0]
    assert (report.category, report.action) == ("other", "delivered")


def test_mail_that_is_not_a_bounce_is_ignored_even_if_it_quotes_an_smtp_reply() -> None:
    reply = (b"From: Ana Lucero <ana.lucero@example.com>\nTo: am@northline.example.org\n"
             b"Subject: Re: your newsletter\nIn-Reply-To: " + EXPECTED["postfix-hard.eml"][5].encode() + b"\n\n"
             b"My old address gave me 550 5.1.1 errors; please use ana@example.org now.\n")
    report = parse_dsn(reply)[0]
    assert (report.category, report.kind, report.recipient) == ("other", "other", None)


def test_garbage_does_not_crash_the_parser() -> None:
    for data in (b"", b"\x00\xff\xfe garbage", b"Content-Type: multipart/report; report-type=delivery-status\n\nno parts",
                 b"Content-Type: message/delivery-status\n\nAction: failed\n"):
        assert parse_dsn(data)  # always a report, never an exception


def test_an_arf_complaint_is_read_with_its_reader_and_the_original_message_id() -> None:
    [report] = parse_dsn(complaint_bytes(), "arf-complaint.eml")
    assert (report.category, report.kind, report.recipient, report.action) == \
        ("complaint", "arf", "ruth.adeyemi@example.com", "abuse")
    assert report.message_id == BYSTANDER[1]
    assert report.subject == "Beschwerde: Northline AM"  # RFC 2047 decoded
    assert "MailhostFBL/2.1" in report.reason


def test_a_not_spam_feedback_report_is_no_complaint() -> None:
    data = complaint_bytes().replace(b"Feedback-Type: abuse", b"Feedback-Type: not-spam")
    assert parse_dsn(data)[0].category == "other"


def test_a_redacted_arf_report_names_no_reader_but_keeps_the_message_id() -> None:
    data = complaint_bytes().replace(b"Original-Rcpt-To: <ruth.adeyemi@example.com>\n", b"")
    [report] = parse_dsn(data)
    assert (report.category, report.recipient, report.message_id) == ("complaint", None, BYSTANDER[1])


def test_a_verp_token_of_our_shape_is_read_from_the_delivered_to_header() -> None:
    data = fixture_bytes("postfix-hard.eml").replace(
        b"Delivered-To: am@northline.example.org", b"Delivered-To: bounce+1234-0123456789ab@northline.example.org")
    assert parse_dsn(data)[0].verp_token == "1234-0123456789ab"
    assert parse_dsn(fixture_bytes("postfix-hard.eml"))[0].verp_token is None  # not required
    other_plus = fixture_bytes("postfix-hard.eml").replace(
        b"Delivered-To: am@northline.example.org", b"Delivered-To: am+news@northline.example.org")
    assert parse_dsn(other_plus)[0].verp_token is None  # a plus address that is not our token


# --- against a real ledger -------------------------------------------------------------------

@pytest.fixture
def ledger(tmp_path: Path):
    """A ledger with an AM and a PM issue, every fixture's reader sent a copy under its Message-ID."""
    ledger = Ledger(tmp_path / "state" / "digest.sqlite3")
    readers: dict[str, list[tuple[str, str]]] = {"am": [AUTOREPLY_READER, BYSTANDER], "pm": []}
    for recipient, *_, message_id, edition in EXPECTED.values():
        if recipient:
            readers[edition].append((recipient, message_id))
    readers["am"].append(("never.sent@example.com", ""))  # in the audience, copy still pending
    for edition, hour in (("am", 11), ("pm", 22)):
        audience = [(email, email.split("@")[0].replace(".", " ").title(), address_key(email)) for email, _ in readers[edition]]
        record, _ = ledger.create_issue(edition, DATE, dt.datetime(2026, 12, 1, hour, tzinfo=dt.timezone.utc), ["story"],
                                        audience=audience)
        ids = dict(readers[edition])
        for delivery in ledger.deliveries(record.id):
            if ids[delivery.email]:
                assert ledger.mark_sending(delivery.id, ids[delivery.email], address_key(delivery.email), edition) == "sending"
                ledger.mark(delivery.id, "sent", 250, "accepted")
    yield ledger
    ledger.close()


def suppressions(ledger: Ledger) -> dict[str, tuple[str, str]]:
    return {key: (edition, reason) for key, edition, reason in ledger.db.execute("SELECT key, edition, reason FROM suppressions")}


def states(ledger: Ledger) -> dict[str, str]:
    return dict(ledger.db.execute("SELECT email, state FROM deliveries"))


def snapshot(ledger: Ledger) -> tuple[list, list]:
    return (ledger.db.execute("SELECT * FROM suppressions ORDER BY key, edition").fetchall(),
            ledger.db.execute("SELECT * FROM deliveries ORDER BY id").fetchall())


def all_reports():
    return [r for name in sorted(EXPECTED) for r in parse_dsn(fixture_bytes(name), name)]


def test_hard_bounces_suppress_exactly_those_readers_for_every_edition(ledger: Ledger) -> None:
    summary = apply(ledger, all_reports())
    assert suppressions(ledger) == {address_key(a): ("*", "bounced") for a in HARD}
    assert (summary.messages, summary.reports, summary.hard, summary.soft, summary.policy, summary.ignored,
            summary.unmatched, summary.suppressed) == (9, 9, 5, 1, 2, 1, 0, 5)
    assert summary.problems == []
    for address in HARD:
        assert ledger.is_suppressed(address_key(address), "am") and ledger.is_suppressed(address_key(address), "climate")
    detail = ledger.db.execute("SELECT detail FROM suppressions WHERE key = 'tomas.ferreira@example.com'").fetchone()[0]
    assert detail.startswith("5.1.1: 550 5.1.1")
    matched = {o.recipient: (o.matched_by, o.edition, o.issue_date) for o in summary.outcomes if o.recipient}
    assert matched["priya.natarajan@example.org"] == ("message-id", "pm", "2026-12-01")


def test_soft_policy_and_auto_replies_keep_the_reader(ledger: Ledger) -> None:
    apply(ledger, all_reports())
    kept = ("marta.ilves@example.org", "owen.gallagher@example.com", "ines.moreau@example.org",
            AUTOREPLY_READER[0], BYSTANDER[0], "never.sent@example.com")
    for address in kept:
        assert not ledger.is_suppressed(address, "am"), address


def test_failed_copies_are_marked_failed_delayed_ones_stay_sent(ledger: Ledger) -> None:
    summary = apply(ledger, all_reports())
    after = states(ledger)
    for address in HARD | {"owen.gallagher@example.com", "ines.moreau@example.org"}:
        assert after[address] == "failed", address
    for address in ("marta.ilves@example.org", AUTOREPLY_READER[0], BYSTANDER[0]):
        assert after[address] == "sent", address
    assert after["never.sent@example.com"] == "pending"
    assert summary.failed == 7
    text = ledger.db.execute("SELECT last_code, last_text FROM deliveries WHERE email = 'ines.moreau@example.org'").fetchone()
    assert text[0] == 550 and "5.7.1" in text[1]


def test_applying_the_same_mailbox_twice_changes_nothing_the_second_time(ledger: Ledger) -> None:
    apply(ledger, all_reports())
    before = snapshot(ledger)
    again = apply(ledger, all_reports())
    assert snapshot(ledger) == before
    assert (again.suppressed, again.failed) == (0, 0)
    assert (again.hard, again.soft, again.policy, again.unmatched) == (5, 1, 2, 0)
    assert {o.result for o in again.outcomes if o.category == "hard"} == {"already suppressed (bounced)"}


def test_duplicate_bounces_in_one_mailbox_count_one_suppression(ledger: Ledger) -> None:
    report = parse_dsn(fixture_bytes("postfix-hard.eml"), "a")[0]
    summary = apply(ledger, [report, parse_dsn(fixture_bytes("postfix-hard.eml"), "b")[0]])
    assert (summary.messages, summary.hard, summary.suppressed, summary.failed) == (2, 2, 1, 1)
    assert [o.result for o in summary.outcomes] == ["suppressed", "already suppressed (bounced)"]
    dry = apply(ledger, [parse_dsn(fixture_bytes("exim-hard.eml"), n)[0] for n in "ab"], dry_run=True)
    assert (dry.suppressed, dry.failed) == (1, 1)


def test_a_dry_run_writes_nothing_but_says_what_would_change(ledger: Ledger) -> None:
    before = snapshot(ledger)
    summary = apply(ledger, all_reports(), dry_run=True)
    assert snapshot(ledger) == before
    assert (summary.suppressed, summary.failed) == (5, 7)


def test_an_already_unsubscribed_reader_keeps_their_reason(ledger: Ledger) -> None:
    ledger.suppress("tomas.ferreira@example.com", "*", "unsubscribed")
    summary = apply(ledger, parse_dsn(fixture_bytes("postfix-hard.eml")))
    assert summary.suppressed == 0
    assert suppressions(ledger)["tomas.ferreira@example.com"] == ("*", "unsubscribed")
    assert summary.outcomes[0].result == "already suppressed (unsubscribed)"


def _variant(name: str, *pairs: tuple[bytes, bytes]) -> bytes:
    data = fixture_bytes(name)
    for old, new in pairs:
        assert old in data, old
        data = data.replace(old, new)
    return data


POSTFIX_ID = b"db5b4ada7df6ed2a4b75c9ed4c9a8d18"
TOMAS = b"tomas.ferreira@example.com"


def test_a_foreign_address_and_message_id_is_unmatched_and_never_suppressed(ledger: Ledger) -> None:
    data = _variant("postfix-hard.eml", (TOMAS, b"stranger@example.net"), (POSTFIX_ID, b"f" * 32))
    summary = apply(ledger, parse_dsn(data))
    assert (summary.hard, summary.unmatched, summary.suppressed) == (1, 1, 0)
    assert suppressions(ledger) == {}
    assert "not a copy digest recorded" in summary.outcomes[0].reason


def test_an_unknown_message_id_is_not_rescued_by_a_readers_address(ledger: Ledger) -> None:
    # e.g. a journalist's own mail to a reader, or a test copy: not a copy of an issue
    data = _variant("postfix-hard.eml", (POSTFIX_ID, b"0" * 32))
    summary = apply(ledger, parse_dsn(data))
    assert (summary.unmatched, summary.suppressed) == (1, 0) and suppressions(ledger) == {}


def test_a_forwarded_copy_that_bounced_elsewhere_is_not_pinned_on_the_reader(ledger: Ledger) -> None:
    data = _variant("exim-hard.eml", (b"lena.brandt@example.net", b"lena.old@example.org"))
    # the Message-ID is Lena's copy, but the address that failed is another one
    report = parse_dsn(data)[0]
    assert report.message_id == EXPECTED["exim-hard.eml"][5] and report.recipient == "lena.old@example.org"
    summary = apply(ledger, [report])
    assert (summary.unmatched, summary.suppressed) == (1, 0) and suppressions(ledger) == {}
    assert states(ledger)["lena.brandt@example.net"] == "sent"


def strip_message_ids(data: bytes) -> bytes:
    fields = (b"message-id:", b"in-reply-to:", b"references:", b"x-original-message-id:")
    return b"\n".join(line for line in data.split(b"\n")
                      if not (line.lower().startswith(fields) and DOMAIN.encode() in line))


def test_without_a_message_id_the_recipient_address_matches_a_reader(ledger: Ledger) -> None:
    report = parse_dsn(strip_message_ids(fixture_bytes("gmail-hard.eml")))[0]
    assert report.message_id is None and report.recipient == "priya.natarajan@example.org"
    summary = apply(ledger, [report])
    assert (summary.suppressed, summary.outcomes[0].matched_by) == (1, "address")
    assert suppressions(ledger) == {"priya.natarajan@example.org": ("*", "bounced")}
    assert (summary.failed, states(ledger)["priya.natarajan@example.org"]) == (0, "sent")  # which copy? unknown


def test_without_a_message_id_an_address_we_never_sent_to_is_unmatched(ledger: Ledger) -> None:
    for address in (b"stranger@example.net", b"never.sent@example.com"):
        data = strip_message_ids(_variant("postfix-hard.eml", (TOMAS, address)))
        summary = apply(ledger, parse_dsn(data))
        assert (summary.unmatched, summary.suppressed) == (1, 0), address
    assert suppressions(ledger) == {}


KEYS = (SigningKey("k1", b"a-test-secret-of-thirty-two-bytes!!"),)


def _copy_id(ledger: Ledger, email: str) -> int:
    return ledger.db.execute("SELECT id FROM deliveries WHERE email = ?", (email,)).fetchone()[0]


def _verp_bounce(token: str) -> bytes:
    """Tomas's bounce with no Message-ID and a rewritten address: only the VERP token can say whose it is."""
    return strip_message_ids(_variant(
        "postfix-hard.eml", (TOMAS, b"t.ferreira@mail.example.com"),
        (b"Delivered-To: am@northline.example.org", f"Delivered-To: bounce+{token}@northline.example.org".encode())))


def test_a_signed_verp_token_matches_the_copy_when_nothing_else_would(ledger: Ledger) -> None:
    token = returnpath.token(KEYS, _copy_id(ledger, "tomas.ferreira@example.com"))
    assert apply(ledger, parse_dsn(_verp_bounce(token)), dry_run=True).unmatched == 1  # without the key: unknown
    summary = apply(ledger, parse_dsn(_verp_bounce(token)), verp=lambda t: returnpath.copy_id(KEYS, t))
    assert (summary.suppressed, summary.failed, summary.outcomes[0].matched_by) == (1, 1, "verp")
    assert suppressions(ledger) == {"tomas.ferreira@example.com": ("*", "bounced")}
    assert states(ledger)["tomas.ferreira@example.com"] == "failed"


def test_the_verp_token_wins_over_a_message_id(ledger: Ledger) -> None:
    # The relay rewrote Message-IDs: the bounce quotes one that belongs to another reader's copy.
    token = returnpath.token(KEYS, _copy_id(ledger, "tomas.ferreira@example.com"))
    data = _variant("postfix-hard.eml", (b"Delivered-To: am@northline.example.org",
                                         f"Delivered-To: bounce+{token}@northline.example.org".encode()))
    summary = apply(ledger, parse_dsn(data), verp=lambda t: returnpath.copy_id(KEYS, t), dry_run=True)
    assert summary.outcomes[0].matched_by == "verp"


def test_a_forged_or_altered_verp_token_suppresses_nobody(ledger: Ledger) -> None:
    real = returnpath.token(KEYS, _copy_id(ledger, "tomas.ferreira@example.com"))
    other_id = _copy_id(ledger, "lena.brandt@example.net")
    forged = [f"{other_id}-{real.split('-')[1]}", f"{other_id}-0123456789ab",
              returnpath.token((SigningKey("x", b"someone-elses-secret-thirty-two-b"),), other_id)]
    for token in forged:
        summary = apply(ledger, parse_dsn(_verp_bounce(token)), verp=lambda t: returnpath.copy_id(KEYS, t))
        assert (summary.unmatched, summary.suppressed) == (1, 0), token
        assert "does not verify" in summary.outcomes[0].reason
    assert suppressions(ledger) == {}


def test_a_token_signed_by_an_older_key_still_verifies() -> None:
    old, new = SigningKey("old", b"the-old-secret-of-thirty-two-bytes"), SigningKey("new", b"the-new-secret-of-thirty-two-bytes")
    assert returnpath.copy_id((new, old), returnpath.token((old,), 77)) == 77
    assert returnpath.copy_id((new,), returnpath.token((old,), 77)) is None
    assert returnpath.address("bounce@northline.example.org", (new,), 77).startswith("bounce+77-")


def test_a_complaint_suppresses_the_reader_everywhere_and_is_counted_apart(ledger: Ledger) -> None:
    summary = apply(ledger, parse_dsn(complaint_bytes(), "arf-complaint.eml"))
    assert (summary.complaints, summary.hard, summary.suppressed, summary.failed) == (1, 0, 1, 0)
    assert suppressions(ledger)["ruth.adeyemi@example.com"] == ("*", "complained")
    assert states(ledger)["ruth.adeyemi@example.com"] == "sent"  # it was delivered; the reader objected
    am = ledger.find_issue("am", DATE)
    assert ledger.complaint_count(am.id) == 1
    again = apply(ledger, parse_dsn(complaint_bytes(), "arf-complaint.eml"))
    assert (again.suppressed, ledger.complaint_count(am.id)) == (0, 1)
    assert again.outcomes[0].result == "already suppressed (complained)"


def test_a_dry_run_complaint_writes_nothing(ledger: Ledger) -> None:
    before = snapshot(ledger)
    summary = apply(ledger, parse_dsn(complaint_bytes()), dry_run=True)
    assert (summary.complaints, summary.suppressed) == (1, 1)
    assert snapshot(ledger) == before and ledger.complaint_count(ledger.find_issue("am", DATE).id) == 0


# --- inputs ----------------------------------------------------------------------------------

def _sources_and_recipients(path: Path) -> tuple[int, set[str | None]]:
    problems: list = []
    items = list(read_messages(path, problems))
    assert problems == []
    return len(items), {r.recipient for _, data in items for r in parse_dsn(data)}


ALL_RECIPIENTS = {v[0] for v in EXPECTED.values()}


def test_a_maildir_is_read_from_new_and_cur(tmp_path: Path) -> None:
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    for n, name in enumerate(sorted(EXPECTED)):
        message = mailbox.MaildirMessage(fixture_bytes(name))
        if n % 2:
            message.set_subdir("cur")
            message.set_flags("S")
        box.add(message)
    box.close()
    assert any((tmp_path / "Maildir" / "cur").iterdir()) and any((tmp_path / "Maildir" / "new").iterdir())
    assert _sources_and_recipients(tmp_path / "Maildir") == (9, ALL_RECIPIENTS)


def test_an_mbox_is_read_message_by_message(tmp_path: Path) -> None:
    box = mailbox.mbox(tmp_path / "bounces.mbox", create=True)
    for name in sorted(EXPECTED):
        box.add(mailbox.mboxMessage(fixture_bytes(name)))
    box.close()
    problems: list = []
    items = list(read_messages(tmp_path / "bounces.mbox", problems))
    assert [s for s, _ in items] == [f"{tmp_path / 'bounces.mbox'}#{n}" for n in range(1, 10)]
    assert {r.recipient for _, data in items for r in parse_dsn(data)} == ALL_RECIPIENTS
    assert [parse_dsn(data)[0].message_id for _, data in items] == [EXPECTED[n][5] for n in sorted(EXPECTED)]


def test_a_single_file_and_a_folder_of_eml_files_are_read(tmp_path: Path) -> None:
    assert _sources_and_recipients(DATA / "gmail-hard.eml") == (1, {"priya.natarajan@example.org"})
    assert _sources_and_recipients(DATA) == (9, ALL_RECIPIENTS)


def test_unreadable_items_are_reported_and_the_rest_still_read(tmp_path: Path) -> None:
    folder = tmp_path / "eml"
    shutil.copytree(DATA, folder)
    (folder / "gone.eml").symlink_to(tmp_path / "nowhere.eml")
    (folder / "notes.txt").write_text("not a message")  # not an .eml: not read at all
    maildir = tmp_path / "Maildir"
    mailbox.Maildir(maildir, create=True).add(mailbox.MaildirMessage(fixture_bytes("policy.eml")))
    (maildir / "cur" / "1796000000.M1P1.host:2,S").symlink_to(tmp_path / "nowhere")
    for path, count in ((folder, 9), (maildir, 1)):
        problems: list = []
        assert len(list(read_messages(path, problems))) == count
        assert len(problems) == 1 and "cannot read" in problems[0].message


def test_a_single_unreadable_file_is_a_problem_not_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    locked = tmp_path / "locked.eml"
    shutil.copy(DATA / "policy.eml", locked)
    real_open = Path.open

    def refuse(self: Path, *args, **kwargs):
        if self == locked:
            raise PermissionError(13, "Permission denied")
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse)  # chmod 000 would not stop a test run as root
    problems: list = []
    assert list(read_messages(locked, problems)) == []
    assert [p.source for p in problems] == [str(locked)] and "Permission denied" in problems[0].message


def test_a_missing_path_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        read_messages(tmp_path / "no-such-mailbox")
    assert caught.value.exit_code == 2


def test_process_reads_parses_and_applies_a_maildir(ledger: Ledger, tmp_path: Path) -> None:
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    for name in sorted(EXPECTED):
        box.add(mailbox.MaildirMessage(fixture_bytes(name)))
    box.close()
    (tmp_path / "Maildir" / "new" / "broken").symlink_to(tmp_path / "nowhere")
    summary = process(ledger, tmp_path / "Maildir")
    assert summary.totals() == (9, 9, 5, 1, 2, 0, 1, 0, 5, 1)
    assert len(summary.rows()) == 8 and len(summary.rows(include_ignored=True)) == 9
    assert len(summary.COLUMNS) == len(summary.totals())
    assert all(len(row) == len(summary.OUTCOME_COLUMNS) for row in summary.rows())
    assert process(ledger, tmp_path / "Maildir").suppressed == 0


def test_scan_counts_messages(tmp_path: Path) -> None:
    messages, reports, problems = scan(DATA)
    assert (messages, len(reports), problems) == (9, 9, [])


def test_crlf_line_endings_and_global_dsns_read_the_same() -> None:
    plain = parse_dsn(fixture_bytes("postfix-hard.eml"))[0]
    crlf = parse_dsn(fixture_bytes("postfix-hard.eml").replace(b"\n", b"\r\n"))[0]
    global_dsn = parse_dsn(fixture_bytes("postfix-hard.eml").replace(
        b"Content-Type: message/delivery-status", b"Content-Type: message/global-delivery-status"))[0]
    for other in (crlf, global_dsn):
        assert (other.recipient, other.action, other.status, other.category, other.message_id, other.diagnostic) == \
            (plain.recipient, plain.action, plain.status, plain.category, plain.message_id, plain.diagnostic)


def test_a_dsn_without_final_recipient_takes_exims_failed_recipients_header() -> None:
    data = _variant("exim-hard.eml", (b"Final-Recipient: rfc822;lena.brandt@example.net\n", b""))
    report = parse_dsn(data)[0]
    assert (report.recipient, report.category) == ("lena.brandt@example.net", "hard")


def test_a_postfix_bounce_without_its_dsn_part_is_read_from_the_text() -> None:
    data = fixture_bytes("postfix-hard.eml")
    start = data.index(b"--4Y2k9T0vZRz9sWq.1795950007/mail.northline.example.org\nContent-Description: Delivery report")
    end = data.index(b"--4Y2k9T0vZRz9sWq.1795950007/mail.northline.example.org\nContent-Description: Undelivered Message\n")
    report = parse_dsn(data[:start] + data[end:])[0]
    assert (report.kind, report.recipient, report.status, report.category) == \
        ("text", "tomas.ferreira@example.com", "5.1.1", "hard")
    assert report.diagnostic.endswith("User unknown in virtual mailbox table (in reply to RCPT TO command)")
    assert report.message_id == EXPECTED["postfix-hard.eml"][5]


def test_a_bounce_with_nothing_readable_is_flagged_not_guessed(ledger: Ledger) -> None:
    data = (b"From: MAILER-DAEMON@mail.example.net\nTo: am@northline.example.org\nSubject: failure notice\n\n"
            b"Your message could not be delivered. Sorry.\n")
    report = parse_dsn(data, "odd.eml")[0]
    assert (report.category, report.kind) == ("other", "unrecognised")
    summary = apply(ledger, [report])
    assert summary.ignored == 1 and suppressions(ledger) == {}
    assert summary.rows() == [("odd.eml", "", "other", "", "", "ignored", report.reason)]  # shown, not hidden


def test_a_plain_transcript_is_read_at_its_failure_not_its_first_reply() -> None:
    data = (b"From: Mail Delivery Subsystem <MAILER-DAEMON@mail.example.com>\nTo: am@northline.example.org\n"
            b"Subject: Returned mail: see transcript for details\n\n"
            b"   ----- Transcript of session follows -----\n"
            b">>> MAIL From:<am@northline.example.org>\n<<< 250 2.1.0 Sender ok\n"
            b">>> RCPT To:<kofi.mensah@example.com>\n<<< 550 5.1.1 <kofi.mensah@example.com>... User unknown\n"
            b"\n   ----- Original message follows -----\n\nMessage-ID:\n <" + b"c" * 32 + b"@northline.example.org>\n"
            b"To: Kofi Mensah <kofi.mensah@example.com>\n")
    report = parse_dsn(data)[0]
    assert (report.kind, report.recipient, report.status, report.category) == \
        ("text", "kofi.mensah@example.com", "5.1.1", "hard")
    assert report.diagnostic == "550 5.1.1 <kofi.mensah@example.com>... User unknown"
    assert report.message_id == mid("c" * 32)  # a folded Message-ID header, quoted in the text
