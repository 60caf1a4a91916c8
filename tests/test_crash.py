"""A real `digest send` process, killed at random moments, then resumed until done.

The server (in a thread of this process) stores each message as soon as its body arrives and then
takes 30-80 ms to answer, so a kill often lands between "the server has it" and "the ledger knows":
exactly the copies that may be sent twice. They must be the copies the ledger had in 'sending' at
a kill (at most pool_size per kill), and carry the same Message-ID as their twin.
"""

from __future__ import annotations

import collections
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from smtp_faults import (
    DATE,
    FaultHandler,
    ThreadedServer,
    check_consistent,
    finish,
    ledger_rows,
    start_digest,
    wait_for,
    write_newsroom,
)

READERS = 150
POOL = 3
SEED = 20261201
D = DATE.isoformat()


def slowed_server(seed: int) -> ThreadedServer:
    rng = random.Random(seed)  # used in the server thread only
    return ThreadedServer(FaultHandler(data_delay=lambda: rng.uniform(0.03, 0.08)))


def audience() -> list[str]:
    return [f"reader{n:04d}@example.com" for n in range(1, READERS + 1)]


def delivery_rows(state: Path):
    from digest.state.ledger import Delivery
    return [Delivery(0, email, "", st, attempts, mid) for email, st, attempts, mid in ledger_rows(state)]


def test_sigkill_at_random_moments_then_resume_delivers_every_reader(tmp_path, state_db):
    rng = random.Random(SEED)
    with slowed_server(SEED + 1) as server:
        handler = server.handler
        config = write_newsroom(tmp_path / "newsroom", port=server.port, pool_size=POOL, readers=READERS)
        state = state_db
        in_flight_at_kills: list[set[str]] = []
        for _ in range(rng.randint(4, 6)):
            before = len(handler.data_seen)
            process = start_digest(config, state, "send", "am", "--date", D)
            try:
                # Count the moment from when this run is really sending, not from process start.
                started = wait_for(lambda: len(handler.data_seen) > before or process.poll() is not None, 30)
                assert started and process.poll() is None, "the run ended before it could be killed"
                time.sleep(rng.uniform(0.1, 0.6))
                process.send_signal(signal.SIGKILL)
            finally:
                process.kill()
                process.communicate()
            assert process.returncode == -signal.SIGKILL
            sending = {email for email, st, _, _ in ledger_rows(state) if st == "sending"}
            assert len(sending) <= POOL, f"{len(sending)} copies in flight with a pool of {POOL}"
            in_flight_at_kills.append(sending)
        assert any(st == "pending" for _, st, _, _ in ledger_rows(state)), "the kills came too late to matter"

        process = start_digest(config, state, "send", "am", "--date", D)
        out, err = finish(process)
        assert process.returncode == 0, out + err
        received = list(handler.received)

    rows = delivery_rows(state)
    assert len(rows) == READERS
    assert {st for _, st, _, _ in ledger_rows(state)} == {"sent"}
    stored = check_consistent(rows, received)  # also: every copy of a reader carries one Message-ID
    assert sorted(stored) == audience(), "a reader never received the issue"
    extra = {reader: len(copies) - 1 for reader, copies in stored.items() if len(copies) > 1}
    doubted = collections.Counter(email for kill in in_flight_at_kills for email in kill)
    for reader, count in extra.items():
        assert count <= doubted[reader], f"{reader} got {count + 1} copies but was in flight at {doubted[reader]} kills"
    assert sum(extra.values()) <= POOL * len(in_flight_at_kills)


def test_sigterm_finishes_in_flight_copies_exits_soon_and_leaves_no_duplicates(tmp_path, state_db):
    with slowed_server(SEED + 2) as server:
        handler = server.handler
        config = write_newsroom(tmp_path / "newsroom", port=server.port, pool_size=POOL, readers=READERS)
        state = state_db
        process = start_digest(config, state, "send", "am", "--date", D)
        try:
            assert wait_for(lambda: len(handler.received) >= 10 or process.poll() is not None, 30)
            assert process.poll() is None, "the send ended before the signal"
            process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            out, err = finish(process, timeout=15)
            took = time.monotonic() - signalled
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        assert process.returncode not in (0, None) and process.returncode > 0, (process.returncode, out, err)
        assert took < 5, f"exited {took:.1f} s after SIGTERM"
        assert "resum" in (out + err).lower(), out + err
        after_signal = ledger_rows(state)
        assert not [e for e, st, _, _ in after_signal if st in ("sending", "uncertain")], after_signal
        assert any(st == "pending" for _, st, _, _ in after_signal), "the signal came too late to matter"

        process = start_digest(config, state, "send", "am", "--date", D)
        out, err = finish(process)
        assert process.returncode == 0, out + err
        received = list(handler.received)

    rows = delivery_rows(state)
    assert {st for _, st, _, _ in ledger_rows(state)} == {"sent"}
    stored = check_consistent(rows, received)
    assert sorted(stored) == audience()
    assert {reader: len(c) for reader, c in stored.items() if len(c) > 1} == {}, "SIGTERM must not cause duplicates"
