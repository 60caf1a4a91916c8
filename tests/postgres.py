"""Throwaway PostgreSQL clusters for tests: a real server from Debian's binaries (tests/postgres_setup.sh
installs them), each in a fresh temp folder, on a free loopback port, with its own socket folder.

    cluster = Cluster()                 # initdb + start; a few seconds at most
    url = cluster.create_database()     # postgresql://digest-pg@127.0.0.1:PORT/t..._1, empty
    cluster.restart(); cluster.kill(); cluster.start()
    cluster.destroy()                   # stop immediate, remove the folder; the port is free again

initdb and postgres refuse to run as root. When the tests run as root the servers run as the
system user ``digest-pg`` (created on first use: no home, no login shell) through ``runuser`` (or
``setpriv``), and the cluster's folder belongs to that user; otherwise they run as the current
user. The database superuser is ``digest-pg`` either way, with trust authentication on the
socket and on 127.0.0.1, so URLs carry no password.

A pytest that was killed cannot stop its clusters; the next ``Cluster()`` in any run finds those
whose owning process is gone (each folder names its owner) and removes them, so they neither
pile up nor hold ports. The conftest fixtures ``postgres_cluster``, ``postgres_url`` and
``own_postgres`` are built on this module.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import itertools
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

import psycopg

MINIMUM_VERSION = 14
SERVER_USER = "digest-pg"  # the OS user servers run as when the tests run as root
SUPERUSER = "digest-pg"    # the database superuser initdb creates, whoever runs the server
FOLDER_PREFIX = "digest-pg-cluster-"
START_LIMIT = 60.0
PORT_ATTEMPTS = 5
SETTINGS = {
    "listen_addresses": "127.0.0.1",
    # A test database holds nothing worth surviving a power cut: no fsync, no torn-page insurance.
    # Both only matter when the machine goes down; a killed server loses nothing by them.
    "fsync": "off",
    "full_page_writes": "off",
    # Not off: with it off a commit returns before its WAL is written, so kill() loses commits
    # the client saw succeed (77 of 3,000 in a measured run) and crash tests would test nothing.
    # With fsync off, "on" costs one write() per commit (about 20 us).
    "synchronous_commit": "on",
    "max_connections": "200",
    "shared_buffers": "32MB",
}
# What postgres logs when its port is taken between our probe and its bind: pick another one.
PORT_TAKEN = re.compile(r"could not bind|Address already in use|could not create any TCP/IP sockets")


class PostgresError(Exception):
    """A cluster could not be created, started, stopped or used."""


class PostgresMissing(PostgresError):
    """No PostgreSQL server binaries of a usable version are installed."""


def server_bin() -> Path:
    """The bin folder of the newest installed PostgreSQL server >= MINIMUM_VERSION (initdb and pg_ctl in it).

    Debian's /usr/lib/postgresql/<version>/bin first, newest version first; then initdb on PATH."""
    candidates = []
    for folder in Path("/usr/lib/postgresql").glob("*/bin"):
        version = folder.parent.name
        if version.isdigit() and int(version) >= MINIMUM_VERSION:
            candidates.append((int(version), folder))
    for _, folder in sorted(candidates, reverse=True):
        if _executable(folder / "initdb") and _executable(folder / "pg_ctl"):
            return folder
    on_path = shutil.which("initdb")
    if on_path and _executable(Path(on_path).parent / "pg_ctl"):
        folder = Path(on_path).resolve().parent
        if _major_version(folder) >= MINIMUM_VERSION:
            return folder
    raise PostgresMissing(
        f"no PostgreSQL {MINIMUM_VERSION}+ server (initdb and pg_ctl) in /usr/lib/postgresql/*/bin or on PATH: "
        "run `bash tests/postgres_setup.sh` (as root, or with sudo) to install Debian's postgresql; "
        "`make test` runs it before the tests")


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _major_version(folder: Path) -> int:
    out = subprocess.run([str(folder / "initdb"), "--version"], capture_output=True, text=True).stdout
    match = re.search(r"\)\s*(\d+)", out)
    return int(match.group(1)) if match else 0


# --- who runs the server ---------------------------------------------------------------------------------


def _running_as_root() -> bool:
    return os.geteuid() == 0


def server_account() -> pwd.struct_passwd:
    """The OS account servers run as: ``digest-pg`` (created when missing) under root, else the current user."""
    if not _running_as_root():
        return pwd.getpwuid(os.geteuid())
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(SERVER_USER)
    useradd = shutil.which("useradd") or _sbin("useradd")
    if useradd is None:
        raise PostgresError(f"the tests run as root, and initdb and postgres will not: create the user "
                            f"{SERVER_USER!r} to run them as (useradd, from Debian's passwd, is not installed)")
    # Several pytest-xdist workers get here at once; useradd itself fails rather than waits when
    # another one holds /etc/passwd, so ours take turns and then look again.
    with open(Path(tempfile.gettempdir()) / "digest-pg.useradd.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for attempt in range(10):
            with contextlib.suppress(KeyError):
                return pwd.getpwnam(SERVER_USER)
            done = subprocess.run(
                [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                 "--shell", "/usr/sbin/nologin", "--comment", "digest test PostgreSQL clusters", SERVER_USER],
                capture_output=True, text=True)
            if done.returncode == 0:
                return pwd.getpwnam(SERVER_USER)
            if done.returncode != 10:  # 10: /etc/passwd is locked by someone else; anything else is final
                break
            time.sleep(0.2 * (attempt + 1))
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(SERVER_USER)
    raise PostgresError(f"the tests run as root, and initdb and postgres will not: could not create the system "
                        f"user {SERVER_USER!r} to run them as: useradd: {done.stderr.strip() or done.returncode}")


def _as_server(argv: list[str]) -> list[str]:
    """``argv`` run as the server account: unchanged when not root, else through runuser or setpriv."""
    if not _running_as_root():
        return argv
    account = server_account()
    if runuser := shutil.which("runuser") or _sbin("runuser"):
        return [runuser, "-u", account.pw_name, "--", *argv]
    if setpriv := shutil.which("setpriv"):
        return [setpriv, f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--init-groups", "--", *argv]
    raise PostgresError("the tests run as root: runuser or setpriv (util-linux) is needed to run postgres as "
                        f"{account.pw_name!r}, and neither is installed")


def _sbin(name: str) -> str | None:
    path = Path("/usr/sbin") / name
    return str(path) if _executable(path) else None


def _server_env() -> dict[str, str]:
    # PG* variables from outside (PGDATA, PGPORT, PGHOST...) must not steer our servers or clients.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"  # English messages in the server log: PORT_TAKEN reads them
    return env


def _temp_root() -> Path:
    """Where cluster folders go: the temp folder, or /tmp when the server account could not reach it."""
    root = Path(tempfile.gettempdir()).resolve()
    if _running_as_root():
        for folder in (root, *root.parents):
            if not folder.stat().st_mode & stat.S_IXOTH:
                return Path("/tmp")
    return root


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- processes, read from /proc ---------------------------------------------------------------------------


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), or None when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def _alive(pid: int) -> bool:
    fields = _proc_stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")  # a zombie has exited; only its reaper is late


def _start_time(pid: int) -> str | None:
    fields = _proc_stat(pid)
    return fields[19] if fields else None  # field 22 of stat: when it started, which a reused pid does not share


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _proc_stat(int(entry.name))) and fields[1] == str(pid):
            found.append(int(entry.name))
    return found


def _wait_gone(pids: list[int], seconds: float) -> list[int]:
    """Wait up to ``seconds`` for ``pids`` to exit; the ones still alive."""
    deadline = time.monotonic() + seconds
    while (left := [pid for pid in pids if _alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.02)
    return left


# --- the cluster ------------------------------------------------------------------------------------------

_numbers = itertools.count(1)
_live: set[Cluster] = set()


class Cluster:
    """A throwaway PostgreSQL cluster: initdb in a fresh temp folder, started on a free port of 127.0.0.1.

    ``Cluster()`` returns it accepting connections (PostgresError, with the server log's tail, when it
    does not within START_LIMIT seconds). ``settings`` override SETTINGS (server parameters, as
    ``-c name=value``). It is also a context manager that destroys it on exit."""

    def __init__(self, settings: dict[str, str] | None = None, *, bin_dir: Path | None = None) -> None:
        self.settings = {**SETTINGS, **(settings or {})}
        self.bin = bin_dir or server_bin()
        self.account = server_account()
        reap_orphans()
        self.folder = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX, dir=_temp_root()))
        self.data = self.folder / "data"
        self.sockets = self.folder / "sockets"
        self.log = self.folder / "server.log"
        self.port = 0
        self.destroyed = False
        _live.add(self)
        try:
            # Who made it, so that reap_orphans() can tell once that process is gone.
            (self.folder / "owner").write_text(f"{os.getpid()} {_start_time(os.getpid())}\n")
            self.sockets.mkdir(mode=0o700)
            for path in (self.folder, self.sockets):
                os.chown(path, self.account.pw_uid, self.account.pw_gid)
            os.chmod(self.folder, 0o700)
            self._initdb()
            self._start(fixed_port=False)
        except BaseException:
            self.destroy()
            raise

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def __repr__(self) -> str:
        return f"<Cluster {self.folder} port={self.port}{' destroyed' if self.destroyed else ''}>"

    # -- addresses and databases

    def url(self, dbname: str = "postgres") -> str:
        """The URL of database ``dbname`` on this cluster, as its superuser over TCP (no password: trust)."""
        return f"postgresql://{quote(SUPERUSER, safe='')}@127.0.0.1:{self.port}/{quote(dbname, safe='')}"

    def connect(self, dbname: str = "postgres", **options) -> psycopg.Connection:
        """A new autocommit connection to ``dbname`` (psycopg options in ``options``)."""
        options.setdefault("autocommit", True)
        options.setdefault("connect_timeout", 10)
        return psycopg.connect(self.url(dbname), **options)

    def create_database(self) -> str:
        """A new, empty database with a name no other test uses; its URL."""
        name = f"t{os.getpid()}_{next(_numbers)}_{secrets.token_hex(3)}"
        with self.connect() as conn:
            # template0: nothing a test did to template1 (or a session on it) reaches a new database.
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)

    def drop_database(self, name_or_url: str) -> None:
        """Drop a database (by name, or the database of a URL), closing its sessions first."""
        name = urlsplit(name_or_url).path.lstrip("/") if "://" in name_or_url else name_or_url
        with self.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    # -- the server process

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs, else None."""
        try:
            first = (self.data / "postmaster.pid").read_text().split("\n", 1)[0]
        except OSError:
            return None
        return int(first) if first.strip().isdigit() and _alive(int(first)) else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def start(self) -> None:
        """Start the server again, on the same port and folder (after stop() or kill()); no-op while it runs."""
        if self.destroyed:
            raise PostgresError(f"{self!r} was destroyed")
        if not self.running:
            self._start(fixed_port=True)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (pg_ctl's ``smart``, ``fast`` or ``immediate``) and wait for it; no-op when it is down."""
        if not self.running:
            return
        done = self._pg_ctl("stop", "-m", mode, "-w", "-t", str(int(START_LIMIT)))
        if done.returncode != 0 and self.running:
            raise PostgresError(f"pg_ctl stop -m {mode} failed for {self.folder}: {done.stdout}{done.stderr}"
                                f"{self.log_tail()}")

    def restart(self) -> None:
        """stop() then start(): sessions are cut off, the data stays."""
        self.stop()
        self.start()

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crash would, and wait until it and its children are gone.

        start() afterwards runs crash recovery, as a real restart after a crash does."""
        pid = self.pid
        if pid is None:
            return
        children = _children(pid)
        os.kill(pid, signal.SIGKILL)
        if _wait_gone([pid], 10):
            raise PostgresError(f"postmaster {pid} of {self.folder} still runs after SIGKILL")
        # Backends notice their postmaster's death on their own, but one that lingers keeps the
        # shared memory attached and the next start refuses to run beside it.
        for child in _wait_gone(children, 5):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        _wait_gone(children, 5)
        # The dead postmaster stays a zombie until init reaps it (seconds here, never under an init
        # that does not reap), and postgres takes a zombie's pid in a lock file for a live server.
        # It and its backends are gone, so its lock files are stale: remove them as postgres would.
        if Path(f"/proc/{pid}").exists():
            for lock in (self.data / "postmaster.pid", self.sockets / f".s.PGSQL.{self.port}.lock"):
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()

    def destroy(self) -> None:
        """Stop the server immediately (killing it if that fails) and remove its folder. Idempotent."""
        if self.destroyed:
            return
        try:
            if self.running:
                try:
                    self.stop("immediate")
                except PostgresError:
                    self.kill()
        finally:
            self.destroyed = True
            _live.discard(self)
            shutil.rmtree(self.folder, ignore_errors=True)

    def log_tail(self, lines: int = 25, since: int = 0) -> str:
        """The server log's last ``lines`` lines (from byte ``since`` on), as a block for an error message."""
        try:
            with open(self.log, "rb") as log:
                log.seek(since)
                text = log.read().decode("utf-8", "replace")
        except OSError:
            return f"\n(no server log at {self.log})"
        return f"\nlast lines of {self.log}:\n" + "\n".join(text.splitlines()[-lines:])

    # -- how it is made

    def _run(self, argv: list[str], timeout: float = START_LIMIT + 10) -> subprocess.CompletedProcess[str]:
        # cwd: the server account may not be able to enter the directory pytest runs in.
        return subprocess.run(_as_server(argv), cwd=self.folder, env=_server_env(), capture_output=True,
                              text=True, timeout=timeout)

    def _pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-s", *args])

    def _initdb(self) -> None:
        done = self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
                          "--auth-local=trust", "--auth-host=trust", "-E", "UTF8", "--locale=C.UTF-8",
                          "--no-sync", "--no-instructions"])
        if done.returncode != 0:
            raise PostgresError(f"initdb failed in {self.folder} (exit {done.returncode}):\n"
                                f"{done.stdout}{done.stderr}".rstrip())

    def _options(self) -> str:
        settings = {**self.settings, "port": str(self.port), "unix_socket_directories": str(self.sockets)}
        # pg_ctl hands -o to /bin/sh: every value is quoted for it.
        return " ".join(f"-c {shlex.quote(f'{key}={value}')}" for key, value in settings.items())

    def _start(self, *, fixed_port: bool) -> None:
        deadline = time.monotonic() + START_LIMIT
        for _ in range(1 if fixed_port else PORT_ATTEMPTS):
            if not fixed_port:
                self.port = free_port()
            since = self.log.stat().st_size if self.log.exists() else 0
            left = max(1, int(deadline - time.monotonic()))
            # -w: pg_ctl returns once postmaster.pid says "ready", or as soon as the postmaster exits.
            done = self._pg_ctl("start", "-w", "-t", str(left), "-l", str(self.log), "-o", self._options())
            if done.returncode == 0:
                self._wait_accepting(deadline, since)
                return
            tail = self.log_tail(since=since)
            if fixed_port or not PORT_TAKEN.search(tail):
                break
        raise PostgresError(f"PostgreSQL did not start in {self.folder} on port {self.port} "
                            f"(pg_ctl exit {done.returncode}: {(done.stdout + done.stderr).strip()}){tail}")

    def _wait_accepting(self, deadline: float, since: int) -> None:
        """Connect over TCP until it works: "ready" in postmaster.pid is the socket's word, not the port's."""
        while True:
            try:
                with self.connect(connect_timeout=2):
                    return
            except psycopg.OperationalError as error:
                if time.monotonic() > deadline or not self.running:
                    raise PostgresError(f"PostgreSQL in {self.folder} does not accept connections on "
                                        f"127.0.0.1:{self.port} within {START_LIMIT:.0f} s: {error}"
                                        f"{self.log_tail(since=since)}") from None
                time.sleep(0.05)


def reap_orphans() -> list[Path]:
    """Remove the clusters a killed test process left behind (their owner is gone); the folders removed.

    A folder whose owner still runs (another pytest, another xdist worker) is left alone."""
    removed = []
    for folder in _temp_root().glob(FOLDER_PREFIX + "*"):
        try:
            pid, started = (folder / "owner").read_text().split()
        except (OSError, ValueError):
            continue  # not ours, or being made this instant
        if pid.isdigit() and _start_time(int(pid)) == started:
            continue
        with contextlib.suppress(OSError, ValueError):
            postmaster = int((folder / "data" / "postmaster.pid").read_text().split("\n", 1)[0])
            # The pid in a stale postmaster.pid may belong to anyone by now: only a postgres
            # started on this folder's data is ours to stop.
            command = Path(f"/proc/{postmaster}/cmdline").read_bytes().split(b"\0")
            if _alive(postmaster) and str(folder / "data").encode() in command:
                os.kill(postmaster, signal.SIGQUIT)  # postgres' immediate shutdown
                for left in _wait_gone([postmaster], 10):
                    os.kill(left, signal.SIGKILL)
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            removed.append(folder)
    return removed


@atexit.register
def _destroy_leftovers() -> None:
    # The fixtures' finalisers destroy their clusters; this catches a test that made its own and
    # failed before destroying it, or an interrupted session.
    for cluster in list(_live):
        with contextlib.suppress(Exception):
            cluster.destroy()
