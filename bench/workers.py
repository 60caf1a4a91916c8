"""`digest send --workers N` as whole processes, beside Postfix's smtp-source, into one smtp-sink.

    .venv/bin/python bench/workers.py                                   # 10,000 readers; 1, 2, 4 workers; SQLite and PostgreSQL
    .venv/bin/python bench/workers.py --readers 2000 --workers 1,2 --backends sqlite
    .venv/bin/python bench/workers.py --readers 10000,100000 --workers 2 --dkim --rounds 3

Every measured run starts from nothing: a newly generated newsroom (tests/smtp_faults.py
``write_newsroom``: the sample stories, N readers of the 'am' edition, pool_size 8, batches of
500) and a fresh state database (a new SQLite file, or a new database on one throwaway PostgreSQL
cluster from tests/postgres.py). Then ``digest --config X send am --date 2026-12-01 --workers W``
runs as a subprocess and is timed from its spawn to its exit: start-up, compose, freezing the
audience, every claim and commit, the helpers' start-up and the wait for them are all inside.
Afterwards the run must have exited 0, the state database must show all N copies 'sent', and the
sink must have counted N more messages; a run that fails any of these stops the benchmark.

For each readers count (and DKIM setting) smtp-source, Postfix's C test client, sends the same
number of copies of one of digest's own messages (rendered by ``digest render`` for one reader,
so the same size, DKIM signature included when on), in 20 parallel sessions that reuse their
connections (``-s 20 -d``), timed the same way: the practical ceiling of this machine and sink.

Columns of the table:

  backend      state database: sqlite (inside the digest processes) or postgresql (its own server)
  W            --workers: local sender processes (the send plus W-1 `digest worker --issue` helpers)
  DKIM         whether every copy is DKIM-signed (rsa-sha256, 2048-bit key)
  seconds      wall time of the whole `digest send` process, spawn to exit
  to 1st       seconds from the spawn until the sink counted the first message: start-up,
               compose and freezing the audience, before anything is sent
  send s       seconds from the sink's first to its last message of the run
  after        seconds from the sink's last message to the send's exit: waiting for helpers'
               last copies, closing connections and the issue, printing the summary
  msg/s        copies / seconds (whole process)
  vs src       msg/s as a share of smtp-source's msg/s for the same copies and message
  send/s       the rate while sending: copies after the first / seconds from the first to the last
               (start-up, compose, the audience freeze and the helpers' start are outside it: the
               in-process figure, as a long-running worker sees it)
  vs src       send/s as a share of smtp-source's msg/s
  vs W=1       msg/s against the W=1 row of the same backend, readers, DKIM and round
  digest CPU   user + system seconds of the send and all its helpers (the send's rusage from
               wait4, which includes every child it waited for: its helpers; checked below)
  sink CPU     smtp-sink's user + system seconds during the run (/proc/<pid>/stat)
  db CPU       PostgreSQL's user + system seconds during the run (the postmaster, its backends,
               exited ones included, and its background processes); '-' for SQLite, whose work
               is inside 'digest CPU'
  other        the rest of the machine's busy CPU seconds during the run (/proc/stat, all cores, less
               the three columns before): the kernel's loopback networking not charged to a
               process, this script's sampling, and anything else running. Large values mean
               the run shared the cores with something else and its figures are disturbed
  steal        CPU seconds the hypervisor gave to other guests while this virtual machine wanted
               them (/proc/stat); above a second or so, the row's times are inflated
  ms/copy      digest CPU / copies, in milliseconds
  peak MB      the largest ru_maxrss among the digest processes (wait4 of the send folds in its
               helpers' peaks); each send is spawned by a small launcher so that this
               script's own memory does not leak into the figure

After the table: smtp-source's figures, the checks each run passed, and a paper estimate of
readers per hour per core (3600 / digest CPU seconds per copy): what one core could send if the
CPU per copy were the only limit. It is an estimate, not a measurement: the sink, the database
and the relay's speed are not in it.

The sink and the cluster are stopped, and the temporary files removed, on any exit (errors,
Ctrl-C and SIGTERM included).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from send import find_tool as find_installed  # bench/send.py: the same sink, the same tools
from send import free_port, stop_process, wait_for_greeting

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
EDITION = "am"
DATE = "2026-12-01"  # the issue date of the sample stories (tests/smtp_faults.py DATE)
SECRET_KEY = "k1:abcdefabcdefabcdefabcdefabcdefab"
SESSIONS = 20  # smtp-source's parallel sessions
POOL_SIZE = 8  # SMTP connections per digest process
BATCH = 500  # copies per claim
RUN_LIMIT = 1800.0  # seconds any one process may run before it is killed
SAMPLE_EVERY = 0.05  # seconds between looks at the send's process tree
CLOCK_TICK = os.sysconf("SC_CLK_TCK")

# Runs a command in a process of its own and reports the command's wait4 rusage: spawned from this
# small interpreter rather than from the benchmark, the command's ru_maxrss cannot include the
# benchmark's memory (the kernel seeds a new program's peak with its spawner's resident size).
LAUNCHER = r"""
import json, os, resource, subprocess, sys, time
report = sys.argv[1]
start = time.monotonic()
child = subprocess.Popen(sys.argv[2:], start_new_session=True, stdin=subprocess.DEVNULL,
                         stdout=open(report + ".out", "wb"), stderr=open(report + ".err", "wb"))
print(child.pid, start, flush=True)
_, status, usage = os.wait4(child.pid, 0)
end = time.monotonic()
with open(report, "w") as out:
    json.dump({"code": os.waitstatus_to_exitcode(status), "start": start, "end": end,
               "utime": usage.ru_utime, "stime": usage.ru_stime, "maxrss_kb": usage.ru_maxrss}, out)
"""


# --- small helpers ------------------------------------------------------------------------------

def find_tool(name: str) -> str:
    """The path of a Postfix test program; SystemExit when it is not installed."""
    found = find_installed(name)
    if found is None:
        raise SystemExit(f"{name} not found: install Postfix's test programs (sh bench/setup-postfix.sh)")
    return found


def proc_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first); None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def cpu_seconds(pid: int, reaped_children: bool = False) -> float:
    """utime + stime of a process (plus cutime + cstime, its reaped children's, when asked); 0 when it is gone."""
    fields = proc_fields(pid)
    if fields is None:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # stat fields 14 and 15
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])  # fields 16 and 17
    return ticks / CLOCK_TICK


def children(pid: int) -> list[int]:
    """The live children of a process, started by any of its threads."""
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        with contextlib.suppress(OSError):
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


def machine_cpu() -> tuple[float, float]:
    """Busy and stolen CPU seconds of the whole machine so far, all cores (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq) / CLOCK_TICK, steal / CLOCK_TICK


def cleaned_env(**values: str) -> dict[str, str]:
    """This process's environment without any DIGEST_* from outside, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(values)
    return env


# --- the sink -----------------------------------------------------------------------------------

class Sink:
    """Postfix's smtp-sink on 127.0.0.1, with its message counter read as it goes.

    ``-c`` makes smtp-sink write ``sess=.. quit=.. mesg=N`` after each message; a thread reads
    those lines and keeps the count and the monotonic time each count was reached at (only the
    times of interest are kept: see ``watch``)."""

    def __init__(self) -> None:
        self.port = free_port()
        command = [find_tool("smtp-sink")]
        if os.geteuid() == 0:
            command += ["-u", "nobody"]  # smtp-sink refuses to run as root without it
        command += ["-c", f"127.0.0.1:{self.port}", "1000"]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.count = 0
        self.first_at: float | None = None  # when the count first passed the watched mark
        self.last_at: float | None = None   # when it reached the watched target
        self._mark, self._target = 0, 0
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._wait_ready()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        pattern = re.compile(rb"mesg=(\d+)")
        tail = b""
        while chunk := os.read(self.proc.stdout.fileno(), 65536):
            now = time.monotonic()
            found = pattern.findall(tail + chunk)
            tail = chunk[-32:]
            if not found:
                continue
            with self._lock:
                self.count = max(self.count, int(found[-1]))
                if self.first_at is None and self.count > self._mark:
                    self.first_at = now
                if self.last_at is None and self._target and self.count >= self._target:
                    self.last_at = now

    def _wait_ready(self) -> None:
        try:
            wait_for_greeting(self.proc, self.port, "smtp-sink")
        except RuntimeError as exc:
            raise SystemExit(str(exc)) from None

    def watch(self, expected: int) -> int:
        """Start timing the next ``expected`` messages; the count so far."""
        with self._lock:
            self._mark, self._target = self.count, self.count + expected
            self.first_at = self.last_at = None
            return self.count

    def settle(self, target: int, seconds: float = 2.0) -> None:
        """Wait (briefly) until the counter has caught up with ``target`` messages."""
        deadline = time.monotonic() + seconds
        while self.count < target and time.monotonic() < deadline:
            time.sleep(0.01)

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        stop_process(self.proc)


# --- state databases ----------------------------------------------------------------------------

class SqliteBackend:
    """A new SQLite file per run; its CPU is the digest processes' own."""

    name = "sqlite"

    def fresh(self, folder: Path) -> str:
        return str(folder / "state.db")

    def cpu(self) -> float | None:
        return None

    def sent_counts(self, url: str) -> dict[str, int]:
        db = sqlite3.connect(url, timeout=30)
        try:
            return dict(db.execute(COUNTS_QUERY.replace("%s", "?"), (EDITION, DATE)).fetchall())
        finally:
            db.close()

    def close(self) -> None:
        pass


class PostgresBackend:
    """One throwaway cluster for the whole benchmark (tests/postgres.py), a new database per run."""

    name = "postgresql"

    def __init__(self) -> None:
        from postgres import Cluster  # tests/postgres.py

        self.cluster = Cluster()

    def fresh(self, folder: Path) -> str:
        return self.cluster.create_database()

    def cpu(self) -> float:
        """CPU seconds of the whole server so far: the postmaster with the backends it reaped, and the live ones."""
        postmaster = self.cluster.pid
        if postmaster is None:
            raise RuntimeError("the PostgreSQL cluster is not running")
        return cpu_seconds(postmaster, reaped_children=True) + sum(
            cpu_seconds(child, reaped_children=True) for child in children(postmaster))

    def sent_counts(self, url: str) -> dict[str, int]:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            return dict(conn.execute(COUNTS_QUERY, (EDITION, DATE)).fetchall())

    def close(self) -> None:
        self.cluster.destroy()


COUNTS_QUERY = ("SELECT d.state, count(*) FROM deliveries d JOIN issues i ON i.id = d.issue_id "
                "WHERE i.edition = %s AND i.issue_date = %s GROUP BY d.state")


# --- running one process ------------------------------------------------------------------------

@dataclasses.dataclass
class Ran:
    """One finished process, as its launcher and the sampler saw it."""

    code: int
    start: float  # monotonic time of the spawn
    seconds: float  # spawn to exit
    cpu: float  # user + system of it and every child it waited for
    maxrss_mb: float  # largest ru_maxrss of it and those children
    stderr: str
    children_seen: int = 0  # distinct child processes the sampler saw
    sampled_cpu: float = 0.0  # the last CPU figures it read of the process and its children: a lower bound
    sampled_peak_mb: float = 0.0  # the largest VmHWM it read in that tree
    own_cpu: float = 0.0  # the last CPU figure it read of the process itself
    children_cpu: tuple[float, ...] = ()  # ... and of each child, in the order they were seen


class TreeSampler:
    """Looks at a process and its children every SAMPLE_EVERY seconds: who they are, their CPU and VmHWM."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.cpu: dict[int, float] = {}
        self.peak_mb = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.is_set():
            for pid in [self.pid, *children(self.pid)]:
                used = cpu_seconds(pid)
                if used or pid not in self.cpu:
                    self.cpu[pid] = max(used, self.cpu.get(pid, 0.0))
                self.peak_mb = max(self.peak_mb, vm_hwm_mb(pid))
            self._done.wait(SAMPLE_EVERY)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def vm_hwm_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of a live process; 0 when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def run_measured(command: list[str], env: dict[str, str], cwd: Path, report: Path) -> Ran:
    """Run ``command`` through the launcher to its end; killed (its whole session) after RUN_LIMIT or on any interrupt."""
    launcher = subprocess.Popen([sys.executable, "-S", "-c", LAUNCHER, str(report), *command], env=env, cwd=cwd,
                                stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    pid = 0
    sampler = None
    try:
        assert launcher.stdout is not None
        first = launcher.stdout.readline().split()
        if len(first) != 2:
            launcher.wait()
            raise RuntimeError(f"the launcher could not start {command[0]}")
        pid = int(first[0])
        sampler = TreeSampler(pid)
        launcher.wait(timeout=RUN_LIMIT)
    except BaseException:
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)  # the command and every helper it started
        launcher.kill()
        launcher.wait()
        raise
    finally:
        if sampler is not None:
            sampler.stop()
    if not report.exists():
        raise RuntimeError(f"the launcher of {command[0]} ended (code {launcher.returncode}) without reporting: killed?")
    result = json.loads(report.read_text())
    stderr = Path(f"{report}.err").read_text(errors="replace")
    return Ran(result["code"], result["start"], result["end"] - result["start"], result["utime"] + result["stime"],
               result["maxrss_kb"] / 1024, stderr, children_seen=len(sampler.cpu) - 1,
               sampled_cpu=sum(sampler.cpu.values()), sampled_peak_mb=sampler.peak_mb,
               own_cpu=sampler.cpu.get(pid, 0.0), children_cpu=tuple(v for k, v in sampler.cpu.items() if k != pid))


# --- newsrooms and the message smtp-source sends --------------------------------------------------

def make_newsroom(folder: Path, port: int, readers: int) -> Path:
    """A fresh copy of the sample newsroom with ``readers`` readers of 'am', pointed at the sink; its digest.toml."""
    from smtp_faults import write_newsroom  # tests/smtp_faults.py

    return write_newsroom(folder, port=port, pool_size=POOL_SIZE, readers=readers, delivery={"batch": BATCH})


def dkim_key(workdir: Path) -> Path:
    """A new RSA-2048 private key (PEM, mode 0600) for the DKIM-on runs."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    path = workdir / "dkim.pem"
    if not path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        path.touch(mode=0o600)
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return path


def digest_env(state_url: str, dkim: Path | None) -> dict[str, str]:
    values = {"DIGEST_SECRET_KEY": SECRET_KEY, "DIGEST_STATE_URL": state_url}
    if dkim is not None:
        values["DIGEST_DKIM_KEY_FILE"] = str(dkim)
    return cleaned_env(**values)


def digest_message(workdir: Path, port: int, dkim: Path | None) -> Path:
    """One copy of the issue as digest sends it, rendered by `digest render` for one reader, in a file for smtp-source -F."""
    folder = workdir / f"message-{'dkim' if dkim else 'plain'}"
    config = make_newsroom(folder, port, 1)
    out = folder / "rendered"
    done = subprocess.run([sys.executable, "-m", "digest", "--config", str(config), "render", EDITION, "--date", DATE,
                           "--out", str(out)], env=digest_env(str(folder / "state.db"), dkim), cwd=folder,
                          capture_output=True, text=True)
    files = sorted((out / EDITION / DATE).glob("*.eml"))
    if done.returncode != 0 or not files:
        raise SystemExit(f"digest render failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
    message = folder / "message.eml"
    message.write_bytes(files[0].read_bytes().replace(b"\r\n", b"\n"))  # smtp-source ends each line with CRLF itself
    return message


# --- the measured runs ------------------------------------------------------------------------------

@dataclasses.dataclass
class Row:
    """One measured digest send."""

    backend: str
    readers: int
    workers: int
    dkim: bool
    round: int
    ran: Ran
    to_first: float
    sending: float
    sink_cpu: float
    db_cpu: float | None
    sink_received: int
    states: dict[str, int]
    other_cpu: float  # busy CPU of the machine not in digest, sink or db: anything else running, kernel networking
    steal: float

    @property
    def rate(self) -> float:
        return self.readers / self.ran.seconds

    @property
    def send_rate(self) -> float | None:
        """Copies per second between the sink's first and last message of the run."""
        return (self.readers - 1) / self.sending if self.sending and self.sending == self.sending else None

    @property
    def cpu_per_copy(self) -> float:
        return self.ran.cpu / self.readers


@dataclasses.dataclass
class SourceRun:
    """One smtp-source run of the same copies."""

    readers: int
    dkim: bool
    round: int
    ran: Ran
    sink_cpu: float
    size: int

    @property
    def rate(self) -> float:
        return self.readers / self.ran.seconds


class Bench:
    """Everything one benchmark shares: the work folder, the sink, the cluster, the DKIM key."""

    def __init__(self, workdir: Path, backends: list[str], use_dkim: bool, keep: bool = False) -> None:
        self.workdir = workdir
        self.keep = keep
        self.runs = 0
        self.sink = Sink()
        self.backends: dict[str, SqliteBackend | PostgresBackend] = {}
        self.dkim = dkim_key(workdir) if use_dkim else None
        for name in backends:
            self.backends[name] = PostgresBackend() if name == "postgresql" else SqliteBackend()
        self.messages: dict[bool, Path] = {}

    def close(self) -> None:
        self.sink.stop()
        for backend in self.backends.values():
            with contextlib.suppress(Exception):
                backend.close()

    def folder(self, label: str) -> Path:
        self.runs += 1
        folder = self.workdir / f"{self.runs:03d}-{label}"
        folder.mkdir()
        return folder

    def digest_send(self, backend_name: str, readers: int, workers: int, dkim: bool, round_: int) -> Row:
        """One whole `digest send --workers W` of a new issue to ``readers`` readers, checked afterwards."""
        backend = self.backends[backend_name]
        folder = self.folder(f"{backend_name}-{readers}-w{workers}{'-dkim' if dkim else ''}")
        config = make_newsroom(folder / "newsroom", self.sink.port, readers)
        url = backend.fresh(folder)
        env = digest_env(url, self.dkim if dkim else None)
        command = [sys.executable, "-m", "digest", "--config", str(config), "send", EDITION, "--date", DATE,
                   "--workers", str(workers)]
        mark = self.sink.watch(readers)
        sink_before, db_before, (busy_before, steal_before) = self.sink.cpu(), backend.cpu(), machine_cpu()
        ran = run_measured(command, env, config.parent, folder / "launch.json")
        busy, steal = machine_cpu()
        self.sink.settle(mark + readers)
        time.sleep(0.2)  # the server reaps the send's backends, which folds their CPU into the postmaster's
        sink_cpu, db_after = self.sink.cpu() - sink_before, backend.cpu()
        db_cpu = None if db_after is None else db_after - db_before
        row = Row(backend_name, readers, workers, dkim, round_, ran,
                  to_first=(self.sink.first_at or float("nan")) - ran.start,
                  sending=(self.sink.last_at or float("nan")) - (self.sink.first_at or float("nan")),
                  sink_cpu=sink_cpu, db_cpu=db_cpu, sink_received=self.sink.count - mark,
                  states=backend.sent_counts(url), steal=steal - steal_before,
                  other_cpu=busy - busy_before - ran.cpu - sink_cpu - (db_cpu or 0.0))
        check_row(row, command)
        if backend_name == "postgresql":
            with contextlib.suppress(Exception):
                backend.cluster.drop_database(url)
        if not self.keep:  # a 100,000-reader state database is tens of MB
            shutil.rmtree(folder / "newsroom", ignore_errors=True)
            for path in folder.glob("state.db*"):
                path.unlink()
        return row

    def smtp_source(self, readers: int, dkim: bool, round_: int) -> SourceRun:
        """smtp-source sending ``readers`` copies of digest's message in SESSIONS sessions that reuse their connections."""
        if dkim not in self.messages:
            self.messages[dkim] = digest_message(self.workdir, self.sink.port, self.dkim if dkim else None)
        message = self.messages[dkim]
        command = [find_tool("smtp-source"), "-s", str(SESSIONS), "-d", "-m", str(readers), "-F", str(message),
                   "-f", "am@northline.example.org", "-t", "reader@example.com", f"127.0.0.1:{self.sink.port}"]
        folder = self.folder(f"smtp-source-{readers}{'-dkim' if dkim else ''}")
        mark = self.sink.watch(readers)
        before = self.sink.cpu()
        ran = run_measured(command, cleaned_env(), folder, folder / "launch.json")
        self.sink.settle(mark + readers)
        if ran.code != 0 or self.sink.count - mark != readers:
            raise SystemExit(f"smtp-source failed (exit {ran.code}, sink counted {self.sink.count - mark} of "
                             f"{readers}): {' '.join(command)}\n{ran.stderr}")
        size = len(message.read_bytes().replace(b"\n", b"\r\n"))
        return SourceRun(readers, dkim, round_, ran, self.sink.cpu() - before, size)


def check_row(row: Row, command: list[str]) -> None:
    """Stop the benchmark unless the send exited 0, the ledger shows every copy sent and the sink got them all."""
    problems = []
    if row.ran.code != 0:
        problems.append(f"exit code {row.ran.code}")
    if row.states.get("sent", 0) != row.readers or sum(row.states.values()) != row.readers:
        problems.append(f"deliveries by state {row.states}, expected {row.readers:,} 'sent'")
    if row.sink_received != row.readers:
        problems.append(f"the sink counted {row.sink_received:,} messages, expected {row.readers:,}")
    if problems:
        raise SystemExit(f"{' '.join(command)} ({row.backend}, {row.workers} workers) did not finish the issue: "
                         f"{'; '.join(problems)}\nits stderr:\n{row.ran.stderr[-3000:]}")


# --- output -------------------------------------------------------------------------------------

def postfix_version() -> str:
    postconf = find_installed("postconf")
    if postconf is None:
        return "?"
    return subprocess.run([postconf, "-dh", "mail_version"], capture_output=True, text=True).stdout.strip() or "?"


def print_header() -> None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {cores} cores ({platform.machine()}, Linux {platform.release()}), Python {platform.python_version()}, "
          f"Postfix {postfix_version()} smtp-sink / smtp-source")
    print(f"measured: whole `digest send {EDITION} --date {DATE} --workers W` processes, spawn to exit (new newsroom, "
          f"fresh state, pool_size {POOL_SIZE}, batch {BATCH}), and smtp-source -s {SESSIONS} -d with the same "
          "message, into one smtp-sink")
    print(flush=True)


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or value != value else format(value, spec)


def print_table(rows: list[Row], sources: list[SourceRun]) -> None:
    head = (f"{'backend':<11}{'readers':>8}{'W':>3}{'DKIM':>5}{'rnd':>4}{'seconds':>9}{'to 1st':>8}{'send s':>8}{'after':>6}"
            f"{'msg/s':>7}{'vs src':>7}{'send/s':>7}{'vs src':>7}{'vs W=1':>7}{'digest CPU':>11}{'sink CPU':>9}{'db CPU':>7}{'other':>6}{'steal':>6}{'ms/copy':>8}{'peak MB':>8}")
    print(head)
    print("-" * len(head))
    for r in rows:
        source = source_rate(sources, r.readers, r.dkim)
        base = next((b for b in rows if (b.backend, b.readers, b.dkim, b.round, b.workers) ==
                     (r.backend, r.readers, r.dkim, r.round, 1)), None)
        print(f"{r.backend:<11}{r.readers:>8,}{r.workers:>3}{'on' if r.dkim else 'off':>5}{r.round:>4}"
              f"{r.ran.seconds:>9.2f}{fmt(r.to_first, '.2f'):>8}{fmt(r.sending, '.2f'):>8}"
              f"{fmt(r.ran.seconds - r.to_first - r.sending, '.2f'):>6}"
              f"{r.rate:>7,.0f}"
              f"{fmt(r.rate / source if source else None, '.0%'):>7}{fmt(r.send_rate, ',.0f'):>7}"
              f"{fmt(r.send_rate / source if source and r.send_rate else None, '.0%'):>7}{fmt(r.rate / base.rate if base else None, '.2f') + 'x':>7}"
              f"{r.ran.cpu:>11.2f}{r.sink_cpu:>9.2f}{fmt(r.db_cpu, '.2f'):>7}{r.other_cpu:>6.1f}{r.steal:>6.1f}{r.cpu_per_copy * 1000:>8.3f}"
              f"{r.ran.maxrss_mb:>8.0f}")
    print()
    for s in sources:
        print(f"smtp-source: {s.readers:,} copies of a {s.size:,}-byte message (DKIM {'on' if s.dkim else 'off'}), "
              f"round {s.round}: {s.ran.seconds:.2f} s, {s.rate:,.0f} msg/s, its own CPU {s.ran.cpu:.2f} s, "
              f"sink CPU {s.sink_cpu:.2f} s")


def source_rate(sources: list[SourceRun], readers: int, dkim: bool) -> float | None:
    """The median smtp-source msg/s for these copies (over the rounds)."""
    rates = [s.rate for s in sources if s.readers == readers and s.dkim == dkim]
    return statistics.median(rates) if rates else None


def print_checks(rows: list[Row]) -> None:
    """What each run passed, and whether its helpers' CPU is in 'digest CPU'."""
    print("\nchecks (every row: exit 0, all copies 'sent' in the state database, the sink counted them all):")
    for r in rows:
        helpers = r.workers - 1
        counted = r.ran.cpu + 0.05 >= r.ran.sampled_cpu  # wait4's figure covers what the sampler saw (+ its tick)
        print(f"  {r.backend:<11}{r.readers:>8,} W={r.workers} DKIM {'on ' if r.dkim else 'off'} round {r.round}: "
              f"{r.states.get('sent', 0):,} sent, sink +{r.sink_received:,}; children seen {r.ran.children_seen} "
              f"(helpers expected {helpers}); sampled CPU {r.ran.sampled_cpu:.2f} s <= wait4 {r.ran.cpu:.2f} s: "
              f"{'yes' if counted else 'NO: helpers not counted?'}; sampled VmHWM {r.ran.sampled_peak_mb:.0f} MB; "
              f"CPU s: send {r.ran.own_cpu:.2f}" + "".join(f", helper {c:.2f}" for c in r.ran.children_cpu)
              )


def print_estimates(rows: list[Row]) -> None:
    """Per-copy CPU and the paper estimate of readers per hour per core it implies."""
    print("\nper-copy CPU and a PAPER ESTIMATE (not measured): readers per hour one core could send if the digest "
          "CPU per copy were the only limit (3600 / CPU s per copy; sink, database server and relay not included):")
    for r in rows:
        line = (f"  {r.backend:<11}{r.readers:>8,} W={r.workers} DKIM {'on ' if r.dkim else 'off'} round {r.round}: "
                f"{r.cpu_per_copy * 1000:.3f} ms CPU/copy -> ~{3600 / r.cpu_per_copy:,.0f} readers/hour/core (estimate)")
        if r.db_cpu is not None:
            with_db = (r.ran.cpu + r.db_cpu) / r.readers
            line += f"; with the database's CPU: {with_db * 1000:.3f} ms -> ~{3600 / with_db:,.0f}"
        print(line)


# --- main -----------------------------------------------------------------------------------------

def int_list(text: str) -> list[int]:
    values = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}")
    return values


def name_list(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in ("sqlite", "postgresql")]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"backends are sqlite and postgresql, got {text!r}")
    return names


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readers", type=int_list, default=[10_000], help="readers per issue, comma-separated (default 10000)")
    parser.add_argument("--workers", type=int_list, default=[1, 2, 4], help="--workers values, comma-separated (default 1,2,4)")
    parser.add_argument("--backends", type=name_list, default=["sqlite", "postgresql"],
                        help="state databases: sqlite, postgresql or both, comma-separated (default both)")
    parser.add_argument("--dkim", action="store_true", help="also measure every case with DKIM signing on")
    parser.add_argument("--rounds", type=int, default=1, help="times to repeat every measurement (default 1)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (newsrooms' state, stderr of each run)")
    return parser.parse_args()


@contextlib.contextmanager
def interrupted_on_sigterm() -> Iterator[None]:
    """SIGTERM ends the benchmark as Ctrl-C does: through the clean-up."""
    def stop(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def measure(bench: Bench, args: argparse.Namespace) -> tuple[list[Row], list[SourceRun]]:
    rows: list[Row] = []
    sources: list[SourceRun] = []
    for readers in args.readers:
        for dkim in ([False, True] if args.dkim else [False]):
            for round_ in range(1, args.rounds + 1):
                sources.append(bench.smtp_source(readers, dkim, round_))
                progress(f"smtp-source {readers:,} DKIM {dkim} round {round_}: {sources[-1].rate:,.0f} msg/s")
                for backend in args.backends:
                    for workers in args.workers:
                        rows.append(bench.digest_send(backend, readers, workers, dkim, round_))
                        r = rows[-1]
                        progress(f"digest {backend} {readers:,} W={workers} DKIM {dkim} round {round_}: "
                                 f"{r.ran.seconds:.2f} s, {r.rate:,.0f} msg/s")
    return rows, sources


def progress(text: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def main() -> None:
    args = parse_args()
    sys.path.insert(0, str(TESTS))  # smtp_faults (newsrooms) and postgres (clusters)
    sys.path.insert(0, str(ROOT))
    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="digest-bench-workers-"))
    bench: Bench | None = None
    with interrupted_on_sigterm():
        try:
            print_header()
            bench = Bench(workdir, args.backends, args.dkim, args.keep)
            rows, sources = measure(bench, args)
            print_table(rows, sources)
            print_checks(rows)
            print_estimates(rows)
        finally:
            if bench is not None:
                bench.close()
            if args.keep:
                print(f"\nwork folder kept: {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nwhole benchmark: {time.monotonic() - began:.1f} s (this script's own peak {own:.0f} MB)")


if __name__ == "__main__":
    main()
