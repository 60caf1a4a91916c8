"""Issue notes: one Markdown file per edition and date, ``<[paths] notes>/<edition>/<YYYY-MM-DD>.md``.

The edition's curator (or its editors) writes a few words for one issue; templates show them
under the greeting. The text takes the story path and no other: ``stories.story_html``
(CommonMark, then the nh3 allowlist) for HTML, ``plaintext.html_to_text`` for the text part.

A missing file means no note. A file that is there but cannot be used (not UTF-8, unreadable, a
folder, not a regular file, larger than ``MAX_NOTE_BYTES``) is a ``StoryError`` for
``gathering.broken_story_rule``: the edition's ``on_broken_story`` decides, as for a story file.
Once the issue is created, its note is the one kept with it in the state database
(``ledger.create_issue``); ``planning.plan_issue`` reads the file only for an issue not yet created.
"""

from __future__ import annotations

import datetime as dt
import errno
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import StoryError
from ..models import IssueNote
from .plaintext import word_count
from .stories import story_html

# A note is a few sentences; 16 KB is some 2,500 words. Past it the file is refused rather than
# read: a runaway file (a log pasted by mistake) must not swell every copy of the issue.
MAX_NOTE_BYTES = 16 * 1024

_REASONS = {errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
            errno.ENOTDIR: "a part of its path is a file, not a folder", errno.EISDIR: "it is a folder, not a file",
            errno.ELOOP: "too many symbolic links", errno.ENAMETOOLONG: "name too long"}


@dataclass(frozen=True, slots=True)
class NoteRead:
    """What reading one note file gave: the note (None: no file, or nothing in it), or a problem."""

    note: IssueNote | None
    problem: StoryError | None = None


def note_path(notes: Path | None, edition: str, date: dt.date) -> Path | None:
    """Where the note of (edition, date) lives; None when no notes folder is configured."""
    return notes / edition / f"{date.isoformat()}.md" if notes is not None else None


def read_note(path: Path | None) -> NoteRead:
    """Read the note file at ``path``; never raises for the file's sake."""
    if path is None:
        return NoteRead(None)
    try:
        info = path.stat()
    except FileNotFoundError:
        return NoteRead(None)
    except OSError as exc:
        return NoteRead(None, _cannot_read(path, exc))
    if stat.S_ISDIR(info.st_mode):
        return NoteRead(None, StoryError("is a folder, not a note file", file=path))
    if not stat.S_ISREG(info.st_mode):
        return NoteRead(None, StoryError("is not a regular file", file=path))
    if info.st_size > MAX_NOTE_BYTES:
        return NoteRead(None, _too_large(path, info.st_size))
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_NOTE_BYTES + 1)  # the file may grow between stat and read
    except OSError as exc:
        return NoteRead(None, _cannot_read(path, exc))
    if len(data) > MAX_NOTE_BYTES:
        return NoteRead(None, _too_large(path, len(data)))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return NoteRead(None, StoryError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", file=path, line=line))
    return NoteRead(parse_note(text, str(path)))


def parse_note(markdown: str, source: str) -> IssueNote | None:
    """The note of this Markdown text; None when nothing readable is left after sanitising."""
    html = story_html(markdown.removeprefix("\ufeff"))
    if word_count(html) == 0:
        return None
    return IssueNote(markdown=markdown, html=html, source=source)


def _cannot_read(path: Path, exc: OSError) -> StoryError:
    reason = _REASONS.get(exc.errno) or exc.strerror or type(exc).__name__
    return StoryError(f"cannot be read ({reason})", file=path)


def _too_large(path: Path, size: int) -> StoryError:
    return StoryError(f"is {size:,} bytes; a note may be at most {MAX_NOTE_BYTES:,} bytes (a few paragraphs)", file=path)
