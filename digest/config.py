"""digest.toml plus the DIGEST_* environment -> typed, frozen ``Settings``.

Every problem is reported with the file and the key (``editions[2].timezone``) that caused it.
Secrets are read from the environment only and never appear in a repr or an error message.
"""

from __future__ import annotations

import datetime as dt
import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ConfigError, HeaderInjectionError
from .models import (
    WEEKDAYS,
    Curator,
    DeliverySettings,
    DkimSettings,
    Edition,
    Mailbox,
    Newsroom,
    Paths,
    Settings,
    SigningKey,
    SmtpSettings,
)
from .readers.addresses import AddressError, parse_mailbox
from .sources.feeds import FeedSource
from .state.ledger import state_path

DEFAULT_CONFIG = "digest.toml"
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,16}$")
_MIN_SECRET_BYTES = 16
_KINDS = ("national", "city", "topic")
_EDITION_KEYS = {
    "slug", "name", "kind", "tagline", "timezone", "send_at", "days", "from", "reply_to",
    "list_id", "subject", "preheader", "greeting", "reading_minutes", "tags", "cities",
    "curator", "on_empty", "grace_minutes", "on_broken_story",
}
_SMTP_KEYS = {"host", "port", "tls", "pool_size", "rate", "timeout", "data_timeout", "allow_insecure",
              "local_hostname", "ca_file"}
_DELIVERY_KEYS = {"deadline_hours", "max_attempts", "retry_base", "retry_cap", "uncertain",
                  "breaker_min_rejections", "breaker_ratio"}
_NEWSROOM_KEYS = {"name", "domain", "postal_address", "words_per_minute"}
_WEB_KEYS = {"base_url"}
_PATHS_KEYS = {"stories", "subscribers", "templates", "state", "out", "notes"}
_DEMO_KEYS = {"date"}
_DKIM_KEYS = {"selector", "domain"}
_CURATOR_KEYS = {"name", "title"}
_TOP_LEVEL = {"newsroom", "web", "paths", "demo", "defaults", "editions", "smtp", "delivery", "dkim", "sources"}
_SOURCE_KEYS = {"name", "url", "editions", "tags", "cities", "timeout", "max_bytes", "max_redirects",
                "default_timezone", "categories_as", "priority"}
# A key only for `digest demo` and tests on embedded defaults; `send` refuses to run with it.
DEMO_SECRET = "demo-only-secret-not-for-production"


def config_path(explicit: str | Path | None = None) -> Path:
    """The config file to read: an explicit path, else $DIGEST_CONFIG, else ./digest.toml."""
    return Path(explicit or os.environ.get("DIGEST_CONFIG") or DEFAULT_CONFIG)


def load_settings(path: str | Path | None = None, *, environ: Mapping[str, str] | None = None,
                  templates_may_be_missing: bool = False) -> Settings:
    """Read and check the configuration; raise ``ConfigError`` naming the key at fault.

    A configured ``[paths] templates`` folder must exist, unless ``templates_may_be_missing``
    (``digest templates init``, which creates it).
    """
    env = os.environ if environ is None else environ
    file = config_path(path if path is not None else env.get("DIGEST_CONFIG"))
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("config file not found (set DIGEST_CONFIG or run where digest.toml is)", file=file) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=file) from None
    settings = _Reader(file, raw, env).settings()
    if not templates_may_be_missing:
        _check_templates_folder(settings)
    return settings


def _check_templates_folder(settings: Settings) -> None:
    # A typo in the key's value used to fall back to the built-ins silently, hiding every override.
    folder = settings.paths.templates
    if folder is not None and not folder.is_dir():
        reason = "is not a folder" if folder.exists() else "does not exist"
        raise ConfigError(f"templates folder {folder} {reason} (create it, e.g. with `digest templates init NAME`, "
                          "or remove the key to use the built-in templates only)", file=settings.config_file,
                          field="paths.templates")


def parse_signing_keys(value: str) -> tuple[SigningKey, ...]:
    """Parse DIGEST_SECRET_KEY: ``secret`` or ``id:secret,old-id:old-secret`` (first one signs)."""
    # Errors name a key by its position only: any text here may be part of a secret.
    keys = []
    for position, item in enumerate((part.strip() for part in value.split(",")), start=1):
        key_id, sep, secret = item.partition(":")
        if not sep or not _KEY_ID.match(key_id):
            key_id, secret = "k0", item  # a bare secret (which may itself hold a colon)
        if len(secret.encode()) < _MIN_SECRET_BYTES:
            raise ConfigError(f"key {position} is shorter than {_MIN_SECRET_BYTES} bytes", field="DIGEST_SECRET_KEY")
        if any(k.key_id == key_id for k in keys):
            raise ConfigError(f"key {position} repeats the id of an earlier key", field="DIGEST_SECRET_KEY")
        keys.append(SigningKey(key_id, secret.encode()))
    return tuple(keys)


class _Reader:
    """Walks the TOML document, remembering where each value came from."""

    def __init__(self, file: Path, raw: dict[str, Any], env: Mapping[str, str]) -> None:
        self.file = file
        self.raw = raw
        self.env = env
        self.base = file.resolve().parent

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(message, file=self.file, field=key)

    def table(self, name: str, known: set[str]) -> dict[str, Any]:
        """A top-level table (empty when absent), its keys checked against ``known``."""
        value = self.raw.get(name, {})
        if not isinstance(value, dict):
            raise self.fail(name, f"must be a table ([{name}]), not {_shown(value)}")
        self.reject_unknown(value, known, name)
        return value

    def text(self, table: Mapping[str, Any], key: str, where: str, *, default: str | None = None) -> str:
        value = table.get(key, default)
        if value is None:
            raise self.fail(f"{where}.{key}", "is required")
        if not isinstance(value, str) or (not value.strip() and default != ""):
            raise self.fail(f"{where}.{key}", f"must be a non-empty string, not {_shown(value)}")
        if "\r" in value or "\n" in value or "\x00" in value:
            raise self.fail(f"{where}.{key}", "must be one line")
        return value

    def settings(self) -> Settings:
        self.reject_unknown(self.raw, _TOP_LEVEL, "")
        newsroom_t = self.table("newsroom", _NEWSROOM_KEYS)
        newsroom = Newsroom(
            name=self.text(newsroom_t, "name", "newsroom"),
            domain=self.text(newsroom_t, "domain", "newsroom"),
            postal_address=self.text(newsroom_t, "postal_address", "newsroom"),
            words_per_minute=self.positive_int(newsroom_t, "words_per_minute", "newsroom", default=230),
        )
        web = self.table("web", _WEB_KEYS)
        base_url = self.text(web, "base_url", "web").rstrip("/")
        if not base_url.startswith(("https://", "http://")):
            raise self.fail("web.base_url", f"{_shown(base_url)} must start with https:// (or http:// for local testing)")
        defaults = self.table("defaults", _EDITION_KEYS)
        editions_raw = self.raw.get("editions")
        if not isinstance(editions_raw, list) or not editions_raw:
            raise self.fail("editions", "at least one [[editions]] table is required")
        editions = tuple(self.edition(i, e, defaults, newsroom) for i, e in enumerate(editions_raw))
        seen: set[str] = set()
        for i, edition in enumerate(editions):
            if edition.slug in seen:
                raise self.fail(f"editions[{i}] ({edition.slug}).slug", f"'{edition.slug}' is used by two editions")
            seen.add(edition.slug)
        demo_t = self.table("demo", _DEMO_KEYS)
        demo_date = self.date(demo_t, "date", "demo") if "date" in demo_t else None
        paths = self.paths()
        return Settings(
            config_file=self.file,
            newsroom=newsroom,
            base_url=base_url,
            paths=paths,
            editions=editions,
            demo_date=demo_date,
            state_db=state_path(self.env.get("DIGEST_STATE_URL"), paths.state / "digest.sqlite3"),
            smtp=self.smtp(),
            delivery=self.delivery(),
            dkim=self.dkim(newsroom),
            sources=self.sources(),
            signing_keys=parse_signing_keys(self.env["DIGEST_SECRET_KEY"]) if self.env.get("DIGEST_SECRET_KEY") else (),
        )

    def paths(self) -> Paths:
        table = self.table("paths", _PATHS_KEYS)

        def path(key: str, default: str | None) -> Path | None:
            value = table.get(key, default)
            if value is None:
                return None
            if not isinstance(value, str) or not value:
                raise self.fail(f"paths.{key}", f"must be a path, not {_shown(value)}")
            return (self.base / value).resolve()

        return Paths(
            stories=path("stories", "stories"),
            subscribers=path("subscribers", "subscribers.csv"),
            templates=path("templates", None),
            state=path("state", "state"),
            out=path("out", "out"),
            notes=path("notes", "notes"),
        )

    def smtp(self) -> SmtpSettings:
        """[smtp] from digest.toml, overridden by DIGEST_SMTP_*; credentials from the environment only."""
        table = self.table("smtp", _SMTP_KEYS | {"username", "password"})
        for secret in ("username", "password"):
            if secret in table:
                raise self.fail(f"smtp.{secret}", f"credentials belong in the environment (DIGEST_SMTP_{secret.upper()}), not in digest.toml")
        env = self.env
        host = env.get("DIGEST_SMTP_HOST") or table.get("host", "localhost")
        port_raw = env.get("DIGEST_SMTP_PORT") or table.get("port", 25)
        try:
            port = int(port_raw)
            if not 0 < port < 65536:
                raise ValueError
        except (TypeError, ValueError):
            raise self.fail("smtp.port / DIGEST_SMTP_PORT", f"'{port_raw}' is not a TCP port") from None
        tls = env.get("DIGEST_SMTP_TLS") or table.get("tls", "starttls")
        if tls not in ("starttls", "tls", "none"):
            raise self.fail("smtp.tls / DIGEST_SMTP_TLS", f"{_shown(tls)} must be starttls, tls or none")
        if not isinstance(host, str) or not host or any(c in host for c in " \r\n\x00"):
            raise self.fail("smtp.host / DIGEST_SMTP_HOST", "must be a host name or address")
        return SmtpSettings(
            host=host,
            port=port,
            tls=tls,
            username=env.get("DIGEST_SMTP_USERNAME") or None,
            password=env.get("DIGEST_SMTP_PASSWORD") or None,
            pool_size=self.positive_int(table, "pool_size", "smtp", default=4),
            rate=self.number(table, "rate", "smtp", default=0.0, minimum=0.0),
            timeout=self.number(table, "timeout", "smtp", default=30.0, minimum=0.001),
            data_timeout=self.number(table, "data_timeout", "smtp", default=600.0, minimum=0.001),
            allow_insecure=self.flag(table, "allow_insecure", "smtp"),
            local_hostname=table.get("local_hostname"),
            ca_file=(self.base / table["ca_file"]).resolve() if table.get("ca_file") else None,
        )

    def sources(self) -> tuple[FeedSource, ...]:
        """[[sources]]: feeds the newsroom's CMS publishes (RSS, Atom, JSON Feed)."""
        raw = self.raw.get("sources", [])
        if not isinstance(raw, list):
            raise self.fail("sources", "must be [[sources]] tables")
        found: list[FeedSource] = []
        for i, table in enumerate(raw):
            where = f"sources[{i}]"
            if not isinstance(table, dict):
                raise self.fail(where, "must be a table")
            if isinstance(table.get("name"), str):
                where = f"sources[{i}] ({table['name']})"
            self.reject_unknown(table, _SOURCE_KEYS, where)
            name = self.text(table, "name", where)
            if any(s.name == name for s in found):
                raise self.fail(f"{where}.name", f"'{name}' is used by two sources")
            url = self.text(table, "url", where)
            if "://" in url and not url.startswith(("https://", "http://", "file://")):
                raise self.fail(f"{where}.url", "must be http(s)://, file:// or a local path")
            if "://" not in url:
                url = str((self.base / url).resolve())
            zone = table.get("default_timezone")
            if zone is not None:
                try:
                    ZoneInfo(zone)
                except (ZoneInfoNotFoundError, ValueError, TypeError):
                    raise self.fail(f"{where}.default_timezone", f"'{zone}' is not an IANA time zone") from None
            categories_as = table.get("categories_as", "tags")
            if categories_as not in ("tags", "cities", "both"):
                raise self.fail(f"{where}.categories_as", f"{_shown(categories_as)} must be tags, cities or both")
            found.append(FeedSource(
                name=name, url=url,
                editions=tuple(sorted(self.labels(table, "editions", where))),
                tags=tuple(sorted(self.labels(table, "tags", where))),
                cities=tuple(sorted(self.labels(table, "cities", where))),
                timeout=self.number(table, "timeout", where, default=10.0, minimum=0.1),
                max_bytes=self.positive_int(table, "max_bytes", where, default=5_000_000),
                max_redirects=self.positive_int(table, "max_redirects", where, default=5),
                default_timezone=zone,
                categories_as=categories_as,
                priority=self.positive_int(table, "priority", where, default=5),
            ))
        return tuple(found)

    def dkim(self, newsroom: Newsroom) -> DkimSettings:
        """[dkim] selector and domain; signing is on only when DIGEST_DKIM_KEY_FILE is set."""
        table = self.table("dkim", _DKIM_KEYS)
        key_file = self.env.get("DIGEST_DKIM_KEY_FILE")
        if not key_file:
            return DkimSettings()
        selector = table.get("selector")
        if not isinstance(selector, str) or not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", selector):
            raise self.fail("dkim.selector", "DIGEST_DKIM_KEY_FILE is set, so [dkim] selector must name the DNS selector")
        domain = table.get("domain", newsroom.domain)
        if not isinstance(domain, str) or not re.match(r"^[A-Za-z0-9.-]+$", domain):
            raise self.fail("dkim.domain", "must be a domain name (the From addresses' domain, for alignment)")
        return DkimSettings(Path(key_file), selector, domain)

    def delivery(self) -> DeliverySettings:
        table = self.table("delivery", _DELIVERY_KEYS)
        uncertain = table.get("uncertain", "resend")
        if uncertain not in ("resend", "hold"):
            raise self.fail("delivery.uncertain", f"{_shown(uncertain)} must be 'resend' or 'hold'")
        return DeliverySettings(
            deadline_hours=self.number(table, "deadline_hours", "delivery", default=6.0, minimum=0.0),
            max_attempts=self.positive_int(table, "max_attempts", "delivery", default=8),
            retry_base=self.number(table, "retry_base", "delivery", default=60.0, minimum=0.0),
            retry_cap=self.number(table, "retry_cap", "delivery", default=1800.0, minimum=0.0),
            uncertain=uncertain,
            breaker_min_rejections=self.positive_int(table, "breaker_min_rejections", "delivery", default=20),
            breaker_ratio=self.number(table, "breaker_ratio", "delivery", default=0.05, minimum=0.0),
        )

    def number(self, table: Mapping[str, Any], key: str, where: str, *, default: float, minimum: float) -> float:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
            raise self.fail(f"{where}.{key}", f"{_shown(value)} must be a number of at least {minimum:g}")
        return float(value)

    def flag(self, table: Mapping[str, Any], key: str, where: str) -> bool:
        value = table.get(key, False)
        if not isinstance(value, bool):
            raise self.fail(f"{where}.{key}", f"{_shown(value)} must be true or false")
        return value

    def reject_unknown(self, table: Mapping[str, Any], known: set[str], where: str) -> None:
        """A typo'd key or table would be silently ignored; name it, and the likely intended one.

        ``where`` is the table's own name, or "" for the top level of the document.
        """
        unknown = sorted(set(table) - known)
        if not unknown:
            return
        key = unknown[0]
        what = "table" if isinstance(table[key], (dict, list)) and not where else "key"
        by_fold = {k.casefold(): k for k in known}
        close = difflib.get_close_matches(key.casefold(), list(by_fold), n=1, cutoff=0.6)
        hint = f"; did you mean '{by_fold[close[0]]}'?" if close else f" (known: {', '.join(sorted(known))})"
        raise self.fail(f"{where}.{key}" if where else key, f"unknown {what} '{key}'{hint}")

    def positive_int(self, table: Mapping[str, Any], key: str, where: str, *, default: int) -> int:
        value = table.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise self.fail(f"{where}.{key}", f"{_shown(value)} must be a positive whole number")
        return value

    def date(self, table: Mapping[str, Any], key: str, where: str) -> dt.date:
        value = table[key]
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return value
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError:
            raise self.fail(f"{where}.{key}", f"{_shown(value)} must be a date, YYYY-MM-DD") from None

    def edition(self, index: int, table: Any, defaults: Mapping[str, Any], newsroom: Newsroom) -> Edition:
        where = f"editions[{index}]"
        if not isinstance(table, dict):
            raise self.fail(where, "must be a table")
        if isinstance(table.get("slug"), str):  # every error about an edition names it the same way
            where = f"editions[{index}] ({table['slug']})"
        self.reject_unknown(table, _EDITION_KEYS, where)
        merged = {**defaults, **table}
        slug = self.text(merged, "slug", where)
        if not _SLUG.match(slug):
            raise self.fail(f"{where}.slug", f"{_shown(slug)} must be lower-case letters, digits and '-'")
        where = f"editions[{index}] ({slug})"
        kind = self.text(merged, "kind", where)
        if kind not in _KINDS:
            raise self.fail(f"{where}.kind", f"{_shown(kind)} must be one of {', '.join(_KINDS)}")
        zone = self.text(merged, "timezone", where)
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise self.fail(f"{where}.timezone", f"'{zone}' is not an IANA time zone (e.g. America/Denver)") from None
        send_at_text = self.text(merged, "send_at", where)
        try:
            send_at = dt.time.fromisoformat(send_at_text)
        except ValueError:
            raise self.fail(f"{where}.send_at", f"{_shown(send_at_text)} must be a local time HH:MM") from None
        if send_at.tzinfo is not None:
            raise self.fail(f"{where}.send_at", f"{_shown(send_at_text)} must be a local time without an offset; "
                            "the edition's timezone says where")
        days_raw = merged.get("days", list(WEEKDAYS))
        if not isinstance(days_raw, list) or not days_raw or any(d not in WEEKDAYS for d in days_raw):
            bad = [d for d in days_raw if d not in WEEKDAYS] if isinstance(days_raw, list) and days_raw else days_raw
            raise self.fail(f"{where}.days", f"{_shown(bad)}: must be a non-empty list of {', '.join(WEEKDAYS)}")
        sender_name, sender_addr = self.mailbox(merged, "from", where)
        reply_to = merged.get("reply_to")
        if reply_to is not None:
            reply_to = self.mailbox(merged, "reply_to", where)[1]
        on_empty = merged.get("on_empty", "skip")
        if on_empty not in ("skip", "fail"):
            raise self.fail(f"{where}.on_empty", f"{_shown(on_empty)} must be 'skip' or 'fail'")
        on_broken_story = merged.get("on_broken_story", "skip")
        if on_broken_story not in ("skip", "fail"):
            raise self.fail(f"{where}.on_broken_story", f"{_shown(on_broken_story)} must be 'skip' or 'fail'")
        curator = None
        if merged.get("curator") is not None:
            c = merged["curator"]
            if not isinstance(c, dict):
                raise self.fail(f"{where}.curator", f"must be a table with name and title, not {_shown(c)}")
            self.reject_unknown(c, _CURATOR_KEYS, f"{where}.curator")
            curator = Curator(self.text(c, "name", f"{where}.curator"), self.text(c, "title", f"{where}.curator", default=""))
        return Edition(
            slug=slug,
            name=self.text(merged, "name", where),
            kind=kind,  # type: ignore[arg-type]
            tagline=self.text(merged, "tagline", where, default=""),
            timezone=zone,
            send_at=send_at,
            days=frozenset(WEEKDAYS.index(d) for d in days_raw),
            sender=Mailbox(sender_name or self.text(merged, "name", where), sender_addr),
            reply_to=reply_to,
            list_id=self.text(merged, "list_id", where, default=f"{slug}.{newsroom.domain}"),
            subject=self.text(merged, "subject", where),
            preheader=self.text(merged, "preheader", where, default=""),
            greeting=self.text(merged, "greeting", where, default="Hello"),
            reading_minutes=self.positive_int(merged, "reading_minutes", where, default=5),
            tags=self.labels(merged, "tags", where),
            cities=self.labels(merged, "cities", where),
            curator=curator,
            on_empty=on_empty,
            grace_minutes=self.positive_int(merged, "grace_minutes", where, default=120),
            on_broken_story=on_broken_story,
        )

    def mailbox(self, table: Mapping[str, Any], key: str, where: str) -> tuple[str, str]:
        try:
            return parse_mailbox(self.text(table, key, where))
        except (AddressError, HeaderInjectionError) as exc:
            raise self.fail(f"{where}.{key}", str(exc)) from None

    def labels(self, table: Mapping[str, Any], key: str, where: str) -> frozenset[str]:
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(f"{where}.{key}", f"{_shown(value)} must be a list of strings")
        return frozenset(v.casefold() for v in value)


def _shown(value: Any) -> str:
    """A value from digest.toml as an error shows it: quoted, escaped, cut when long."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
