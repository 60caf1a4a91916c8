"""Commands that disagreed with README (issue 9, item 12): --config anywhere, demo's default date,
today's row in `schedule --list`, before -> after in `subscribers export`, a busy port for `serve`.

User-facing behaviour runs the real `digest` executable in a subprocess; the rest runs in-process.
"""

from __future__ import annotations

import datetime as dt
import re
import socket
import subprocess
from contextlib import closing
from pathlib import Path

import click
import pytest
from conftest import DIGEST, SECRET_KEY, copy_newsroom, isolate, subprocess_env

from digest.cli import cli, main


def environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    """For a `digest` subprocess: SECRET_KEY and a state database at tmp_path/state.db."""
    return subprocess_env(key=SECRET_KEY, state_db=tmp_path / "state.db", **extra)


def digest(tmp_path: Path, *args: str, timeout: float = 60, **extra_env: str) -> subprocess.CompletedProcess[str]:
    """Run the real `digest` from an empty folder (no digest.toml to fall back on)."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir(exist_ok=True)
    return subprocess.run([str(DIGEST), *args], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env=environment(tmp_path, **extra_env), stdin=subprocess.DEVNULL)


@pytest.fixture
def config(tmp_path) -> Path:
    return copy_newsroom(tmp_path / "newsroom")


# --- (c) --config after any subcommand ----------------------------------------------------------------


def _commands(group: click.Group, path: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))


def test_every_command_takes_config():
    for path, command in _commands(cli):
        options = {opt for param in command.params for opt in getattr(param, "opts", [])}
        assert "--config" in options, f"`digest {' '.join(path)}` has no --config"


ARGS = {("editions",): [], ("check",): [], ("render",): ["am"], ("send",): ["am"], ("status",): ["am"],
        ("demo",): [], ("schedule",): ["--list"], ("serve",): [], ("bounces",): ["."],
        ("subscribers",): ["export"], ("subscribers", "export"): ["--dry-run"]}


@pytest.mark.parametrize("path", sorted(ARGS), ids=" ".join)
def test_config_after_the_subcommand_is_the_one_read(capsys, tmp_path, monkeypatch, path):
    isolate(monkeypatch, key=None).chdir(tmp_path)
    missing = tmp_path / "not-here.toml"
    args = list(path) + ARGS[path]
    if path == ("subscribers",):  # the group's own option, before its subcommand
        args = ["subscribers", "--config", str(missing), "export"]
    else:
        args += ["--config", str(missing)]
    capsys.readouterr()
    code = main(args)
    _, err = capsys.readouterr()
    assert code == 2
    assert "config file not found" in err and str(missing) in err, err


def test_editions_with_config_after_the_subcommand(tmp_path, config):
    done = digest(tmp_path, "editions", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert "twin-cities" in done.stdout


def test_the_command_option_wins_over_the_group_option_and_the_environment(tmp_path, config):
    wrong = tmp_path / "wrong.toml"
    done = digest(tmp_path, "--config", str(wrong), "subscribers", "export", "--dry-run", "--config", str(config),
                  DIGEST_CONFIG=str(wrong))
    assert done.returncode == 0, done.stderr
    assert "state database" in done.stdout  # it read the right newsroom and found nothing to apply


def test_the_group_option_and_the_environment_still_work(tmp_path, config):
    assert digest(tmp_path, "--config", str(config), "editions").returncode == 0
    by_env = digest(tmp_path, "editions", DIGEST_CONFIG=str(config))
    assert by_env.returncode == 0 and "climate" in by_env.stdout


# --- (d) demo --help states the real default date ----------------------------------------------------


def test_demo_help_states_the_demo_date_from_the_config(tmp_path):
    dated = copy_newsroom(tmp_path / "dated", edit=lambda t: t.replace('date = "2026-12-01"', 'date = "2026-11-27"'))
    for args in (["--config", str(dated), "demo", "--help"], ["demo", "--config", str(dated), "--help"]):
        done = digest(tmp_path, *args)
        assert done.returncode == 0, done.stderr
        assert "2026-11-27" in " ".join(done.stdout.split()), done.stdout


def test_demo_help_says_today_when_the_config_sets_no_demo_date(tmp_path):
    undated = copy_newsroom(tmp_path / "undated", edit=lambda t: t.replace('[demo]\ndate = "2026-12-01"', "[demo]"))
    done = digest(tmp_path, "--config", str(undated), "demo", "--help")
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "no [demo] date" in text and "today" in text, text


# --- (b) subscribers export shows before -> after, edition lists included ----------------------------


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "real"])
def test_subscribers_export_shows_each_change_before_and_after(tmp_path, config, dry_run):
    from digest.state.ledger import Ledger

    with closing(Ledger(tmp_path / "state.db")) as ledger:
        ledger.suppress("ana.lucero@example.com", "am", "unsubscribed")
        ledger.suppress("jose.alvarez@example.net", "*", "bounced")
    done = digest(tmp_path, "--config", str(config), "subscribers", "export", *(["--dry-run"] if dry_run else []))
    assert done.returncode == 0, done.stderr
    text = " ".join(re.sub(r"[\u2500-\u257f]", " ", done.stdout).split())
    assert "ana.lucero@example.com active (am;pm) -> active (pm)" in text, done.stdout
    assert re.search(r"jose\.alvarez@example\.net active \([a-z;-]+\) -> bounced \([a-z;-]+\)", text), done.stdout


# --- (g) serve on a busy port ---------------------------------------------------------------------------


def test_serve_on_a_busy_port_says_so_in_one_line_and_exits_1(tmp_path, config):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = digest(tmp_path, "--config", str(config), "serve", "--port", str(port), timeout=30)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert lines == [f"error: 127.0.0.1:{port} is already in use; pick another --port"], lines


def test_serve_says_where_it_listens(tmp_path, config):
    """Found by a newcomer: `digest serve` never said which address it had bound."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    proc = subprocess.Popen([str(DIGEST), "serve", "--port", str(port), "--config", str(config)], cwd=cwd,
                            env=environment(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert f"listening on http://127.0.0.1:{port}/" in first and "Ctrl-C stops" in first, first


# --- (e) schedule --list: today's outcome on today's row ------------------------------------------------


def test_schedule_list_puts_todays_outcome_on_todays_row_and_not_on_the_next_send(tmp_path):
    """am is due at 00:00 (already past today), pm at 23:59 (still ahead, almost always): each edition's
    row for today's date carries today's state and no row for another day does."""
    from digest.compose.editions import send_time, today_in
    from digest.config import load_settings
    from digest.state.ledger import Ledger


    config = copy_newsroom(tmp_path / "newsroom")
    lines = config.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if line.startswith('send_at = "06:00"') and 'slug = "am"' in "\n".join(lines[max(0, i - 6):i]):
            lines[i] = 'send_at = "00:01"'
        if line.startswith('send_at = "17:00"'):
            lines[i] = 'send_at = "23:59"'
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    settings = load_settings(config)
    am, pm = settings.edition("am"), settings.edition("pm")
    now = dt.datetime.now(dt.timezone.utc)
    with closing(Ledger(tmp_path / "state.db")) as ledger:
        for edition in (am, pm):
            day = today_in(edition, now)
            ledger.create_issue(edition.slug, day, send_time(edition, day), ["x"],
                                audience=[("a@example.com", "A", "a@example.com")])
    result = digest(tmp_path, "schedule", "--list", "--count", "2", "--config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line for line in result.stdout.splitlines() if re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", line)]
    for edition, clock in ((am, "00:01"), (pm, "23:59")):
        today = today_in(edition, now).isoformat()
        mine = [row for row in rows if f"{today} {clock}" in row]
        assert len(mine) == 1 and "open: 1 pending" in mine[0], result.stdout
    stated = [row for row in rows if "open: 1 pending" in row]
    assert len(stated) == 2, result.stdout
    later = [row for row in rows if "upcoming" in row]
    assert later and all(today_in(am, now).isoformat() + " 00:01" not in row for row in later), result.stdout
