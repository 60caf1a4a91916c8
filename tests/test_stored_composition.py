"""The composition kept with an issue: every sender rebuilds the same copies from it, whatever the
story files say later.

An issue is composed once, when it is created, and kept in the state database as versioned JSON
with a fingerprint (compose/pipeline.py). A resume (a second `digest send`), a dry run of the issue
and any later sender rebuild the copies from it without reading a story. Sends go to aiosmtpd on
127.0.0.1 (``ThreadedServer``) through the CLI in this process; the state database is real SQLite.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.parser
import email.policy
import json
import re
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from conftest import TEST_KEY, run
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from smtp_faults import AM_READERS, DATE, FaultHandler, Reply, ThreadedServer, ledger_rows

from digest.compose.pipeline import (
    PROBE_NAME,
    STORED_FORMAT,
    StoredComposition,
    canonical_json,
    compose,
    composed_from_stored,
    fingerprint_of,
)
from digest.compose.planning import plan_issue, recorded_composition
from digest.config import load_settings
from digest.errors import StateError, StoredCompositionError
from digest.models import DkimSettings
from digest.sources.stories import load_folder
from digest.state.ledger import Ledger

DAY = DATE.isoformat()
EDITED = "EDITED AFTER THE ISSUE WAS CREATED"
CHANGED = "stories or templates changed since the issue was created"
AWKWARD = [
    PROBE_NAME,
    'Ana "the Lede" Lucero',
    "Nguyễn Thị Lan",
    "=?utf-8?q?Not_an_encoded_word?=",
    "O'Brien, Siobhán (Desk) <night>",
    "李小龍 " * 30,
    "",
]


# --- helpers --------------------------------------------------------------------------------------------


def point_at(config: Path, port: int) -> None:
    text = config.read_text(encoding="utf-8")
    config.write_text(re.sub(r"\nport = \d+\n", f"\nport = {port}\n", text, count=1), encoding="utf-8")


def render_cli(capsys, config: Path, out: Path, edition: str = "am") -> tuple[int, str, str, dict[str, bytes]]:
    """`digest render` in this process: (code, stdout, stderr, {reader address: .eml bytes})."""
    code, stdout, err = run(capsys, "--config", str(config), "render", edition, "--date", DAY, "--out", str(out))
    folder = out / edition / DAY
    files = {p.name.split("-", 1)[1].removesuffix(".eml"): p.read_bytes() for p in folder.glob("*.eml")} if folder.exists() else {}
    return code, stdout, err, files


def send_cli(capsys, config: Path, handler: FaultHandler, *args: str) -> tuple[int, str, str, dict[str, bytes]]:
    """`digest send am` in this process to a fresh relay running ``handler``: (code, stdout, stderr, {reader: bytes})."""
    with ThreadedServer(handler) as relay:
        point_at(config, relay.port)
        code, out, err = run(capsys, "--config", str(config), "send", "am", "--date", DAY, *args)
        received = {r.recipients[0]: r.data for r in relay.handler.received}
    point_at(config, 9)
    return code, out, err, received


def check_cli(capsys, config: Path) -> str:
    _, out, _ = run(capsys, "--config", str(config), "check", "am", "--date", DAY)
    return " ".join(out.split())


def parts(data: bytes) -> tuple[str, str]:
    """(text, html) of one message, decoded."""
    message = email.parser.BytesParser(policy=email.policy.default).parsebytes(data)
    return (message.get_body(("plain",)).get_content().replace("\r\n", "\n"),
            message.get_body(("html",)).get_content().replace("\r\n", "\n"))


def shared_part(data: bytes) -> tuple[str, str, str]:
    """What every reader's copy has in common: the shared headers and both bodies, the reader's
    address, greeting and unsubscribe link written out of them."""
    message = email.parser.BytesParser(policy=email.policy.default).parsebytes(data)
    address = message["To"].addresses[0].addr_spec
    link = str(message["List-Unsubscribe"]).split(">", 1)[0].lstrip("<")
    head = "\n".join(f"{k}: {v}" for k, v in message.items() if k not in ("To", "Message-ID", "List-Unsubscribe"))

    def neutral(body: str) -> str:
        body = body.replace(link, "LINK").replace(address, "ADDRESS")
        return re.sub(r"Good morning(?:, [^.<\n]+)?\.", "GREETING", body)

    text, html = parts(data)
    return head, neutral(text), neutral(html)


def story_files(config: Path, story_ids: tuple[str, ...]) -> list[Path]:
    """The files of these stories, in the issue's order."""
    by_id = {story.id: Path(story.source) for story in load_folder(config.parent / "stories").stories}
    return [by_id[story_id] for story_id in story_ids]


def issue_record(state_db: Path, edition: str = "am"):
    with closing(Ledger(state_db)) as ledger:
        record = ledger.find_issue(edition, DATE)
        assert record is not None
        return record, ledger.composition(record.id)


def set_in_defaults(config: Path, line: str) -> None:
    text = config.read_text(encoding="utf-8")
    old = next(row for row in text.splitlines() if row.startswith("on_broken_story = "))
    config.write_text(text.replace(old, line, 1), encoding="utf-8")


def later_readers_deferred() -> FaultHandler:
    """The first four readers get their copy; the others are deferred once (451), so a run with
    --no-wait leaves the issue under way with four copies out."""
    return FaultHandler(rcpt_script={address: [Reply("451 4.3.0 try again later")] for address in AM_READERS[4:]})


# --- a resume sends the issue as it was created ------------------------------------------------------------


def test_a_resume_after_the_stories_changed_sends_every_copy_as_created(capsys, newsroom, tmp_path):
    code, _, err, before = render_cli(capsys, newsroom, tmp_path / "before")  # the dry run, before anything exists
    assert code == 0, err
    assert set(before) == set(AM_READERS)

    code, out, err, first = send_cli(capsys, newsroom, later_readers_deferred(), "--no-wait")
    assert set(first) == set(AM_READERS[:4]), (out, err)
    assert sorted(state for _, state, _, _ in ledger_rows(tmp_path / "state.db")) == ["deferred"] * 7 + ["sent"] * 4
    record, kept = issue_record(tmp_path / "state.db")
    assert kept is not None and kept[0] == STORED_FORMAT
    fingerprint = kept[2]
    assert CHANGED not in check_cli(capsys, newsroom)  # nothing changed yet: the files compose the same copies

    # The desk rewrites the lead, removes the second story and breaks a file, refusing broken stories.
    lead, second = story_files(newsroom, record.story_ids)[:2]
    original = lead.read_text(encoding="utf-8")
    lead.write_text(original.replace('headline: "', f'headline: "{EDITED}: ', 1) + f"\n{EDITED}, in the body too.\n",
                    encoding="utf-8")
    checked = check_cli(capsys, newsroom)
    assert f"{CHANGED}; its copies still go as created (fingerprint {fingerprint})" in checked, checked
    second.unlink()
    set_in_defaults(newsroom, 'on_broken_story = "fail"')
    (newsroom.parent / "stories" / "zz-broken.md").write_text('---\nheadline: "No date"\neditions: [am]\n---\nBody.\n',
                                                            encoding="utf-8")

    code, out, err, after = render_cli(capsys, newsroom, tmp_path / "after")  # the dry run of the issue under way
    assert code == 0, (out, err)
    assert "as created" in out and fingerprint in " ".join(err.split())  # said, on standard error, as a note
    assert after == before

    code, out, err, resumed = send_cli(capsys, newsroom, FaultHandler())
    assert code == 0, (out, err)
    assert set(resumed) == set(AM_READERS[4:])
    assert sorted(state for _, state, _, _ in ledger_rows(tmp_path / "state.db")) == ["sent"] * len(AM_READERS)
    assert issue_record(tmp_path / "state.db")[1] == kept  # the first write stays

    copies = {**first, **resumed}
    for reader, data in copies.items():
        assert data == before[reader], f"{reader}: the copy differs from `digest render` before the edit"
        text, html = parts(data)
        assert EDITED not in text + html, reader
    shared = {shared_part(data) for data in copies.values()}
    assert len(shared) == 1, "copies differ in more than their reader's parts"
    lede = re.search(r'headline: "([^"]+)"', original)[1]
    assert lede in shared.pop()[1]


def test_an_issue_an_older_digest_created_is_composed_once_more_and_then_kept(capsys, newsroom, tmp_path):
    code, out, err, first = send_cli(capsys, newsroom, later_readers_deferred(), "--no-wait")
    assert set(first) == set(AM_READERS[:4]), (out, err)
    state_db = tmp_path / "state.db"
    record, _ = issue_record(state_db)
    db = sqlite3.connect(state_db)
    with db:
        db.execute("DELETE FROM issue_compositions")  # as an issue from before compositions were kept
    db.close()

    code, out, err, resumed = send_cli(capsys, newsroom, later_readers_deferred(), "--no-wait")
    assert resumed == {}  # the deferred copies wait for their retry time
    _, kept = issue_record(state_db)
    assert kept is not None, "the resume keeps the composition it made from the recorded stories"
    lead = story_files(newsroom, record.story_ids)[0]
    lead.write_text(lead.read_text(encoding="utf-8") + f"\n{EDITED}\n", encoding="utf-8")
    code, _, err, rendered = render_cli(capsys, newsroom, tmp_path / "dry")
    assert code == 0, err
    for reader, data in first.items():  # stable from now on: the kept composition, not the edited file
        assert rendered[reader] == data


# --- the stored form ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("slug", ["am", "denver", "climate"])
def test_the_stored_form_rebuilds_the_same_bytes_as_compose(sample_settings, composed_sample, sample_subscribers, slug):
    composed = composed_sample(slug)
    kept = StoredComposition.of(composed)
    assert json.loads(kept.body)["format"] == STORED_FORMAT == kept.format
    assert re.fullmatch(r"[0-9a-f]{16}", kept.fingerprint) and kept.fingerprint == fingerprint_of(kept.body)
    edition = sample_settings.edition(slug)
    rebuilt = composed_from_stored(sample_settings, edition, StoredComposition(kept.format, kept.body, kept.fingerprint),
                                   date=DATE)
    assert rebuilt.fingerprint == kept.fingerprint and composed.fingerprint is None
    assert rebuilt.story_ids == tuple(s.id for s in composed.issue.stories)
    assert rebuilt.issue.send_time == composed.issue.send_time
    assert rebuilt.issue.send_time.tzinfo.key == edition.timezone  # the zone, not just an offset
    assert rebuilt.issue.window_start == composed.issue.window_start
    assert rebuilt.issue.reading_minutes == composed.issue.reading_minutes
    assert rebuilt.rendered.subject == composed.rendered.subject and rebuilt.rendered.preheader == composed.rendered.preheader
    readers = [(s.email, s.name) for s in sample_subscribers.audience(slug)]
    readers += [(f"awkward{n}@example.com", name) for n, name in enumerate(AWKWARD)]
    for address, name in readers:
        want = composed.message(composed.recipients.for_address(address, name))
        got = rebuilt.message(rebuilt.recipients.for_address(address, name))
        assert got == want, (address, name)
    assert StoredComposition.of(rebuilt) == kept  # and it stores as it was stored
    # the data itself round-trips too, without the text form
    assert composed_from_stored(sample_settings, edition, composed.stored()).template.build(
        composed.recipients.for_address(*readers[0])) == composed.template.build(composed.recipients.for_address(*readers[0]))


def test_the_stored_form_holds_no_secret(sample_settings, sample_stories, tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(pem)
    key_file.chmod(0o600)
    settings = dataclasses.replace(sample_settings, dkim=DkimSettings(key_file, "digest2026", "northline.example.org"))
    issue = plan_issue(settings, settings.edition("am"), DATE, sample_stories.stories, fresh=True)
    composed = compose(settings, issue)
    assert composed.signer is not None
    body = StoredComposition.of(composed).body
    secret = TEST_KEY.split(":", 1)[1]
    assert secret not in body and TEST_KEY not in body
    assert secret.encode().hex() not in body
    for line in pem.decode().splitlines()[1:-1]:
        assert line not in body
    numbers = key.private_numbers()
    for number in (numbers.d, numbers.p, numbers.q):
        assert str(number) not in body and f"{number:x}" not in body
    rebuilt = composed_from_stored(settings, settings.edition("am"), StoredComposition.of(composed))
    assert rebuilt.signer is not None  # signing comes back from the settings, not from the stored form


def test_a_test_copy_is_never_stored(sample_settings, sample_stories):
    issue = plan_issue(sample_settings, sample_settings.edition("am"), DATE, sample_stories.stories, fresh=True)
    with pytest.raises(ValueError, match="test copy"):
        compose(sample_settings, issue, test_copy=True).stored()


def _recomputed(data: dict) -> StoredComposition:
    body = canonical_json(data)
    return StoredComposition(data["format"] if isinstance(data.get("format"), int) else 1, body, fingerprint_of(body))


def _set(path: str, value):
    def change(data: dict) -> None:
        *parents, last = path.split(".")
        target = data
        for name in parents:
            target = target[name]
        target[last] = value
    return change


def _drop(path: str):
    def change(data: dict) -> None:
        *parents, last = path.split(".")
        target = data
        for name in parents:
            target = target[name]
        del target[last]
    return change


@pytest.mark.parametrize("change, says", [
    (_set("format", 2), "format 2 is not one this digest reads"),
    (_set("edition", "pm"), "edition 'pm'"),
    (_set("issue_date", "2026-12-02"), "2026-12-02"),
    (_set("nonce", "(.*)"), "nonce"),
    (_set("boundary", "a b\r\nX-Evil: 1"), "boundary"),
    (_set("headers.subject", "Hi\r\nBcc: everyone@example.com"), "line break"),
    (_set("headers.sender.address", "bad address\n@example.com"), "From"),
    (_set("headers.extra", [["X-Ok"]]), "headers.extra"),
    (_set("headers.extra", [["Bcc", "everyone@example.com"]]), "not an X- header name"),
    (_set("headers.extra", [["X-A:\r\nBcc", "x"]]), "not an X- header name"),
    (_set("stories", []), "stories"),
    (_set("reading_minutes", True), "reading_minutes"),
    (_set("send_time", "2026-12-01T06:00:00"), "send_time"),
    (_set("timezone", "Mars/Olympus_Mons"), "Mars/Olympus_Mons"),
    (_set("text", 7), "text"),
    (_drop("html"), "html is missing"),
    (_drop("headers"), "headers"),
])
def test_a_stored_form_that_cannot_be_used_is_a_clear_state_error(sample_settings, composed_sample, change, says):
    data = composed_sample("am").stored()
    change(data)
    with pytest.raises(StoredCompositionError, match=re.escape(says)) as raised:
        composed_from_stored(sample_settings, sample_settings.edition("am"), _recomputed(data), date=DATE)
    assert isinstance(raised.value, StateError) and raised.value.exit_code == 1
    assert str(raised.value).startswith(f"am {DAY}: the composition kept with the issue")


def test_a_changed_text_or_an_unknown_format_column_is_refused(sample_settings, composed_sample):
    kept = StoredComposition.of(composed_sample("am"))
    edition = sample_settings.edition("am")
    tampered = dataclasses.replace(kept, body=kept.body.replace("Why it matters", "Why it does not matter", 1))
    with pytest.raises(StoredCompositionError, match=f"no longer matches its fingerprint {kept.fingerprint}"):
        composed_from_stored(sample_settings, edition, tampered, date=DATE)
    with pytest.raises(StoredCompositionError, match="format 2 is not one"):
        composed_from_stored(sample_settings, edition, dataclasses.replace(kept, format=2), date=DATE)
    with pytest.raises(StoredCompositionError, match="not JSON"):
        composed_from_stored(sample_settings, edition, dataclasses.replace(kept, body=kept.body[:-1]), date=DATE)
    # a backend that spells the same JSON otherwise (key order, spaces) changes no fingerprint
    spaced = json.dumps(json.loads(kept.body), indent=2)
    assert composed_from_stored(sample_settings, edition, dataclasses.replace(kept, body=spaced)).fingerprint == kept.fingerprint


def test_render_and_send_of_an_issue_whose_kept_composition_was_tampered_with_stop_and_send_nothing(capsys, newsroom,
                                                                                                     tmp_path):
    settings = load_settings(newsroom)
    edition = settings.edition("am")
    issue = plan_issue(settings, edition, DATE, load_folder(settings.paths.stories).stories, fresh=True)
    kept = StoredComposition.of(compose(settings, issue))
    with closing(Ledger(settings.state_db)) as ledger:
        record, _ = ledger.create_issue("am", DATE, issue.send_time, [s.id for s in issue.stories],
                                        audience=[(a, "", a) for a in AM_READERS],
                                        composition=(kept.format, kept.body, kept.fingerprint))
    db = sqlite3.connect(settings.state_db)
    with db:
        db.execute("UPDATE issue_compositions SET body = replace(body, 'Why it matters', 'Why it does not') "
                   "WHERE issue_id = ?", (record.id,))
    db.close()
    code, out, err, files = render_cli(capsys, newsroom, tmp_path / "dry")
    assert code == 1 and files == {}
    assert f"am {DAY}" in err and kept.fingerprint in err and "Traceback" not in err
    code, out, err, received = send_cli(capsys, newsroom, FaultHandler())
    assert code == 1 and received == {}
    assert "fingerprint" in err
    assert {state for _, state, _, _ in ledger_rows(settings.state_db)} == {"pending"}
    with closing(Ledger(settings.state_db)) as ledger:  # the dry run and the refused send wrote nothing
        assert ledger.composition(record.id)[2] == kept.fingerprint


def test_recorded_composition_reads_a_database_without_writing_it(sample_settings, composed_sample, tmp_path):
    settings = dataclasses.replace(sample_settings, state_db=tmp_path / "state.db")
    edition = settings.edition("am")
    assert recorded_composition(settings, edition, DATE) is None  # no database yet: nothing is created
    assert not settings.state_db.exists()
    composed = composed_sample("am")
    kept = StoredComposition.of(composed)
    with closing(Ledger(settings.state_db)) as ledger:
        ledger.create_issue("am", DATE, composed.issue.send_time, list(composed.story_ids))  # as an older digest did
    assert recorded_composition(settings, edition, DATE) is None
    with closing(Ledger(settings.state_db)) as ledger:
        ledger.keep_composition(ledger.find_issue("am", DATE).id, kept.format, kept.body, kept.fingerprint)
    settings.state_db.chmod(0o444)
    try:
        rebuilt = recorded_composition(settings, edition, DATE)
    finally:
        settings.state_db.chmod(0o644)
    assert rebuilt is not None and rebuilt.fingerprint == kept.fingerprint
    assert recorded_composition(settings, edition, DATE + dt.timedelta(days=1)) is None
