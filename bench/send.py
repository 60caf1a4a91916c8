"""Sending one issue over SMTP, side by side with the ways it could be sent, against one sink.

    .venv/bin/python bench/send.py                  # 10,000 readers of the sample AM issue
    .venv/bin/python bench/send.py --readers 2000 --pools 1,8
    .venv/bin/python bench/send.py --profile        # then cProfile digest at the best pool size

One loopback sink serves every path: Postfix's `smtp-sink` (C, one process, discards what it
gets; `sh bench/setup-postfix.sh` installs it, and this script runs that when it is missing),
else an aiosmtpd sink, which caps every figure at its own speed (a few hundred msg/s).

  (a) digest      runner.send_issue end to end with the ledger on: fresh state DB, a generated
                  subscribers.csv of N readers of one edition, compose, freeze the audience,
                  every 'sending'/'sent' commit; timed from the call to its return, per pool size
  (b) smtplib     a naive loop over ONE reused connection sending N messages pre-built with
                  digest's compose (same sizes); only the sending loop is timed
  (t) transport   digest's own SMTP transport alone (deliver/transport.py: pipelined MAIL, RCPT
                  and DATA, the dot-stuffing, the reply reader) over pool_size connections, sending
                  N messages pre-built as in (b), with no ledger and no dispatcher: what digest's
                  per-copy bookkeeping is measured against; only the sending loop is timed
  (c) smtp-source Postfix's C test client sending the same bytes (one digest message, -F),
                  20 sessions in parallel: the practical limit of this machine

Each path runs in its own fresh process (peak memory and CPU time are that process's own, from
wait4), one after the other, while the sink keeps running. The machine has 2 cores: every
client path here is ONE single-threaded process, and the sink is one more.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FIRST = ["Ana", "Zoë", "José", "Nguyễn", "Liam", "Harriet", "Kwame", "Sørine", "Priya", "Tom"]
SIGNING = "bench:bench-signing-key-0123456789"
SENDER_FOR_SOURCE = "from@example.com"
CHILD_TIMEOUT = 150.0  # seconds: no path may hang the benchmark
SBIN = ("/usr/sbin", "/usr/lib/postfix/sbin", "/usr/local/sbin")


# --- shared set-up ------------------------------------------------------------------------------

def reader_rows(count: int) -> list[tuple[str, str]]:
    return [(f"reader{i}@example{i % 7}.com", f"{FIRST[i % len(FIRST)]} Reader{i}") for i in range(count)]


def write_subscribers(path: Path, count: int, slug: str) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write("email,name,editions,status\n")
        for email, name in reader_rows(count):
            handle.write(f"{email},{name},{slug},active\n")


def dkim_key(workdir: Path) -> Path:
    """A fresh RSA-2048 key (mode 0600) for the DKIM-on run."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    path = workdir / "dkim.pem"
    if not path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        path.touch(mode=0o600)
        path.write_bytes(pem)
    return path


def bench_settings(workdir: Path, label: str, port: int, pool: int, dkim: bool = False):
    """The shipped sample newsroom, with its paths and SMTP relay pointed at this run."""
    from digest.config import load_settings, parse_signing_keys
    from digest.models import DkimSettings, SmtpSettings

    settings = load_settings(ROOT / "digest.toml", environ={})
    state = workdir / f"state-{label}"
    paths = dataclasses.replace(settings.paths, subscribers=workdir / "subscribers.csv", state=state, out=workdir / "out")
    signing = DkimSettings(dkim_key(workdir), "bench", settings.newsroom.domain) if dkim else DkimSettings()
    return dataclasses.replace(settings, paths=paths, state_db=state / "digest.sqlite3",
                               smtp=SmtpSettings("127.0.0.1", port, "none", pool_size=pool),
                               signing_keys=parse_signing_keys(SIGNING), dkim=signing)


def composed_issue(settings, slug: str):
    from digest.compose.pipeline import compose
    from digest.compose.planning import choose_stories
    from digest.sources.stories import load_folder

    edition = settings.edition(slug)
    issue = choose_stories(edition, settings.demo_date, load_folder(settings.paths.stories).stories, words_per_minute=settings.newsroom.words_per_minute)
    return edition, compose(settings, issue)


def own_peak_mb() -> float:
    return vm_peak_mb("self")


def threads_now() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# --- the paths, each run in a child process -----------------------------------------------------

def child_digest(args: argparse.Namespace) -> dict:
    """(a) runner.send_issue, timed from the call to its return."""
    from digest.deliver import runner

    dkim = args.child == "digest-dkim"
    label = f"a{args.pool}{'-dkim' if dkim else ''}{'-prof' if args.cprofile else ''}"
    settings = bench_settings(Path(args.workdir), label, args.port, args.pool, dkim=dkim)
    edition = settings.edition(args.edition)

    async def go():
        start, cpu = time.perf_counter(), time.process_time()
        report = await runner.send_issue(settings, edition, settings.demo_date)
        return report, time.perf_counter() - start, time.process_time() - cpu

    profiler = None
    if args.cprofile:
        import cProfile
        profiler = cProfile.Profile()
        profiler.enable()
    report, seconds, cpu = asyncio.run(go())
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.cprofile)
    counts = getattr(report, "counts", None)
    if counts is None or counts.get("sent") != args.readers or not report.ok:
        raise SystemExit(f"digest did not send every copy: {report!r}")
    return {"seconds": seconds, "cpu": cpu, "messages": counts["sent"], "threads": threads_now(), "peak_mb": own_peak_mb()}


def prebuilt_messages(args: argparse.Namespace, label: str, pool: int):
    """The settings, the envelope sender, every reader's (address, message) built with digest's
    compose, and the seconds the building took: what (b) and (t) send."""
    settings = bench_settings(Path(args.workdir), label, args.port, pool)
    edition, composed = composed_issue(settings, args.edition)
    start = time.perf_counter()
    messages = [(email, composed.message(composed.recipients.for_address(email, name)))
                for email, name in reader_rows(args.readers)]
    return settings, edition.sender.address, messages, time.perf_counter() - start


def child_smtplib(args: argparse.Namespace) -> dict:
    """(b) the naive loop: smtplib, one connection, pre-built digest messages."""
    import smtplib

    _, sender, messages, build_s = prebuilt_messages(args, "b", 1)
    client = smtplib.SMTP("127.0.0.1", args.port, timeout=60)
    try:
        client.ehlo()
        start, cpu = time.perf_counter(), time.process_time()
        for email, data in messages:
            client.sendmail(sender, [email], data)  # raises unless the one recipient was accepted
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        client.quit()
    return {"seconds": seconds, "cpu": cpu, "messages": len(messages), "build_s": build_s,
            "size": len(messages[0][1]), "threads": threads_now(), "peak_mb": own_peak_mb()}


def child_transport(args: argparse.Namespace) -> dict:
    """(t) digest's SMTP transport alone: pool_size connections, pre-built messages, no ledger."""
    from digest.deliver.transport import Envelope, SmtpConnection, always_send

    settings, sender, messages, build_s = prebuilt_messages(args, f"t{args.pool}", args.pool)
    queue = iter(messages)

    async def connection() -> int:
        smtp = SmtpConnection(settings.smtp)
        sent = 0
        try:
            for email, data in queue:  # the connections share one iterator: each message goes once
                reply = await smtp.deliver(Envelope(sender, email), data, always_send)
                if reply is None or reply.code != 250:
                    raise SystemExit(f"the sink did not take a message: {reply!r}")
                sent += 1
        finally:
            await smtp.close()
        return sent

    async def go() -> int:
        return sum(await asyncio.gather(*(connection() for _ in range(args.pool))))

    start, cpu = time.perf_counter(), time.process_time()
    sent = asyncio.run(go())
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"seconds": seconds, "cpu": cpu, "messages": sent, "build_s": build_s,
            "size": len(messages[0][1]), "threads": threads_now(), "peak_mb": own_peak_mb()}


def child_main(args: argparse.Namespace) -> None:
    signal.alarm(int(CHILD_TIMEOUT))  # a stuck path ends itself
    result = {"digest": child_digest, "digest-dkim": child_digest, "smtplib": child_smtplib,
              "transport": child_transport}[args.child](args)
    print(json.dumps(result), flush=True)


# --- running children and the sink -------------------------------------------------------------

@dataclasses.dataclass
class Ran:
    code: int
    stdout: str
    wall: float
    cpu: float  # user + system seconds of the child
    maxrss_mb: float  # peak resident memory of the program itself (VmHWM)


def vm_peak_mb(pid: int | str) -> float:
    """Peak resident memory (VmHWM) of a live process; 0 when it cannot be read (or it is a zombie)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def run_child(cmd: list[str], timeout: float = CHILD_TIMEOUT) -> Ran:
    """Run a command to its end; its CPU time comes from wait4 (its own, not all children's).

    Peak memory is sampled from /proc (VmHWM of the program after exec): ru_maxrss would also
    count the memory of this Python process that the child had before its exec.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], vm_peak_mb(proc.pid))
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out = proc.stdout.read() if proc.stdout else ""
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        done.set()
        timer.cancel()
        sampler.join()
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Ran(proc.returncode, out, wall, usage.ru_utime + usage.ru_stime, peak[0])


def find_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in SBIN:
        if os.access(f"{folder}/{name}", os.X_OK):
            return f"{folder}/{name}"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_greeting(proc: subprocess.Popen, port: int, what: str, seconds: float = 10) -> None:
    """Return once the SMTP server ``proc`` greets on 127.0.0.1:``port``; RuntimeError if it exits or stays silent."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited at start (code {proc.returncode}); see its log")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if sock.recv(64).startswith(b"220"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not answer on 127.0.0.1:{port}")


class Sink:
    """One SMTP sink on 127.0.0.1 for the whole run, with its CPU time and peak memory."""

    def __init__(self, kind: str, workdir: Path) -> None:
        self.kind = kind
        self.port = free_port()
        self.log = open(workdir / "sink.log", "wb")
        if kind == "smtp-sink":
            cmd = [find_tool("smtp-sink") or "smtp-sink"]
            if os.geteuid() == 0:
                cmd += ["-u", "nobody"]  # required when started as root: drop privileges after bind
            cmd += ["-4", f"127.0.0.1:{self.port}", "1000"]
        else:
            cmd = [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{self.port}", "-c", "aiosmtpd.handlers.Sink"]
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._wait_ready()

    def _wait_ready(self) -> None:
        wait_for_greeting(self.proc, self.port, self.kind)

    def cpu(self) -> float:
        """User + system seconds used so far."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return float("nan")

    def reset_peak(self) -> bool:
        """Start a new peak-RSS window (Linux: writing 5 to clear_refs resets VmHWM)."""
        try:
            Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    def peak_mb(self) -> float:
        return vm_peak_mb(self.proc.pid)

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 5 s; waits for the process either way."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclasses.dataclass
class Row:
    key: str  # a, b, c
    label: str
    procs: str
    messages: int
    seconds: float
    cpu: float
    peak_mb: float
    sink_cpu: float
    sink_peak_mb: float
    note: str = ""

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0


def measured(sink: Sink, key: str, label: str, procs: str, fn, note=lambda: "") -> Row:
    """Run one path; attach the sink's CPU time and peak memory during it."""
    windowed = sink.reset_peak()
    before = sink.cpu()
    row = fn()
    row.key, row.label, row.procs, row.note = key, label, procs, note()
    row.sink_cpu = sink.cpu() - before
    row.sink_peak_mb = sink.peak_mb()
    if not windowed:
        row.note += " (sink peak: whole run so far)"
    return row


def child_cmd(args: argparse.Namespace, which: str, workdir: Path, port: int, pool: int = 1, cprofile: str = "") -> list[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", which, "--workdir", str(workdir), "--port", str(port),
           "--readers", str(args.readers), "--edition", args.edition, "--pool", str(pool)]
    return cmd + (["--cprofile", cprofile] if cprofile else [])


def run_python_path(args, which: str, workdir: Path, port: int, pool: int = 1, cprofile: str = "") -> tuple[Row, dict]:
    ran = run_child(child_cmd(args, which, workdir, port, pool, cprofile))
    if ran.code != 0:
        raise SystemExit(f"path {which} (pool {pool}) failed with exit code {ran.code}")
    result = json.loads(ran.stdout.strip().splitlines()[-1])
    row = Row("", "", "", result["messages"], result["seconds"], result["cpu"], max(ran.maxrss_mb, result["peak_mb"]), 0.0, 0.0)
    return row, result


def run_source(source: str, message_file: Path, port: int, count: int, sessions: int, reuse: bool) -> Row:
    cmd = [source, "-s", str(sessions), "-m", str(count), "-F", str(message_file),
           "-t", "to@example.com", "-f", SENDER_FOR_SOURCE] + (["-d"] if reuse else []) + [f"127.0.0.1:{port}"]
    ran = run_child(cmd)
    if ran.code != 0:  # smtp-source stops at the first reply that is not 2xx/3xx (no -A)
        raise SystemExit(f"smtp-source failed with exit code {ran.code}: {' '.join(cmd)}")
    return Row("", "", "", count, ran.wall, ran.cpu, ran.maxrss_mb, 0.0, 0.0)


# --- profile --------------------------------------------------------------------------------------

def profile_report(stats_file: str, messages: int, top: int) -> None:
    """Top functions by cumulative time, then self time split by where it is spent."""
    import io
    import pstats

    buffer = io.StringIO()
    stats = pstats.Stats(stats_file, stream=buffer)
    stats.sort_stats("cumulative").print_stats(top)
    lines = buffer.getvalue().splitlines()
    start = next((n for n, line in enumerate(lines) if line.lstrip().startswith("ncalls")), 0)
    print("\n".join(line.replace(str(ROOT) + "/", "").replace(sys.prefix + "/", "") for line in lines[start:] if line.strip()))

    raw = stats.stats  # (file, line, name) -> (cc, nc, tottime, cumtime, callers)

    def own_category(func) -> str | None:
        file, _, name = func
        f = file.replace("\\", "/")
        if "/digest/state/" in f or "sqlite3" in name:
            return "ledger (SQLite commits, due(), suppression checks)"
        if any(part in f for part in ("/digest/compose/pipeline.py", "/digest/compose/message.py", "/digest/compose/personalise.py")):
            return "building bytes (tokens, splice, structure check)"
        if "/aiosmtplib/" in f:
            return "aiosmtplib / SMTP protocol (incl. its regexes)"
        if f == "~" and any(word in name for word in ("'send'", "'recv", "'poll'", "'select'", "epoll", "'sendall'")):
            return "socket syscalls (send/recv/epoll)"
        if "/asyncio/" in f or "selectors.py" in f:
            return "asyncio event loop (Python side)"
        if any(part in f for part in ("/digest/deliver/send.py", "/digest/deliver/transport.py", "/digest/outcomes.py", "/digest/deliver/ratelimit.py")):
            return "dispatcher (send.py, transport.py, outcomes)"
        if "/digest/" in f or "/site-packages/" in f:  # digest's set-up and its libraries (premailer, cssutils, ...)
            return "set-up (load + check subscribers, plan, render, inline, create issue)"
        return None  # a builtin or a generic stdlib function: shared among its callers

    memo: dict = {}

    def shares(func, seen: frozenset = frozenset()) -> dict[str, float]:
        """How the self time of ``func`` divides among categories (by the time each caller spent in it)."""
        if func in memo:
            return memo[func]
        found = own_category(func)
        if found is not None:
            result = {found: 1.0}
        else:
            callers = raw[func][4] if func in raw else {}
            weights = {caller: (entry[2] if isinstance(entry, tuple) and len(entry) > 2 else 0.0)
                       for caller, entry in callers.items() if caller not in seen}
            total = sum(weights.values())
            if not weights or len(seen) > 20:
                result = {"other": 1.0}
            else:
                result = {}
                for caller, weight in weights.items():
                    part = weight / total if total > 0 else 1 / len(weights)
                    for name, share in shares(caller, seen | {func}).items():
                        result[name] = result.get(name, 0.0) + part * share
        memo[func] = result  # approximate when reached through a cycle; exact otherwise
        return result

    totals: dict[str, float] = {}
    others: dict[str, float] = {}
    for func, (_, _, tottime, _, _) in raw.items():
        for name, share in shares(func).items():
            totals[name] = totals.get(name, 0.0) + tottime * share
            if name == "other":
                others[f"{func[2]} ({Path(func[0]).name}:{func[1]})"] = tottime * share
    whole = sum(totals.values())
    print(f"\nself time by where it is spent (profiled run: {whole:.2f} s CPU under cProfile; "
          "builtins and generic stdlib code shared among their callers):")
    for name, seconds in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"  {name:<70}{seconds:>7.2f} s {seconds / whole * 100:>5.1f}% {seconds / messages * 1e6:>8.0f} us/msg")
    if others:
        top_other = sorted(others.items(), key=lambda item: -item[1])[:4]
        print("  ('other' is mostly: " + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in top_other) + ")")


def step_costs(workdir: Path, edition_slug: str, message: bytes, count: int = 2000) -> None:
    """The steps of one copy timed one at a time without a profiler (per message, this machine)."""
    import datetime as dt

    from aiosmtplib.email import quote_address
    from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

    from digest.state.ledger import Ledger

    settings = bench_settings(workdir, "steps", 0, 1)
    _, composed = composed_issue(settings, edition_slug)
    rows = reader_rows(count)

    def per(fn, items) -> float:
        start = time.perf_counter()
        for item in items:
            fn(item)
        return (time.perf_counter() - start) / len(items) * 1e6

    recipients = [composed.recipients.for_address(e, n) for e, n in rows]
    built = [composed.template.build(r) for r in recipients]
    ledger = Ledger(workdir / "steps.sqlite3")
    record, _ = ledger.create_issue(edition_slug, dt.date(2000, 1, 1), dt.datetime.now(dt.timezone.utc), ["x"],
                                    audience=[(e, n, e.casefold()) for e, n in rows])
    due = ledger.due(record.id, time.time() + 60, include_uncertain=True, limit=count)

    def ledger_copy(delivery) -> None:
        ledger.is_suppressed(delivery.email.casefold(), edition_slug)
        ledger.mark_sending(delivery.id, "<bench@example.org>", delivery.email.casefold(), edition_slug)
        ledger.mark(delivery.id, "sent", 250, "2.0.0 Ok: queued")

    costs = [
        ("digest: Recipient (token + Message-ID)", per(lambda r: composed.recipients.for_address(*r), rows)),
        ("digest: template.build (splice)", per(composed.template.build, recipients)),
        ("digest: template.check_structure", per(composed.template.check_structure, built)),
        ("digest: ledger is_suppressed + mark_sending + mark (2 commits)", per(ledger_copy, due)),
        ("aiosmtplib: normalize_message_line_endings (regex, in data())", per(normalize_message_line_endings, built)),
        ("aiosmtplib: PERIOD_REGEX.sub dot-stuffing (regex, in data())", per(lambda b: PERIOD_REGEX.sub(b"..", b), built)),
        ("aiosmtplib: quote_address x2 (parseaddr, in mail()/rcpt())", per(lambda e: (quote_address(e), quote_address(e)), [e for e, _ in rows])),
        ("  for comparison: bytes.replace dot-stuffing of the same bytes", per(lambda b: b.replace(b"\r\n.", b"\r\n.."), built)),
    ]
    ledger.close()
    print(f"\nunprofiled cost of the steps of one copy ({count:,} copies each, {len(message):,}-byte message):")
    for label, micro in costs:
        print(f"  {label:<68}{micro:>8.1f} us/msg")


# --- main ---------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readers", type=int, default=10_000)
    parser.add_argument("--pools", default="1,4,8,16", help="pool sizes to try for (a), comma-separated")
    parser.add_argument("--edition", default="am")
    parser.add_argument("--sessions", type=int, default=20, help="parallel sessions of smtp-source (c)")
    parser.add_argument("--sink", choices=("auto", "postfix", "aiosmtpd"), default="auto")
    parser.add_argument("--no-install", action="store_true", help="do not run bench/setup-postfix.sh when smtp-sink is missing")
    parser.add_argument("--profile", action="store_true", help="afterwards, cProfile (a) once at the best pool size")
    parser.add_argument("--top", type=int, default=30, help="functions listed by --profile")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--pool", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--cprofile", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
        return

    began = time.perf_counter()
    pools = [int(p) for p in args.pools.split(",") if p.strip()]

    if args.sink != "aiosmtpd" and not find_tool("smtp-sink") and not args.no_install:
        print("smtp-sink not found: running bench/setup-postfix.sh", flush=True)
        subprocess.run(["sh", str(ROOT / "bench" / "setup-postfix.sh")], check=False)
    have_postfix = bool(find_tool("smtp-sink") and find_tool("smtp-source"))
    if args.sink == "postfix" and not have_postfix:
        raise SystemExit("--sink postfix: smtp-sink/smtp-source not installed (sh bench/setup-postfix.sh)")
    sink_kind = "smtp-sink" if have_postfix and args.sink != "aiosmtpd" else "aiosmtpd"

    workdir = Path(tempfile.mkdtemp(prefix="digest-bench-send-"))
    sink: Sink | None = None
    rows: list[Row] = []
    try:
        write_subscribers(workdir / "subscribers.csv", args.readers, args.edition)
        settings = bench_settings(workdir, "probe", 0, 1)
        edition, composed = composed_issue(settings, args.edition)
        sample = composed.message(composed.recipients.for_address(*reader_rows(1)[0]))
        message_file = workdir / "message.eml"
        message_file.write_bytes(sample.replace(b"\r\n", b"\n"))  # smtp-source -F sends each line with CRLF
        del composed

        sink = Sink(sink_kind, workdir)
        import aiosmtplib

        version = ""
        if sink_kind == "smtp-sink" and find_tool("postconf"):
            version = subprocess.run([find_tool("postconf"), "-dh", "mail_version"], capture_output=True, text=True).stdout.strip()
        print(f"{args.readers:,} readers of {edition.slug} {settings.demo_date}, one message {len(sample):,} bytes "
              f"({len(sample) / 1024:.1f} KB, 7-bit: {all(b < 128 for b in sample)})")
        print(f"sink: {sink_kind}{' (Postfix ' + version + ')' if version else ''} on 127.0.0.1:{sink.port}, one process; "
              f"{os.cpu_count()} cores; Python {platform.python_version()}, aiosmtplib {aiosmtplib.__version__}")
        if sink_kind != "smtp-sink":
            print("WARNING: Postfix's smtp-sink is not available: the aiosmtpd sink caps every figure below at its own "
                  "speed (DESIGN.md §7: 460-820 msg/s), so these are figures for the sink, not the senders; "
                  "(c) cannot be measured.")
        print(flush=True)

        source = find_tool("smtp-source") if sink_kind == "smtp-sink" else None
        if source:
            rows.append(measured(sink, "c", f"(c) smtp-source -s {args.sessions} -d", "1 + sink",
                                 lambda: run_source(source, message_file, sink.port, args.readers, args.sessions, True),
                                 lambda: f"{args.sessions} sessions, connections reused"))
            rows.append(measured(sink, "c", f"    smtp-source -s {args.sessions}", "1 + sink",
                                 lambda: run_source(source, message_file, sink.port, args.readers, args.sessions, False),
                                 lambda: "a new connection per message"))
        extra: dict = {}

        def path_b() -> Row:
            row, result = run_python_path(args, "smtplib", workdir, sink.port)
            extra.update(result)
            return row

        rows.append(measured(sink, "b", "(b) smtplib, 1 connection", "1 + sink", path_b,
                             lambda: f"sending loop only; building {args.readers:,} messages took {extra['build_s']:.2f} s more"))
        for pool in pools:
            rows.append(measured(sink, "t", f"(t) transport pool_size={pool}", "1 + sink",
                                 lambda pool=pool: run_python_path(args, "transport", workdir, sink.port, pool)[0],
                                 lambda: "sending loop only, no ledger"))
        for pool in pools:
            result_box: dict = {}

            def path_a(pool=pool, box=result_box) -> Row:
                row, result = run_python_path(args, "digest", workdir, sink.port, pool)
                box.update(result)
                return row

            rows.append(measured(sink, "a", f"(a) digest pool_size={pool}", "1 + sink", path_a,
                                 lambda box=result_box: f"{box.get('threads', '?')} thread(s), {pool} connections"))
            print(f"  measured {rows[-1].label.strip()}: {rows[-1].rate:,.0f} msg/s", file=sys.stderr, flush=True)

        # DKIM on, at the pool size that did best without it: the issue asks for at least half the speed.
        best_a = max((r for r in rows if r.key == "a"), key=lambda r: r.rate)
        best_pool = int(best_a.label.rsplit("=", 1)[1])

        def path_dkim() -> Row:
            return run_python_path(args, "digest-dkim", workdir, sink.port, best_pool)[0]

        rows.append(measured(sink, "d", f"(a) digest + DKIM pool_size={best_pool}", "1 + sink", path_dkim,
                             lambda: "rsa-sha256 2048-bit signature on every copy"))
        print_table(rows, sink_kind)
        dkim_rate = rows[-1].rate
        share = dkim_rate / best_a.rate if best_a.rate else 0.0
        print(f"DKIM on: {dkim_rate:,.0f} msg/s = {share:.0%} of DKIM off ({best_a.rate:,.0f} msg/s) at pool_size={best_pool}; "
              f"goal: at least 50%: {'PASS' if share >= 0.5 else 'FAIL'}")

        if args.profile:
            best = max((r for r in rows if r.key == "a"), key=lambda r: r.rate)
            pool = int(best.label.rsplit("=", 1)[1])
            stats_file = str(workdir / "digest.pstats")
            print(f"\ncProfile of (a) at pool_size={pool} (the best above), {args.readers:,} readers:")
            row, result = run_python_path(args, "digest", workdir, sink.port, pool, stats_file)
            print(f"profiled run: {row.seconds:.2f} s wall ({row.rate:,.0f} msg/s under the profiler), {row.cpu:.2f} s CPU")
            profile_report(stats_file, row.messages, args.top)
            step_costs(workdir, args.edition, sample)
    finally:
        if sink is not None:
            sink.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nthis script's own process (ru_maxrss): peak {me:.0f} MB; whole benchmark {time.perf_counter() - began:.1f} s; "
          f"temporary files removed ({workdir})")


def print_table(rows: list[Row], sink_kind: str) -> None:
    c_rows = [r for r in rows if r.key == "c"]
    c = max((r.rate for r in c_rows), default=0.0)
    b = next((r.rate for r in rows if r.key == "b"), 0.0)
    a_rows = [r for r in rows if r.key == "a"]
    best = max(a_rows, key=lambda r: r.rate) if a_rows else None

    def ratio(value: float, base: float) -> str:
        return f"{value / base * 100:.0f}%" if base else "n/a"

    head = (f"{'path':<32}{'procs':>9}{'messages':>10}{'seconds':>9}{'msg/s':>8}{'vs (c)':>8}{'vs (b)':>8}"
            f"{'CPU s':>7}{'us/msg':>8}{'peak MB':>9}{'sink CPU s':>11}{'sink MB':>9}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r.label:<32}{r.procs:>9}{r.messages:>10,}{r.seconds:>9.2f}{r.rate:>8,.0f}{ratio(r.rate, c):>8}"
              f"{ratio(r.rate, b):>8}{r.cpu:>7.2f}{r.cpu / r.messages * 1e6:>8.0f}{r.peak_mb:>9.0f}"
              f"{r.sink_cpu:>11.2f}{r.sink_peak_mb:>9.1f}  {r.note.strip()}")
    print("\nprocs: client processes + the sink (one process). CPU s and us/msg: the client's user + system time over the "
          "timed part; peak MB: the client program's peak RSS (VmHWM);\nsink CPU s and sink MB are the sink's during that path "
          "(from /proc; peak reset before each path): sink CPU s close to seconds means the sink (one core) was the limit.\n"
          "(b)'s peak includes its pre-built messages; (a)'s seconds include loading readers, compose, freezing the audience "
          "and every ledger commit.")
    if c_rows:
        print(f"(c) = the faster smtp-source row: {c:,.0f} msg/s")
    if best is None:
        return
    pool = best.label.rsplit("=", 1)[1]
    floor = next((r for r in rows if r.key == "t" and r.label.endswith(f"={pool}")), None)
    if floor is not None:
        extra_us = (best.cpu / best.messages - floor.cpu / floor.messages) * 1e6
        print(f"(a) at pool_size={pool} against (t), the transport alone over as many connections: {ratio(best.rate, floor.rate)} "
              f"of its msg/s, {extra_us:,.0f} us of CPU more per message (ledger, dispatcher, building each copy, start-up)")
    ok_c = bool(c) and best.rate >= 0.4 * c
    ok_b = best.rate > b
    print(f"\nbest (a): {best.label.split(' ', 2)[2]}, {best.rate:,.0f} msg/s = {ratio(best.rate, c)} of (c), "
          f"{best.rate / b:.2f}x (b)" if b else "")
    verdict_c = ("PASS" if ok_c else "FAIL") if c else "UNKNOWN (no smtp-source)"
    overall = "PASS" if ok_c and ok_b else ("INCOMPLETE" if not c and ok_b else "FAIL")
    print(f"goal: (a) should be >= 40% of (c) and faster than (b): {overall} "
          f"[>= 40% of (c): {verdict_c}; faster than (b): {'PASS' if ok_b else 'FAIL'}]"
          + ("" if sink_kind == "smtp-sink" else "  (aiosmtpd sink: capped by the sink)"))


if __name__ == "__main__":
    main()
