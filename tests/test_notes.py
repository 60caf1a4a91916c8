"""Curator notes (issue 9, item 10): an issue note per edition and date under the greeting, a
per-story ``curator_note``, and `digest check` warning when a topic issue has neither.

Copies are sent through the real SMTP path to aiosmtpd on 127.0.0.1 (``ThreadedServer`` for the
CLI, ``CaptureServer`` for ``send_issue``) and parsed back, so what is checked is what a reader
gets. A note that cannot be read follows ``on_broken_story`` as a story does; a note edited after
the issue was created changes no copy of it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.parser
import email.policy
import os
import re
from contextlib import closing
from pathlib import Path

import pytest
from conftest import isolate, run
from smtp_faults import (
    DATE,
    FaultHandler,
    Reply,
    ThreadedServer,
    fire_scheduled,
    write_newsroom,
)

from digest.compose.pipeline import compose
from digest.compose.planning import plan_issue
from digest.config import load_settings
from digest.deliver.runner import send_issue
from digest.errors import StoryError, TemplateError
from digest.readers.subscribers import load_subscribers
from digest.sources.notes import MAX_NOTE_BYTES, read_note
from digest.sources.stories import load_folder, parse_story
from digest.state.ledger import Ledger

DAY = DATE.isoformat()
NOTE_WORDS = "Three of today's four stories"  # the sample note's first words
FIRST_PICK = "I led with this one"  # the sample curator_note on the climate lead (Denver wildfire insurance)
SECOND_PICK = "Less ice sounds like"  # ... and on the Great Lakes story


@pytest.fixture
def env(monkeypatch):
    """The test key and no state URL: the state goes where the newsroom's digest.toml puts it."""
    return isolate(monkeypatch)


def note_file(config: Path, edition: str = "climate", day: str = DAY) -> Path:
    return config.parent / "notes" / edition / f"{day}.md"


def parts(data: bytes) -> tuple[str, str]:
    """(text, html) of one message, decoded."""
    message = email.parser.BytesParser(policy=email.policy.default).parsebytes(data)
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = message.get_body(("html",)).get_content().replace("\r\n", "\n")
    return text, html


def point_at(config: Path, port: int) -> None:
    config.write_text(config.read_text(encoding="utf-8").replace("port = 9\n", f"port = {port}\n"), encoding="utf-8")


def send_cli(capsys, config: Path, edition: str = "climate") -> tuple[int, str, str, dict[str, bytes]]:
    with ThreadedServer(FaultHandler()) as relay:
        point_at(config, relay.port)
        code, out, err = run(capsys, "--config", str(config), "send", edition, "--date", DAY)
        received = {r.recipients[0]: r.data for r in relay.handler.received}
    point_at_closed(config)
    return code, out, err, received


def point_at_closed(config: Path) -> None:
    config.write_text(re.sub(r"\nport = \d+\n", "\nport = 9\n", config.read_text(encoding="utf-8"), count=1), encoding="utf-8")


def render_cli(capsys, config: Path, out: Path, edition: str = "climate") -> tuple[int, str, str, dict[str, bytes]]:
    code, stdout, err = run(capsys, "--config", str(config), "render", edition, "--date", DAY, "--out", str(out))
    folder = out / edition / DAY
    files = {p.name.split("-", 1)[1].removesuffix(".eml"): p.read_bytes() for p in folder.glob("*.eml")} if folder.exists() else {}
    return code, stdout, err, files


def set_in_defaults(config: Path, line: str) -> None:
    text = config.read_text(encoding="utf-8")
    old = next(row for row in text.splitlines() if row.startswith("on_broken_story = "))
    config.write_text(text.replace(old, line, 1), encoding="utf-8")


def drop_curator_notes(config: Path) -> None:
    for path in (config.parent / "stories").glob("*.md"):
        text = path.read_text(encoding="utf-8")
        path.write_text("".join(line for line in text.splitlines(True) if not line.startswith("curator_note:")), encoding="utf-8")


def climate_readers(config: Path) -> list[str]:
    settings = load_settings(config)
    return [s.email for s in load_subscribers(settings.paths.subscribers, [e.slug for e in settings.editions]).audience("climate")]


# --- the note under the greeting, and curator_note with its story, in a real sent copy -------------------


def test_a_sent_copy_carries_the_note_under_the_greeting_in_html_and_text(capsys, newsroom):
    code, out, err, received = send_cli(capsys, newsroom)
    assert code in (0, 1), (out, err)  # 1: the sample subscribers.csv has bad rows on purpose
    assert set(received) == set(climate_readers(newsroom))
    text, html = parts(received["zoe.brandt@mail.example.com"])
    # text: greeting, the promise, the note with its heading, then the first story
    greet = text.index("Hello, Zoë.")
    heading = text.index("A note from Priya Raman", greet)
    assert greet < text.index("Today's picks, chosen and explained by Priya Raman.") < heading
    assert heading < text.index(NOTE_WORDS) < text.index("keep\nfollowing.") < text.index("1. Wildfire risk")
    note = text[heading:text.index("1. Wildfire risk")]
    assert all(len(line) <= 72 for line in note.splitlines()), note  # wrapped like story bodies
    # html: the note's row follows the greeting's row and precedes the first story
    greet = html.index('class="greet"')
    assert greet < html.index('class="letter-box"') < html.index(NOTE_WORDS) < html.index('class="story"')
    assert "<p>" not in text and "<script" not in html


def test_curator_note_is_shown_with_its_story_and_only_in_curated_editions(capsys, newsroom):
    _, _, _, received = send_cli(capsys, newsroom)
    text, html = parts(received["zoe.brandt@mail.example.com"])
    stories = [text.index(f"\n{n}. ") for n in (1, 2, 3, 4)]
    assert stories[0] < text.index("Priya Raman's take: " + FIRST_PICK) < stories[1]
    assert stories[2] < text.index("Priya Raman's take: " + SECOND_PICK) < stories[3]
    cards = html.split('class="story"')[1:]
    assert FIRST_PICK in cards[0] and "Priya Raman’s take:" in cards[0] and SECOND_PICK in cards[2]
    assert FIRST_PICK not in cards[1] + cards[3]
    # the same story goes to Denver, which names no curator: Priya's words stay out of it
    _, _, _, denver = send_cli(capsys, newsroom, "denver")
    text, html = parts(next(iter(denver.values())))
    assert "Wildfire risk" in text and FIRST_PICK not in text + html and "take:" not in text


def test_curator_note_is_one_line_like_editor_note():
    with pytest.raises(StoryError) as caught:
        parse_story('---\nheadline: "H"\npublished: 2026-12-01T06:00:00-05:00\ncurator_note: "one\\ntwo"\n---\nBody.\n',
                    source="s.md", default_id="s")
    assert caught.value.field == "curator_note" and "one line" in caught.value.message
    with pytest.raises(StoryError) as caught:
        parse_story('---\nheadline: "H"\npublished: 2026-12-01T06:00:00-05:00\ncurator_note: [a]\n---\nBody.\n',
                    source="s.md", default_id="s")
    assert caught.value.field == "curator_note"
    story = parse_story('---\nheadline: "H"\npublished: 2026-12-01T06:00:00-05:00\ncurator_note: "Why: <b>x</b>"\n'
                        'editor_note: "Updated."\n---\nBody.\n', source="s.md", default_id="s")
    assert (story.curator_note, story.editor_note) == ("Why: <b>x</b>", "Updated.")


def test_any_edition_may_have_a_note_under_the_editors_name(capsys, newsroom):
    path = note_file(newsroom, "denver")
    path.parent.mkdir(parents=True)
    path.write_text("Snow is coming; **plows start at 4 a.m.** See the [route map](https://example.org/plows).\n", encoding="utf-8")
    _, _, _, received = send_cli(capsys, newsroom, "denver")
    text, html = parts(next(iter(received.values())))
    assert "A note from the editors" in text and "A note from the editors" in html
    assert "<strong>plows start at 4 a.m.</strong>" in html
    # read first, so its link is [1]: the stories' links follow it
    assert "route map [1]" in text and re.search(r"\n\[1\] route map\n +https://example.org/plows\n", text)
    assert "[2]" in text.split("\n1. ", 1)[1].split("\n", 1)[0]


# --- digest check: a topic issue with no word from its curator ------------------------------------------


def check_counts(out: str) -> tuple[int, int]:
    match = re.search(r"(\d+) error\(s\), (\d+) warning\(s\)", out)
    assert match, out
    return int(match[1]), int(match[2])


CURATOR_WARNING = "this topic issue carries no word from Priya Raman"


def test_check_warns_for_a_topic_issue_with_neither_note_nor_curator_note(capsys, newsroom):
    code_with, out, _ = run(capsys, "--config", str(newsroom), "check", "climate", "--date", DAY)
    assert CURATOR_WARNING not in out
    errors, warnings = check_counts(out)
    note_file(newsroom).unlink()
    drop_curator_notes(newsroom)
    code, out, _ = run(capsys, "--config", str(newsroom), "check", "climate", "--date", DAY)
    lines = [line for line in out.splitlines() if CURATOR_WARNING in line]
    assert len(lines) == 1 and lines[0].startswith("warning: climate 2026-12-01: "), out
    assert "notes/climate/2026-12-01.md" in lines[0] and "curator_note" in lines[0]
    assert check_counts(out) == (errors, warnings + 1)  # a warning, not an error
    assert code == code_with  # the exit code is what the other findings make it


def test_check_is_satisfied_by_a_note_alone_or_a_curator_note_alone(capsys, newsroom):
    drop_curator_notes(newsroom)
    _, out, _ = run(capsys, "--config", str(newsroom), "check", "climate", "--date", DAY)
    assert CURATOR_WARNING not in out
    write_newsroom_again = newsroom.parent.parent / "again"
    config = write_newsroom(write_newsroom_again, port=9)
    note_file(config).unlink()
    _, out, _ = run(capsys, "--config", str(config), "check", "climate", "--date", DAY)
    assert CURATOR_WARNING not in out


def test_check_does_not_warn_for_city_editions_without_a_note(capsys, newsroom):
    _, out, _ = run(capsys, "--config", str(newsroom), "check", "denver", "--date", DAY)
    assert "carries no word" not in out


# --- hostile note content ----------------------------------------------------------------------------------


HOSTILE = (
    "<script>alert(1)</script>Hello <img src=x onerror=alert(2)> reader.\r\n"
    "\r\n"
    "[click](javascript:alert(3)) <a href=\"data:text/html,x\">data</a> <iframe src=https://evil.example></iframe>\r"
    "bare CR line\x00 with a NUL {{ 7*7 }} {% raw %}\n"
    "<style>body{display:none}</style><form action=https://evil.example><input></form>\n"
    "Subject: injected\r\nBcc: victim@example.com\n"
)


def test_hostile_note_is_sanitised_in_both_parts(newsroom):
    path = note_file(newsroom)
    path.write_bytes(HOSTILE.encode("utf-8"))
    settings = load_settings(newsroom)
    issue = plan_issue(settings, settings.edition("climate"), DATE, load_folder(settings.paths.stories).stories, fresh=True)
    assert issue.note is not None and issue.note_problem is None
    composed = compose(settings, issue)  # parses one full copy back and compares headers and bodies
    reader = load_subscribers(settings.paths.subscribers, [e.slug for e in settings.editions]).audience("climate")[0]
    data = composed.message(composed.recipient(reader))
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    assert "injected" not in head and "victim@" not in head and "Bcc" not in head
    assert b"\r\n" in data and not re.search(rb"[^\r]\n|\r[^\n]", data)  # CRLF only, no bare CR or LF
    text, html = parts(data)
    letter = html.split('class="letter-box"', 1)[1].split("</table>", 1)[0]
    for bad in ("<script", "alert(1)", "onerror", 'href="javascript:', 'href="data:', "<iframe", "<style", "<form", "<input", "<img"):
        assert bad not in letter.lower(), bad
    assert "[click](javascript:alert(3))" in letter  # CommonMark refuses the link: it stays text
    assert "{{ 7*7 }}" in letter and "49" not in letter and "{% raw %}" in letter
    assert "Hello" in letter and "reader." in letter and "\x00" not in html + text
    note = text.split("A note from Priya Raman", 1)[1].split("-" * 60, 1)[0]
    assert "Hello" in note and "{{ 7*7 }}" in note and "alert(1)" not in note and "\r" not in note


def test_subject_and_preheader_never_see_the_note(newsroom):
    text = newsroom.read_text(encoding="utf-8")
    newsroom.write_text(text.replace('curator = { name', 'subject = "{{ issue.note_text }}"\ncurator = { name', 1), encoding="utf-8")
    settings = load_settings(newsroom)
    issue = plan_issue(settings, settings.edition("climate"), DATE, load_folder(settings.paths.stories).stories, fresh=True)
    assert issue.note is not None
    with pytest.raises(TemplateError) as caught:
        compose(settings, issue)
    assert "note_text" in str(caught.value) and "subject" in str(caught.value)


def test_a_huge_note_is_refused_without_reading_it_all(newsroom, events, capsys, tmp_path):
    path = note_file(newsroom)
    path.write_bytes(b"<script>x</script> word " * (50 * 1024 * 1024 // 24))  # 50 MB
    read = read_note(path)
    assert read.note is None and read.problem is not None
    assert read.problem.file == str(path) and f"{MAX_NOTE_BYTES:,}" in read.problem.message
    code, out, err, files = render_cli(capsys, newsroom, tmp_path / "dry")
    assert code == 0, err
    assert any(line.startswith("warning: ") and "notes/climate/2026-12-01.md" in line and "left out" in line
               for line in out.splitlines()), out
    assert files and all(b"A note from" not in data for data in files.values())


# --- a note file that cannot be read: the on_broken_story rule --------------------------------------------


def break_note(config: Path, how: str) -> Path:
    path = note_file(config)
    if how == "not utf-8":
        path.write_bytes(b"Fine first line.\nSecond line \xff\xfe here.\n")
    elif how == "a folder":
        path.unlink()
        path.mkdir()
        (path / "x.md").write_text("not a note\n", encoding="utf-8")
    elif how == "a fifo":
        path.unlink()
        os.mkfifo(path)  # opening it would wait for a writer forever
    elif how == "path through a file":
        path.unlink()
        path.parent.rmdir()
        path.parent.write_text("a file where the edition's folder should be\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("how, says", [("not utf-8", "2: not UTF-8 text"), ("a folder", "is a folder"),
                                       ("a fifo", "not a regular file"), ("path through a file", "not a folder")])
def test_broken_note_is_left_out_by_default_and_render_and_send_agree(capsys, newsroom, tmp_path, events, how, says):
    break_note(newsroom, how)
    code, out, _ = run(capsys, "--config", str(newsroom), "check", "climate", "--date", DAY)
    assert code == 2
    shown = [line for line in out.splitlines() if line.startswith("error: ") and "notes/climate" in line]
    assert len(shown) == 1 and says in shown[0] and "without this note" in shown[0], out
    code, out, err, files = render_cli(capsys, newsroom, tmp_path / "dry")
    assert code == 0, err
    assert any(line.startswith("warning: ") and "notes/climate" in line and says in line for line in out.splitlines()), out
    assert [line for line in events if "event=note.unreadable" in line and "level=error" in line and "action=" in line]
    events.clear()
    code, out, err, received = send_cli(capsys, newsroom)
    assert code in (0, 1), (out, err)
    assert any(line.startswith("warning: ") and "notes/climate" in line for line in out.splitlines()), out
    assert [line for line in events if "event=note.unreadable" in line and "level=error" in line]
    assert received and received == files  # the dry run predicted the send, byte for byte
    assert all(b"A note from" not in data for data in received.values())


def test_broken_note_with_on_broken_story_fail_refuses_check_render_and_send(capsys, newsroom, tmp_path):
    break_note(newsroom, "not utf-8")
    set_in_defaults(newsroom, 'on_broken_story = "fail"')
    code, out, _ = run(capsys, "--config", str(newsroom), "check", "climate", "--date", DAY)
    assert code == 2 and "on_broken_story" in out and "the issue's note cannot be read" in out
    code, _, err, files = render_cli(capsys, newsroom, tmp_path / "dry")
    assert code == 2 and "notes/climate/2026-12-01.md:2" in err and not files
    code, out, err, received = send_cli(capsys, newsroom)
    assert code == 2 and "notes/climate/2026-12-01.md" in err
    assert received == {}
    assert Ledger.read_only(load_settings(newsroom).state_db) is None or \
        Ledger.read_only(load_settings(newsroom).state_db).find_issue("climate", DATE) is None


@pytest.mark.parametrize("rule", ["skip", "fail"])
def test_the_scheduler_applies_the_same_rule_to_a_note(newsroom, events, rule):
    break_note(newsroom, "a folder")
    set_in_defaults(newsroom, f'on_broken_story = "{rule}"')
    received = fire_scheduled(newsroom, "climate", "2026-12-01T15:00:05Z")  # 07:00:05 in Los Angeles: climate is due
    unreadable = [line for line in events if "event=note.unreadable" in line]
    assert unreadable and all("level=error" in line and "notes/climate" in line for line in unreadable), events
    if rule == "skip":
        assert received and all(b"A note from" not in r.data for r in received)
        assert any("event=issue.finished" in line for line in events)
    else:
        assert received == []
        failed = [line for line in events if "event=issue.failed" in line]
        assert failed and "level=error" in failed[0] and "note" in failed[0]


def dt_utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- the dry run predicts the send; what was sent is history ------------------------------------------------


def test_render_and_send_agree_with_a_note(capsys, newsroom, tmp_path):
    code, _, err, files = render_cli(capsys, newsroom, tmp_path / "dry")
    assert code == 0, err
    assert files and all(NOTE_WORDS.encode() in data.replace(b"=\r\n", b"") for data in files.values())
    _, _, _, received = send_cli(capsys, newsroom)
    assert received == files


def test_a_note_edited_after_the_first_copy_changes_no_later_copy(capsys, newsroom, tmp_path):
    readers = climate_readers(newsroom)
    later = readers[1:]
    # Every reader but the first is deferred on the first run: the issue is under way with one copy out.
    handler = FaultHandler(rcpt_script={address: [Reply("451 4.3.0 try again later")] for address in later})
    with ThreadedServer(handler) as relay:
        point_at(newsroom, relay.port)

        def send():
            settings = load_settings(newsroom)
            return asyncio.run(send_issue(settings, settings.edition("climate"), DATE, wait_for_retries=False))

        report = send()
        assert report.counts["sent"] == 1 and report.counts["deferred"] == len(later)
        # The curator rewrites the note: the dry run of the issue under way still shows the kept one.
        note_file(newsroom).write_text("EDITED AFTER THE SEND: a different note.\n", encoding="utf-8")
        code, _, err, files = render_cli(capsys, newsroom, tmp_path / "dry")
        assert code == 0, err
        # ... and then breaks the file, with the strict rule: the issue under way does not read it again.
        set_in_defaults(newsroom, 'on_broken_story = "fail"')
        note_file(newsroom).write_bytes(b"\xff broken now\n")
        report = send()
        assert report.complete and report.counts["sent"] == len(readers)
        received = {r.recipients[0]: r.data for r in relay.handler.received}
    settings = load_settings(newsroom)
    assert set(received) == set(readers)
    for address, data in received.items():
        text, html = parts(data)
        assert NOTE_WORDS in text and NOTE_WORDS in html, address
        assert "EDITED" not in text + html, address
    for address in later:  # the dry run predicted the resumed copies
        assert files[address] == received[address]
    with closing(Ledger(settings.state_db)) as ledger:  # and the archive page kept when the issue went out
        sent, page = ledger.public_issue("climate", DATE)
    assert sent and NOTE_WORDS in page and "EDITED" not in page
    # the recorded issue is planned with its kept note, whatever the file says now
    issue = plan_issue(settings, settings.edition("climate"), DATE, load_folder(settings.paths.stories).stories)
    assert issue.note is not None and NOTE_WORDS in issue.note.html and issue.note_problem is None


def test_an_older_state_database_without_kept_notes_reads_as_no_note(tmp_path):
    path = tmp_path / "old.sqlite3"
    with closing(Ledger(path)) as ledger:
        record, _ = ledger.create_issue("climate", DATE, dt_utc("2026-12-01T15:00:00Z"), ["a"], note=("n.md", "Kept."))
        assert ledger.issue_note(record.id) == ("n.md", "Kept.")
        ledger.db.execute("DROP TABLE issue_notes")  # as a database from before notes were kept
        ledger.db.execute("DROP TABLE alembic_version")  # ... and before migrations were recorded
    with closing(Ledger.read_only(path)) as old:
        assert old.issue_note(record.id) is None  # such an issue went out with no note
    with closing(Ledger(path)) as upgraded:  # opened for writing, it gains the table
        assert upgraded.issue_note(record.id) is None
        again, created = upgraded.create_issue("climate", dt.date(2026, 12, 2), dt_utc("2026-12-02T15:00:00Z"), ["b"],
                                               note=("n.md", "Next."))
        assert created and upgraded.issue_note(again.id) == ("n.md", "Next.")


# --- templates: overrides keep working, the new variables are there -----------------------------------------


def test_an_override_of_the_intro_and_an_old_story_partial_keep_working(capsys, newsroom, tmp_path):
    templates = newsroom.parent / "templates"
    (templates / "topic").mkdir(parents=True, exist_ok=True)
    (templates / "topic" / "edition.html").write_text(
        '{% extends "edition.html" %}\n{% block intro %}<tr><td class="intro"><p class="greet">{{ reader.greeting }}</p>'
        '<p>Our own intro.</p></td></tr>{% endblock %}\n', encoding="utf-8")
    (templates / "partials").mkdir(exist_ok=True)  # the sample's copy has its own footer there
    (templates / "partials" / "story.html").write_text(  # a newsroom's copy from before curator_note
        '<tr><td class="story"><h2 class="hed">{{ story.number }}. {{ story.headline }}</h2>'
        '<div class="copy">{{ story.body_html }}</div></td></tr>\n', encoding="utf-8")
    code, _, err, files = render_cli(capsys, newsroom, tmp_path / "dry")
    assert code == 0, err
    text, html = parts(next(iter(files.values())))
    assert "Our own intro." in html and NOTE_WORDS in html  # the note's row comes from base.html
    assert html.index("Our own intro.") < html.index(NOTE_WORDS) < html.index('class="story"')
    assert FIRST_PICK not in html and FIRST_PICK in text  # the old partial shows no curator_note; edition.txt does
