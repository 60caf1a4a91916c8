"""Many senders, one issue: `digest send --workers N`, `digest worker`, and what happens when one dies.

Every process here is a real `digest` process; the relay is aiosmtpd on 127.0.0.1 in a thread of
this process, slowed a little so that a kill lands mid-send; the state is a real SQLite file or a
real PostgreSQL database. The PostgreSQL restart takes a cluster of its own.
"""

from __future__ import annotations

import collections
import datetime as dt
import signal
import sqlite3
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

from digest.state.ledger import Delivery

D = DATE.isoformat()
READERS = 160
BATCH = 20
POOL = 2


def query(state, sql: str, params: tuple = ()) -> list[tuple]:
    """Rows of one read-only query on either backend (``?`` placeholders)."""
    if isinstance(state, str) and state.startswith("postgresql://"):
        import psycopg
        with psycopg.connect(state, autocommit=True) as pg:
            if not pg.execute("SELECT to_regclass('deliveries') IS NOT NULL").fetchone()[0]:
                return []
            return [tuple(row) for row in pg.execute(sql.replace("?", "%s"), params)]
    if not Path(state).exists():
        return []  # not created yet (connecting would create an empty file where digest's database goes)
    db = sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=30)
    try:
        return list(db.execute(sql, params))
    except sqlite3.OperationalError as exc:
        if "no such" in str(exc):  # table or column: the database is being created or upgraded
            return []  # being created
        raise
    finally:
        db.close()


def senders(state) -> collections.Counter[str]:
    """Copies sent, per sender process (the pid of host:pid:n, or a named worker's name)."""
    rows = query(state, "SELECT sent_by FROM deliveries WHERE state = 'sent'")
    return collections.Counter(_process(who) for (who,) in rows)


def _process(sender: str) -> str:
    return sender.split("#")[0] if "#" in sender else sender.split(":")[1]


def delivery_rows(state) -> list[Delivery]:
    return [Delivery(0, email, "", st, attempts, mid) for email, st, attempts, mid in ledger_rows(state)]


def newsroom(tmp_path: Path, port: int, **delivery) -> Path:
    return write_newsroom(tmp_path / "newsroom", port=port, pool_size=POOL, readers=READERS,
                          delivery={"batch": BATCH, **delivery})


def slowed() -> ThreadedServer:
    return ThreadedServer(FaultHandler(data_delay=lambda: 0.03))  # 2.4 s for one sender: a helper starts in time


def test_two_workers_send_every_reader_once_the_bytes_digest_render_wrote(tmp_path, state_db):
    with slowed() as server:
        config = newsroom(tmp_path, server.port)
        render = start_digest(config, state_db, "render", "am", "--date", D, "--out", str(tmp_path / "dry"))
        _, err = finish(render)
        assert render.returncode == 0, err
        rendered = {p.name.split("-", 1)[1].removesuffix(".eml"): p.read_bytes()
                    for p in (tmp_path / "dry" / "am" / D).glob("*.eml")}
        assert len(rendered) == READERS

        out, err = finish(start_digest(config, state_db, "send", "am", "--date", D, "--workers", "2"))
        assert f"done: {READERS} sent" in out, (out, err)
        received = server.handler.received
    by_reader = collections.defaultdict(list)
    for message in received:
        by_reader[message.recipients[0]].append(message.data)
    assert {reader: len(copies) for reader, copies in by_reader.items()} == {reader: 1 for reader in rendered}
    for reader, (data,) in by_reader.items():
        assert data == rendered[reader], f"{reader}: the copy differs from `digest render`'s"
    shares = senders(state_db)
    assert len(shares) == 2 and min(shares.values()) >= BATCH, f"both processes sent: {shares}"
    assert sum(shares.values()) == READERS
    status = start_digest(config, state_db, "status", "am", "--date", D)
    out, _ = finish(status)
    table = " ".join(out.split())
    assert "Per sender" in table and all(f":{pid} │ {n} │" in table for pid, n in shares.items()), out


def test_a_named_worker_killed_mid_send_lets_its_lease_lapse_and_the_other_sender_finishes(tmp_path, state_db):
    """Two machines' senders, as far as the ledger can tell: a named worker's claims are judged by their
    lease alone (3 s here). Its batch is taken over once the lease lapses, not before; nothing is
    lost; only the copies it had in flight are sent twice, with the same Message-ID."""
    lease = 3.0
    with ThreadedServer(FaultHandler(data_delay=lambda: 0.05)) as server:
        config = newsroom(tmp_path, server.port, lease_seconds=lease)
        coordinator = start_digest(config, state_db, "send", "am", "--date", D, "--workers", "1")
        worker = None
        try:
            assert wait_for(lambda: len(server.handler.data_seen) > 0, 30), "the send did not start"
            worker = start_digest(config, state_db, "worker", "--name", "box-b", "--poll", "0.2")
            assert wait_for(lambda: senders(state_db)["box-b"] >= 5, 30), "the worker never sent"
            worker.send_signal(signal.SIGKILL)
            killed_at = time.time()
            worker.communicate()
            held = query(state_db, "SELECT email, state, claim_until FROM deliveries WHERE claimed_by LIKE ?",
                         ("box-b#%",))
            out, err = finish(coordinator)
        finally:
            for process in (coordinator, worker):
                if process is not None and process.poll() is None:
                    process.kill()
                    process.communicate()
        received = server.handler.received
    assert f"done: {READERS} sent" in out, (out, err)
    in_flight = {email for email, st, _ in held if st == "sending"}
    assert held, "the worker held no batch when it was killed"
    assert len(in_flight) <= POOL
    rows = delivery_rows(state_db)
    copies = check_consistent(rows, received)  # every reader's copies share one Message-ID
    assert {r.email for r in rows if r.state == "sent"} == {f"reader{n:04d}@example.com" for n in range(1, READERS + 1)}
    twice = {reader for reader, got in copies.items() if len(got) > 1}
    assert twice <= in_flight, f"sent twice though not in flight at the kill: {twice - in_flight}"
    # Not one of the dead worker's copies was taken before its lease lapsed.
    lapsed = max(until for _, _, until in held)
    assert lapsed - killed_at > lease / 2
    taken = query(state_db, "SELECT updated_at FROM deliveries WHERE email IN (%s)" % ",".join("?" * len(held)),
                  tuple(email for email, _, _ in held))
    first_taken = min(dt.datetime.fromisoformat(stamp).timestamp() for (stamp,) in taken)
    assert first_taken >= lapsed - 0.05, f"a copy was taken {lapsed - first_taken:.2f} s before the lease lapsed"


def test_a_helper_killed_mid_send_is_replaced_at_once_on_the_same_machine(tmp_path, state_db):
    """A helper of `digest send --workers 2` is a process of this machine: when its pid is gone its
    batch is free at once, without waiting for the 60 s lease."""
    with ThreadedServer(FaultHandler(data_delay=lambda: 0.05)) as server:
        config = newsroom(tmp_path, server.port)
        started = time.monotonic()
        send = start_digest(config, state_db, "send", "am", "--date", D, "--workers", "2")
        try:
            assert wait_for(lambda: len(senders(state_db)) == 2, 30), "the helper never sent"
            helper = next(pid for pid in senders(state_db) if int(pid) != send.pid)
            subprocess.run(["kill", "-KILL", helper], check=True)
            out, err = finish(send)
        finally:
            if send.poll() is None:
                send.kill()
                send.communicate()
        elapsed = time.monotonic() - started
        received = server.handler.received
    assert f"done: {READERS} sent" in out, (out, err)
    assert f"worker {helper} exited with code -9" in " ".join(err.split()), err
    assert elapsed < 60, f"the send waited for the lease ({elapsed:.0f} s)"
    rows = delivery_rows(state_db)
    copies = check_consistent(rows, received)
    assert sum(len(got) > 1 for got in copies.values()) <= POOL
    assert all(r.state == "sent" for r in rows) and len(rows) == READERS


def test_a_send_stopped_while_its_helper_is_starting_reports_no_failed_worker(tmp_path, state_db):
    """SIGTERM to `digest send --workers 2` alone while its helper is still starting (before the
    helper has a handler of its own, so the send's SIGTERM kills it): the send stops as asked and
    does not report its helper as a worker that failed with copies taken over by others."""
    with slowed() as server:
        config = newsroom(tmp_path, server.port)
        send = start_digest(config, state_db, "send", "am", "--date", D, "--workers", "2")
        try:
            children = Path(f"/proc/{send.pid}/task/{send.pid}/children")
            assert wait_for(lambda: children.read_text().split() or send.poll() is not None, 30)
            assert send.poll() is None, "the send ended before its helper started"
            helper = int(children.read_text().split()[0])
            send.send_signal(signal.SIGTERM)
            out, err = finish(send)
        finally:
            if send.poll() is None:
                send.kill()
                send.communicate()
    assert send.returncode == 1 and "stopped by a signal" in out, (out, err)
    assert "exited with code" not in err, err
    assert not Path(f"/proc/{helper}").exists() or "zombie" in Path(f"/proc/{helper}/status").read_text().lower()
    assert {r.state for r in delivery_rows(state_db)} <= {"sent", "pending"}


def test_three_sends_of_one_issue_started_at_once_make_one_issue_and_send_each_reader_once(tmp_path, state_db):
    with slowed() as server:
        config = newsroom(tmp_path, server.port)
        processes = [start_digest(config, state_db, "send", "am", "--date", D, "--workers", "2") for _ in range(3)]
        results = [finish(p) for p in processes]
        received = server.handler.received
    codes = [p.returncode for p in processes]
    assert codes.count(0) >= 1, results
    for process, (out, err) in zip(processes, results):
        assert process.returncode == 0 or "already running" in err, (out, err)
    assert query(state_db, "SELECT count(*) FROM issues") == [(1,)]
    assert collections.Counter(r.recipients[0] for r in received) == collections.Counter(
        {f"reader{n:04d}@example.com": 1 for n in range(1, READERS + 1)})


def test_postgresql_restarted_mid_send_workers_reconnect_and_finish(tmp_path, own_postgres):
    from digest.state.ledger import state_path

    state = state_path(own_postgres.create_database(), tmp_path)
    with ThreadedServer(FaultHandler(data_delay=lambda: 0.05)) as server:
        config = newsroom(tmp_path, server.port)
        send = start_digest(config, state, "send", "am", "--date", D, "--workers", "2")
        try:
            assert wait_for(lambda: len(server.handler.data_seen) >= 40, 30), "the send did not start"
            own_postgres.restart()
            out, err = finish(send, 90)
        finally:
            if send.poll() is None:
                send.kill()
                send.communicate()
        received = server.handler.received
    assert send.returncode == 0, (out, err)
    rows = delivery_rows(state)
    copies = check_consistent(rows, received)
    assert len(rows) == READERS and all(r.state == "sent" for r in rows), collections.Counter(r.state for r in rows)
    assert set(copies) == {r.email for r in rows}


def test_a_worker_that_cannot_reach_its_database_says_so_in_one_line(tmp_path):
    config = newsroom(tmp_path, 9)
    worker = start_digest(config, "postgresql://nobody@127.0.0.1:1/digest", "worker")
    out, err = finish(worker, 30)
    assert worker.returncode == 1, (out, err)
    error = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "cannot connect to the state database" in error[0] and "\\n" not in error[0], err
    assert "Traceback" not in err


def test_workers_auto_uses_the_cores_on_postgresql_only_and_never_more_processes_than_batches(monkeypatch):
    from digest.deliver import helpers

    monkeypatch.setattr(helpers, "cores", lambda: 4)
    assert helpers.helpers_for(None, 100_000, 200, shared_state=True) == 3  # one process per core
    assert helpers.helpers_for(None, 100_000, 200, shared_state=False) == 0  # SQLite: one write lock, one process
    assert helpers.helpers_for(None, 500, 200, shared_state=True) == 1  # 2 batches per process: 500 copies carry 2
    assert helpers.helpers_for(None, 300, 200, shared_state=True) == 0  # too small to be worth a process
    assert helpers.helpers_for(3, 100_000, 200, shared_state=False) == 2  # asked for: given, SQLite too
    assert helpers.helpers_for(8, 450, 200, shared_state=True) == 2  # three batches: three processes at most
