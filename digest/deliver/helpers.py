"""`digest send --workers N`: the N-1 local `digest worker --issue` processes that share one issue.

The send that starts them stays the issue's coordinator (it holds the issue's lock, waits for
retries and closes the issue); the helpers only claim and send copies, then exit when none of
the issue's copies is due. One that dies gives its claimed copies back at once (its pid is gone,
so the others need not wait for its lease); its copies in flight become 'uncertain', as in any crash.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from ..models import Settings
from ..state.connection import PostgresUrl
from ..state.ledger import STATES, Ledger

SETTLED = ("sent", "failed", "suppressed", "deferred", "uncertain")

BATCHES_PER_HELPER = 2  # with workers = auto, a helper process is started only for this many batches of copies


def cores() -> int:
    """The cores this process may run on (the affinity mask, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def helpers_for(workers: int | None, due: int, batch: int, *, shared_state: bool) -> int:
    """How many helper processes a send of ``due`` copies starts: ``workers`` - 1 when asked for,
    and never more than there are batches to share.

    ``workers = "auto"`` (None): on PostgreSQL (``shared_state``) one process per core, for an
    issue of at least BATCHES_PER_HELPER batches per process; on SQLite none, because every
    process takes turns at the file's one write lock (measured with bench/workers.py on 2 cores:
    two processes sent 0.94x, four 0.79x, of what one did).
    """
    if workers is None:
        if not shared_state:
            return 0
        wanted = min(cores() - 1, due // (batch * BATCHES_PER_HELPER))  # a small issue is not worth a process
    else:
        wanted = workers - 1
    return max(0, min(wanted, -(-due // batch) - 1))


class Helpers:
    """The running helper processes of one send."""

    def __init__(self, processes: list[asyncio.subprocess.Process], tell: Callable[[str], None]) -> None:
        self.processes = processes
        self.tell = tell
        self.stopped = False  # stop() sent them SIGTERM
        self._readers = [asyncio.create_task(self._relay_output(p)) for p in processes]

    @classmethod
    async def start(cls, settings: Settings, issue_id: int, count: int, tell: Callable[[str], None]) -> Helpers:
        """Start ``count`` workers for the issue, with this process's configuration and state database."""
        state = settings.state_db
        env = dict(os.environ, DIGEST_STATE_URL=str(state) if isinstance(state, PostgresUrl) else str(Path(state).resolve()))
        command = [sys.executable, "-m", "digest", "--config", str(settings.config_file.resolve()),
                   "worker", "--issue", str(issue_id), "--quiet"]
        processes = [await asyncio.create_subprocess_exec(*command, env=env, stdin=asyncio.subprocess.DEVNULL,
                                                          stdout=asyncio.subprocess.DEVNULL,
                                                          stderr=asyncio.subprocess.PIPE)
                     for _ in range(count)]
        return cls(processes, tell)

    async def _relay_output(self, process: asyncio.subprocess.Process) -> None:
        """A helper's warnings and errors reach the operator through the send's own notices."""
        assert process.stderr is not None
        async for line in process.stderr:
            text = line.decode(errors="replace").strip()
            if text:
                self.tell(f"worker {process.pid}: {text}")

    def stop(self) -> None:
        """Ask every helper to finish the copies in flight and stop (as SIGTERM does to `digest send`)."""
        self.stopped = True
        for process in self.processes:
            if process.returncode is None:
                try:
                    process.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass

    async def wait(self) -> list[tuple[int, int]]:
        """Wait for every helper to exit; (pid, exit code) of those that failed.

        One that our stop() ended while it was still starting, before its own SIGTERM handler was
        in place (it dies of the signal: code -15), held no copies and did not fail."""
        codes = [await p.wait() for p in self.processes]
        await asyncio.gather(*self._readers, return_exceptions=True)
        return [(p.pid, code) for p, code in zip(self.processes, codes)
                if code != 0 and not (self.stopped and code == -signal.SIGTERM)]


def run_counts(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Outcomes reached between two counts of an issue's copies, by whichever sender reached them."""
    return {state: after[state] - before[state] for state in STATES if after[state] > before[state]}


def settled(counts: dict[str, int]) -> dict[str, int]:
    """The outcomes a progress bar counts as done (not 'pending' or 'sending')."""
    return {state: n for state, n in counts.items() if state in SETTLED}


async def watch(ledger: Ledger, issue_id: int, before: dict[str, int], total: int,
                progress: Callable[[dict[str, int], int], None], every: float = 0.5) -> None:
    """Feed ``progress`` from the ledger's counts (every sender's outcomes) until cancelled."""
    while True:
        await asyncio.sleep(every)
        progress(settled(run_counts(before, ledger.counts(issue_id))), total)
