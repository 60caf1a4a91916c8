"""An atomic write replaces the file a path names and nothing else (found by a newcomer: `--export
/dev/stdout` as root turned the device into a CSV file, a link into a plain file, a 640 file into 644)."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest
from conftest import DIGEST, ROOT, SECRET_KEY, subprocess_env

from digest.files import NotAFile, write_atomically


def test_a_symbolic_link_is_followed_and_kept(tmp_path):
    target = tmp_path / "target.csv"
    target.write_bytes(b"old")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    write_atomically(link, b"new")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.csv", "target.csv"]


def test_an_existing_files_mode_is_kept(tmp_path):
    path = tmp_path / "subscribers.csv"
    path.write_bytes(b"old")
    path.chmod(0o640)
    write_atomically(path, b"new")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and path.read_bytes() == b"new"


def test_a_new_file_gets_the_mode_open_would_give_it(tmp_path):
    umask = os.umask(0o022)
    try:
        write_atomically(tmp_path / "new.csv", b"x")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "new.csv").stat().st_mode) == 0o644


def test_a_pipe_is_refused_not_replaced(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(NotAFile) as caught:
        write_atomically(fifo, b"x")
    assert str(fifo) in str(caught.value)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo"]


def test_a_folder_is_named(tmp_path):
    with pytest.raises(IsADirectoryError) as caught:
        write_atomically(tmp_path, b"x")
    assert caught.value.filename == str(tmp_path)


def test_status_export_to_a_pipe_is_one_line_and_leaves_it_a_pipe(tmp_path):
    """The real command: a recorded issue, exported to a FIFO path."""
    from contextlib import closing

    import datetime as dt

    from digest.state.ledger import Ledger

    state = tmp_path / "state.db"
    with closing(Ledger(state)) as ledger:
        ledger.create_issue("am", dt.date(2026, 12, 1), dt.datetime(2026, 12, 1, 11, tzinfo=dt.timezone.utc), ["x"],
                            audience=[("a@example.com", "A", "a@example.com")])
    fifo = tmp_path / "out.csv"
    os.mkfifo(fifo)
    env = subprocess_env(key=SECRET_KEY, state_db=state)
    proc = subprocess.run([str(DIGEST), "--config", str(ROOT / "digest.toml"), "status", "am", "--date", "2026-12-01",
                           "--export", str(fifo)], capture_output=True, text=True, env=env, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and str(fifo) in proc.stderr and "not a regular file" in proc.stderr
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
