"""subscribers.csv -> a checked audience: row-level findings with line numbers, nothing rewritten."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from digest.errors import SubscriberError
from digest.readers.seen import SeenAddresses
from digest.readers.subscribers import load_subscribers

SAMPLE = ROOT / "subscribers.csv"
EDITIONS = ("am", "pm", "denver", "des-moines", "twin-cities", "tampa-bay", "charlotte", "climate")
HEADER = "email,name,editions,status\n"


def write(tmp_path: Path, text: str, *, name: str = "subscribers.csv", newline: str = "\n", bom: bool = False) -> Path:
    path = tmp_path / name
    data = text.replace("\n", newline)
    path.write_bytes((("\ufeff" if bom else "") + data).encode("utf-8"))
    return path


def load(path: Path):
    return load_subscribers(path, EDITIONS)


def findings(items) -> list[tuple[int, str | None]]:
    return [(e.line, e.field) for e in items]


# --- the sample file -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample():
    return load(SAMPLE)


def test_sample_has_exactly_the_deliberate_findings(sample):
    assert findings(sample.errors) == [(10, "email"), (16, "email"), (21, "email"), (31, "status")]
    assert findings(sample.warnings) == [(25, "editions")]
    assert all(e.file == str(SAMPLE) for e in (*sample.errors, *sample.warnings))
    assert "houston" in sample.warnings[0].message
    assert "paused" in sample.errors[3].message
    assert "line 2" in sample.errors[2].message


def test_sample_keeps_every_other_row(sample):
    # 45 data rows, 4 left out; the warned row (line 25) is kept for its known edition.
    assert len(sample.subscribers) == 41
    beatriz = next(s for s in sample.subscribers if s.line == 25)
    assert beatriz.editions == frozenset({"am"})
    assert {s.line for s in sample.subscribers}.isdisjoint({10, 16, 21, 31})


def test_every_sample_edition_has_at_least_three_active_readers(sample):
    counts = {slug: len(sample.audience(slug)) for slug in EDITIONS}
    assert all(n >= 3 for n in counts.values()), counts
    assert counts["am"] == 11


def test_sample_rows_are_kept_as_written(sample):
    by_line = {s.line: s for s in sample.subscribers}
    assert by_line[2].email == "ana.lucero@example.com"
    assert by_line[2].fields == (("city", "Minneapolis"), ("joined", "2025-03-14"))
    assert by_line[5].name == "Nguy\u1ec5n Th\u1ecb Lan"
    assert by_line[6].name == "Pruitt, Harriet"
    assert by_line[7].status == "active"          # blank status
    assert by_line[12].name == ""                  # blank name is allowed
    assert by_line[15].status == "unsubscribed"
    assert by_line[29].status == "bounced"
    assert by_line[26].name == "Liam O\u2019Brien"


def test_sample_audience_excludes_unsubscribed_and_bounced(sample):
    assert "sofia.russo@example.org" not in [s.email for s in sample.audience("am")]       # unsubscribed
    assert "victor.mensah@example.com" not in [s.email for s in sample.audience("charlotte")]  # bounced
    assert "bjorn.eklund@example.org" not in [s.email for s in sample.audience("twin-cities")]
    assert "d.okonkwo@example.com" in [s.email for s in sample.audience("des-moines")]  # blank status = active


# --- file shape ------------------------------------------------------------------------------------


def test_bom_and_crlf_are_accepted_with_right_line_numbers(tmp_path):
    path = write(tmp_path, HEADER + "a@example.com,A,am,\nbad@,B,am,\nc@example.com,C,pm,\n", newline="\r\n", bom=True)
    result = load(path)
    assert [(s.email, s.line) for s in result.subscribers] == [("a@example.com", 2), ("c@example.com", 4)]
    assert findings(result.errors) == [(3, "email")]
    assert result.subscribers[0].name == "A"  # no stray \r anywhere
    assert result.subscribers[1].editions == frozenset({"pm"})


def test_bom_header_still_finds_the_email_column(tmp_path):
    path = write(tmp_path, "email,name\nsolo@example.com,Solo\n", bom=True)
    (only,) = load(path).subscribers
    assert only.email == "solo@example.com"
    assert only.editions == frozenset()


def test_quoted_newline_keeps_later_line_numbers_right(tmp_path):
    text = (
        "email,name,editions,status,notes\n"
        'a@example.com,A,am,,"first line\nsecond line\nthird line"\n'
        "b@example.com,B,am,,plain\n"
        "broken@@example.com,C,am,,plain\n"
    )
    result = load(write(tmp_path, text))
    assert [(s.email, s.line) for s in result.subscribers] == [("a@example.com", 2), ("b@example.com", 5)]
    assert result.subscribers[0].fields == (("notes", "first line\nsecond line\nthird line"),)
    assert findings(result.errors) == [(6, "email")]


def test_blank_lines_are_skipped_but_counted(tmp_path):
    result = load(write(tmp_path, HEADER + "\na@example.com,A,am,\n\n,,,\nb@@x,B,am,\n"))
    assert [(s.email, s.line) for s in result.subscribers] == [("a@example.com", 3)]
    assert findings(result.errors) == [(6, "email")]


def test_name_with_comma_and_non_ascii_names_are_kept_exactly(tmp_path):
    names = ["Pruitt, Harriet", "Nguy\u1ec5n Th\u1ecb Lan", "Bj\u00f6rn \u00c9klund", "\u674e\u534e", "Zo\u0065\u0308 Brandt"]
    rows = "".join(f'p{i}@example.com,"{name}",am,\n' for i, name in enumerate(names))
    result = load(write(tmp_path, HEADER + rows))
    assert [s.name for s in result.subscribers] == names  # including the decomposed e + combining diaeresis
    assert result.errors == [] and result.warnings == []


def test_other_columns_are_kept_as_fields_in_file_order(tmp_path):
    text = "zip,email,city,name,editions,joined,status\n55401,a@example.com,Minneapolis,A,am,2025-01-01,\n"
    (only,) = load(write(tmp_path, text)).subscribers
    assert only.fields == (("zip", "55401"), ("city", "Minneapolis"), ("joined", "2025-01-01"))
    assert only.name == "A" and only.status == "active"


def test_status_values(tmp_path):
    text = HEADER + "a@example.com,A,am,\nb@example.com,B,am,Active\nc@example.com,C,am,unsubscribed\nd@example.com,D,am,bounced\n"
    result = load(write(tmp_path, text))
    assert [s.status for s in result.subscribers] == ["active", "active", "unsubscribed", "bounced"]
    assert [s.email for s in result.audience("am")] == ["a@example.com", "b@example.com"]


def test_unknown_status_is_an_error_for_that_row(tmp_path):
    result = load(write(tmp_path, HEADER + "a@example.com,A,am,paused\nb@example.com,B,am,\n"))
    assert findings(result.errors) == [(2, "status")]
    assert [s.email for s in result.subscribers] == ["b@example.com"]


def test_audience_is_per_edition_in_file_order(tmp_path):
    text = HEADER + "a@example.com,A,am;pm,\nb@example.com,B,PM,\nc@example.com,C, am ; climate ,\n"
    result = load(write(tmp_path, text))
    assert [s.email for s in result.audience("am")] == ["a@example.com", "c@example.com"]
    assert [s.email for s in result.audience("pm")] == ["a@example.com", "b@example.com"]
    assert [s.email for s in result.audience("climate")] == ["c@example.com"]
    assert result.audience("denver") == []


def test_unknown_edition_is_a_warning_and_the_row_is_kept(tmp_path):
    result = load(write(tmp_path, HEADER + "a@example.com,A,am;houston,\nb@example.com,B,houston,\n"))
    assert [s.editions for s in result.subscribers] == [frozenset({"am"}), frozenset()]
    assert result.errors == []
    assert all(w.field == "editions" for w in result.warnings)
    assert {w.line for w in result.warnings} == {2, 3}


# --- duplicates and rewriting ----------------------------------------------------------------------


def test_duplicates_compare_case_insensitively_and_name_both_lines(tmp_path):
    text = HEADER + "Ana.Lucero@Example.com,Ana,am,\nother@example.com,O,am,\nana.lucero@example.COM,Ana again,pm,\n"
    result = load(write(tmp_path, text))
    (dup,) = result.errors
    assert (dup.line, dup.field) == (4, "email")
    assert "line 2" in dup.message
    assert [s.email for s in result.subscribers] == ["Ana.Lucero@Example.com", "other@example.com"]


def test_many_addresses_are_told_apart_in_little_memory():
    # In a process of its own: ru_maxrss is the process's peak, which an earlier test may have set.
    script = """
import resource
from digest.readers.seen import SeenAddresses
seen = SeenAddresses()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for line in range(2, 250_002):
    seen.add(f"reader{line}@example.com", line)
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
assert seen.line_of("reader2@example.com") == 2
assert seen.line_of("reader250001@example.com") == 250_001
assert seen.line_of("reader250002@example.com") is None
assert seen.line_of("reader1@example.com") is None
seen.add("reader2@example.com", 5)  # a later line never replaces the first
assert seen.line_of("reader2@example.com") == 2
print(round(grown))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    grown_mb = int(result.stdout)
    # Measured: 12 MB (a million: 48 MB); a dict of the addresses takes 37 MB (a million: about 120).
    assert grown_mb < 20, f"250,000 addresses took {grown_mb} MB"


def test_two_addresses_that_share_a_map_cell_stay_apart(monkeypatch):
    # A 64-bit collision is too rare to meet by chance; the fingerprint is pinned to force one.
    fingerprints = {"a@example.com": (6, 1), "b@example.com": (6, 2)}
    monkeypatch.setattr(SeenAddresses, "_fingerprint", staticmethod(lambda key: fingerprints[key]))
    seen = SeenAddresses()
    seen.add("a@example.com", 2)
    assert seen.line_of("b@example.com") is None
    seen.add("b@example.com", 3)
    assert (seen.line_of("a@example.com"), seen.line_of("b@example.com")) == (2, 3)


def test_nothing_is_rewritten(tmp_path):
    original = HEADER + "Mixed.Case@Example.COM,  Padded Name ,AM,ACTIVE\n"
    path = write(tmp_path, original)
    before = path.read_bytes()
    (only,) = load(path).subscribers
    assert only.email == "Mixed.Case@Example.COM"   # kept as written, not lower-cased
    assert path.read_bytes() == before              # the editors' file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["subscribers.csv"]


def test_spaces_around_an_address_are_a_warning_not_a_silent_fix(tmp_path):
    result = load(write(tmp_path, HEADER + " a@example.com ,A,am,\n"))
    assert [s.email for s in result.subscribers] == ["a@example.com"]
    assert findings(result.warnings) == [(2, "email")]


# --- bad rows --------------------------------------------------------------------------------------


@pytest.mark.parametrize("email", ["maria.ortiz@", "no-at-sign.example.com", "two@@example.com", "a b@example.com",
                                   "j\u00f6rg@example.com", "x@localhost"])
def test_invalid_addresses_are_row_errors(tmp_path, email):
    result = load(write(tmp_path, HEADER + f'"{email}",X,am,\nok@example.com,OK,am,\n'))
    assert findings(result.errors) == [(2, "email")]
    assert [s.email for s in result.subscribers] == ["ok@example.com"]


def test_empty_email_is_a_row_error(tmp_path):
    result = load(write(tmp_path, HEADER + ",Ruth,am,\n"))
    assert findings(result.errors) == [(2, "email")]


@pytest.mark.parametrize("name,next_line", [
    ("Ana\r\nBcc: x@evil.example", 4), ("Ana\nLucero", 4), ("Ana\rLucero", 4), ("Ana\x00Lucero", 3),
])
def test_a_name_with_a_line_break_or_nul_is_an_error_for_that_row(tmp_path, name, next_line):
    path = tmp_path / "subscribers.csv"
    path.write_bytes((HEADER + f'a@example.com,"{name}",am,\nb@example.com,B,am,\n').encode("utf-8"))
    result = load(path)
    assert findings(result.errors) == [(2, "name")]
    assert [(s.email, s.line) for s in result.subscribers] == [("b@example.com", next_line)]


def test_an_address_with_a_line_break_is_an_error(tmp_path):
    result = load(write(tmp_path, HEADER + '"a@example.com\r\nBcc: x@evil.example",A,am,\n'))
    assert findings(result.errors) == [(2, "email")]
    assert result.subscribers == []


def test_a_very_long_name_is_an_error(tmp_path):
    result = load(write(tmp_path, HEADER + f"a@example.com,{'N' * 500},am,\n"))
    assert findings(result.errors) == [(2, "name")]


def test_too_many_fields_is_reported(tmp_path):
    result = load(write(tmp_path, HEADER + "a@example.com,Pruitt, Harriet,am,active\nb@example.com,B,am,\n"))
    (err,) = result.errors
    assert err.line == 2
    assert "5" in err.message and "4" in err.message
    assert [s.email for s in result.subscribers] == ["b@example.com"]


def test_fewer_fields_than_the_header_is_fine(tmp_path):
    (only,) = load(write(tmp_path, HEADER + "a@example.com,A\n")).subscribers
    assert only.editions == frozenset() and only.status == "active"


# --- unusable files --------------------------------------------------------------------------------


def test_missing_email_column(tmp_path):
    with pytest.raises(SubscriberError) as info:
        load(write(tmp_path, "address,name\na@example.com,A\n"))
    assert info.value.line == 1
    assert "email" in info.value.message
    assert info.value.exit_code == 2


def test_empty_file(tmp_path):
    with pytest.raises(SubscriberError) as info:
        load(write(tmp_path, ""))
    assert info.value.file == str(tmp_path / "subscribers.csv")


def test_missing_file(tmp_path):
    with pytest.raises(SubscriberError) as info:
        load(tmp_path / "nope.csv")
    assert "not found" in info.value.message


def test_repeated_column(tmp_path):
    with pytest.raises(SubscriberError) as info:
        load(write(tmp_path, "email,name,email\na@example.com,A,b@example.com\n"))
    assert info.value.line == 1


def test_non_utf8_bytes_are_a_row_error_on_their_own_line(tmp_path):
    # A Latin-1 name on line 3 is that row's problem: the right line, and the other rows still load.
    path = tmp_path / "subscribers.csv"
    path.write_bytes(HEADER.encode() + b"a@example.com,A,am,\nb@example.com,Bj\xf6rn,am,\nc@example.com,C,am,\n")
    result = load(path)
    assert [e.line for e in result.errors] == [3]
    assert [s.email for s in result.subscribers] == ["a@example.com", "c@example.com"]


# --- size ------------------------------------------------------------------------------------------


def test_a_20000_row_file_loads(tmp_path):
    rows = [HEADER]
    for i in range(20_000):
        edition = EDITIONS[i % len(EDITIONS)]
        status = "unsubscribed" if i % 10 == 0 else ""
        rows.append(f"reader{i}@example.com,Reader {i},{edition},{status}\n")
    rows.append("READER7@example.com,Duplicate,am,\n")
    result = load(write(tmp_path, "".join(rows)))
    assert len(result.subscribers) == 20_000
    assert findings(result.errors) == [(20_002, "email")]
    assert "line 9" in result.errors[0].message
    assert result.subscribers[-1].line == 20_001
    assert sum(len(result.audience(e)) for e in EDITIONS) == 18_000


def test_a_file_that_fails_to_read_is_named(tmp_path):
    """/proc/self/mem opens but every read fails (EIO): the error names the file, not only 'Input/output error'."""
    with pytest.raises(OSError) as caught:
        load_subscribers(Path("/proc/self/mem"), {"am"})
    assert caught.value.filename == "/proc/self/mem"
