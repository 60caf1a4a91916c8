"""digest.toml + DIGEST_* environment -> Settings: the sample, every kind of bad value, and secrets."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from pathlib import Path

import pytest
from conftest import DIGEST, ROOT

from digest.config import load_settings, parse_signing_keys
from digest.errors import ConfigError, InputError
from digest.models import Curator

SAMPLE = ROOT / "digest.toml"
SECRET = "s" * 32

# A small, valid config with two editions; the bad-value tests change one line of the *second*
# edition so that the reported field must carry the right index as well as the key.
BASE = """\
[newsroom]
name = "Test News"
domain = "news.example.org"
postal_address = "1 Main Street, Town, ST 00000"

[web]
base_url = "https://digest.news.example.org"

[defaults]
subject = "{{ edition.name }}: {{ lead.headline }}"
reply_to = "letters@news.example.org"

[[editions]]
slug = "am"
name = "Test AM"
kind = "national"
timezone = "America/New_York"
send_at = "06:00"
from = "Test AM <am@news.example.org>"

[[editions]]
slug = "denver"
name = "Test Denver"
kind = "city"
timezone = "America/Denver"
send_at = "06:00"
from = "Test Denver <denver@news.example.org>"
"""

SECOND = BASE.index('slug = "denver"')


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "digest.toml"
    path.write_text(text, encoding="utf-8")
    return path


def second_edition(old: str, new: str) -> str:
    """BASE with one line of the second edition replaced."""
    head, tail = BASE[:SECOND], BASE[SECOND:]
    assert old in tail, old
    return head + tail.replace(old, new, 1)


def load_error(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> ConfigError:
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ=environ or {})
    return info.value


# --- the shipped sample ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample():
    return load_settings(SAMPLE, environ={})


def test_sample_has_the_eight_editions_in_file_order(sample):
    assert [e.slug for e in sample.editions] == [
        "am", "pm", "denver", "des-moines", "twin-cities", "tampa-bay", "charlotte", "climate",
    ]


def test_sample_kinds_and_time_zones(sample):
    kinds = {e.slug: e.kind for e in sample.editions}
    zones = {e.slug: e.timezone for e in sample.editions}
    assert kinds == {
        "am": "national", "pm": "national", "denver": "city", "des-moines": "city",
        "twin-cities": "city", "tampa-bay": "city", "charlotte": "city", "climate": "topic",
    }
    assert zones == {
        "am": "America/New_York", "pm": "America/New_York", "denver": "America/Denver",
        "des-moines": "America/Chicago", "twin-cities": "America/Chicago",
        "tampa-bay": "America/New_York", "charlotte": "America/New_York", "climate": "America/Los_Angeles",
    }
    assert sample.edition("twin-cities").send_at == dt.time(6, 30)
    assert sample.edition("pm").send_at == dt.time(17, 0)


def test_sample_curator_only_on_the_topic_edition(sample):
    assert sample.edition("climate").curator == Curator("Priya Raman", "Climate editor")
    assert [e.slug for e in sample.editions if e.curator is not None] == ["climate"]


def test_sample_defaults_are_inherited_unless_overridden(sample):
    for edition in sample.editions:
        assert edition.reply_to == "newsletters@northline.example.org"
        assert edition.subject == "{{ lead.headline }}"
        assert edition.on_empty == "skip"
    assert sample.edition("am").greeting == "Good morning"          # from [defaults]
    assert sample.edition("pm").greeting == "Good evening"          # its own
    assert sample.edition("am").reading_minutes == 5
    assert sample.edition("climate").reading_minutes == 6
    assert sample.edition("am").days == frozenset(range(7))
    assert sample.edition("climate").days == frozenset({0, 1, 2, 3, 4})  # Mon-Fri


def test_sample_list_id_defaults_to_slug_dot_domain(sample):
    assert sample.newsroom.domain == "northline.example.org"
    for edition in sample.editions:
        assert edition.list_id == f"{edition.slug}.northline.example.org"


def test_sample_senders_filters_and_newsroom(sample):
    am = sample.edition("am")
    assert am.sender.name == "Northline AM"
    assert am.sender.address == "am@northline.example.org"
    assert "politics" in am.tags and not am.cities
    assert sample.edition("des-moines").cities == frozenset({"des-moines"})
    assert sample.newsroom.words_per_minute == 230
    assert sample.base_url == "https://digest.northline.example.org"
    assert sample.demo_date == dt.date(2026, 12, 1)


def test_settings_are_frozen(sample):
    with pytest.raises(dataclasses.FrozenInstanceError):
        sample.base_url = "https://elsewhere.example.org"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        sample.editions[0].slug = "x"  # type: ignore[misc]


def test_paths_are_relative_to_the_config_folder_not_the_cwd(tmp_path, monkeypatch):
    folder = tmp_path / "newsroom"
    folder.mkdir()
    shutil.copy(SAMPLE, folder / "digest.toml")
    shutil.copytree(ROOT / "templates", folder / "templates")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = load_settings(Path("../newsroom/digest.toml"), environ={})
    real = folder.resolve()
    assert settings.paths.stories == real / "stories"
    assert settings.paths.subscribers == real / "subscribers.csv"
    assert settings.paths.out == real / "out"
    assert settings.paths.state == real / "state"
    assert settings.paths.templates == real / "templates"


def test_config_path_comes_from_digest_config_when_not_given(tmp_path):
    path = write_config(tmp_path, BASE)
    settings = load_settings(None, environ={"DIGEST_CONFIG": str(path)})
    assert [e.slug for e in settings.editions] == ["am", "denver"]


def test_explicit_list_id_and_bare_from_address(tmp_path):
    text = second_edition('from = "Test Denver <denver@news.example.org>"',
                          'from = "denver@news.example.org"\nlist_id = "denver-daily.news.example.org"')
    settings = load_settings(write_config(tmp_path, text), environ={})
    denver = settings.edition("denver")
    assert denver.list_id == "denver-daily.news.example.org"
    assert denver.sender.address == "denver@news.example.org"
    assert denver.sender.name == "Test Denver"  # a bare address borrows the edition's name
    assert settings.edition("am").list_id == "am.news.example.org"


# --- every kind of bad value names its key -------------------------------------------------------

BAD_EDITION_VALUES = {
    "bad-timezone": ('timezone = "America/Denver"', 'timezone = "America/Denvr"', ".timezone"),
    "timezone-not-a-zone-path": ('timezone = "America/Denver"', 'timezone = "../../etc/passwd"', ".timezone"),
    "send-at-nonsense": ('send_at = "06:00"', 'send_at = "6am"', ".send_at"),
    "send-at-hour-25": ('send_at = "06:00"', 'send_at = "25:00"', ".send_at"),
    "send-at-not-a-string": ('send_at = "06:00"', "send_at = 6", ".send_at"),
    "unknown-key-typo": ('kind = "city"', 'kind = "city"\ntagine = "Denver, briefly."', ".tagine"),
    "bad-kind": ('kind = "city"', 'kind = "regional"', ".kind"),
    "days-misspelt": ('kind = "city"', 'kind = "city"\ndays = ["monday", "tuesday"]', ".days"),
    "days-empty": ('kind = "city"', 'kind = "city"\ndays = []', ".days"),
    "days-not-a-list": ('kind = "city"', 'kind = "city"\ndays = "mon"', ".days"),
    "from-with-crlf": ('from = "Test Denver <denver@news.example.org>"',
                       'from = "Test Denver <denver@news.example.org>\\r\\nBcc: all@evil.example"', ".from"),
    "from-with-lf-in-name": ('from = "Test Denver <denver@news.example.org>"',
                             'from = "Test\\nDenver <denver@news.example.org>"', ".from"),
    "from-invalid-address": ('from = "Test Denver <denver@news.example.org>"', 'from = "Test Denver <denver@>"', ".from"),
    "from-missing": ('from = "Test Denver <denver@news.example.org>"', "", ".from"),
    "reply-to-invalid": ('from = "Test Denver <denver@news.example.org>"',
                         'from = "Test Denver <denver@news.example.org>"\nreply_to = "not an address"', ".reply_to"),
    "slug-upper-case": ('slug = "denver"', 'slug = "Denver"', ".slug"),
    "reading-minutes-zero": ('kind = "city"', 'kind = "city"\nreading_minutes = 0', ".reading_minutes"),
    "on-empty-unknown": ('kind = "city"', 'kind = "city"\non_empty = "ignore"', ".on_empty"),
    "tags-not-strings": ('kind = "city"', 'kind = "city"\ntags = [1, 2]', ".tags"),
    "editors-not-a-list": ('kind = "city"', 'kind = "city"\neditors = "desk@news.example.org"', ".editors"),
    "editors-bad-address": ('kind = "city"', 'kind = "city"\neditors = ["desk@"]', ".editors"),
    "editors-with-a-name": ('kind = "city"', 'kind = "city"\neditors = ["Desk <desk@news.example.org>"]', ".editors"),
    "editors-twice": ('kind = "city"', 'kind = "city"\neditors = ["a@news.example.org", "A@news.example.org"]', ".editors"),
}


@pytest.mark.parametrize("old,new,suffix", list(BAD_EDITION_VALUES.values()), ids=list(BAD_EDITION_VALUES))
def test_bad_edition_value_names_the_edition_and_key(tmp_path, old, new, suffix):
    err = load_error(tmp_path, second_edition(old, new))
    assert err.field is not None, str(err)
    assert err.field.startswith("editions[1]"), err.field
    assert err.field.endswith(suffix), err.field
    assert err.file is not None and err.file.endswith("digest.toml")
    assert err.exit_code == 2
    assert isinstance(err, InputError)
    assert suffix.lstrip(".") in str(err)  # the printed message names the key too


@pytest.mark.parametrize("value", ["06:00Z", "06:00+02:00"])
def test_send_at_with_a_utc_offset_is_refused_not_silently_read_as_local(tmp_path, value):
    # send_at is a local wall-clock time in the edition's zone; an offset would be dropped silently.
    err = load_error(tmp_path, second_edition('send_at = "06:00"', f'send_at = "{value}"'))
    assert err.field is not None and err.field.endswith(".send_at")


def test_duplicate_slug_names_the_second_one(tmp_path):
    err = load_error(tmp_path, second_edition('slug = "denver"', 'slug = "am"'))
    assert err.field == "editions[1] (am).slug"
    assert "'am'" in err.message


def test_base_url_without_scheme(tmp_path):
    err = load_error(tmp_path, BASE.replace('base_url = "https://digest.news.example.org"',
                                            'base_url = "digest.news.example.org"'))
    assert err.field == "web.base_url"


def test_missing_newsroom_key(tmp_path):
    err = load_error(tmp_path, BASE.replace('domain = "news.example.org"\n', ""))
    assert err.field == "newsroom.domain"


def test_words_per_minute_must_be_positive(tmp_path):
    err = load_error(tmp_path, BASE.replace('domain = "news.example.org"',
                                            'domain = "news.example.org"\nwords_per_minute = -1'))
    assert err.field == "newsroom.words_per_minute"


def test_no_editions(tmp_path):
    err = load_error(tmp_path, BASE[:BASE.index("[[editions]]")])
    assert err.field == "editions"


def test_unknown_key_in_defaults_is_reported(tmp_path):
    # A typo in [defaults] would otherwise be silently ignored by every edition.
    err = load_error(tmp_path, BASE.replace('[defaults]\n', '[defaults]\nreading_minute = 3\n'))
    assert err.field is not None and "reading_minute" in err.field


def test_missing_config_file(tmp_path):
    missing = tmp_path / "nope" / "digest.toml"
    with pytest.raises(ConfigError) as info:
        load_settings(missing, environ={})
    assert info.value.file == str(missing)
    assert "not found" in str(info.value)
    assert info.value.exit_code == 2


def test_invalid_toml(tmp_path):
    err = load_error(tmp_path, BASE.replace('kind = "city"', "kind = city"))
    assert err.file is not None and err.file.endswith("digest.toml")
    assert "TOML" in err.message


def test_config_that_is_not_utf8(tmp_path):
    path = tmp_path / "digest.toml"
    path.write_bytes(BASE.replace("Test News", "Nouvelles \u00e9t\u00e9").encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert info.value.file == str(path)


# --- DIGEST_SECRET_KEY ----------------------------------------------------------------------------


def test_bare_secret_gets_a_default_id():
    (key,) = parse_signing_keys(SECRET)
    assert key.secret == SECRET.encode()
    assert key.key_id


def test_rotated_keys_keep_order_first_signs():
    new, old = "n" * 24, "o" * 24
    keys = parse_signing_keys(f"k2:{new}, k1:{old}")
    assert [k.key_id for k in keys] == ["k2", "k1"]
    assert [k.secret for k in keys] == [new.encode(), old.encode()]


BAD_KEYS = {
    "too-short": ("k1:tiny-secret", "tiny-secret"),
    "bare-too-short": ("tinysecret", "tinysecret"),
    "second-too-short": (f"k1:{SECRET},k2:shortsecret", "shortsecret"),
    "duplicate-id": (f"k1:{SECRET},k1:{'t' * 32}", "t" * 32),
}


@pytest.mark.parametrize("value", [f"bad id!:{SECRET}", f"{'i' * 17}:{SECRET}"])
def test_text_before_a_colon_that_is_no_key_id_is_part_of_a_bare_secret(value: str) -> None:
    (key,) = parse_signing_keys(value)
    assert key.secret == value.encode()
    assert key.key_id == "k0"


@pytest.mark.parametrize("value,secret", list(BAD_KEYS.values()), ids=list(BAD_KEYS))
def test_bad_secret_key_is_a_config_error_that_never_shows_the_secret(value, secret):
    with pytest.raises(ConfigError) as info:
        parse_signing_keys(value)
    err = info.value
    assert err.field == "DIGEST_SECRET_KEY"
    assert secret not in str(err)
    assert secret not in repr(err)
    assert all(secret not in str(arg) for arg in err.args)


@pytest.mark.parametrize("value,secret", list(BAD_KEYS.values()), ids=list(BAD_KEYS))
def test_bad_secret_key_in_environment_fails_load_settings(tmp_path, value, secret):
    err = load_error(tmp_path, BASE, environ={"DIGEST_SECRET_KEY": value})
    assert err.field == "DIGEST_SECRET_KEY"
    assert secret not in str(err)


def test_secrets_never_appear_in_settings_repr(tmp_path):
    old = "o" * 40
    settings = load_settings(write_config(tmp_path, BASE), environ={"DIGEST_SECRET_KEY": f"k1:{SECRET},k0:{old}"})
    assert [k.key_id for k in settings.signing_keys] == ["k1", "k0"]
    assert settings.signing_keys[0].secret == SECRET.encode()
    for text in (repr(settings), str(settings), repr(settings.signing_keys), repr(settings.signing_keys[0])):
        assert SECRET not in text
        assert old not in text


def test_no_secret_key_means_no_signing_keys(tmp_path):
    settings = load_settings(write_config(tmp_path, BASE), environ={})
    assert settings.signing_keys == ()
    settings = load_settings(write_config(tmp_path, BASE), environ={"DIGEST_SECRET_KEY": ""})
    assert settings.signing_keys == ()


def test_load_settings_reads_the_process_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGEST_SECRET_KEY", "k1:" + SECRET)
    monkeypatch.setenv("DIGEST_CONFIG", str(write_config(tmp_path, BASE)))
    settings = load_settings()
    assert [k.key_id for k in settings.signing_keys] == ["k1"]
    assert settings.edition("denver").timezone == "America/Denver"


# --- unknown keys and tables, anywhere (issue 9, item 5) -----------------------------------------


TYPOS = {
    # table: (line to change, typo'd line, field reported, suggestion)
    "newsroom": ('domain = "news.example.org"', 'domian = "news.example.org"', "newsroom.domian", "domain"),
    "web": ('base_url = "https://digest.news.example.org"',
            'base_url = "https://digest.news.example.org"\nbase_ulr = "x"', "web.base_ulr", "base_url"),
    "defaults": ('[defaults]\n', '[defaults]\nreading_minute = 3\n', "defaults.reading_minute", "reading_minutes"),
    "edition": ('kind = "city"', 'kind = "city"\nreading_minute = 3', "editions[1] (denver).reading_minute",
                "reading_minutes"),
}
EXTRA_TABLES = {
    "paths": ("[paths]\nstoreis = \"stories\"\n", "paths.storeis", "stories"),
    "demo": ("[demo]\ndaet = \"2026-12-01\"\n", "demo.daet", "date"),
    "smtp": ("[smtp]\nhots = \"relay.example.org\"\n", "smtp.hots", "host"),
    "delivery": ("[delivery]\nmax_attempt = 3\n", "delivery.max_attempt", "max_attempts"),
    "dkim": ("[dkim]\nselectr = \"s1\"\n", "dkim.selectr", "selector"),
    "sources": ("[[sources]]\nname = \"wire\"\nurl = \"feed.xml\"\ntimout = 3\n", "sources[0] (wire).timout", "timeout"),
    "top-level table smpt": ("[smpt]\nhost = \"relay.example.org\"\n", "smpt", "smtp"),
    "top-level table delivry": ("[delivry]\nmax_attempts = 3\n", "delivry", "delivery"),
    "top-level table sourcess": ("[[sourcess]]\nname = \"wire\"\n", "sourcess", "sources"),
}


@pytest.mark.parametrize("old,new,field,suggestion", list(TYPOS.values()), ids=list(TYPOS))
def test_a_typo_in_any_table_is_an_error_with_a_suggestion(tmp_path, old, new, field, suggestion):
    text = BASE.replace(old, new, 1) if old != 'kind = "city"' else second_edition(old, new)
    err = load_error(tmp_path, text)
    assert err.field == field
    assert f"did you mean '{suggestion}'" in str(err)


@pytest.mark.parametrize("extra,field,suggestion", list(EXTRA_TABLES.values()), ids=list(EXTRA_TABLES))
def test_a_typo_in_an_added_table_or_a_table_name_is_an_error(tmp_path, extra, field, suggestion):
    # Tables go before [[editions]], where TOML puts them; the edition tables stay as they are.
    at = BASE.index("[[editions]]")
    err = load_error(tmp_path, BASE[:at] + extra + "\n" + BASE[at:])
    assert err.field == field
    assert f"did you mean '{suggestion}'" in str(err)


def test_a_typo_in_an_inline_table_names_the_edition(tmp_path):
    text = second_edition('kind = "city"', 'kind = "city"\ncurator = { name = "Priya Raman", titel = "Editor" }')
    err = load_error(tmp_path, text)
    assert err.field == "editions[1] (denver).curator.titel"
    assert "did you mean 'title'" in str(err)


def test_an_unknown_key_far_from_any_known_one_lists_the_known_keys(tmp_path):
    err = load_error(tmp_path, BASE.replace("[web]\n", "[web]\ncolour = \"blue\"\n"))
    assert err.field == "web.colour"
    assert "did you mean" not in str(err) and "base_url" in str(err)


def _tables(value, path=()):
    """Every table in a parsed TOML document, as a path of keys and list indexes."""
    if isinstance(value, dict):
        yield path
        for key, item in value.items():
            yield from _tables(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _tables(item, (*path, i))


def test_every_table_of_the_shipped_config_refuses_an_unknown_key():
    # Walks the sample as it ships (plus a [[sources]] entry, commented out there), so a table
    # added later without its own key check fails here.
    import copy
    import tomllib

    from digest.config import _Reader

    raw = tomllib.loads(SAMPLE.read_text(encoding="utf-8"))
    raw["sources"] = [{"name": "wire", "url": "https://cms.example.org/feed.xml", "editions": ["am"]}]
    paths = list(_tables(raw))
    assert len(paths) > 15  # the document, its tables, every edition, the curator, the source
    for path in paths:
        doc = copy.deepcopy(raw)
        target = doc
        for step in path:
            target = target[step]
        target["zz_not_a_key"] = 1
        with pytest.raises(ConfigError) as info:
            _Reader(SAMPLE, doc, {}).settings()
        assert info.value.field is not None and info.value.field.endswith("zz_not_a_key"), (path, str(info.value))


BAD_VALUES_SHOWN = {
    "send_at": ('send_at = "06:00"', 'send_at = "25:00"', "'25:00'"),
    "kind": ('kind = "city"', 'kind = "regional"', "'regional'"),
    "days": ('kind = "city"', 'kind = "city"\ndays = ["mon", "funday"]', "'funday'"),
    "on_empty": ('kind = "city"', 'kind = "city"\non_empty = "ignore"', "'ignore'"),
    "reading_minutes": ('kind = "city"', 'kind = "city"\nreading_minutes = 0', "0"),
    "timezone": ('timezone = "America/Denver"', 'timezone = "America/Denvr"', "'America/Denvr'"),
    "slug": ('slug = "denver"', 'slug = "Denver"', "'Denver'"),
}


@pytest.mark.parametrize("old,new,shown", list(BAD_VALUES_SHOWN.values()), ids=list(BAD_VALUES_SHOWN))
def test_edition_errors_name_the_edition_by_index_and_slug_and_show_the_value(tmp_path, old, new, shown):
    err = load_error(tmp_path, second_edition(old, new))
    assert err.field is not None and err.field.startswith("editions[1] ("), err.field
    assert shown in err.message, str(err)


def test_cli_check_reports_a_table_name_typo(tmp_path):
    import subprocess

    config = tmp_path / "digest.toml"
    config.write_text(SAMPLE.read_text(encoding="utf-8").replace("[delivery]", "[delivry]"), encoding="utf-8")
    shutil.copy(ROOT / "subscribers.csv", tmp_path / "subscribers.csv")
    shutil.copytree(ROOT / "stories", tmp_path / "stories")
    done = subprocess.run([str(DIGEST), "--config", str(config), "check"], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"}, timeout=60)
    assert done.returncode == 2
    assert "delivry" in done.stderr and "did you mean 'delivery'" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


# --- one set of defaults --------------------------------------------------------------------------


def _declared_defaults(model) -> dict:
    """A dataclass's fields that have a default, with it."""
    found = {}
    for item in dataclasses.fields(model):
        if item.default is not dataclasses.MISSING:
            found[item.name] = item.default
        elif item.default_factory is not dataclasses.MISSING:
            found[item.name] = item.default_factory()
    return found


def test_every_key_left_out_of_digest_toml_takes_the_default_its_dataclass_declares(tmp_path):
    # BASE leaves out [smtp], [delivery], [paths] and every optional key, so each value read here
    # is a default: config.py must have taken it from the dataclass, not from a second copy.
    from digest.models import DeliverySettings, Edition, Newsroom, Paths, SmtpSettings
    from digest.sources.feeds import FeedSource

    text = BASE + '\n[[sources]]\nname = "wire"\nurl = "https://cms.example.org/feed.xml"\n'
    settings = load_settings(write_config(tmp_path, text), environ={})
    read = {
        DeliverySettings: settings.delivery,
        SmtpSettings: settings.smtp,
        Newsroom: settings.newsroom,
        Edition: settings.editions[0],
        FeedSource: settings.sources[0],
    }
    set_by_base = {"reply_to"}  # BASE's [defaults] names one
    for model, value in read.items():
        defaults = {k: v for k, v in _declared_defaults(model).items() if k not in set_by_base}
        assert defaults, model
        assert {k: getattr(value, k) for k in defaults} == defaults, model.__name__
    paths = {k: (tmp_path / v).resolve() if v is not None else None for k, v in _declared_defaults(Paths).items()}
    assert dataclasses.asdict(settings.paths) == paths


@pytest.mark.parametrize("line, field", [
    ('send_at = "6am"', "defaults.send_at"),
    ('timezone = "Mars/Olympus"', "defaults.timezone"),
    ('on_empty = "maybe"', "defaults.on_empty"),
    ("reading_minutes = 0", "defaults.reading_minutes"),
    ('kind = "tabloid"', "defaults.kind"),
    ('from = "not an address"', "defaults.from"),
    ('days = ["someday"]', "defaults.days"),
])
def test_a_bad_value_in_defaults_is_named_even_while_every_edition_overrides_it(tmp_path, line, field):
    """Found by a newcomer: `[defaults] send_at = "6am"` was accepted, latent until an edition left it out."""
    err = load_error(tmp_path, BASE.replace("[defaults]\n", f"[defaults]\n{line}\n"))
    assert err.field == field


def test_a_quoted_smtp_port_is_named_not_guessed(tmp_path):
    err = load_error(tmp_path, BASE + '\n[smtp]\nport = "587"\n')
    assert err.field == "smtp.port" and "'587'" in str(err) and "without quotes" in str(err)


def test_the_port_from_the_environment_is_text_and_is_read(tmp_path):
    settings = load_settings(write_config(tmp_path, BASE + '\n[smtp]\nport = "587"\n'), environ={"DIGEST_SMTP_PORT": "2525"})
    assert settings.smtp.port == 2525


@pytest.mark.parametrize("value", ['"javascript:alert(1)"', '"https://x.example/a b"', '"https://x.example/\\"q"'])
def test_a_signup_url_that_is_not_a_plain_https_url_is_refused(tmp_path, value):
    err = load_error(tmp_path, BASE.replace("[web]\n", f"[web]\n").replace(
        'postal_address = "1 Main Street, Town, ST 00000"\n',
        f'postal_address = "1 Main Street, Town, ST 00000"\nsignup_url = {value}\n'))
    assert err.field == "newsroom.signup_url"


def test_no_signup_url_means_no_link(tmp_path):
    assert load_settings(write_config(tmp_path, BASE), environ={}).newsroom.signup_url is None


# --- [[smtp.relays]] -------------------------------------------------------------------------------


def relays_config(*entries: str, smtp: str = "") -> str:
    """BASE with an [smtp] table (``smtp``: its lines) and one [[smtp.relays]] table per entry."""
    tables = "".join(f"\n[[smtp.relays]]\n{entry}\n" for entry in entries)
    return BASE + f"\n[smtp]\n{smtp}\n" + tables


MX_A = 'name = "mx-a"\nhost = "10.0.0.5"\nport = 587\ntls = "starttls"\nweight = 3\nrate = 50\npool_size = 6\n' \
       'username_env = "MX_A_USER"\npassword_env = "MX_A_PASS"'
MX_B = 'host = "127.0.0.1"\nport = 2525'
MX_C = 'name = "mx-c"\nhost = "10.0.0.7"\nport = 25'


def test_each_relay_is_read_over_the_smtp_table_and_credentials_come_from_the_variables_it_names(tmp_path):
    text = relays_config(MX_A, MX_B, smtp='tls = "none"\npool_size = 2\ntimeout = 5')
    env = {"MX_A_USER": "mx-a-user", "MX_A_PASS": "mx-a-secret", "DIGEST_SMTP_USERNAME": "shared",
           "DIGEST_SMTP_PASSWORD": "shared-secret"}
    settings = load_settings(write_config(tmp_path, text), environ=env)
    a, b = settings.relays
    assert (a.name, a.host, a.port, a.tls, a.weight, a.rate, a.pool_size) == ("mx-a", "10.0.0.5", 587, "starttls", 3.0, 50.0, 6)
    assert (a.username, a.password, a.timeout) == ("mx-a-user", "mx-a-secret", 5.0)  # timeout from [smtp]
    # Left out, a relay takes [smtp]'s values, its name from host:port and [smtp]'s own variables.
    assert (b.relay_name, b.tls, b.pool_size, b.weight, b.username, b.password) == (
        "127.0.0.1:2525", "none", 2, 1.0, "shared", "shared-secret")
    assert a.where == "mx-a (10.0.0.5:587)" and b.where == "127.0.0.1:2525"
    assert settings.smtp == a and settings.smtp_relays() == (a, b)
    assert "mx-a-secret" not in repr(settings)


def test_a_plain_smtp_table_is_the_one_relay(tmp_path):
    settings = load_settings(write_config(tmp_path, BASE + '\n[smtp]\nhost = "relay.example.org"\n'), environ={})
    assert settings.relays == () and settings.smtp_relays() == (settings.smtp,)
    assert settings.smtp.relay_name == "relay.example.org:25"


@pytest.mark.parametrize("entries, smtp, env, field, said", [
    ((MX_A, MX_B, MX_C.replace("port = 25", "port = 0")), "", {}, "smtp.relays[2].port", "TCP port"),
    ((MX_A, MX_B, MX_C.replace("port = 25", "port = 70000")), "", {}, "smtp.relays[2].port", "TCP port"),
    ((MX_A, MX_B.replace("port = 2525", 'port = "2525"')), "", {}, "smtp.relays[1].port", "without quotes"),
    ((MX_A, MX_B + '\ntls = "ssl"'), "", {}, "smtp.relays[1].tls", "starttls, tls or none"),
    ((MX_A, MX_B + "\nweight = 0"), "", {}, "smtp.relays[1].weight", "greater than 0"),
    ((MX_A, MX_B + "\nweight = -2"), "", {}, "smtp.relays[1].weight", "greater than 0"),
    ((MX_A, MX_B + '\nweight = "heavy"'), "", {}, "smtp.relays[1].weight", "greater than 0"),
    ((MX_A, MX_B + "\npool_size = 0"), "", {}, "smtp.relays[1].pool_size", "positive whole number"),
    ((MX_A, MX_B + "\nrate = -1"), "", {}, "smtp.relays[1].rate", "at least 0"),
    ((MX_A, MX_C.replace('"mx-c"', '"mx-a"')), "", {}, "smtp.relays[1].name", "smtp.relays[0] too"),
    ((MX_B, MX_A, MX_B), "", {}, "smtp.relays[2].name", "host:port"),
    ((MX_A, 'name = "x"\nport = 25'), "", {}, "smtp.relays[1].host", "required"),
    ((MX_A, MX_B + "\nwieght = 2"), "", {}, "smtp.relays[1].wieght", "did you mean 'weight'"),
    ((MX_A, MX_B + '\npassword = "hunter2"'), "", {}, "smtp.relays[1].password", "password_env"),
    ((MX_A, MX_B + '\nusername_env = "B_USER"'), "", {}, "smtp.relays[1].username_env", "password_env"),
    ((MX_A, MX_B + '\nusername_env = "B USER"\npassword_env = "B_PASS"'), "", {}, "smtp.relays[1].username_env",
     "environment variable"),
    ((MX_A,), 'host = "relay.example.org"', {}, "smtp.host", "each relay names its own host"),
    ((MX_A,), "port = 587", {}, "smtp.port", "each relay names its own port"),
    ((MX_A,), "pool_size = 0", {}, "smtp.pool_size", "positive whole number"),  # a default of every relay: named as [smtp]'s
    ((MX_A,), "", {"DIGEST_SMTP_HOST": "relay.example.org"}, "DIGEST_SMTP_HOST", "[[smtp.relays]]"),
    ((MX_A,), "", {"DIGEST_SMTP_TLS": "none"}, "DIGEST_SMTP_TLS", "[[smtp.relays]]"),
], ids=["port-0", "port-70000", "quoted-port", "tls", "weight-0", "weight-negative", "weight-text", "pool-size",
        "rate", "duplicate-name", "duplicate-default-name", "no-host", "typo", "password", "one-variable",
        "bad-variable-name", "smtp-host", "smtp-port", "smtp-default", "env-host", "env-tls"])
def test_a_bad_relay_is_named_by_its_position_and_key(tmp_path, entries, smtp, env, field, said):
    err = load_error(tmp_path, relays_config(*entries, smtp=smtp), env)
    assert err.field == field, err
    assert said in str(err), err


def test_an_empty_relay_list_is_refused(tmp_path):
    err = load_error(tmp_path, BASE + "\n[smtp]\nrelays = []\n")
    assert err.field == "smtp.relays" and "[[smtp.relays]]" in str(err)
