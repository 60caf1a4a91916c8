"""Terminal safety (issue 9, item 6): values from a user's file are shown escaped, one line per finding.

Run as real `digest` subprocesses with output captured, exactly the bytes an operator's terminal
would be sent.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from conftest import DIGEST, copy_newsroom, digest_env

ESC = "\x1b"
# Anything a terminal acts on: C0 controls but for the line feed that ends each line, DEL, C1,
# and the bidirectional overrides that reorder what follows them.
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")

ROWS = (
    "email,name,editions,status\n"
    "ok@example.com,Ok,am,active\n"
    f"evil{ESC}[2J@example.com,Eve,am,active\n"  # line 3: clears the screen when echoed raw
    '"a@example.com\nBcc: x@evil.example",A,am,\n'  # lines 4-5: a line feed inside a quoted address
    "b@example.com,B,[red]zz[/red];am,\n"  # line 6: rich markup in a value
    f"c@example.com,C,am,{ESC}]0;pwned\x07\u009b31m\u202epaused\n"  # line 7: title change, C1 CSI, bidi override
)


@pytest.fixture
def newsroom(tmp_path) -> Path:
    return copy_newsroom(tmp_path / "newsroom", subscribers=ROWS)


def digest(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DIGEST), "--config", str(config), *args], env=digest_env(config.parent / "state.db"),
                          capture_output=True, text=True, timeout=120, cwd=config.parent)


def test_check_shows_every_value_escaped_one_line_per_finding(newsroom):
    result = digest(newsroom, "check", "am")
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert not UNSAFE.findall(output), UNSAFE.findall(output)
    findings = {int(m[1]): m[0] for m in re.finditer(r"^(?:error|warning): subscribers\.csv:(\d+).*$", result.stdout, re.M)}
    assert set(findings) == {3, 4, 6, 7}, result.stdout
    assert "evil\\x1b[2J@example.com" in findings[3]
    assert "a@example.com\\nBcc: x@evil.example" in findings[4]  # one line, the line feed shown
    assert "'[red]zz[/red]'" in findings[6]  # markup printed as written, not interpreted
    assert "\\x1b]0;pwned\\x07\\x9b31m\\u202epaused" in findings[7]


def test_rich_markup_in_a_table_cell_is_printed_as_written(newsroom):
    # Edition names come from digest.toml, a user's file too; `digest editions` shows them in a table.
    text = newsroom.read_text(encoding="utf-8").replace('name = "Northline AM"', 'name = "[u]AM[/u]\\u001b[2J"', 1)
    assert text != newsroom.read_text(encoding="utf-8")
    newsroom.write_text(text, encoding="utf-8")
    result = digest(newsroom, "editions")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[u]AM[/u]\\x1b[2J" in result.stdout
    assert not UNSAFE.findall(result.stdout)


@pytest.mark.parametrize("raw, shown", [
    ("plain text, é and 漢字", "plain text, é and 漢字"),
    ("a\nb\rc\td\x00", "a\\nb\\rc\\td\\x00"),
    ("\x1b[2J\x7f\x85", "\\x1b[2J\\x7f\\x85"),
    ("\u202eabc\u2066\u200f", "\\u202eabc\\u2066\\u200f"),
    ("bad byte \udcff", "bad byte \\xff"),  # a non-UTF-8 byte read with surrogateescape
])
def test_visible(raw, shown):
    from digest.console import visible

    assert visible(raw) == shown


def test_a_bad_option_value_is_echoed_escaped(newsroom):
    result = digest(newsroom, "send", "am", "--to", f"x{ESC}[2J@example.com")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "x\\x1b[2J@example.com" in result.stderr
    assert not UNSAFE.findall(result.stdout + result.stderr)


def test_the_scheduler_log_escapes_values(caplog):
    import logging

    from digest.events import event

    with caplog.at_level(logging.INFO, logger="digest"):
        event("issue.failed", logging.ERROR, detail=f"subscribers.csv:3: 'evil{ESC}[2J\u202e'")
    line = caplog.records[-1].getMessage()
    assert "evil\\x1b[2J\\u202e" in line and not UNSAFE.findall(line)
