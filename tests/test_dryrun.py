"""The dry run (issue 9, items 2, 3 and 7): it never deletes what it did not write, it predicts
the send when a story file cannot be read, and a bad path is one line, never a stack.

Render and check run in-process through ``digest.cli.main``; sends go to a real SMTP server on
127.0.0.1 (``ThreadedServer``); the path matrix runs the installed `digest` as a subprocess,
because a stack printed to the terminal is the symptom.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from conftest import DIGEST, isolate, run, subprocess_env
from smtp_faults import (
    AM_READERS,
    DATE,
    FaultHandler,
    ThreadedServer,
    fire_scheduled,
)

from digest import files
from digest.config import load_settings

DAY = DATE.isoformat()
MANIFEST = ".digest-dry-run.jsonl"
PM_READERS = 11
BROKEN = "zz-no-published.md"


@pytest.fixture
def env(monkeypatch):
    """The test key and no state URL: the state goes where the newsroom's digest.toml puts it."""
    return isolate(monkeypatch)


def emls(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.eml"))


def render(capsys, config: Path, edition: str, out: Path | None = None, date: str = DAY) -> tuple[int, str, str]:
    args = ["--config", str(config), "render", edition, "--date", date]
    return run(capsys, *args, *(["--out", str(out)] if out is not None else []))


# --- item 2: a dry run never deletes what it did not write -------------------------------------------


def test_render_into_a_folder_with_a_users_files_keeps_them_and_uses_a_folder_per_issue(capsys, newsroom, tmp_path):
    mydocs = tmp_path / "mydocs"
    mydocs.mkdir()
    (mydocs / "reader-complaint.eml").write_text("From: a reader\n\nkeep me\n", encoding="utf-8")
    (mydocs / "index.html").write_text("<p>my own index</p>", encoding="utf-8")
    code, out, err = render(capsys, newsroom, "pm", mydocs)
    assert code == 0, (out, err)
    assert (mydocs / "reader-complaint.eml").read_text(encoding="utf-8") == "From: a reader\n\nkeep me\n"
    assert (mydocs / "index.html").read_text(encoding="utf-8") == "<p>my own index</p>"
    issue = mydocs / "pm" / DAY
    assert len(emls(issue)) == PM_READERS and (issue / "index.html").is_file()
    assert str(issue) in out  # the summary says where the files went


def test_render_am_then_pm_into_the_same_out_keeps_both(capsys, newsroom, tmp_path):
    out_dir = tmp_path / "dry"
    assert render(capsys, newsroom, "pm", out_dir)[0] == 0
    assert render(capsys, newsroom, "am", out_dir)[0] == 0
    assert len(emls(out_dir / "pm" / DAY)) == PM_READERS
    assert len(emls(out_dir / "am" / DAY)) == len(AM_READERS)


def test_a_rerender_replaces_only_digests_own_files_of_that_issue(capsys, newsroom, tmp_path):
    out_dir = tmp_path / "dry"
    assert render(capsys, newsroom, "am", out_dir)[0] == 0
    issue = out_dir / "am" / DAY
    assert any("ana.lucero" in p.name for p in emls(issue))
    (issue / "editor-notes.txt").write_text("mine", encoding="utf-8")
    subscribers = newsroom.with_name("subscribers.csv")
    lines = subscribers.read_text(encoding="utf-8").splitlines(keepends=True)
    subscribers.write_text("".join(line for line in lines if not line.startswith("ana.lucero@")), encoding="utf-8")
    assert render(capsys, newsroom, "am", out_dir)[0] == 0
    names = [p.name for p in emls(issue)]
    assert len(names) == len(AM_READERS) - 1
    assert not any("ana.lucero" in name for name in names), "a removed reader still has an .eml"
    assert (issue / "editor-notes.txt").read_text(encoding="utf-8") == "mine"
    manifest = (issue / MANIFEST).read_text(encoding="utf-8").splitlines()
    assert sorted(json.loads(line) for line in manifest[1:]) == sorted([*names, "index.html"])
    assert not [p for p in issue.iterdir() if p.name.endswith(".tmp")]


def test_a_non_empty_issue_folder_digest_did_not_write_is_refused(capsys, newsroom, tmp_path):
    issue = tmp_path / "dry" / "am" / DAY
    issue.mkdir(parents=True)
    (issue / "notes.txt").write_text("mine", encoding="utf-8")
    code, out, err = render(capsys, newsroom, "am", tmp_path / "dry")
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and str(issue) in errors[0], err
    assert sorted(p.name for p in issue.iterdir()) == ["notes.txt"]


def test_an_empty_rerender_removes_only_digests_earlier_files(capsys, newsroom, tmp_path):
    out_dir = tmp_path / "dry"
    assert render(capsys, newsroom, "am", out_dir)[0] == 0
    issue = out_dir / "am" / DAY
    (issue / "mine.txt").write_text("mine", encoding="utf-8")
    # the same issue date with every story gone: an empty issue
    for story in newsroom.with_name("stories").glob("*.md"):
        story.unlink()
    code, out, _ = render(capsys, newsroom, "am", out_dir)
    assert code == 0 and "empty" in out
    assert sorted(p.name for p in issue.iterdir()) == ["mine.txt"]


def test_demo_writes_into_out_the_same_way_and_keeps_a_users_file(capsys, newsroom, env):
    env.delenv("DIGEST_SECRET_KEY")
    out_root = newsroom.with_name("out")
    (out_root / "am").mkdir(parents=True)
    (out_root / "am" / "README.txt").write_text("mine", encoding="utf-8")
    assert run(capsys, "--config", str(newsroom), "demo")[0] == 0
    assert run(capsys, "--config", str(newsroom), "demo")[0] == 0  # a second demo replaces its own files
    assert (out_root / "am" / "README.txt").read_text(encoding="utf-8") == "mine"
    assert len(emls(out_root / "am" / DAY)) == len(AM_READERS)
    assert (out_root / "am" / DAY / MANIFEST).is_file()


def test_demo_refuses_a_folder_it_did_not_write_before_sending_anything(capsys, newsroom, env):
    env.delenv("DIGEST_SECRET_KEY")
    issue = newsroom.with_name("out") / "pm" / DAY
    issue.mkdir(parents=True)
    (issue / "notes.txt").write_text("mine", encoding="utf-8")
    code, out, err = run(capsys, "--config", str(newsroom), "demo")
    assert code == 2 and str(issue) in err
    assert sorted(p.name for p in issue.iterdir()) == ["notes.txt"]
    assert not (newsroom.with_name("out") / "am" / DAY).exists()


# --- item 3: one rule for a story file that cannot be read ------------------------------------------


def break_a_story(config: Path) -> Path:
    """A story for 'am' without `published`: it cannot be read."""
    path = config.with_name("stories") / BROKEN
    path.write_text('---\nheadline: "No date"\neditions: [am]\n---\nA body.\n', encoding="utf-8")
    return path


def set_in_defaults(config: Path, line: str) -> None:
    """Replace the shipped sample's ``on_broken_story = "skip"`` line in [defaults]."""
    text = config.read_text(encoding="utf-8")
    old = next(row for row in text.splitlines() if row.startswith("on_broken_story = "))
    config.write_text(text.replace(old, line, 1), encoding="utf-8")


def test_check_reports_the_unreadable_story_as_an_error(capsys, newsroom):
    break_a_story(newsroom)
    code, out, _ = run(capsys, "--config", str(newsroom), "check", "am", "--date", DAY)
    assert code == 2
    assert any(line.startswith("error: ") and BROKEN in line and "left out" in line for line in out.splitlines()), out


def test_render_and_send_agree_by_default_story_left_out_with_a_warning(capsys, newsroom, tmp_path, events):
    break_a_story(newsroom)
    code, out, err = render(capsys, newsroom, "am", tmp_path / "dry")
    assert code == 0, err
    assert any(line.startswith("warning: ") and BROKEN in line for line in out.splitlines()), out
    rendered = emls(tmp_path / "dry" / "am" / DAY)
    assert len(rendered) == len(AM_READERS)
    logged = [line for line in events if "event=story.unreadable" in line and BROKEN in line]
    assert logged and "edition=am" in logged[0]

    with ThreadedServer(FaultHandler()) as relay:
        text = newsroom.read_text(encoding="utf-8").replace("port = 9\n", f"port = {relay.port}\n")
        newsroom.write_text(text, encoding="utf-8")
        events.clear()
        code, out, err = run(capsys, "--config", str(newsroom), "send", "am", "--date", DAY)
        received = list(relay.handler.received)
    assert code == 0, (out, err)
    assert any(line.startswith("warning: ") and BROKEN in line for line in out.splitlines()), out
    assert len(received) == len(AM_READERS)
    assert [line for line in events if "event=story.unreadable" in line and "level=error" in line]
    # the dry run predicted the send: the same bytes for a reader
    sent = {r.recipients[0]: r.data for r in received}
    for path in rendered:
        reader = path.name.split("-", 1)[1].removesuffix(".eml")
        assert sent[reader] == path.read_bytes()


def test_on_broken_story_fail_refuses_check_render_and_send(capsys, newsroom, tmp_path):
    break_a_story(newsroom)
    set_in_defaults(newsroom, 'on_broken_story = "fail"')
    code, out, _ = run(capsys, "--config", str(newsroom), "check", "am", "--date", DAY)
    assert code == 2 and "on_broken_story" in out
    code, out, err = render(capsys, newsroom, "am", tmp_path / "dry")
    assert code == 2 and BROKEN in err
    assert not (tmp_path / "dry" / "am").exists()
    with ThreadedServer(FaultHandler()) as relay:
        newsroom.write_text(newsroom.read_text(encoding="utf-8").replace("port = 9\n", f"port = {relay.port}\n"), encoding="utf-8")
        code, out, err = run(capsys, "--config", str(newsroom), "send", "am", "--date", DAY)
        received = list(relay.handler.received)
    assert code == 2 and BROKEN in err
    assert received == []


def test_a_test_copy_follows_the_same_rule(capsys, newsroom):
    """`send --to` leaves the unreadable story out with a warning, or with "fail" refuses, as the send does."""
    break_a_story(newsroom)
    with ThreadedServer(FaultHandler()) as relay:
        newsroom.write_text(newsroom.read_text(encoding="utf-8").replace("port = 9\n", f"port = {relay.port}\n"), encoding="utf-8")
        code, out, err = run(capsys, "--config", str(newsroom), "send", "am", "--date", DAY, "--to", "qa@example.com")
        assert code == 0, (out, err)
        assert any(line.startswith("warning: ") and BROKEN in line and "test copy" in line for line in out.splitlines()), out
        assert len(relay.handler.received) == 1
        set_in_defaults(newsroom, 'on_broken_story = "fail"')
        code, out, err = run(capsys, "--config", str(newsroom), "send", "am", "--date", DAY, "--to", "qa@example.com")
        assert code == 2 and BROKEN in err and "on_broken_story" in err
        assert len(relay.handler.received) == 1


def test_on_broken_story_is_per_edition(capsys, newsroom, tmp_path):
    break_a_story(newsroom)
    text = newsroom.read_text(encoding="utf-8")
    newsroom.write_text(text.replace('slug = "pm"', 'slug = "pm"\non_broken_story = "fail"', 1), encoding="utf-8")
    assert render(capsys, newsroom, "am", tmp_path / "dry")[0] == 0
    assert render(capsys, newsroom, "pm", tmp_path / "dry")[0] == 2


def test_on_broken_story_rejects_an_unknown_value(capsys, newsroom):
    set_in_defaults(newsroom, 'on_broken_story = "ignore"')
    code, _, err = run(capsys, "--config", str(newsroom), "check")
    assert code == 2 and "on_broken_story" in err


@pytest.mark.parametrize("rule", ["skip", "fail"])
def test_the_scheduler_applies_the_same_rule(newsroom, tmp_path, events, rule):
    break_a_story(newsroom)
    set_in_defaults(newsroom, f'on_broken_story = "{rule}"')
    received = fire_scheduled(newsroom, "am", "2026-12-01T11:00:05Z")  # 06:00:05 in New York: am is due
    unreadable = [line for line in events if "event=story.unreadable" in line]
    assert unreadable and all("level=error" in line and BROKEN in line for line in unreadable), events
    if rule == "skip":
        assert Counter(r.recipients[0] for r in received) == Counter(AM_READERS)
        assert any("event=issue.finished" in line for line in events)
    else:
        assert received == []
        failed = [line for line in events if "event=issue.failed" in line]
        assert failed and "level=error" in failed[0] and BROKEN in failed[0]


# --- item 7: a bad path is one line naming it --------------------------------------------------------


def digest(config: Path, *args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(DIGEST), "--config", str(config), *args], capture_output=True, text=True,
                          env=subprocess_env(**(env_extra or {})), cwd=config.parent, timeout=120)


def assert_one_line_naming(proc: subprocess.CompletedProcess, path: str, codes=(1, 2)) -> None:
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output, output
    assert proc.returncode in codes, (proc.returncode, output)
    errors = [line for line in proc.stderr.splitlines() if line.lower().startswith("error: ")]  # ours, or click's
    assert len(errors) == 1 and path in errors[0], proc.stderr


@pytest.fixture
def afile(tmp_path) -> Path:
    path = tmp_path / "afile"
    path.write_text("a regular file\n", encoding="utf-8")
    return path


def test_render_out_inside_a_regular_file_is_exit_2(newsroom, afile):
    proc = digest(newsroom, "render", "am", "--date", DAY, "--out", str(afile / "x"))
    assert_one_line_naming(proc, str(afile), codes=(2,))
    assert "not a folder" in proc.stderr or "Not a directory" in proc.stderr


def test_render_out_under_proc_is_one_line(newsroom):
    assert_one_line_naming(digest(newsroom, "render", "am", "--date", DAY, "--out", "/proc/nope"), "/proc/nope")


def test_status_export_into_a_bad_place_is_one_line(newsroom, afile):
    with ThreadedServer(FaultHandler()) as relay:
        newsroom.write_text(newsroom.read_text(encoding="utf-8").replace("port = 9\n", f"port = {relay.port}\n"), encoding="utf-8")
        assert digest(newsroom, "send", "am", "--date", DAY).returncode == 0
    for target in (afile / "out.csv", Path("/proc/nope/out.csv")):
        proc = digest(newsroom, "status", "am", "--date", DAY, "--export", str(target))
        assert_one_line_naming(proc, str(target.parent))


def test_bounces_path_that_cannot_be_read_is_one_line(newsroom, tmp_path):
    assert digest(newsroom, "render", "am", "--date", DAY).returncode == 0  # nothing sent: no state yet
    state = newsroom.with_name("state")
    state.mkdir()
    (state / "digest.sqlite3").write_bytes(b"")
    proc = digest(newsroom, "bounces", "/proc/self/mem")
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert proc.returncode in (1, 2)


@pytest.mark.parametrize("bad", ["file-as-folder", "folder-as-file", "proc"])
def test_config_that_cannot_be_read_is_one_line(newsroom, afile, tmp_path, bad):
    path = {"file-as-folder": afile / "digest.toml", "folder-as-file": tmp_path, "proc": Path("/proc/nope/digest.toml")}[bad]
    # --config on the command line wins over DIGEST_CONFIG: give only the variable
    proc = subprocess.run([str(DIGEST), "check"], capture_output=True, text=True, cwd=tmp_path, timeout=60,
                          env=subprocess_env(key=None, DIGEST_CONFIG=str(path)))
    assert_one_line_naming(proc, str(path), codes=(2,))


def point_paths(config: Path, **paths: str) -> None:
    text = config.read_text(encoding="utf-8")
    for key, value in paths.items():
        old = next(line for line in text.splitlines() if line.startswith(f"{key} = "))
        text = text.replace(old, f'{key} = "{value}"', 1)
    config.write_text(text, encoding="utf-8")


@pytest.mark.parametrize("key", ["subscribers", "state", "out"])
@pytest.mark.parametrize("command", [["check", "am"], ["render", "am"], ["send", "am"], ["editions"]])
def test_paths_pointing_at_bad_places_are_one_line(newsroom, afile, key, command):
    if command[0] == "send" and key == "out":
        pytest.skip("send does not write to [paths] out")
    point_paths(newsroom, **{key: str(afile / "x")})
    proc = digest(newsroom, *command, "--date", DAY) if command[0] != "editions" else digest(newsroom, *command)
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output, output
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert all(str(afile) in line for line in errors), proc.stderr
    assert len(errors) <= 1


def test_subscribers_export_to_a_read_only_folder_is_one_line(newsroom, tmp_path):
    """The subscribers.csv and its backup live in a read-only bind mount of their folder."""
    with ThreadedServer(FaultHandler()) as relay:
        newsroom.write_text(newsroom.read_text(encoding="utf-8").replace("port = 9\n", f"port = {relay.port}\n"), encoding="utf-8")
        assert digest(newsroom, "send", "am", "--date", DAY).returncode == 0
    settings = load_settings(newsroom, environ={})
    folder = tmp_path / "readers"
    folder.mkdir()
    shutil.move(str(newsroom.with_name("subscribers.csv")), folder / "subscribers.csv")
    point_paths(newsroom, subscribers=str(folder / "subscribers.csv"))
    suppress(settings.state_db, "ana.lucero@example.com")
    with read_only(folder):
        proc = digest(newsroom, "subscribers", "export")
    assert_one_line_naming(proc, str(folder), codes=(1,))
    assert "read-only" in proc.stderr


def suppress(state_db: Path, address: str) -> None:
    from digest.readers.addresses import address_key
    from digest.state.ledger import Ledger
    ledger = Ledger(state_db)
    try:
        ledger.suppress(address_key(address), "*", "unsubscribed", "test")
    finally:
        ledger.close()


class read_only:
    """A read-only bind mount of ``folder`` over itself (tests run as root, so chmod stops nothing)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __enter__(self):
        done = subprocess.run(["mount", "--bind", "-o", "ro", str(self.folder), str(self.folder)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot bind-mount read-only here: {done.stderr.decode().strip()}")
        subprocess.run(["mount", "-o", "remount,bind,ro", str(self.folder)], capture_output=True)
        return self

    def __exit__(self, *exc):
        subprocess.run(["umount", str(self.folder)], check=True)


@pytest.mark.parametrize("command", [["status", "am", "--date", DAY], ["bounces", "."], ["subscribers", "export"],
                                     ["send", "am", "--date", DAY]])
def test_a_state_database_on_a_read_only_mount_is_one_line(newsroom, tmp_path, command):
    """SQLite names neither file nor errno; the ledger's open names the database."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "locks").mkdir()
    from digest.state.ledger import Ledger
    Ledger(state / "digest.sqlite3").close()
    point_paths(newsroom, state=str(state))
    with read_only(state):
        proc = digest(newsroom, *command)
    assert_one_line_naming(proc, str(state), codes=(1,))


def test_render_into_a_read_only_folder_is_one_line(newsroom, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    with read_only(folder):
        proc = digest(newsroom, "render", "am", "--date", DAY, "--out", str(folder))
    assert_one_line_naming(proc, str(folder), codes=(1,))
    assert "read-only" in proc.stderr


def test_render_onto_a_full_disk_is_one_line(newsroom, tmp_path):
    """ENOSPC from a real (tiny) tmpfs when this machine lets root mount one."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        proc = digest(newsroom, "render", "am", "--date", DAY, "--out", str(folder))
        leftovers = [p.name for p in folder.rglob(".*.tmp")]
    finally:
        subprocess.run(["umount", str(folder)], check=True)
    assert_one_line_naming(proc, str(folder), codes=(1,))
    assert "No space left" in proc.stderr or "disk is full" in proc.stderr
    assert leftovers == []


def test_write_atomically_names_the_target_and_leaves_no_temp_file(tmp_path, monkeypatch):
    """The same translation for an ENOSPC injected at the write itself (no mount needed)."""
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "fdopen", lambda *a, **k: Full(real_fdopen(*a, **k)))
    target = tmp_path / "x.eml"
    with pytest.raises(OSError) as caught:
        files.write_atomically(target, b"data")
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []
