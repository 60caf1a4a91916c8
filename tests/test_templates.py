"""The newsroom's templates/ folder: one loader for emails and web pages, `digest templates init|list`.

Emails are composed for real and web pages fetched over real HTTP (uvicorn on 127.0.0.1); the
commands run through ``cli.main`` on a copy of the sample newsroom.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import shutil
from pathlib import Path

import pytest

from digest.cli import main
from digest.compose.pipeline import compose
from digest.compose.planning import plan_issue
from digest.compose.render import BUILTIN_TEMPLATES
from digest.config import load_settings
from digest.errors import ConfigError, TemplateError
from digest.models import Settings
from digest.readers.subscribers import load_subscribers
from digest.state.ledger import Ledger
from digest.web import create_app
from test_web import LiveServer, token_for

ROOT = Path(__file__).resolve().parent.parent
TIPS_LINE = "Got a tip or a correction? Reply to this email"  # the sample's own footer line


def with_templates(settings: Settings, folder: Path | None) -> Settings:
    return dataclasses.replace(settings, paths=dataclasses.replace(settings.paths, templates=folder))


def email_html(settings: Settings, stories, slug: str = "am") -> str:
    """The HTML part of the first reader's copy of the sample day's issue, as it would be sent."""
    issue = plan_issue(settings, settings.edition(slug), settings.demo_date, stories.stories, fresh=True)
    composed = compose(settings, issue)
    reader = load_subscribers(settings.paths.subscribers, [e.slug for e in settings.editions]).audience(slug)[0]
    message = email.message_from_bytes(composed.message(composed.recipient(reader)), policy=email.policy.default)
    return message.get_body(("html",)).get_content()


@pytest.fixture
def newsroom(tmp_path: Path) -> Path:
    """A copy of the sample newsroom (its templates/ included); returns its digest.toml."""
    folder = tmp_path / "newsroom"
    folder.mkdir()
    for name in ("digest.toml", "subscribers.csv"):
        shutil.copy(ROOT / name, folder / name)
    for name in ("stories", "templates"):
        shutil.copytree(ROOT / name, folder / name)
    return folder / "digest.toml"


# --- one loader: an override reaches the emails and the web pages ---------------------------------------


def test_the_sample_newsroom_ships_its_own_footer_and_its_emails_use_it(sample_settings, sample_stories):
    assert (ROOT / "templates" / "partials" / "footer.html").is_file()
    assert sample_settings.paths.templates == ROOT / "templates"
    assert TIPS_LINE in email_html(sample_settings, sample_stories)
    assert TIPS_LINE not in email_html(with_templates(sample_settings, None), sample_stories)  # the built-in's


@pytest.fixture
def overrides(tmp_path: Path) -> Path:
    """A newsroom folder overriding one email partial and one web page, each with a marker line."""
    folder = tmp_path / "templates"
    (folder / "partials").mkdir(parents=True)
    (folder / "web").mkdir()
    footer = (BUILTIN_TEMPLATES / "partials" / "footer.html").read_text(encoding="utf-8")
    (folder / "partials" / "footer.html").write_text(footer.replace("</td>", "<p>Email footer of our own.</p>\n</td>"),
                                                     encoding="utf-8")
    page = (BUILTIN_TEMPLATES / "web" / "unsubscribe.html").read_text(encoding="utf-8")
    assert "{% endblock %}" in page
    (folder / "web" / "unsubscribe.html").write_text(
        page.replace("{% endblock %}", "<p>Web page of our own.</p>{% endblock %}", 1), encoding="utf-8")
    return folder


def test_an_email_picks_up_the_newsrooms_partial(sample_settings, sample_stories, overrides):
    html = email_html(with_templates(sample_settings, overrides), sample_stories, "denver")
    assert "Email footer of our own." in html
    assert TIPS_LINE not in html  # this folder, not the sample's, is searched first
    assert "You're receiving this" in html


def test_a_web_page_picks_up_the_newsrooms_page_over_http(sample_settings, overrides, tmp_path):
    settings = dataclasses.replace(with_templates(sample_settings, overrides), state_db=tmp_path / "digest.sqlite3")
    Ledger(settings.state_db).close()
    with LiveServer(create_app(settings)) as server:
        status, _headers, body = server.get(f"/u/{token_for(settings)}")
        missing_status, _h, missing = server.get("/i/nope")
    assert status == 200 and "Web page of our own." in body
    assert "Unsubscribe" in body  # the rest of the page is still the built-in's, around the new line
    assert missing_status == 404 and "Web page of our own." not in missing  # other pages: built-ins


def test_a_broken_web_override_stops_the_app_at_start_naming_the_file(sample_settings, tmp_path):
    folder = tmp_path / "templates" / "web"
    folder.mkdir(parents=True)
    (folder / "error.html").write_text("{% block body %}unclosed", encoding="utf-8")
    with pytest.raises(TemplateError) as caught:
        create_app(with_templates(sample_settings, folder.parent))
    assert caught.value.file is not None and caught.value.file.endswith("error.html")


# --- a configured folder must exist ------------------------------------------------------------------


def test_a_configured_templates_folder_that_does_not_exist_is_an_error_naming_key_and_path(newsroom, capsys):
    shutil.rmtree(newsroom.parent / "templates")
    with pytest.raises(ConfigError) as caught:
        load_settings(newsroom, environ={})
    assert caught.value.field == "paths.templates"
    assert str(newsroom.parent / "templates") in caught.value.message and "does not exist" in caught.value.message
    assert main(["--config", str(newsroom), "check"]) == 2
    assert "field 'paths.templates'" in capsys.readouterr().err


def test_a_templates_path_that_is_a_file_is_an_error(newsroom):
    shutil.rmtree(newsroom.parent / "templates")
    (newsroom.parent / "templates").write_text("not a folder", encoding="utf-8")
    with pytest.raises(ConfigError, match="is not a folder"):
        load_settings(newsroom, environ={})


def test_no_templates_key_means_the_built_ins_only(newsroom):
    text = newsroom.read_text(encoding="utf-8")
    newsroom.write_text("\n".join(l for l in text.splitlines() if not l.startswith("templates =")), encoding="utf-8")
    assert load_settings(newsroom, environ={}).paths.templates is None


# --- digest templates init ---------------------------------------------------------------------------


def test_init_copies_the_named_built_ins_byte_for_byte(newsroom, capsys):
    folder = newsroom.parent / "templates"
    assert main(["--config", str(newsroom), "templates", "init", "web/error.html", "partials/story.html"]) == 0
    for name in ("web/error.html", "partials/story.html"):
        assert (folder / name).read_bytes() == (BUILTIN_TEMPLATES / name).read_bytes()
        assert (folder / name).stat().st_mode & 0o777 == 0o644
    out = capsys.readouterr().out
    assert "copied web/error.html to templates/web/error.html" in out
    assert not list(folder.rglob("*.tmp"))


def test_init_never_overwrites_a_newsroom_file_and_exits_1(newsroom, capsys):
    footer = newsroom.parent / "templates" / "partials" / "footer.html"
    ours = footer.read_bytes()
    assert main(["--config", str(newsroom), "templates", "init", "partials/footer.html", "partials/note.html"]) == 1
    assert footer.read_bytes() == ours  # the sample's own footer is untouched
    assert (footer.parent / "note.html").read_bytes() == (BUILTIN_TEMPLATES / "partials" / "note.html").read_bytes()
    out = capsys.readouterr().out
    assert "templates/partials/footer.html already exists: left as it is" in out
    assert "copied partials/note.html" in out


def test_init_creates_a_configured_folder_that_is_missing(newsroom):
    shutil.rmtree(newsroom.parent / "templates")
    assert main(["--config", str(newsroom), "templates", "init", "partials/footer.html"]) == 0
    assert (newsroom.parent / "templates" / "partials" / "footer.html").is_file()
    assert load_settings(newsroom, environ={}).paths.templates == newsroom.parent / "templates"


@pytest.mark.parametrize("name", ["../digest.toml", "partials/../../x.html", "/etc/passwd",
                                  str(BUILTIN_TEMPLATES / "base.html")])
def test_init_refuses_a_name_with_dot_dot_or_an_absolute_path(newsroom, capsys, name):
    before = sorted(p for p in newsroom.parent.parent.rglob("*"))
    assert main(["--config", str(newsroom), "templates", "init", "partials/note.html", name]) == 2
    assert "is not a template name" in capsys.readouterr().err
    assert sorted(p for p in newsroom.parent.parent.rglob("*")) == before  # nothing copied, not even the good name


def test_init_refuses_a_name_that_is_not_built_in_and_lists_the_valid_ones(newsroom, capsys):
    assert main(["--config", str(newsroom), "templates", "init", "partials/fotter.html"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "'partials/fotter.html' is not a built-in template" in err
    assert "partials/footer.html" in err and "web/unsubscribe.html" in err


def test_init_without_a_name_copies_nothing_and_lists_the_names(newsroom, capsys):
    before = sorted((newsroom.parent / "templates").rglob("*"))
    assert main(["--config", str(newsroom), "templates", "init"]) == 2
    assert "name the templates to copy" in capsys.readouterr().err
    assert sorted((newsroom.parent / "templates").rglob("*")) == before


def test_init_does_not_write_through_a_link_out_of_the_folder(newsroom, tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    (newsroom.parent / "templates" / "web").symlink_to(outside)
    assert main(["--config", str(newsroom), "templates", "init", "web/base.html"]) == 2
    assert "leads out of the templates folder" in capsys.readouterr().err
    assert not list(outside.iterdir())


# --- digest templates list ---------------------------------------------------------------------------


def table_rows(out: str) -> dict[str, list[str]]:
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 3:
            rows[cells[0]] = cells[1:]
    return rows


def test_list_shows_the_newsroom_file_winning(newsroom, capsys):
    (newsroom.parent / "templates" / "denver").mkdir()
    (newsroom.parent / "templates" / "denver" / "edition.html").write_text('{% extends "city/edition.html" %}\n')
    assert main(["--config", str(newsroom), "templates", "list"]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert rows["partials/footer.html"] == ["newsroom, over the built-in", "templates/partials/footer.html"]
    assert rows["denver/edition.html"] == ["newsroom", "templates/denver/edition.html"]
    used, path = rows["partials/story.html"]
    assert used == "built-in" and path == str(BUILTIN_TEMPLATES / "partials" / "story.html")
    assert {"web/unsubscribe.html", "edition.txt", "topic/edition.html"} <= rows.keys()


def test_list_escapes_file_names(newsroom, capsys):
    (newsroom.parent / "templates" / "[bold]x\x1b[2J.html").write_text("x", encoding="utf-8")
    assert main(["--config", str(newsroom), "templates", "list"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "[bold]x" in out
