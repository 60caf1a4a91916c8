"""What the tests share: the sample newsroom and its paths, the signing keys, a clean DIGEST_*
environment (in-process and for `digest` subprocesses), the CLI runner, a time limit, event lines,
and real PostgreSQL servers (tests/postgres.py).

Fixtures are found by pytest; constants and plain helpers are imported by test files with
``from conftest import ...``, as they import ``smtp_faults``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from digest.cli import main
from digest.compose.pipeline import ComposedIssue, compose
from digest.compose.planning import plan_issue
from digest.config import load_settings, parse_signing_keys
from digest.models import Settings
from digest.readers.subscribers import SubscriberLoad, load_subscribers
from digest.sources.stories import StoryLoad, load_folder

ROOT = Path(__file__).resolve().parent.parent
# Beside the interpreter running the tests: the CLI of the same environment, whichever venv that is.
DIGEST = Path(sys.executable).parent / "digest"
TEST_KEY = "t1:test-signing-key-0123456789abcdef"  # the key the sample fixtures below sign with
SECRET_KEY = "k1:" + "s" * 32  # a second key, the one the older CLI and path tests run with


# --- the environment ----------------------------------------------------------------------------------


def digest_vars(key: str | None = TEST_KEY, state_db: Path | None = None) -> dict[str, str]:
    """The DIGEST_* variables a test sets: the signing key and, with ``state_db``, the state URL."""
    values = {} if key is None else {"DIGEST_SECRET_KEY": key}
    if state_db is not None:  # a Path, or a PostgreSQL URL as digest.state.ledger.state_path gives it
        values["DIGEST_STATE_URL"] = state_db if isinstance(state_db, str) else f"sqlite:///{state_db}"
    return values


def isolate(monkeypatch: pytest.MonkeyPatch, *, key: str | None = TEST_KEY,
            state_db: Path | None = None) -> pytest.MonkeyPatch:
    """Remove every DIGEST_* variable from outside, then set ``digest_vars(key, state_db)``; return ``monkeypatch``.

    Without ``state_db`` the state database is where the newsroom's digest.toml puts it."""
    for name in [n for n in os.environ if n.startswith("DIGEST_")]:
        monkeypatch.delenv(name)
    for name, value in digest_vars(key, state_db).items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def subprocess_env(*, key: str | None = TEST_KEY, state_db: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment for a `digest` subprocess: no DIGEST_* from outside, ``digest_vars``, then ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(digest_vars(key, state_db))
    env.update(extra)
    return env


def digest_env(state_db: Path, **extra: str) -> dict[str, str]:
    """``subprocess_env`` with the test key and this state database (by its resolved path)."""
    return subprocess_env(state_db=state_db if isinstance(state_db, str) else state_db.resolve(), **extra)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No DIGEST_* from outside; the test signing key; a state database at tmp_path/state.db."""
    return isolate(monkeypatch, state_db=tmp_path / "state.db")


# --- the sample newsroom on disk ----------------------------------------------------------------------


def copy_newsroom(folder: Path, *, edit: Callable[[str], str] | None = None, subscribers: str | None = None,
                  notes: bool = False) -> Path:
    """Copy the sample newsroom (digest.toml, subscribers.csv, stories/) into ``folder``; return its digest.toml.

    ``edit`` rewrites digest.toml's text, ``subscribers`` replaces subscribers.csv with that text,
    and ``notes`` copies notes/ too."""
    folder.mkdir(parents=True, exist_ok=True)
    text = (ROOT / "digest.toml").read_text(encoding="utf-8")
    (folder / "digest.toml").write_text(edit(text) if edit else text, encoding="utf-8")
    if subscribers is None:
        shutil.copy(ROOT / "subscribers.csv", folder / "subscribers.csv")
    else:
        (folder / "subscribers.csv").write_text(subscribers, encoding="utf-8")
    shutil.copytree(ROOT / "stories", folder / "stories")
    shutil.copytree(ROOT / "templates", folder / "templates")  # digest.toml names it: it must exist
    if notes:
        shutil.copytree(ROOT / "notes", folder / "notes")
    return folder / "digest.toml"


@pytest.fixture
def newsroom(tmp_path: Path, env: pytest.MonkeyPatch) -> Path:
    """The sample newsroom, notes included, in tmp_path/newsroom with SMTP on a closed port (tests that
    send point it at their server); run from tmp_path; returns its digest.toml. Several modules
    define their own ``newsroom``, which wins there."""
    from smtp_faults import write_newsroom  # smtp_faults imports this module: import it only when used

    config = write_newsroom(tmp_path / "newsroom", port=9)
    env.chdir(tmp_path)
    return config


@pytest.fixture
def tls(tmp_path: Path):
    """(server SSL context, CA file) for 127.0.0.1; the test is skipped when no CA can be made."""
    from smtp_faults import tls_material

    material = tls_material(tmp_path / "tls")
    if material is None:
        pytest.skip("neither trustme nor the openssl command is available to make a test CA")
    return material


# --- PostgreSQL: real servers, started only for the tests that ask ----------------------------------------

POSTGRES_FIXTURES = {"postgres_cluster", "postgres_url", "own_postgres"}


def _new_cluster():
    from postgres import Cluster, PostgresError  # psycopg and the server only for tests that use them

    try:
        return Cluster()
    except PostgresError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="session")
def postgres_cluster():
    """One throwaway PostgreSQL cluster per test process (each pytest-xdist worker has its own),
    started by the first test that needs it and destroyed when the session ends. Tests share it:
    one that stops or kills a server uses ``own_postgres`` instead."""
    cluster = _new_cluster()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def postgres_url(postgres_cluster) -> Iterator[str]:
    """The URL of a new, empty database on the session's cluster, dropped (sessions and all) after the test."""
    url = postgres_cluster.create_database()
    yield url
    if not postgres_cluster.running:
        postgres_cluster.start()  # the tests after this one still get their server
        pytest.fail("the shared PostgreSQL cluster was down after this test: a test that stops or kills "
                    "a server takes its own (the own_postgres fixture)", pytrace=False)
    postgres_cluster.drop_database(url)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def state_db(request, tmp_path: Path):
    """A test that takes this runs twice: on a SQLite file and on a fresh database of a real PostgreSQL."""
    from digest.state.ledger import state_path

    if request.param == "sqlite":
        return tmp_path / "state.db"
    return state_path(request.getfixturevalue("postgres_url"), tmp_path)


@pytest.fixture
def own_postgres():
    """A PostgreSQL cluster of the test's own, to restart, stop or kill; destroyed after the test."""
    cluster = _new_cluster()
    try:
        yield cluster
    finally:
        cluster.destroy()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # `-m postgres` selects every test that runs a server, not only the ones marked by hand.
    for item in items:
        if POSTGRES_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


# --- running the CLI in-process -----------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``digest.cli.main(args)`` in this process -> (exit code, stdout, stderr) of that call alone."""
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def flat(text: str) -> str:
    """``text`` with every run of whitespace one space (terminal output wraps where it likes)."""
    return " ".join(text.split())


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Raise TimeoutError in the main thread after ``seconds``, so a hang fails its test instead of stalling the run."""
    def expire(signum, frame):
        raise TimeoutError(f"the test did not finish within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def no_hang() -> Iterator[None]:
    """A test (an in-process command, a scheduler) that hangs fails after a minute."""
    with time_limit(60):
        yield


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def events() -> Iterator[list[str]]:
    """Every event line logged on 'digest' during the test (whether or not it propagates)."""
    logger = logging.getLogger("digest")
    handler, level = _Lines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(level)


# --- the sample newsroom, loaded and composed once per session ------------------------------------------


@pytest.fixture(scope="session")
def sample_settings() -> Settings:
    settings = load_settings(ROOT / "digest.toml", environ={})
    return dataclasses.replace(settings, signing_keys=parse_signing_keys(TEST_KEY))


@pytest.fixture(scope="session")
def sample_stories(sample_settings: Settings) -> StoryLoad:
    return load_folder(sample_settings.paths.stories)


@pytest.fixture(scope="session")
def sample_subscribers(sample_settings: Settings) -> SubscriberLoad:
    return load_subscribers(sample_settings.paths.subscribers, [e.slug for e in sample_settings.editions])


@pytest.fixture(scope="session")
def composed_sample(sample_settings: Settings, sample_stories: StoryLoad):
    """compose(slug) -> the sample day's issue of that edition (its note too), composed once per session."""
    cache: dict[str, ComposedIssue] = {}

    def get(slug: str) -> ComposedIssue:
        if slug not in cache:
            edition = sample_settings.edition(slug)
            issue = plan_issue(sample_settings, edition, sample_settings.demo_date, sample_stories.stories, fresh=True)
            cache[slug] = compose(sample_settings, issue)
        return cache[slug]

    return get
