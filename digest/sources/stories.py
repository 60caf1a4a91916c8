"""Story sources: a folder of Markdown files with YAML front matter -> ``Story``.

The only yaml import. A story with a problem is reported (file, field) and left out; the other
stories are still read. Timestamps are parsed by us, not by YAML, so that a missing UTC offset is
an error instead of a silent guess.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import StoryError
from ..models import Image, Story
from .markup import markdown_to_html
from .plaintext import word_count
from .sanitise import clean_html

_FRONT_MATTER = re.compile(r"\A\ufeff?---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_KEYS = {"id", "headline", "published", "editions", "tags", "cities", "priority", "byline", "url",
         "section", "image", "editor_note", "curator_note"}
_IMAGE_KEYS = {"src", "alt", "credit", "caption", "width", "height"}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class _Loader(yaml.SafeLoader):
    """SafeLoader that leaves timestamps as strings, so we can insist on an offset."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True, slots=True)
class StoryLoad:
    """What reading the sources produced: the usable stories and a problem per story left out.

    ``problems`` are the Markdown folder's (a broken story file blocks a new issue); a feed's
    failures are in ``feeds`` and never block one.
    """

    stories: tuple[Story, ...]
    problems: tuple[StoryError, ...]
    feeds: object = None  # feeds.FeedReport when [[sources]] are configured


def load_folder(folder: Path) -> StoryLoad:
    """Read every ``*.md`` file in ``folder`` (sorted by name)."""
    if not folder.is_dir():
        what = "is a file, not a folder of stories" if folder.exists() else "story folder not found"
        return StoryLoad((), (StoryError(what, file=folder),))
    stories: list[Story] = []
    problems: list[StoryError] = []
    seen: dict[str, str] = {}
    for path in sorted(folder.glob("*.md")):
        try:
            story = parse_story(path.read_text(encoding="utf-8"), source=str(path), default_id=path.stem)
        except UnicodeDecodeError as exc:
            problems.append(StoryError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", file=path))
            continue
        except StoryError as exc:
            problems.append(exc)
            continue
        if story.id in seen:
            problems.append(StoryError(f"id '{story.id}' is already used by {seen[story.id]}", file=path, field="id"))
            continue
        seen[story.id] = str(path)
        stories.append(story)
    return StoryLoad(tuple(stories), tuple(problems))


def _yaml_problem(exc: yaml.YAMLError) -> tuple[int | None, str]:
    """(line of the story file, plain-words explanation) for PyYAML's error.

    PyYAML counts lines of the front matter block from 0; the file has the opening '---' above it.
    For something left open (a quote, a list) the useful line is where it opened (the context).
    """
    problem = str(getattr(exc, "problem", None) or exc)
    context = str(getattr(exc, "context", None) or "")
    problem_mark = getattr(exc, "problem_mark", None)
    context_mark = getattr(exc, "context_mark", None)

    def file_line(mark) -> int | None:
        return mark.line + 2 if mark is not None else None

    if "quoted scalar" in context and context_mark is not None:
        return file_line(context_mark), "a quote opened on this line is never closed"
    if "flow sequence" in context and context_mark is not None:
        return file_line(context_mark), "a list opened with '[' on this line is never closed with ']'"
    if "flow mapping" in context and context_mark is not None:
        return file_line(context_mark), "a '{' opened on this line is never closed with '}'"
    if "mapping values are not allowed" in problem:
        return file_line(problem_mark), "a value holds ': ' (a colon and a space); put the whole value in quotes"
    if "'\\t'" in problem:  # PyYAML writes the tab as the two characters \t
        return file_line(problem_mark), "a tab is used for indenting; YAML needs spaces"
    where = f" ({context})" if context else ""
    return file_line(problem_mark or context_mark), f"{problem}{where}"


def story_html(markdown: str) -> str:
    """Markdown -> sanitised HTML: the one path for story bodies and issue notes (notes.py)."""
    return clean_html(markdown_to_html(markdown))


def parse_story(text: str, *, source: str, default_id: str) -> Story:
    """Parse one story file's text; raise ``StoryError`` naming the field at fault."""
    match = _FRONT_MATTER.match(text)
    if not match:
        raise StoryError("must start with YAML front matter between '---' lines", file=source)
    try:
        meta = yaml.load(match.group(1), Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        line, message = _yaml_problem(exc)
        raise StoryError(f"front matter is not valid YAML: {message}", file=source, line=line) from None
    if not isinstance(meta, dict):
        raise StoryError("front matter must be a mapping of keys to values", file=source)
    fields = _Fields(meta, source)
    unknown = sorted(set(meta) - _KEYS)
    if unknown:
        raise StoryError(f"unknown key (known: {', '.join(sorted(_KEYS))})", file=source, field=unknown[0])
    body_html = story_html(text[match.end():])
    story_id = fields.one_line("id", required=False) or default_id
    if not _ID.match(story_id):
        raise StoryError("must be letters, digits, '.', '_' or '-'", file=source, field="id")
    return Story(
        id=story_id,
        headline=fields.one_line("headline"),
        published=fields.timestamp("published"),
        body_html=body_html,
        words=word_count(body_html),
        source=source,
        editions=fields.labels("editions"),
        tags=fields.labels("tags"),
        cities=fields.labels("cities"),
        priority=fields.priority(),
        byline=fields.one_line("byline", required=False),
        url=fields.url("url", required=False),
        section=fields.one_line("section", required=False),
        image=fields.image(),
        editor_note=fields.one_line("editor_note", required=False),
        curator_note=fields.one_line("curator_note", required=False),
    )


class _Fields:
    def __init__(self, meta: dict[str, Any], source: str) -> None:
        self.meta = meta
        self.source = source

    def fail(self, field: str, message: str) -> StoryError:
        return StoryError(message, file=self.source, field=field)

    def one_line(self, key: str, *, required: bool = True, table: dict[str, Any] | None = None, name: str | None = None) -> str | None:
        value = (self.meta if table is None else table).get(key)
        name = name or key
        if value is None or value == "":
            if required:
                raise self.fail(name, "is required")
            return None
        if not isinstance(value, str):
            raise self.fail(name, f"must be text, not {type(value).__name__}")
        if any(c in value for c in "\r\n\x00"):
            raise self.fail(name, "must be one line (it holds a line break or NUL)")
        if not value.strip():
            raise self.fail(name, "is blank")
        return value

    def timestamp(self, key: str) -> dt.datetime:
        raw = self.one_line(key)
        try:
            value = dt.datetime.fromisoformat(raw)
        except ValueError:
            raise self.fail(key, f"'{raw}' is not an ISO 8601 date-time") from None
        if value.tzinfo is None or value.utcoffset() is None:
            raise self.fail(key, f"'{raw}' has no UTC offset (write e.g. 2026-12-01T06:30:00-07:00)")
        return value

    def labels(self, key: str) -> frozenset[str]:
        value = self.meta.get(key)
        if value is None:
            return frozenset()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.fail(key, "must be a list of names")
        return frozenset(v.strip().casefold() for v in value)

    def priority(self) -> int:
        value = self.meta.get("priority", 5)
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 9:
            raise self.fail("priority", "must be a whole number from 1 (lead) to 9")
        return value

    def url(self, key: str, *, required: bool, table: dict[str, Any] | None = None, name: str | None = None) -> str | None:
        value = self.one_line(key, required=required, table=table, name=name)
        if value is not None and not re.match(r"^https?://[^\s<>\"]+$", value):
            raise self.fail(name or key, "must be an absolute http(s) URL without spaces")
        return value

    def image(self) -> Image | None:
        table = self.meta.get("image")
        if table is None:
            return None
        if not isinstance(table, dict):
            raise self.fail("image", "must be a mapping with src, alt, credit, caption")
        unknown = sorted(set(table) - _IMAGE_KEYS)
        if unknown:
            raise self.fail(f"image.{unknown[0]}", f"unknown key (known: {', '.join(sorted(_IMAGE_KEYS))})")
        sizes = []
        for key in ("width", "height"):
            value = table.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise self.fail(f"image.{key}", "must be a positive whole number of pixels")
            sizes.append(value)
        return Image(
            src=self.url("src", required=True, table=table, name="image.src"),  # type: ignore[arg-type]
            alt=self.one_line("alt", required=False, table=table, name="image.alt"),
            credit=self.one_line("credit", required=False, table=table, name="image.credit"),
            caption=self.one_line("caption", required=False, table=table, name="image.caption"),
            width=sizes[0],
            height=sizes[1],
        )
