"""`digest subscribers export`: suppressions folded back into the editors' file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from conftest import ROOT, copy_newsroom, isolate

from digest.cli import main
from digest.readers.writeback import export
from digest.state.ledger import Ledger

CSV = (
    "\ufeffemail,name,editions,status,city\r\n"
    "ana@example.com,Ana,am;pm,active,Denver\r\n"
    'bo@example.com,"Pruitt, Bo",am,,Tampa\r\n'
    "cy@example.com,Cy,am;denver,active,Denver\r\n"
    "dee@example.com,Dee,pm,active,\r\n"
    "broken@,Bad Row,am,active,\r\n"
    "Eve@Example.com,Eve,climate,active,Charlotte"
)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Ledger]:
    path = tmp_path / "subscribers.csv"
    path.write_bytes(CSV.encode("utf-8"))
    ledger = Ledger(tmp_path / "state" / "digest.sqlite3")
    ledger.suppress("bo@example.com", "*", "bounced", "550 5.1.1")
    ledger.suppress("cy@example.com", "denver", "unsubscribed")
    ledger.suppress("dee@example.com", "pm", "unsubscribed")
    ledger.suppress("eve@example.com", "*", "unsubscribed")
    ledger.suppress("stranger@example.net", "*", "bounced")  # not in the file: nothing to do
    return path, ledger


def test_export_applies_statuses_and_keeps_everything_else(files) -> None:
    path, ledger = files
    original = path.read_bytes()
    result = export(path, ledger, now=dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.timezone.utc))
    assert [(line, email) for line, email, _, _ in result.changes] == [
        (3, "bo@example.com"), (4, "cy@example.com"), (5, "dee@example.com"), (7, "Eve@Example.com")]
    text = path.read_bytes().decode("utf-8")
    assert text.startswith("\ufeffemail,name,editions,status,city\r\n")  # BOM and header kept
    lines = text.lstrip("\ufeff").split("\r\n")
    assert lines[1] == "ana@example.com,Ana,am;pm,active,Denver"  # untouched row, byte for byte
    assert lines[2] == '"Pruitt, Bo",am,bounced,Tampa'.join(["bo@example.com,", ""])
    assert lines[3] == "cy@example.com,Cy,am,active,Denver"  # left one edition only
    assert lines[4] == "dee@example.com,Dee,,unsubscribed,"  # left its only edition
    assert lines[5] == "broken@,Bad Row,am,active,"  # a bad row is never touched
    assert lines[6] == "Eve@Example.com,Eve,climate,unsubscribed,Charlotte"  # address kept as written
    assert not text.endswith("\r\n")  # the original had no final newline
    assert result.backup is not None and result.backup.read_bytes() == original
    assert result.backup.name == "subscribers.csv.20261202T090000Z.bak"


def test_a_second_export_changes_nothing(files) -> None:
    path, ledger = files
    export(path, ledger)
    after_first = path.read_bytes()
    result = export(path, ledger)
    assert result.changes == [] and result.backup is None
    assert path.read_bytes() == after_first


def test_dry_run_writes_nothing(files) -> None:
    path, ledger = files
    original = path.read_bytes()
    result = export(path, ledger, write=False)
    assert len(result.changes) == 4 and result.backup is None
    assert path.read_bytes() == original


def test_the_command(tmp_path: Path, monkeypatch, capsys, sample_settings) -> None:
    import shutil

    for name in ("digest.toml", "subscribers.csv"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "stories", tmp_path / "stories")
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    monkeypatch.setenv("DIGEST_STATE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    assert main(["--config", str(tmp_path / "digest.toml"), "subscribers", "export"]) == 0
    assert "no state database" in capsys.readouterr().out
    Ledger(tmp_path / "state.db").suppress("ana.lucero@example.com", "*", "unsubscribed")
    assert main(["--config", str(tmp_path / "digest.toml"), "subscribers", "export", "--dry-run"]) == 0
    assert "ana.lucero@example.com" in capsys.readouterr().out
    assert main(["--config", str(tmp_path / "digest.toml"), "subscribers", "export"]) == 0
    assert ",unsubscribed," in (tmp_path / "subscribers.csv").read_text(encoding="utf-8").split("\n")[1]
    assert list(tmp_path.glob("subscribers.csv.*.bak"))


def test_a_row_with_a_broken_quote_is_kept_as_it_is_and_the_rows_after_it_are_written_back(tmp_path) -> None:
    """Found by a newcomer: one stray quote made `subscribers export` end in a Python traceback."""
    text = ("email,name,editions,status\n"
            "ana@example.com,Ana,am,active\n"
            'broken@example.com,"Broken quote,am,active\n'
            "bo@example.com,Bo,am,active\n")
    path = tmp_path / "subscribers.csv"
    path.write_text(text, encoding="utf-8")
    ledger = Ledger(tmp_path / "state.db")
    ledger.suppress("bo@example.com", "*", "bounced", "550 5.1.1")
    result = export(path, ledger, now=dt.datetime(2026, 12, 2, tzinfo=dt.timezone.utc))
    ledger.close()
    assert [(line, email) for line, email, _, _ in result.changes] == [(4, "bo@example.com")]
    assert path.read_text(encoding="utf-8") == text.replace("bo@example.com,Bo,am,active", "bo@example.com,Bo,am,bounced")


def test_the_command_with_a_broken_row_is_a_table_not_a_traceback(tmp_path, monkeypatch, capsys, sample_settings) -> None:
    config = copy_newsroom(tmp_path / "newsroom", subscribers='email,name,editions,status\nx@example.com,"Open,am,active\n'
                                                              "bo@example.com,Bo,am,active\n")
    state = tmp_path / "state.db"
    ledger = Ledger(state)
    ledger.suppress("bo@example.com", "*", "bounced")
    ledger.close()
    isolate(monkeypatch, key=None, state_db=state)
    code = main(["--config", str(config), "subscribers", "export", "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0 and "bo@example.com" in out and "-> bounced" in out
