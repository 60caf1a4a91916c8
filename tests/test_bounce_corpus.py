"""flufl.bounce's corpus of real bounces (from its sdist, `make corpora`) through digest's parser.

The expected addresses come from the library's own test table (``DETECTORS`` in its
tests/test_detectors.py, read with ``ast``, not imported): for each file, the addresses a
detector must find and whether they are temporary failures. digest must find at least 95% of
them, never an address that is not written in the message, class every permanent failure as
permanent (hard or policy) and every warning as soft.
"""

from __future__ import annotations

import ast
import importlib.metadata
from collections import Counter
from pathlib import Path

import pytest

from digest.readers.bounces import parse_dsn

ROOT = Path(__file__).resolve().parent.parent
SDIST = ROOT / ".venv" / "corpora" / f"flufl_bounce-{importlib.metadata.version('flufl.bounce')}" / "tests"
PERMANENT = ("hard", "policy")
NOT_A_FAILURE = ("other", "auto-reply")

if not (SDIST / "data").is_dir():
    pytest.skip(f"{SDIST} is missing: run `make corpora` (make test does)", allow_module_level=True)


def expectations() -> dict[str, tuple[str, frozenset[str], bool]]:
    """file -> (the detector family, the addresses it must yield lower-cased, temporary?)."""
    tree = ast.parse((SDIST / "test_detectors.py").read_text())
    table = next(ast.literal_eval(node.value) for node in tree.body
                 if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "DETECTORS")
    found: dict[str, tuple[str, frozenset[str], bool]] = {}
    for family, name, addresses, temporary in table:
        earlier = found.get(name)
        wanted = frozenset(a.decode().lower() for a in addresses) | (earlier[1] if earlier else frozenset())
        # groupwise_02.txt is listed twice: GroupWise finds nothing, Exchange finds the address.
        found[name] = (family if addresses or earlier is None else earlier[0], wanted, temporary)
    return found


EXPECTED = expectations()


def reports_of(name: str) -> dict[str, str]:
    """address (lower-cased) -> class, for the failure reports digest reads from one file."""
    data = (SDIST / "data" / name).read_bytes()
    return {r.recipient.lower(): r.category for r in parse_dsn(data, name)
            if r.recipient and r.category not in NOT_A_FAILURE}


def test_the_corpus_is_the_one_the_figures_are_about() -> None:
    assert len(EXPECTED) == 115
    assert sum(len(addresses) for _, addresses, _ in EXPECTED.values()) == 133


def test_at_least_95_percent_of_the_expected_addresses_are_found() -> None:
    found = {name: reports_of(name) for name in EXPECTED}
    hits = Counter()
    totals = Counter()
    for name, (family, addresses, _) in EXPECTED.items():
        totals[family] += len(addresses)
        hits[family] += len(addresses & found[name].keys())
    recall = sum(hits.values()) / sum(totals.values())
    missed = {f: f"{hits[f]}/{totals[f]}" for f in totals if hits[f] < totals[f]}
    assert recall >= 0.95, (recall, missed)
    # The three misses are addresses the library builds rather than reads (AOL's bare screen
    # name, Yale's rebuilt addresses): not written in the message, so never used.
    assert missed == {"aol": "0/1", "yale": "0/2"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_no_address_that_is_not_in_the_message(name: str) -> None:
    text = (SDIST / "data" / name).read_bytes().decode("latin-1").lower()
    invented = [a for a in reports_of(name) if a not in text]
    assert invented == []


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_permanent_failures_are_permanent_and_warnings_soft(name: str) -> None:
    _, addresses, temporary = EXPECTED[name]
    classes = reports_of(name)
    allowed = ("soft",) if temporary else PERMANENT
    wrong = {a: classes[a] for a in addresses & classes.keys() if classes[a] not in allowed}
    assert wrong == {}


def test_files_with_no_expected_address_suppress_nobody() -> None:
    quiet = [name for name, (_, addresses, _) in EXPECTED.items() if not addresses]
    assert quiet  # simple_42, simple_43, qmail_08, groupwise_03
    for name in quiet:
        assert [a for a, c in reports_of(name).items() if c == "hard"] == [], name


def test_every_file_in_the_corpus_parses_without_an_exception() -> None:
    for path in sorted((SDIST / "data").glob("*.txt")):
        assert parse_dsn(path.read_bytes(), path.name)
