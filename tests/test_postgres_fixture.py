"""The PostgreSQL fixtures start real servers that behave as the state tests will need them to:
a supported version, an empty database per test, data that survives a restart and a crash,
a server that is not root, and nothing left behind (folder, process, port) when a cluster goes."""

from __future__ import annotations

import os
import pwd
import socket
import stat
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from postgres import SUPERUSER, Cluster, PostgresError, reap_orphans

import postgres

pytestmark = pytest.mark.postgres


def user_tables(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                            "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
                            "AND n.nspname NOT LIKE 'pg_toast%'").fetchall()
    return [name for (name,) in rows]


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR: connections the server closed linger in TIME_WAIT on its port and would
        # make a busy machine's probe fail; a listener still holds the port against it.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def uid_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])


def test_the_server_is_postgresql_14_or_newer_at_its_url(postgres_cluster, postgres_url):
    assert postgres_url.startswith(f"postgresql://{SUPERUSER}@127.0.0.1:{postgres_cluster.port}/")
    with psycopg.connect(postgres_url) as conn:
        version = int(conn.execute("SHOW server_version_num").fetchone()[0])
        encoding = conn.execute("SHOW server_encoding").fetchone()[0]
    assert version >= 140000, version
    assert encoding == "UTF8"


def test_each_database_is_new_and_empty(postgres_cluster, postgres_url):
    other = postgres_cluster.create_database()
    try:
        assert other != postgres_url
        assert user_tables(postgres_url) == [] and user_tables(other) == []
        with psycopg.connect(postgres_url) as conn:
            conn.execute("CREATE TABLE marks (name text)")
        assert user_tables(postgres_url) == ["marks"]
        assert user_tables(other) == []
    finally:
        postgres_cluster.drop_database(other)


def test_a_dropped_database_is_gone_even_with_a_session_open(postgres_cluster):
    url = postgres_cluster.create_database()
    name = url.rsplit("/", 1)[1]
    session = psycopg.connect(url)
    postgres_cluster.drop_database(url)  # WITH (FORCE): the open session does not stop it
    with postgres_cluster.connect() as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,)).fetchone()[0] == 0
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")
    session.close()


def test_a_row_survives_restart_and_only_new_connections_work(own_postgres):
    url = own_postgres.create_database()
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE copies (email text)")
        conn.execute("INSERT INTO copies VALUES ('ana.lucero@example.com')")
    before = psycopg.connect(url, autocommit=True)
    port, pid = own_postgres.port, own_postgres.pid

    own_postgres.restart()

    assert own_postgres.port == port and own_postgres.pid not in (None, pid)
    with pytest.raises(psycopg.OperationalError):
        before.execute("SELECT 1")
    before.close()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT email FROM copies").fetchall() == [("ana.lucero@example.com",)]


def test_a_commit_survives_a_killed_server(own_postgres):
    url = own_postgres.create_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE copies (email text)")
        conn.execute("INSERT INTO copies VALUES ('ana.lucero@example.com')")
        log_size = own_postgres.log.stat().st_size

        own_postgres.kill()

        assert not own_postgres.running
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)

    own_postgres.start()

    # A crash, not a shutdown: the server had to recover from its WAL.
    assert "automatic recovery in progress" in own_postgres.log_tail(since=log_size)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT email FROM copies").fetchall() == [("ana.lucero@example.com",)]


def test_the_server_does_not_run_as_root(postgres_cluster):
    server_uid = uid_of(postgres_cluster.pid)
    folder = postgres_cluster.folder.stat()
    if os.geteuid() == 0:
        assert server_uid != 0
        assert pwd.getpwuid(server_uid).pw_name == "digest-pg"
    else:
        assert server_uid == os.geteuid()
    assert folder.st_uid == server_uid
    assert stat.S_IMODE(folder.st_mode) == 0o700


def test_destroy_removes_the_folder_and_frees_the_port(own_postgres):
    folder, port, pid = own_postgres.folder, own_postgres.port, own_postgres.pid
    assert folder.is_dir() and not port_is_free(port)

    own_postgres.destroy()

    assert not folder.exists()
    assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "Z"
    assert port_is_free(port)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(own_postgres.url(), connect_timeout=2)


def test_a_cluster_whose_test_process_died_is_removed_by_the_next_one(postgres_cluster, own_postgres):
    # own_postgres stands in for the cluster of a pytest that was killed: its owner is made a
    # process that has exited.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    (own_postgres.folder / "owner").write_text(f"{dead.stdout.strip()} 0\n")
    folder, port = own_postgres.folder, own_postgres.port

    removed = reap_orphans()

    assert folder in removed and not folder.exists()
    assert port_is_free(port)
    assert postgres_cluster.folder not in removed and postgres_cluster.running  # its owner is alive: us


def test_a_taken_port_makes_it_try_another(monkeypatch):
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    ports = iter([taken.getsockname()[1]])
    real_free_port = postgres.free_port
    monkeypatch.setattr(postgres, "free_port", lambda: next(ports, None) or real_free_port())
    try:
        with Cluster() as cluster:
            assert cluster.port != taken.getsockname()[1]
            assert "could not bind" in cluster.log.read_text()
            with cluster.connect() as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        taken.close()


def test_a_server_that_cannot_start_says_why_and_leaves_nothing(tmp_path):
    with pytest.raises(PostgresError) as failure:
        Cluster({"shared_buffers": "plenty"})
    message = str(failure.value)
    assert "shared_buffers" in message and "last lines of" in message
    folder = Path(message.split("did not start in ", 1)[1].split(" ", 1)[0])
    assert folder.name.startswith(postgres.FOLDER_PREFIX) and not folder.exists()
