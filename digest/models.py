"""The nouns of the pipeline as frozen values. No I/O here."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from .errors import StoryError

EditionKind = Literal["national", "city", "topic"]
SubscriberStatus = Literal["active", "unsubscribed", "bounced"]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class Curator:
    name: str
    title: str


@dataclass(frozen=True, slots=True)
class Mailbox:
    """A display name and an address, both already checked for header safety."""

    name: str
    address: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Edition:
    """One newsletter: what goes in it, when it goes out, and who it comes from.

    The field defaults are digest.toml's defaults too (config.py reads them from here).
    """

    slug: str
    name: str
    kind: EditionKind
    tagline: str = ""
    timezone: str
    send_at: dt.time
    days: frozenset[int] = frozenset(range(7))  # 0 = Monday, as datetime.weekday()
    sender: Mailbox
    reply_to: str | None = None
    list_id: str  # digest.toml's default is "<slug>.<newsroom domain>"
    subject: str  # Jinja2 source, trusted (it comes from digest.toml)
    preheader: str = ""
    greeting: str = "Hello"
    reading_minutes: int = 5
    tags: frozenset[str] = frozenset()
    cities: frozenset[str] = frozenset()
    curator: Curator | None = None
    on_empty: Literal["skip", "fail"] = "skip"
    grace_minutes: int = 120  # how late the scheduler may still start a send it missed
    on_broken_story: Literal["skip", "fail"] = "skip"  # a story file that cannot be read: left out, or the issue refused
    editors: tuple[str, ...] = ()  # addresses that get the edition's alerts and previews, and may approve
    approval: Literal["none", "required"] = "none"  # "required": sent only once an editor approved its fingerprint
    preview_minutes: int | None = None  # previews go this long before the send; None: 60 if approval is required

    @property
    def preview_lead(self) -> dt.timedelta | None:
        """How long before each send the scheduler mails the editors a preview; None: it does not."""
        minutes = self.preview_minutes if self.preview_minutes is not None else (60 if self.approval == "required" else 0)
        return dt.timedelta(minutes=minutes) if minutes and self.editors else None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True, slots=True)
class Newsroom:
    name: str
    domain: str
    postal_address: str
    words_per_minute: int = 230
    signup_url: str | None = None  # where a reader of a public archive page signs up; None: no link


@dataclass(frozen=True, slots=True)
class Paths:
    """Where the newsroom's files are. The defaults are digest.toml's, relative to its folder."""

    stories: Path = Path("stories")
    subscribers: Path = Path("subscribers.csv")
    templates: Path | None = None  # the newsroom's own folder, searched before the built-ins; None: built-ins only
    state: Path = Path("state")
    out: Path = Path("out")
    notes: Path | None = Path("notes")  # issue notes: <notes>/<edition>/<YYYY-MM-DD>.md


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One key for signing unsubscribe tokens; the first configured key signs, all verify."""

    key_id: str
    secret: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """Where and how to hand messages over. The password comes from the environment only.

    The field defaults are digest.toml's defaults too (config.py reads them from here).
    """

    host: str = "localhost"
    port: int = 25
    tls: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    pool_size: int = 4
    rate: float = 0.0  # messages per second for this endpoint; 0 = no limit
    timeout: float = 30.0  # each command
    data_timeout: float = 600.0  # the final reply to DATA (RFC 5321 suggests 10 minutes)
    allow_insecure: bool = False  # tls = "none" to a host that is not loopback
    local_hostname: str | None = None  # EHLO name
    ca_file: Path | None = None  # extra CA bundle to trust (a private relay's CA); system CAs otherwise
    name: str = ""  # a [[smtp.relays]] entry's name; "": host:port
    weight: float = 1.0  # this relay's share of the copies, against the other relays' weights
    username_env: str = "DIGEST_SMTP_USERNAME"  # the environment variables the credentials were read from
    password_env: str = "DIGEST_SMTP_PASSWORD"

    @property
    def relay_name(self) -> str:
        """What the ledger and `digest status` call this relay: its name, else ``host:port``."""
        return self.name or f"{self.host}:{self.port}"

    @property
    def where(self) -> str:
        """How messages name the relay: ``mx-a (10.0.0.5:587)``, or ``host:port`` when it has no name."""
        endpoint = f"{self.host}:{self.port}"
        return endpoint if self.relay_name == endpoint else f"{self.name} ({endpoint})"


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    """Retries, the issue deadline, uncertain copies and the policy circuit breaker (defaults: config.py's too)."""

    deadline_hours: float = 6.0  # after the issue's send time, deferred copies stop being retried
    max_attempts: int = 8
    retry_base: float = 60.0  # seconds before the first retry; doubles each attempt
    retry_cap: float = 1800.0
    uncertain: Literal["resend", "hold"] = "resend"
    breaker_min_rejections: int = 20  # 5.7.x policy rejections before the breaker may trip
    breaker_ratio: float = 0.05  # ... and their share of this run's attempts
    lease_seconds: float = 60.0  # a sender's hold on its batch of copies; a dead sender's batch is taken over after this
    batch: int = 200  # copies a sender claims at a time
    workers: int | None = None  # local sender processes of `digest send`; None: "auto" (helpers.helpers_for)


@dataclass(frozen=True, slots=True)
class DkimSettings:
    """DKIM signing: on when DIGEST_DKIM_KEY_FILE is set (the key itself never enters settings)."""

    key_file: Path | None = None
    selector: str | None = None
    domain: str | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything digest.toml and the environment say, typed and checked."""

    config_file: Path
    newsroom: Newsroom
    base_url: str
    paths: Paths
    editions: tuple[Edition, ...]
    demo_date: dt.date | None
    state_db: Path | str  # a SQLite file, or a PostgreSQL URL (state.connection.PostgresUrl)
    smtp: SmtpSettings = SmtpSettings(tls="none")  # for Settings built in code (tests); digest.toml's is starttls
    relays: tuple[SmtpSettings, ...] = ()  # [[smtp.relays]] (smtp is then the first); empty: smtp is the one relay
    delivery: DeliverySettings = DeliverySettings()
    dkim: DkimSettings = DkimSettings()
    sources: tuple = ()  # feeds.FeedSource values from [[sources]]
    return_path: str | None = None  # [bounces] return_path: each copy's MAIL FROM is local+TOKEN@domain (returnpath.py)
    signing_keys: tuple[SigningKey, ...] = field(default=(), repr=False)

    def smtp_relays(self) -> tuple[SmtpSettings, ...]:
        """The relays copies go through: the [[smtp.relays]] entries, else the one [smtp] describes."""
        return self.relays or (self.smtp,)

    def edition(self, slug: str) -> Edition:
        """The edition with this slug; raises KeyError when there is none."""
        for edition in self.editions:
            if edition.slug == slug:
                return edition
        raise KeyError(slug)


@dataclass(frozen=True, slots=True)
class Image:
    src: str
    alt: str | None
    credit: str | None
    caption: str | None
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True, slots=True)
class Story:
    """One story, its body already sanitised."""

    id: str
    headline: str
    published: dt.datetime  # always timezone-aware
    body_html: str  # sanitised HTML
    words: int
    source: str  # where it came from, for error messages ("stories/x.md")
    editions: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()
    cities: frozenset[str] = frozenset()
    priority: int = 5
    byline: str | None = None
    url: str | None = None
    section: str | None = None
    image: Image | None = None
    editor_note: str | None = None
    curator_note: str | None = None  # one line by the edition's curator, shown with the story


@dataclass(frozen=True, slots=True)
class Subscriber:
    email: str
    name: str
    editions: frozenset[str]
    status: SubscriberStatus
    line: int  # line in subscribers.csv where the row starts
    fields: tuple[tuple[str, str], ...] = ()  # the other columns, in file order
    greet_name: str | None = None  # what the greeting calls the reader ('' none); None: derive from name


@dataclass(frozen=True, slots=True)
class IssueNote:
    """The curator's or editors' note of one issue, shown under the greeting."""

    markdown: str  # the file's text as read; kept in the state database with the issue
    html: str  # sanitised, by the story path (stories.story_html)
    source: str  # where it was read from, for messages ("notes/climate/2026-12-01.md")


@dataclass(frozen=True, slots=True)
class Issue:
    """The stories chosen for one edition on one date, and those left out and why."""

    edition: Edition
    date: dt.date
    send_time: dt.datetime  # aware, in the edition's zone
    window_start: dt.datetime
    stories: tuple[Story, ...]
    held_over_budget: tuple[Story, ...] = ()
    reading_minutes: int = 0
    note: IssueNote | None = None
    note_problem: StoryError | None = None  # the note file could not be read (gathering.broken_story_rule)

    @property
    def is_empty(self) -> bool:
        return not self.stories


@dataclass(frozen=True, slots=True)
class RenderedIssue:
    """One issue rendered and CSS-inlined, with per-reader placeholders still in it."""

    subject: str
    preheader: str
    html: str
    text: str
