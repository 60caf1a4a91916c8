"""A state database path that cannot be one is named, never taken for "nothing sent yet" (a newcomer
found a traceback for a file that is not a database, and `status` saying "not sent yet" for a path
under a file: an operator told that might send the issue again)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import DIGEST, ROOT, SECRET_KEY, subprocess_env


def digest(tmp_path: Path, state_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The real `digest` on the sample config with this state URL (given as is: some are not paths)."""
    env = subprocess_env(key=SECRET_KEY, DIGEST_STATE_URL=state_url)
    return subprocess.run([str(DIGEST), "--config", str(ROOT / "digest.toml"), *args], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=60, stdin=subprocess.DEVNULL)


@pytest.fixture
def not_a_database(tmp_path: Path) -> Path:
    path = tmp_path / "afile.txt"
    path.write_text("these are my notes, not a database\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("args", [
    ("status", "am", "--date", "2026-12-01"),
    ("schedule", "--list"),
    ("subscribers", "export", "--dry-run"),
    ("bounces", "--dry-run", "."),
])
def test_a_file_that_is_not_a_database_is_one_line_naming_it(tmp_path, not_a_database, args):
    result = digest(tmp_path, f"sqlite:///{not_a_database}", *args)
    text = result.stdout + result.stderr
    assert "Traceback" not in text, text
    assert result.returncode in (1, 2), text
    assert str(not_a_database) in text and "not a state database" in text, text
    assert not_a_database.read_text(encoding="utf-8").startswith("these are my notes")


def test_check_names_a_state_path_under_a_file(tmp_path, not_a_database):
    result = digest(tmp_path, f"sqlite:///{not_a_database}/state.db", "check", "am", "--date", "2026-12-01")
    text = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in text, text
    assert f"{not_a_database} is a file, not a folder" in result.stderr


def test_status_does_not_say_not_sent_yet_for_a_folder(tmp_path):
    folder = tmp_path / "state.db"
    folder.mkdir()
    result = digest(tmp_path, f"sqlite:///{folder}", "status", "am", "--date", "2026-12-01")
    text = result.stdout + result.stderr
    assert result.returncode == 1 and "not sent yet" not in text and "is a folder" in text, text


def test_status_with_no_database_yet_names_the_path_it_looked_at(tmp_path):
    missing = tmp_path / "nothing-here.db"
    result = digest(tmp_path, f"sqlite:///{missing}", "status", "am", "--date", "2026-12-01")
    assert result.returncode == 1 and str(missing) in result.stdout + result.stderr
    assert not missing.exists()


def test_count_without_list_does_not_start_the_scheduler(tmp_path):
    result = digest(tmp_path, f"sqlite:///{tmp_path / 's.db'}", "schedule", "--count", "3")
    assert result.returncode == 2 and "--count goes with --list" in result.stderr
    assert not (tmp_path / "s.db").exists()
