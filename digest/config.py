"""digest.toml plus the DIGEST_* environment -> typed, frozen ``Settings``.

Every problem is reported with the file and the key (``editions[2].timezone``) that caused it.
Secrets are read from the environment only and never appear in a repr or an error message.

Each table has its own small reader (``_newsroom``, ``_smtp``, ``_edition`` ...) over ``_Table``'s
typed getters. A key left out takes the field default of the dataclass it fills (models.py, and
``FeedSource`` for [[sources]]): defaults are written there only.
"""

from __future__ import annotations

import dataclasses
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
    "curator", "on_empty", "grace_minutes", "on_broken_story", "editors", "approval", "preview_minutes",
}
_SMTP_KEYS = {"host", "port", "tls", "pool_size", "rate", "timeout", "data_timeout", "allow_insecure",
              "local_hostname", "ca_file"}
_RELAY_KEYS = _SMTP_KEYS | {"name", "weight", "username_env", "password_env"}
_TLS_MODES = ("starttls", "tls", "none")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DELIVERY_KEYS = {"deadline_hours", "max_attempts", "retry_base", "retry_cap", "uncertain",
                  "breaker_min_rejections", "breaker_ratio", "lease_seconds", "batch", "workers"}
_NEWSROOM_KEYS = {"name", "domain", "postal_address", "words_per_minute", "signup_url"}
_WEB_KEYS = {"base_url"}
_PATHS_KEYS = {"stories", "subscribers", "templates", "state", "out", "notes"}
_DEMO_KEYS = {"date"}
_DKIM_KEYS = {"selector", "domain"}
_CURATOR_KEYS = {"name", "title"}
_TOP_LEVEL = {"newsroom", "web", "paths", "demo", "defaults", "editions", "smtp", "delivery", "dkim", "sources",
              "bounces"}
_BOUNCES_KEYS = {"return_path"}
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


def _default(model: type, name: str) -> Any:
    """A setting's default: the field default of the dataclass it fills (models.py, feeds' FeedSource).

    The one place a default is written, so what digest.toml leaves out and what a ``Settings``
    built in code gets cannot differ.
    """
    for item in dataclasses.fields(model):
        if item.name == name:
            if item.default is not dataclasses.MISSING:
                return item.default
            if item.default_factory is not dataclasses.MISSING:
                return item.default_factory()
    raise LookupError(f"{model.__name__}.{name} has no default")


class _Reader:
    """The TOML document: its file, folder and environment, unknown-key checks and error locations.

    Each table is read by its own function below (``_newsroom``, ``_smtp``, ``_edition`` ...),
    through ``_Table``'s typed getters.
    """

    def __init__(self, file: Path, raw: dict[str, Any], env: Mapping[str, str]) -> None:
        self.file = file
        self.raw = raw
        self.env = env
        self.base = file.resolve().parent

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(message, file=self.file, field=key)

    def table(self, name: str, known: set[str], model: type | None = None) -> _Table:
        """A top-level table (empty when absent), its keys checked against ``known``."""
        value = self.raw.get(name, {})
        if not isinstance(value, dict):
            raise self.fail(name, f"must be a table ([{name}]), not {_shown(value)}")
        self.reject_unknown(value, known, name)
        return _Table(self, value, name, model)

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

    def settings(self) -> Settings:
        """Every table read, in the order their errors are reported."""
        self.reject_unknown(self.raw, _TOP_LEVEL, "")
        newsroom = _newsroom(self)
        base_url = _base_url(self)
        editions = _editions(self, newsroom)
        demo_date = _demo_date(self)
        paths = _paths(self)
        smtp, relays = _smtp(self)
        return Settings(
            config_file=self.file,
            newsroom=newsroom,
            base_url=base_url,
            paths=paths,
            editions=editions,
            demo_date=demo_date,
            state_db=state_path(self.env.get("DIGEST_STATE_URL"), paths.state / "digest.sqlite3"),
            smtp=smtp,
            relays=relays,
            delivery=_delivery(self),
            dkim=_dkim(self, newsroom),
            sources=_sources(self),
            return_path=_return_path(self),
            signing_keys=parse_signing_keys(self.env["DIGEST_SECRET_KEY"]) if self.env.get("DIGEST_SECRET_KEY") else (),
        )


class _Table:
    """One table's values with typed getters: errors name ``where.key``; defaults come from ``model``."""

    def __init__(self, doc: _Reader, values: Mapping[str, Any], where: str, model: type | None = None) -> None:
        self.doc = doc
        self.values = values
        self.where = where
        self.model = model

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def default(self, key: str, name: str | None = None) -> Any:
        """The default of ``model``'s field ``name`` (``key`` when the two are spelt alike)."""
        assert self.model is not None, "a table with defaults names its dataclass"
        return _default(self.model, name or key)

    def setting(self, key: str) -> Any:
        """The value, else the model's default for it."""
        return self.values[key] if key in self.values else self.default(key)

    def fail(self, key: str, message: str) -> ConfigError:
        return self.doc.fail(f"{self.where}.{key}", message)

    def text(self, key: str, *, default: str | None = None) -> str:
        value = self.values.get(key, default)
        if value is None:
            raise self.fail(key, "is required")
        if not isinstance(value, str) or (not value.strip() and default != ""):
            raise self.fail(key, f"must be a non-empty string, not {_shown(value)}")
        if "\r" in value or "\n" in value or "\x00" in value:
            raise self.fail(key, "must be one line")
        return value

    def number(self, key: str, *, minimum: float) -> float:
        value = self.setting(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
            raise self.fail(key, f"{_shown(value)} must be a number of at least {minimum:g}")
        return float(value)

    def positive_int(self, key: str) -> int:
        value = self.setting(key)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise self.fail(key, f"{_shown(value)} must be a positive whole number")
        return value

    def flag(self, key: str) -> bool:
        value = self.setting(key)
        if not isinstance(value, bool):
            raise self.fail(key, f"{_shown(value)} must be true or false")
        return value

    def one_of(self, key: str, choices: tuple[str, ...], said: str) -> Any:
        """The value, else the default, refused unless it is one of ``choices`` (``said`` lists them)."""
        value = self.setting(key)
        if value not in choices:
            raise self.fail(key, f"{_shown(value)} must be {said}")
        return value

    def labels(self, key: str) -> frozenset[str]:
        value = self.values.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(key, f"{_shown(value)} must be a list of strings")
        return frozenset(v.casefold() for v in value)

    def date(self, key: str) -> dt.date:
        value = self.values[key]
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return value
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError:
            raise self.fail(key, f"{_shown(value)} must be a date, YYYY-MM-DD") from None

    def mailbox(self, key: str) -> tuple[str, str]:
        try:
            return parse_mailbox(self.text(key))
        except (AddressError, HeaderInjectionError) as exc:
            raise self.fail(key, str(exc)) from None


# -- [newsroom], [web], [demo], [paths] ----------------------------------------------------------

def _newsroom(doc: _Reader) -> Newsroom:
    table = doc.table("newsroom", _NEWSROOM_KEYS, Newsroom)
    return Newsroom(
        name=table.text("name"),
        domain=table.text("domain"),
        postal_address=table.text("postal_address"),
        words_per_minute=table.positive_int("words_per_minute"),
        signup_url=_signup_url(table),
    )


def _signup_url(table: _Table) -> str | None:
    """An absolute https URL (it goes into public pages as a link), or None when not set."""
    if "signup_url" not in table:
        return None
    url = table.text("signup_url")
    if not url.startswith(("https://", "http://")) or any(c.isspace() or c in "\"'<>" for c in url):
        raise table.fail("signup_url", f"{_shown(url)} must be an https:// URL without spaces or quotes")
    return url


def _base_url(doc: _Reader) -> str:
    base_url = doc.table("web", _WEB_KEYS).text("base_url").rstrip("/")
    if not base_url.startswith(("https://", "http://")):
        raise doc.fail("web.base_url", f"{_shown(base_url)} must start with https:// (or http:// for local testing)")
    return base_url


def _demo_date(doc: _Reader) -> dt.date | None:
    table = doc.table("demo", _DEMO_KEYS)
    return table.date("date") if "date" in table else None


def _paths(doc: _Reader) -> Paths:
    table = doc.table("paths", _PATHS_KEYS, Paths)

    def path(key: str) -> Path | None:
        default = table.default(key)
        value = table.get(key, None if default is None else str(default))
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise table.fail(key, f"must be a path, not {_shown(value)}")
        return (doc.base / value).resolve()

    templates = path("templates")
    return Paths(
        stories=path("stories"),
        subscribers=path("subscribers"),
        templates=templates,
        state=path("state"),
        out=path("out"),
        notes=path("notes"),
    )


# -- [smtp], [delivery], [dkim] ------------------------------------------------------------------

def _smtp(doc: _Reader) -> tuple[SmtpSettings, tuple[SmtpSettings, ...]]:
    """(the relay [smtp] describes, the [[smtp.relays]] entries) from digest.toml and DIGEST_SMTP_*.

    With [[smtp.relays]], [smtp] holds the settings every entry inherits unless it sets its own
    (host and port belong to each entry), and the first entry is also returned as the first value.
    Credentials come from the environment only.
    """
    table = doc.table("smtp", _SMTP_KEYS | {"username", "password", "relays"}, SmtpSettings)
    for secret in ("username", "password"):
        if secret in table:
            raise table.fail(secret, f"credentials belong in the environment (DIGEST_SMTP_{secret.upper()}), not in digest.toml")
    if "relays" in table:
        _check_shared(doc, table)
    host, port, tls = _smtp_endpoint(doc, table)
    smtp = SmtpSettings(
        host=host,
        port=port,
        tls=tls,
        username=doc.env.get("DIGEST_SMTP_USERNAME") or None,
        password=doc.env.get("DIGEST_SMTP_PASSWORD") or None,
        **_connection_values(doc, table),
    )
    if "relays" not in table:
        return smtp, ()
    relays = _relays(doc, table)
    return relays[0], relays


def _connection_values(doc: _Reader, table: _Table) -> dict[str, Any]:
    """What [smtp] and each [[smtp.relays]] entry say alike: pool, rate, timeouts, EHLO name, CA file."""
    return dict(
        pool_size=table.positive_int("pool_size"),
        rate=table.number("rate", minimum=0.0),
        timeout=table.number("timeout", minimum=0.001),
        data_timeout=table.number("data_timeout", minimum=0.001),
        allow_insecure=table.flag("allow_insecure"),
        local_hostname=table.setting("local_hostname"),
        ca_file=(doc.base / table.get("ca_file")).resolve() if table.get("ca_file") else None,
    )


def _check_shared(doc: _Reader, table: _Table) -> None:
    """With [[smtp.relays]], an [smtp] host or port (or DIGEST_SMTP_HOST/PORT/TLS) would name a relay
    that is never used, or override every entry's own: refused, naming it."""
    for key in ("host", "port"):
        if key in table:
            raise table.fail(key, f"with [[smtp.relays]] each relay names its own {key}: move it into a "
                             "[[smtp.relays]] table (the other [smtp] keys are defaults for every relay)")
    for variable in ("DIGEST_SMTP_HOST", "DIGEST_SMTP_PORT", "DIGEST_SMTP_TLS"):
        if doc.env.get(variable):
            raise doc.fail(variable, "is set, but digest.toml has [[smtp.relays]], which name each relay's host, port "
                           "and tls: unset it, or set the relays in digest.toml")


def _relays(doc: _Reader, shared: _Table) -> tuple[SmtpSettings, ...]:
    """Every [[smtp.relays]] entry over [smtp]'s keys; at least one, each name once."""
    raw = shared.get("relays")
    if not isinstance(raw, list) or not raw:
        raise doc.fail("smtp.relays", "must be one or more [[smtp.relays]] tables")
    relays: list[SmtpSettings] = []
    for index, entry in enumerate(raw):
        relay = _relay(doc, index, entry, shared)
        earlier = next((i for i, r in enumerate(relays) if r.relay_name == relay.relay_name), None)
        if earlier is not None:
            how = "its name" if relay.name else "the name it takes from host:port when it has none"
            raise doc.fail(f"smtp.relays[{index}].name", f"'{relay.relay_name}' ({how}) is used by "
                           f"smtp.relays[{earlier}] too; give each relay its own name")
        relays.append(relay)
    return tuple(relays)


def _relay(doc: _Reader, index: int, raw: Any, shared: _Table) -> SmtpSettings:
    """One [[smtp.relays]] entry, its own keys over [smtp]'s; errors name ``smtp.relays[i].key``."""
    where = f"smtp.relays[{index}]"
    if not isinstance(raw, dict):
        raise doc.fail(where, "must be a table")
    for secret in ("username", "password"):
        if secret in raw:
            raise doc.fail(f"{where}.{secret}", f"credentials belong in the environment: name the variable that "
                           f"holds it with {secret}_env, not the {secret} itself")
    doc.reject_unknown(raw, _RELAY_KEYS, where)
    inherited = {key: value for key, value in shared.values.items() if key in _SMTP_KEYS}
    table = _Table(doc, {**inherited, **raw}, where, SmtpSettings)
    host = table.text("host")
    if any(c in host for c in " \t"):
        raise table.fail("host", f"{_shown(host)} must be a host name or address")
    port = table.values.get("port", table.default("port"))
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise table.fail("port", f"{_shown(port)} must be a TCP port, a number from 1 to 65535 without quotes")
    username_env, password_env = _credential_names(table)
    return SmtpSettings(
        host=host,
        port=port,
        tls=table.one_of("tls", _TLS_MODES, "starttls, tls or none"),
        username=doc.env.get(username_env) or None,
        password=doc.env.get(password_env) or None,
        name=_relay_name(table) if "name" in raw else "",
        weight=_weight(table),
        username_env=username_env,
        password_env=password_env,
        **_connection_values(doc, table),
    )


def _relay_name(table: _Table) -> str:
    """A relay's name: one line of at most 64 characters (the ledger and `digest status` show it)."""
    name = table.text("name")
    if len(name) > 64:
        raise table.fail("name", f"{_shown(name)} is longer than 64 characters")
    return name


def _weight(table: _Table) -> float:
    value = table.setting("weight")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise table.fail("weight", f"{_shown(value)} must be a number greater than 0 (a relay's share of the copies)")
    return float(value)


def _credential_names(table: _Table) -> tuple[str, str]:
    """(username_env, password_env): the names of the variables holding the relay's credentials.

    Both or neither; left out, they are [smtp]'s own DIGEST_SMTP_USERNAME and DIGEST_SMTP_PASSWORD.
    """
    given = [key for key in ("username_env", "password_env") if key in table]
    if len(given) == 1:
        other = "password_env" if given[0] == "username_env" else "username_env"
        raise table.fail(given[0], f"goes with {other}: name both variables, or neither (then "
                         "DIGEST_SMTP_USERNAME and DIGEST_SMTP_PASSWORD are read)")
    names = []
    for key in ("username_env", "password_env"):
        name = table.setting(key)
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise table.fail(key, f"{_shown(name)} must be the name of an environment variable (letters, digits, _)")
        names.append(name)
    return names[0], names[1]


def _smtp_endpoint(doc: _Reader, table: _Table) -> tuple[str, int, Any]:
    """(host, port, tls): DIGEST_SMTP_* first, then [smtp]; errors name both places."""
    env = doc.env
    host = env.get("DIGEST_SMTP_HOST") or table.setting("host")
    port_raw = env.get("DIGEST_SMTP_PORT") or table.setting("port")
    if "DIGEST_SMTP_PORT" not in env and (not isinstance(port_raw, int) or isinstance(port_raw, bool)):
        # In digest.toml a port is a number; "587" in quotes is a typo worth naming, not guessing at.
        raise doc.fail("smtp.port", f"{_shown(port_raw)} must be a number without quotes (port = 587)")
    try:
        port = int(port_raw)
        if not 0 < port < 65536:
            raise ValueError
    except (TypeError, ValueError):
        raise doc.fail("smtp.port / DIGEST_SMTP_PORT", f"'{port_raw}' is not a TCP port") from None
    tls = env.get("DIGEST_SMTP_TLS") or table.setting("tls")
    if tls not in _TLS_MODES:
        raise doc.fail("smtp.tls / DIGEST_SMTP_TLS", f"{_shown(tls)} must be starttls, tls or none")
    if not isinstance(host, str) or not host or any(c in host for c in " \r\n\x00"):
        raise doc.fail("smtp.host / DIGEST_SMTP_HOST", "must be a host name or address")
    return host, port, tls


def _delivery(doc: _Reader) -> DeliverySettings:
    table = doc.table("delivery", _DELIVERY_KEYS, DeliverySettings)
    uncertain = table.one_of("uncertain", ("resend", "hold"), "'resend' or 'hold'")
    return DeliverySettings(
        deadline_hours=table.number("deadline_hours", minimum=0.0),
        max_attempts=table.positive_int("max_attempts"),
        retry_base=table.number("retry_base", minimum=0.0),
        retry_cap=table.number("retry_cap", minimum=0.0),
        uncertain=uncertain,
        breaker_min_rejections=table.positive_int("breaker_min_rejections"),
        breaker_ratio=table.number("breaker_ratio", minimum=0.0),
        lease_seconds=table.number("lease_seconds", minimum=1.0),
        batch=table.positive_int("batch"),
        workers=_workers(table),
    )


def _workers(table: _Table) -> int | None:
    """[delivery] workers: "auto" (one sender process per core, None here) or how many."""
    value = table.get("workers", "auto")
    if value == "auto":
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise table.fail("workers", f"{_shown(value)} must be \"auto\" or a positive whole number")
    return value


def _dkim(doc: _Reader, newsroom: Newsroom) -> DkimSettings:
    """[dkim] selector and domain; signing is on only when DIGEST_DKIM_KEY_FILE is set."""
    table = doc.table("dkim", _DKIM_KEYS)
    key_file = doc.env.get("DIGEST_DKIM_KEY_FILE")
    if not key_file:
        return DkimSettings()
    selector = table.get("selector")
    if not isinstance(selector, str) or not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", selector):
        raise doc.fail("dkim.selector", "DIGEST_DKIM_KEY_FILE is set, so [dkim] selector must name the DNS selector")
    domain = table.get("domain", newsroom.domain)
    if not isinstance(domain, str) or not re.match(r"^[A-Za-z0-9.-]+$", domain):
        raise doc.fail("dkim.domain", "must be a domain name (the From addresses' domain, for alignment)")
    return DkimSettings(Path(key_file), selector, domain)


def _return_path(doc: _Reader) -> str | None:
    """[bounces] return_path: the address VERP envelope senders are made from (local+TOKEN@domain)."""
    table = doc.table("bounces", _BOUNCES_KEYS)
    if "return_path" not in table:
        return None
    name, address = table.mailbox("return_path")
    local = address.rpartition("@")[0]
    if name or "+" in local or address != table.text("return_path").strip():
        raise table.fail("return_path", f"{_shown(table.text('return_path'))} must be a bare address whose local part has "
                         "no '+' (digest adds +TOKEN to it), e.g. \"bounce@news.example.org\"")
    return address


# -- [[sources]] ---------------------------------------------------------------------------------

def _sources(doc: _Reader) -> tuple[FeedSource, ...]:
    """[[sources]]: feeds the newsroom's CMS publishes (RSS, Atom, JSON Feed)."""
    raw = doc.raw.get("sources", [])
    if not isinstance(raw, list):
        raise doc.fail("sources", "must be [[sources]] tables")
    found: list[FeedSource] = []
    for i, table in enumerate(raw):
        found.append(_source(doc, i, table, found))
    return tuple(found)


def _source(doc: _Reader, index: int, raw: Any, earlier: list[FeedSource]) -> FeedSource:
    where = f"sources[{index}]"
    if not isinstance(raw, dict):
        raise doc.fail(where, "must be a table")
    if isinstance(raw.get("name"), str):
        where = f"sources[{index}] ({raw['name']})"
    doc.reject_unknown(raw, _SOURCE_KEYS, where)
    table = _Table(doc, raw, where, FeedSource)
    name = table.text("name")
    if any(s.name == name for s in earlier):
        raise table.fail("name", f"'{name}' is used by two sources")
    url = table.text("url")
    if "://" in url and not url.startswith(("https://", "http://", "file://")):
        raise table.fail("url", "must be http(s)://, file:// or a local path")
    if "://" not in url:
        url = str((doc.base / url).resolve())
    zone = table.setting("default_timezone")
    if zone is not None:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise table.fail("default_timezone", f"'{zone}' is not an IANA time zone") from None
    categories_as = table.one_of("categories_as", ("tags", "cities", "both"), "tags, cities or both")
    return FeedSource(
        name=name, url=url,
        editions=tuple(sorted(table.labels("editions"))),
        tags=tuple(sorted(table.labels("tags"))),
        cities=tuple(sorted(table.labels("cities"))),
        timeout=table.number("timeout", minimum=0.1),
        max_bytes=table.positive_int("max_bytes"),
        max_redirects=table.positive_int("max_redirects"),
        default_timezone=zone,
        categories_as=categories_as,
        priority=table.positive_int("priority"),
    )


# -- [defaults] and [[editions]] -----------------------------------------------------------------

def _editions(doc: _Reader, newsroom: Newsroom) -> tuple[Edition, ...]:
    """Every [[editions]] table over [defaults]; at least one, each slug once."""
    defaults = doc.table("defaults", _EDITION_KEYS).values
    editions_raw = doc.raw.get("editions")
    if not isinstance(editions_raw, list) or not editions_raw:
        raise doc.fail("editions", "at least one [[editions]] table is required")
    _check_defaults(doc, defaults, newsroom)
    editions = tuple(_edition(doc, i, e, defaults, newsroom) for i, e in enumerate(editions_raw))
    seen: set[str] = set()
    for i, edition in enumerate(editions):
        if edition.slug in seen:
            raise doc.fail(f"editions[{i}] ({edition.slug}).slug", f"'{edition.slug}' is used by two editions")
        seen.add(edition.slug)
    return editions


# What a probe edition supplies when [defaults] is read on its own: only keys [defaults] lacks.
_PROBE_EDITION = {"slug": "defaults", "name": "defaults", "kind": "national", "timezone": "UTC",
                  "send_at": "00:00", "from": "probe@example.org", "subject": "probe"}


def _check_defaults(doc: _Reader, defaults: Mapping[str, Any], newsroom: Newsroom) -> None:
    """Every value in [defaults] is read by the editions' own rules, named ``defaults.key``, even
    while every edition overrides it: a bad one is latent until the next edition that leaves it out."""
    if defaults:
        _edition_values(_Table(doc, {**_PROBE_EDITION, **defaults}, "defaults", Edition), "defaults", newsroom)


def _edition(doc: _Reader, index: int, raw: Any, defaults: Mapping[str, Any], newsroom: Newsroom) -> Edition:
    table = _edition_table(doc, index, raw, defaults)
    slug = table.text("slug")
    if not _SLUG.match(slug):
        raise table.fail("slug", f"{_shown(slug)} must be lower-case letters, digits and '-'")
    table.where = f"editions[{index}] ({slug})"
    return _edition_values(table, slug, newsroom)


def _edition_values(table: _Table, slug: str, newsroom: Newsroom) -> Edition:
    """An edition from its merged table (its own keys over [defaults]); errors name ``table.where``."""
    kind = table.text("kind")
    if kind not in _KINDS:
        raise table.fail("kind", f"{_shown(kind)} must be one of {', '.join(_KINDS)}")
    zone, send_at, days = _edition_schedule(table)
    sender_name, sender_addr = table.mailbox("from")
    reply_to = table.mailbox("reply_to")[1] if table.get("reply_to") is not None else None
    on_empty = table.one_of("on_empty", ("skip", "fail"), "'skip' or 'fail'")
    on_broken_story = table.one_of("on_broken_story", ("skip", "fail"), "'skip' or 'fail'")
    curator = _curator(table.doc, table)
    return Edition(
        slug=slug,
        name=table.text("name"),
        kind=kind,  # type: ignore[arg-type]
        tagline=table.text("tagline", default=table.default("tagline")),
        timezone=zone,
        send_at=send_at,
        days=days,
        sender=Mailbox(sender_name or table.text("name"), sender_addr),
        reply_to=reply_to,
        list_id=table.text("list_id", default=f"{slug}.{newsroom.domain}"),
        subject=table.text("subject"),
        preheader=table.text("preheader", default=table.default("preheader")),
        greeting=table.text("greeting", default=table.default("greeting")),
        reading_minutes=table.positive_int("reading_minutes"),
        tags=table.labels("tags"),
        cities=table.labels("cities"),
        curator=curator,
        on_empty=on_empty,
        grace_minutes=table.positive_int("grace_minutes"),
        on_broken_story=on_broken_story,
        editors=_editors(table),
        **_approval(table),
    )


def _approval(table: _Table) -> dict[str, Any]:
    """``approval = "required"`` (an editor approves each issue's fingerprint) and ``preview_minutes``
    (how long before the send the editors get a preview; 0: none). Approval needs someone to ask."""
    approval = table.one_of("approval", ("none", "required"), "'none' or 'required'")
    value = table.values.get("preview_minutes")
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise table.fail("preview_minutes", f"{_shown(value)} must be a whole number of minutes, 0 or more")
    if approval == "required" and not table.values.get("editors"):
        raise table.fail("approval", "\"required\" needs editors = [...] to send previews to and take approvals from")
    return {"approval": approval, "preview_minutes": value}


def _editors(table: _Table) -> tuple[str, ...]:
    """``editors = ["desk@...", ...]``: plain addresses (they get alerts by email), each once."""
    value = table.values.get("editors", [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise table.fail("editors", f"{_shown(value)} must be a list of email addresses")
    found: list[str] = []
    for address in value:
        try:
            name, plain = parse_mailbox(address)
        except (AddressError, HeaderInjectionError) as exc:
            raise table.fail("editors", f"{_shown(address)}: {exc}") from None
        if name:
            raise table.fail("editors", f"{_shown(address)}: give the address alone, without a name")
        if plain.casefold() in (f.casefold() for f in found):
            raise table.fail("editors", f"{_shown(address)} is listed twice")
        found.append(plain)
    return tuple(found)


def _edition_table(doc: _Reader, index: int, raw: Any, defaults: Mapping[str, Any]) -> _Table:
    """An [[editions]] table merged over [defaults], named ``editions[i] (slug)`` in every error."""
    where = f"editions[{index}]"
    if not isinstance(raw, dict):
        raise doc.fail(where, "must be a table")
    if isinstance(raw.get("slug"), str):  # every error about an edition names it the same way
        where = f"editions[{index}] ({raw['slug']})"
    doc.reject_unknown(raw, _EDITION_KEYS, where)
    return _Table(doc, {**defaults, **raw}, where, Edition)


def _edition_schedule(table: _Table) -> tuple[str, dt.time, frozenset[int]]:
    """(timezone, send_at, days): an IANA zone, a local HH:MM without offset, weekday names."""
    zone = table.text("timezone")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise table.fail("timezone", f"'{zone}' is not an IANA time zone (e.g. America/Denver)") from None
    send_at_text = table.text("send_at")
    try:
        send_at = dt.time.fromisoformat(send_at_text)
    except ValueError:
        raise table.fail("send_at", f"{_shown(send_at_text)} must be a local time HH:MM") from None
    if send_at.tzinfo is not None:
        raise table.fail("send_at", f"{_shown(send_at_text)} must be a local time without an offset; "
                         "the edition's timezone says where")
    return zone, send_at, _edition_days(table)


def _edition_days(table: _Table) -> frozenset[int]:
    """``days``: weekday names (mon ... sun) -> weekday numbers; every day when left out."""
    days_raw = table.get("days", [WEEKDAYS[d] for d in sorted(table.default("days"))])
    if not isinstance(days_raw, list) or not days_raw or any(d not in WEEKDAYS for d in days_raw):
        bad = [d for d in days_raw if d not in WEEKDAYS] if isinstance(days_raw, list) and days_raw else days_raw
        raise table.fail("days", f"{_shown(bad)}: must be a non-empty list of {', '.join(WEEKDAYS)}")
    return frozenset(WEEKDAYS.index(d) for d in days_raw)


def _curator(doc: _Reader, table: _Table) -> Curator | None:
    raw = table.get("curator")
    if raw is None:
        return None
    where = f"{table.where}.curator"
    if not isinstance(raw, dict):
        raise doc.fail(where, f"must be a table with name and title, not {_shown(raw)}")
    doc.reject_unknown(raw, _CURATOR_KEYS, where)
    curator = _Table(doc, raw, where)
    return Curator(curator.text("name"), curator.text("title", default=""))


def _shown(value: Any) -> str:
    """A value from digest.toml as an error shows it: quoted, escaped, cut when long."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
