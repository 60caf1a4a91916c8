"""Issue -> HTML and plain text through Jinja2: the only jinja2 (and markupsafe) import.

HTML templates autoescape and every template uses ``StrictUndefined``. Story text only ever
enters as context data, never as template source, so ``{{ 7*7 }}`` in a story prints literally.
The subject and preheader templates come from digest.toml (trusted) and render without escaping.

``template_loader`` is the one search path (the newsroom's ``[paths] templates`` folder first,
file by file, then ``digest/templates``): the emails (``Renderer``), the web pages (``Pages``)
and ``digest templates list`` all use it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from ..errors import TemplateError
from ..models import Curator, Edition, Image, Issue, Newsroom, Story
from ..sources.plaintext import LinkRefs, first_paragraph, html_to_text
from .editions import reading_minutes

BUILTIN_TEMPLATES = Path(str(resources.files("digest") / "templates"))


@dataclass(frozen=True, slots=True)
class StoryView:
    """A story as templates see it."""

    number: int
    id: str
    headline: str
    url: str | None
    url_ref: int | None
    byline: str | None
    section: str | None
    image: Image | None
    lede: str
    body_html: Markup
    body_text: str
    editor_note: str | None
    curator_note: str | None  # only in editions that name a curator: it is shown under their name
    reading_minutes: int


@dataclass(frozen=True, slots=True)
class Rendered:
    """Rendered but not yet inlined."""

    subject: str
    preheader: str
    html: str
    text: str


def date_label(date: dt.date) -> str:
    """'Tuesday, December 1, 2026'."""
    return f"{date:%A}, {date:%B} {date.day}, {date.year}"


class Renderer:
    """Holds the two Jinja2 environments (HTML and text) over ``template_loader(override_dir)``."""

    def __init__(self, override_dir: Path | None = None) -> None:
        loader = template_loader(override_dir)
        self.html_env = _environment(loader, autoescape=True, keep_trailing_newline=True)
        self.text_env = _environment(loader, autoescape=False, keep_trailing_newline=True)

    def _template(self, env: jinja2.Environment, edition: Edition, suffix: str) -> jinja2.Template:
        names = [f"{edition.slug}/edition.{suffix}", f"{edition.kind}/edition.{suffix}", f"edition.{suffix}"]
        try:
            return env.select_template(names)
        except jinja2.TemplateError as exc:
            raise TemplateError(_describe(exc), file=getattr(exc, "filename", None), line=getattr(exc, "lineno", None)) from None

    def _one_line(self, source: str, context: dict[str, Any], field: str, edition: Edition) -> str:
        try:
            value = self.text_env.from_string(source).render(context)
        except jinja2.TemplateError as exc:
            raise TemplateError(_describe(exc), field=f"editions ({edition.slug}).{field}") from None
        if any(c in value for c in "\r\n\x00"):
            raise TemplateError("rendered to more than one line; a header must be one line", field=f"editions ({edition.slug}).{field}")
        return " ".join(value.split(" ")).strip()

    def render(self, issue: Issue, newsroom: Newsroom, base_url: str, reader: dict[str, str], *,
               web_view: bool = False) -> Rendered:
        """Render one non-empty issue with ``reader`` placeholders in place of per-reader values.

        ``web_view`` renders the public archive page instead of an email: templates see it as
        ``web_view`` and leave out what belongs to one reader (unsubscribe, "you're receiving this").
        """
        edition = issue.edition
        refs = LinkRefs()
        # The note is read first (under the greeting), so its links are numbered first.
        note = issue.note
        note_text = html_to_text(note.html, refs) if note is not None else None
        views = [_story_view(number, story, refs, edition, newsroom) for number, story in enumerate(issue.stories, start=1)]
        context: dict[str, Any] = {
            "newsroom": newsroom,
            "edition": _EditionView(edition),
            "lead": views[0],
            "stories": views,
            "links": refs.items(),
            "link_names": refs.names(),
            "reader": reader,
            "web_view": web_view,
        }
        issue_view = {
            "date": issue.date,
            "date_label": date_label(issue.date),
            "reading_minutes": issue.reading_minutes,
            "story_count": len(views),
            "view_url": f"{base_url}/i/{edition.slug}/{issue.date.isoformat()}",
            "archive_url": f"{base_url}/i/{edition.slug}",
        }
        context["issue"] = issue_view
        subject = self._one_line(edition.subject, context, "subject", edition)
        preheader = self._one_line(edition.preheader, context, "preheader", edition)
        # The note enters the context only now: subject and preheader never see its text.
        context["issue"] = {**issue_view, "subject": subject, "preheader": preheader,
                            "note_html": Markup(note.html) if note is not None else None,  # sanitised by notes.py
                            "note_text": note_text}
        try:
            html = self._template(self.html_env, edition, "html").render(context)
            text = self._template(self.text_env, edition, "txt").render(context)
        except jinja2.TemplateError as exc:
            raise TemplateError(_describe(exc), file=getattr(exc, "filename", None), line=getattr(exc, "lineno", None)) from None
        return Rendered(subject=subject, preheader=preheader, html=html, text=text)

    def banner(self, **context: Any) -> tuple[str, str]:
        """An editors' preview banner (``preview/banner.html`` and ``.txt``): HTML and plain text."""
        try:
            html = self.html_env.get_template("preview/banner.html").render(context)
            text = self.text_env.get_template("preview/banner.txt").render(context)
        except jinja2.TemplateError as exc:
            raise TemplateError(_describe(exc), file=getattr(exc, "filename", None), line=getattr(exc, "lineno", None)) from None
        return html, text.rstrip("\n")


def _story_view(number: int, story: Story, refs: LinkRefs, edition: Edition, newsroom: Newsroom) -> StoryView:
    """What a template sees of one story; its links are numbered in ``refs`` in reading order."""
    url_ref = refs.ref(story.url, story.headline) if story.url else None
    return StoryView(
        number=number,
        id=story.id,
        headline=story.headline,
        url=story.url,
        url_ref=url_ref,
        byline=story.byline,
        section=story.section,
        image=story.image,
        lede=first_paragraph(story.body_html),
        body_html=Markup(story.body_html),  # sanitised by stories.py: one of the two places that mark HTML safe
        body_text=html_to_text(story.body_html, refs),
        editor_note=story.editor_note,
        # A story may go to several editions; its curator's note belongs to curated ones only.
        curator_note=story.curator_note if edition.curator is not None else None,
        reading_minutes=reading_minutes(story.words, newsroom.words_per_minute),
    )


@dataclass(frozen=True, slots=True)
class _EditionView:
    """The edition fields templates may use."""

    edition: Edition

    @property
    def slug(self) -> str:
        return self.edition.slug

    @property
    def name(self) -> str:
        return self.edition.name

    @property
    def kind(self) -> str:
        return self.edition.kind

    @property
    def tagline(self) -> str:
        return self.edition.tagline

    @property
    def greeting(self) -> str:
        return self.edition.greeting

    @property
    def curator(self) -> Curator | None:
        return self.edition.curator


def _describe(exc: jinja2.TemplateError) -> str:
    if isinstance(exc, jinja2.UndefinedError):
        return f"template uses an undefined name: {exc.message}"
    if isinstance(exc, jinja2.TemplatesNotFound):
        return f"no template found (tried {', '.join(map(str, exc.templates))})"
    return f"{type(exc).__name__}: {exc.message or exc}"


class Pages:
    """The web app's own pages (``web/<name>``), autoescaped, through the same loader as the emails.

    Every page is compiled here, so a newsroom's broken override stops ``digest serve`` at start
    (a TemplateError naming the file) instead of failing a reader's request.
    """

    def __init__(self, override_dir: Path | None = None) -> None:
        loader = template_loader(override_dir)
        self._env = _environment(loader, autoescape=True, keep_trailing_newline=False)
        for name in loader.list_templates():
            if name.startswith("web/"):
                try:
                    self._env.get_template(name)
                except jinja2.TemplateError as exc:
                    raise TemplateError(_describe(exc), file=getattr(exc, "filename", None),
                                        line=getattr(exc, "lineno", None)) from None

    def render(self, name: str, **context: Any) -> str:
        """The page ``web/<name>`` rendered with ``context``."""
        return self._env.get_template(f"web/{name}").render(**context)


def template_loader(override_dir: Path | None) -> jinja2.BaseLoader:
    """The one template search path: the newsroom's folder first, file by file, then the built-ins.

    The email renderer, the web pages and ``digest templates list`` all go through it, so a file
    in the newsroom's folder wins everywhere or nowhere.
    """
    loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader(str(override_dir))] if override_dir else []
    loaders.append(jinja2.FileSystemLoader(str(BUILTIN_TEMPLATES)))
    return jinja2.ChoiceLoader(loaders)


def template_files(override_dir: Path | None) -> dict[str, Path]:
    """Every template name the search path knows (hidden files aside), and the file that wins for it."""
    loader = template_loader(override_dir)
    env = jinja2.Environment(loader=loader)
    names = [n for n in loader.list_templates() if not any(part.startswith(".") for part in n.split("/"))]
    return {name: Path(str(loader.get_source(env, name)[1])) for name in names}


def _environment(loader: jinja2.BaseLoader, *, autoescape: bool, keep_trailing_newline: bool) -> jinja2.Environment:
    # The web pages were never rendered with keep_trailing_newline; the emails always were.
    return jinja2.Environment(loader=loader, autoescape=autoescape, undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=keep_trailing_newline)
