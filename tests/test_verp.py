"""VERP return paths end to end: a real send over SMTP, then `digest bounces --json` on a bounce that quotes nothing."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from conftest import run
from smtp_faults import DATE, FaultHandler, ThreadedServer, write_newsroom

from digest import returnpath
from digest.config import parse_signing_keys

pytestmark = pytest.mark.usefixtures("no_hang")
D = DATE.isoformat()


@pytest.fixture
def sent(tmp_path, env, capsys):
    """An AM issue sent with [bounces] return_path set: (config, the server's messages, copy id by reader)."""
    env.chdir(tmp_path)
    with ThreadedServer(FaultHandler()) as server:
        config = write_newsroom(tmp_path / "newsroom", port=server.port, pool_size=2)
        config.write_text(config.read_text() + '\n[bounces]\nreturn_path = "bounce@northline.example.org"\n')
        code, out, err = run(capsys, "--config", str(config), "send", "am", "--date", D)
        assert code == 0, out + err
        received = list(server.handler.received)
    db = sqlite3.connect(tmp_path / "state.db")
    ids = dict(db.execute("SELECT email, id FROM deliveries"))
    db.close()
    return config, received, ids


def test_each_copy_goes_out_from_its_own_signed_return_path(sent, env):
    _, received, ids = sent
    keys = parse_signing_keys(os.environ["DIGEST_SECRET_KEY"])
    assert received
    for message in received:
        local, _, domain = message.sender.partition("@")
        assert domain == "northline.example.org" and local.startswith("bounce+")
        assert returnpath.copy_id(keys, local.removeprefix("bounce+")) == ids[message.recipients[0]]


def _bounce_to(address: str) -> bytes:
    return (f"From: MAILER-DAEMON@mx.example.net\nTo: {address}\nDelivered-To: {address}\n"
            "Subject: failure notice\n\nHi. This is the qmail-send program at mx.example.net.\n"
            "I'm afraid I wasn't able to deliver your message to the following addresses.\n\n"
            "<old.address@mx.example.net>:\nSorry, no mailbox here by that name. (#5.1.1)\n").encode()


def test_a_bounce_that_quotes_nothing_finds_its_reader_by_the_token(sent, tmp_path, capsys):
    config, received, ids = sent
    first = received[0]
    box = tmp_path / "box"
    box.mkdir()
    (box / "real.eml").write_bytes(_bounce_to(first.sender))
    forged = first.sender.split("-")[0] + "-0123456789ab@northline.example.org"
    (box / "forged.eml").write_bytes(_bounce_to(forged))
    code, out, err = run(capsys, "--config", str(config), "bounces", str(box), "--dry-run", "--all", "--json")
    assert code == 0, err
    records = {Path(r["file"]).name: r for r in map(json.loads, out.splitlines())}
    real = records["real.eml"]
    assert {"file", "recipient", "class", "status", "matched"} <= real.keys()
    assert (real["class"], real["status"], real["matched"]["by"]) == ("hard", "5.1.1", "verp")
    assert real["matched"]["reader"] == first.recipients[0] and real["matched"]["issue"] == {"edition": "am", "date": D}
    assert records["forged.eml"]["matched"] is None and "does not verify" in records["forged.eml"]["reason"]


def test_json_output_stays_pure_json_without_a_state_database(tmp_path, env, capsys):
    env.chdir(tmp_path)
    config = write_newsroom(tmp_path / "newsroom", port=2, pool_size=1)
    box = tmp_path / "box"
    box.mkdir()
    (box / "b.eml").write_bytes(_bounce_to("bounce+1-0123456789ab@northline.example.org"))
    code, out, err = run(capsys, "--config", str(config), "bounces", str(box), "--json")
    assert code == 0 and "no state database" in err
    [record] = [json.loads(line) for line in out.splitlines()]
    assert (record["recipient"], record["class"], record["matched"]) == ("old.address@mx.example.net", "hard", None)
