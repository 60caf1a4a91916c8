"""Secrets stay in the environment: never in a .eml, an index page, a log line, an error or a repr."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

from conftest import ROOT
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from digest.cli import main
from digest.config import load_settings

SECRET = "k1:very-secret-signing-key-4f9c2e7a1b"
PASSWORD = "smtp-password-that-must-not-leak"


def _key_file(folder: Path) -> tuple[Path, list[bytes]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path = folder / "dkim.pem"
    path.touch(mode=0o600)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    b64 = base64.b64encode(der)
    return path, [b64[i:i + 24] for i in range(0, len(b64) - 24, 200)]  # samples of the key's base64


def test_no_secret_reaches_files_output_or_reprs(tmp_path: Path, monkeypatch, capsys) -> None:
    for name in ("digest.toml", "subscribers.csv"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "stories", tmp_path / "stories")
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    key_path, key_samples = _key_file(tmp_path)
    monkeypatch.setenv("DIGEST_SECRET_KEY", SECRET)
    monkeypatch.setenv("DIGEST_SMTP_PASSWORD", PASSWORD)
    monkeypatch.setenv("DIGEST_SMTP_USERNAME", "digest")
    monkeypatch.setenv("DIGEST_DKIM_KEY_FILE", str(key_path))
    out = tmp_path / "dry-run"
    assert main(["--config", str(tmp_path / "digest.toml"), "render", "am", "--date", "2026-12-01", "--out", str(out)]) == 0
    assert main(["--config", str(tmp_path / "digest.toml"), "check", "am", "--date", "2026-12-01"]) in (0, 2)
    printed = capsys.readouterr()
    issue = out / "am" / "2026-12-01"
    written = [p.read_bytes() for p in issue.iterdir()]  # the .eml files, index.html and the manifest
    copies = [p.read_bytes() for p in issue.glob("*.eml")]
    assert len(copies) == 11 and all(b"DKIM-Signature:" in c for c in copies)
    secret_bytes = SECRET.split(":", 1)[1].encode()
    for blob in [*written, printed.out.encode(), printed.err.encode()]:
        assert secret_bytes not in blob and PASSWORD.encode() not in blob
        assert not any(sample in blob for sample in key_samples)
    settings = load_settings(tmp_path / "digest.toml")
    assert PASSWORD not in repr(settings) and secret_bytes.decode() not in repr(settings)


def test_a_key_file_others_can_read_is_refused_before_anything_is_written(tmp_path: Path, monkeypatch, capsys) -> None:
    for name in ("digest.toml", "subscribers.csv"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "stories", tmp_path / "stories")
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    key_path, key_samples = _key_file(tmp_path)
    key_path.chmod(0o644)
    monkeypatch.setenv("DIGEST_SECRET_KEY", SECRET)
    monkeypatch.setenv("DIGEST_DKIM_KEY_FILE", str(key_path))
    out = tmp_path / "dry-run"
    assert main(["--config", str(tmp_path / "digest.toml"), "render", "am", "--date", "2026-12-01", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "chmod 600" in err and str(key_path) in err
    assert not any(sample.decode() in err for sample in key_samples)
    assert not out.exists() or not list(out.glob("*.eml"))
