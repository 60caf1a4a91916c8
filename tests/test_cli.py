"""The command line, run in-process through ``digest.cli.main`` (and once as a real subprocess)."""

from __future__ import annotations

import email
import email.policy
import subprocess
from pathlib import Path

import pytest
from conftest import DIGEST, SECRET_KEY, copy_newsroom, isolate, run, subprocess_env

from digest.cli import cli, main
SLUGS = ["am", "pm", "denver", "des-moines", "twin-cities", "tampa-bay", "charlotte", "climate"]
BAD_LINES = (10, 16, 21, 31)
AM_READERS = {
    "ana.lucero@example.com", "jose.alvarez@example.net", "marcus.bell@example.net", "lena.kowalczyk@example.com",
    "ellie.marsh@example.net", "chen.wei@example.org", "j.whitaker@example.com", "beatriz.souza@example.com",
    "leilani.kahale@example.org", "moses.adeyemi@example.net", "olu.bankole@example.com",
}
CHARLOTTE_READERS = {
    "harriet.pruitt@example.com", "priyanka.sethi@example.com", "j.whitaker@example.com",
    "ruben.arce@mail.example.org", "mei.tanaka@example.org",
}
READERS_PER_EDITION = {"am": 11, "pm": 11, "denver": 6, "des-moines": 6, "twin-cities": 7,
                       "tampa-bay": 7, "charlotte": 5, "climate": 11}


@pytest.fixture
def env(monkeypatch):
    """A clean environment with a signing key (SECRET_KEY) and no state URL: these tests check where
    the newsroom's own paths lead. Tests that need no key delete it."""
    return isolate(monkeypatch, key=SECRET_KEY)


@pytest.fixture
def newsroom(tmp_path, env) -> Path:
    """A copy of the sample newsroom in tmp_path; returns its digest.toml. The cwd is elsewhere."""
    config = copy_newsroom(tmp_path / "newsroom")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env.chdir(cwd)
    return config


@pytest.fixture
def clean_newsroom(newsroom) -> Path:
    """The sample newsroom without the deliberately bad subscriber rows (line 25 stays: a warning)."""
    path = newsroom.with_name("subscribers.csv")
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(line for n, line in enumerate(lines, start=1) if n not in BAD_LINES), encoding="utf-8")
    return newsroom


def emls(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.eml"))


def parse(path: Path):
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def recipient(path: Path) -> str:
    message = parse(path)
    (to,) = message.get_all("To")
    (address,) = to.addresses
    return address.addr_spec


# --- help ------------------------------------------------------------------------------------------


def test_the_group_has_help_listing_every_command(capsys, env):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert cli.help and cli.help.strip()
    assert " ".join(cli.help.split()) in " ".join(out.split())
    for name in cli.commands:
        assert name in out


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_has_help_with_a_description(capsys, env, name):
    command = cli.commands[name]
    assert command.help and command.help.strip(), f"`digest {name}` has no description"
    code, out, _ = run(capsys, name, "--help")
    assert code == 0
    assert f"Usage: digest {name}" in out
    assert " ".join(command.help.split()) in " ".join(out.split())  # the description, however wrapped
    code, short, _ = run(capsys, name, "-h")
    assert code == 0 and short == out


def test_the_stable_command_names_exist():
    assert {"editions", "check", "render", "demo"} <= set(cli.commands)


# --- editions --------------------------------------------------------------------------------------


def test_editions_lists_all_eight(capsys, newsroom):
    code, out, _ = run(capsys, "--config", str(newsroom), "editions")
    assert code == 0
    for slug in SLUGS:
        assert f" {slug} " in out
    for zone in ("America/New_York", "America/Denver", "America/Chicago", "America/Los_Angeles"):
        assert zone in out
    assert "Mon,Tue,Wed,Thu,Fri" in out


def test_config_comes_from_digest_config(capsys, newsroom, env):
    env.setenv("DIGEST_CONFIG", str(newsroom))
    code, out, _ = run(capsys, "editions")
    assert code == 0 and "twin-cities" in out


def test_missing_config_is_exit_2(capsys, env, tmp_path):
    env.chdir(tmp_path)
    code, _, err = run(capsys, "editions")
    assert code == 2
    assert "not found" in err


def test_broken_config_is_exit_2_naming_the_key(capsys, newsroom):
    newsroom.write_text(newsroom.read_text().replace('timezone = "America/Denver"', 'timezone = "Mars/Olympus"'))
    code, _, err = run(capsys, "--config", str(newsroom), "editions")
    assert code == 2
    assert "timezone" in err and "Mars/Olympus" in err


# --- check -----------------------------------------------------------------------------------------


def test_check_on_the_sample_reports_the_bad_rows_and_exits_2(capsys, newsroom):
    # The report must name file:line however long the path is (a CI checkout, a pytest tmp_path).
    code, out, _ = run(capsys, "--config", str(newsroom), "check", "am", "--date", "2026-12-01")
    for line in (*BAD_LINES, 25):
        assert f"subscribers.csv:{line}" in out
    assert "4 error(s)" in out
    assert code == 2


def test_check_on_a_clean_copy_exits_0(capsys, clean_newsroom):
    code, out, _ = run(capsys, "--config", str(clean_newsroom), "check", "--date", "2026-12-01")
    assert "0 error(s)" in out
    assert "warning(s)" in out and "0 warning(s)" not in out  # line 25's unknown edition stays a warning
    for slug in SLUGS:
        assert f" {slug} " in out
    assert code == 0


def test_check_without_secret_key_reports_it(capsys, clean_newsroom, env):
    env.delenv("DIGEST_SECRET_KEY")
    code, out, _ = run(capsys, "--config", str(clean_newsroom), "check", "am", "--date", "2026-12-01")
    assert "DIGEST_SECRET_KEY" in out
    assert "1 error(s)" in out
    assert code == 2


def test_check_reports_a_bad_story_by_file(capsys, clean_newsroom):
    stories = clean_newsroom.with_name("stories")
    (stories / "2026-12-01-bad.md").write_text("---\nheadline: x\npublished: 2026-12-01T05:00:00\n---\nBody.\n")
    code, out, _ = run(capsys, "--config", str(clean_newsroom), "check", "am", "--date", "2026-12-01")
    assert "1 error(s)" in out and "published" in out
    assert code == 2


def test_check_unknown_edition_is_exit_2(capsys, clean_newsroom):
    code, _, err = run(capsys, "--config", str(clean_newsroom), "check", "houston")
    assert code == 2
    assert "houston" in err


# --- render ----------------------------------------------------------------------------------------


def test_render_writes_one_parseable_eml_per_active_reader_and_an_index(capsys, newsroom, tmp_path):
    code, out, _ = run(capsys, "--config", str(newsroom), "render", "am", "--date", "2026-12-01", "--out", str(tmp_path / "dry-run"))
    assert code == 0
    assert "rendered" in out
    out_dir = tmp_path / "dry-run" / "am" / "2026-12-01"  # a folder per issue under --out
    files = emls(out_dir)
    assert len(files) == 11
    assert {recipient(f) for f in files} == AM_READERS
    for path in files:
        message = parse(path)
        assert not message.defects
        tos = message.get_all("To")
        assert tos is not None and len(tos) == 1 and len(tos[0].addresses) == 1
        assert tos[0].addresses[0].addr_spec in path.name  # the file is named after its reader
        for name in ("From", "Subject", "Date", "Message-ID"):
            assert len(message.get_all(name) or []) == 1, (path.name, name)
        assert message.get_all("Cc") is None and message.get_all("Bcc") is None
        assert message.get_content_type() == "multipart/alternative"
    index = (out_dir / "index.html").read_text(encoding="utf-8")
    for f in files:
        assert f'href="{f.name}"' in index
    for address in AM_READERS:
        assert address in index
    assert sorted(p.name for p in out_dir.iterdir()) == sorted([*(f.name for f in files), "index.html", ".digest-dry-run.jsonl"])


def test_render_without_secret_key_is_exit_2_naming_it(capsys, newsroom, env, tmp_path):
    env.delenv("DIGEST_SECRET_KEY")
    out_dir = tmp_path / "dry-run"
    code, out, err = run(capsys, "--config", str(newsroom), "render", "am", "--date", "2026-12-01", "--out", str(out_dir))
    assert code == 2
    assert "DIGEST_SECRET_KEY" in err
    assert not out_dir.exists()


def test_render_with_a_malformed_secret_key_is_exit_2(capsys, newsroom, env, tmp_path):
    env.setenv("DIGEST_SECRET_KEY", "k1:tinysecret")
    code, out, err = run(capsys, "--config", str(newsroom), "render", "am", "--date", "2026-12-01", "--out", str(tmp_path / "o"))
    assert code == 2
    assert "DIGEST_SECRET_KEY" in err
    assert "tinysecret" not in err


def test_render_unknown_edition_is_exit_2(capsys, newsroom, tmp_path):
    code, _, err = run(capsys, "--config", str(newsroom), "render", "houston", "--date", "2026-12-01", "--out", str(tmp_path / "o"))
    assert code == 2
    assert "houston" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("date", ["2026-13-01", "tomorrow", "01/12/2026", ""])
def test_render_bad_date_is_exit_2(capsys, newsroom, tmp_path, date):
    code, out, err = run(capsys, "--config", str(newsroom), "render", "am", "--date", date, "--out", str(tmp_path / "o"))
    assert code == 2
    assert "--date" in err
    assert not (tmp_path / "o").exists()


def test_render_a_date_with_no_stories_is_an_empty_outcome_exit_0(capsys, newsroom, tmp_path):
    out_dir = tmp_path / "dry-run"
    code, out, _ = run(capsys, "--config", str(newsroom), "render", "am", "--date", "2027-06-01", "--out", str(out_dir))
    assert code == 0
    assert "empty" in out
    assert not list(tmp_path.rglob("*.eml"))


def test_render_empty_issue_with_on_empty_fail_exits_1(capsys, newsroom, tmp_path):
    text = newsroom.read_text(encoding="utf-8")
    assert 'on_empty = "skip"' in text
    newsroom.write_text(text.replace('on_empty = "skip"', 'on_empty = "fail"'), encoding="utf-8")
    code, out, _ = run(capsys, "--config", str(newsroom), "render", "am", "--date", "2027-06-01", "--out", str(tmp_path / "o"))
    assert "empty" in out
    assert not list(tmp_path.rglob("*.eml"))
    assert code == 1


def test_rerender_into_the_same_out_keeps_other_issues_and_the_users_files(capsys, newsroom, tmp_path):
    out_dir = tmp_path / "dry-run"
    assert main(["--config", str(newsroom), "render", "am", "--date", "2026-12-01", "--out", str(out_dir)]) == 0
    am = out_dir / "am" / "2026-12-01"
    assert len(emls(am)) == 11
    (am / "editor-notes.txt").write_text("not ours", encoding="utf-8")
    assert main(["--config", str(newsroom), "render", "charlotte", "--date", "2026-12-01", "--out", str(out_dir)]) == 0
    assert main(["--config", str(newsroom), "render", "am", "--date", "2026-12-01", "--out", str(out_dir)]) == 0
    assert {recipient(f) for f in emls(out_dir / "charlotte" / "2026-12-01")} == CHARLOTTE_READERS
    assert {recipient(f) for f in emls(am)} == AM_READERS
    assert (am / "editor-notes.txt").read_text(encoding="utf-8") == "not ours"
    assert not [p for p in am.iterdir() if p.name.endswith(".tmp")]  # no temp files left behind


# --- demo ------------------------------------------------------------------------------------------


def test_demo_renders_every_edition_of_the_sample_day(capsys, newsroom, env):
    env.delenv("DIGEST_SECRET_KEY")  # the demo runs without configuration
    code, out, _ = run(capsys, "--config", str(newsroom), "demo")
    assert code == 0
    out_root = newsroom.parent / "out"
    assert sorted(p.name for p in out_root.iterdir()) == sorted(SLUGS)
    for slug, readers in READERS_PER_EDITION.items():
        folder = out_root / slug / "2026-12-01"
        assert len(emls(folder)) == readers, slug
        assert (folder / "index.html").is_file()
        assert f" {slug} " in out
    assert {recipient(f) for f in emls(out_root / "am" / "2026-12-01")} == AM_READERS
    assert not any(Path.cwd().iterdir())


# --- the installed console script ------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def console_script(tmp_path_factory):
    """Start the installed `digest` script when this module starts, so the process (about a second of
    interpreter start-up and imports) runs alongside the in-process tests; the last test checks it.
    No --out, and its working directory is not the config's folder."""
    if not DIGEST.exists():
        yield None
        return
    base = tmp_path_factory.mktemp("console-script")
    config = copy_newsroom(base / "newsroom")
    cwd = base / "cwd"
    cwd.mkdir()
    proc = subprocess.Popen(
        [str(DIGEST), "--config", str(config), "render", "charlotte", "--date", "2026-12-01"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env(key=SECRET_KEY), cwd=cwd,
    )
    yield proc, config, cwd
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def test_console_script_renders_to_paths_out_next_to_the_config(console_script):
    assert console_script is not None, f"the `digest` console script is not installed at {DIGEST}"
    proc, config, cwd = console_script
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    folder = config.parent / "out" / "charlotte" / "2026-12-01"
    assert {recipient(f) for f in emls(folder)} == CHARLOTTE_READERS
    assert (folder / "index.html").is_file()
    assert not any(cwd.iterdir())  # nothing written into the working directory
