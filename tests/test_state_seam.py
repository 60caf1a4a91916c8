"""digest/state is the only code that speaks SQL or imports a database driver.

The next backend (PostgreSQL) plugs in behind ``Ledger``'s named methods; a statement or a driver
import anywhere else is a second seam it would have to find. String constants are read with
``ast`` (so prose in comments never counts) and matched against statement shapes, written in
upper case as every statement of ours is, so a docstring that says "select the stories from the
feed" is not taken for SQL.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from conftest import ROOT

PACKAGE = ROOT / "digest"
STATE = PACKAGE / "state"
DRIVERS = {"sqlite3", "sqlalchemy", "psycopg", "psycopg2", "asyncpg"}
STATEMENTS = re.compile(
    r"\bSELECT\s+(?:DISTINCT\s+)?[\w.*(),\s]+?\s+FROM\s+\w"     # SELECT cols FROM table
    r"|\bSELECT\s+\d+\b"                                          # SELECT 1 (an existence probe)
    r"|\bINSERT\s+(?:OR\s+[A-Z]+\s+)?INTO\s+\w"
    r"|\bUPDATE\s+\w+\s+SET\b"
    r"|\bDELETE\s+FROM\s+\w"
    r"|\b(?:CREATE|DROP|ALTER)\s+(?:UNIQUE\s+)?(?:TABLE|INDEX|VIEW|TRIGGER)\b"
    r"|\bPRAGMA\s+\w"
    r"|^\s*(?:BEGIN(?:\s+(?:IMMEDIATE|EXCLUSIVE|DEFERRED))?(?:\s+TRANSACTION)?|COMMIT|ROLLBACK|END)\s*;?\s*$"
)


def modules(root: Path = PACKAGE) -> list[Path]:
    return sorted(root.rglob("*.py"))


def outside_state() -> list[Path]:
    return [path for path in modules() if STATE not in path.parents]


def driver_imports(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of every import that names a database driver (``apscheduler.jobstores.sqlalchemy`` too,
    and ``LazyModule("psycopg")``)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) in
              ("LazyModule", "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            names = [node.args[0].value]  # a module loaded on first use (digest/lazy.py) is imported all the same
        else:
            continue
        found += [(node.lineno, name) for name in names if DRIVERS & set(name.split("."))]
    return found


def sql_strings(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, text) of every string constant shaped like an SQL statement (f-string pieces included)."""
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and STATEMENTS.search(node.value)]


def offences(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    where = path.relative_to(PACKAGE.parent)
    return ([f"{where}:{line}: imports {name}" for line, name in driver_imports(tree)]
            + [f"{where}:{line}: SQL {text.strip()[:60]!r}" for line, text in sql_strings(tree)])


def test_no_module_outside_state_imports_a_database_driver_or_holds_sql():
    found = [offence for path in outside_state() for offence in offences(path)]
    assert found == [], "only digest/state may speak SQL or import a driver:\n" + "\n".join(found)


def test_the_check_sees_the_ledgers_own_statements_and_driver():
    # Guard against a check that passes because it sees nothing.
    found = [offence for path in modules(STATE) for offence in offences(path)]
    assert any("imports sqlite3" in offence for offence in found)
    assert any("imports psycopg" in offence for offence in found)
    for statement in ("SELECT", "INSERT", "UPDATE", "DELETE", "PRAGMA", "BEGIN", "COMMIT"):
        assert any(statement in offence for offence in found), statement


@pytest.mark.parametrize("text", [
    "SELECT key, edition, reason FROM suppressions",
    "SELECT 1 FROM sqlite_master WHERE name = ?",
    "SELECT d.id, d.email FROM deliveries d JOIN issues i ON i.id = d.issue_id WHERE ",
    "INSERT OR IGNORE INTO left_out_rows (issue_id) VALUES (?)",
    "UPDATE deliveries SET state = ?",
    "DELETE FROM leases WHERE name = ?",
    "CREATE TABLE IF NOT EXISTS marks (name TEXT)",
    "BEGIN IMMEDIATE", "COMMIT", "ROLLBACK",
    "PRAGMA journal_mode=WAL",
])
def test_statements_are_recognised(text):
    assert STATEMENTS.search(text)


@pytest.mark.parametrize("text", [
    "Select the stories from the feed.",
    "select every reader from the file",
    "digest send --to: a test copy, not the issue's send",
    "Begin with the lead story; commit to nothing",
    "the ledger says UPDATE when a copy changes state",
    "delete the old files from the folder",
])
def test_prose_is_not_taken_for_sql(text):
    assert not STATEMENTS.search(text)
