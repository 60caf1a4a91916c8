"""Where finished messages go. Building never touches these; these never build.

A transport takes an envelope and the exact bytes of one message. The dry run is a transport
(``EmlDirectory``) rather than a flag, so ``digest render`` writes the same bytes that a send would
put on the wire. ``Memory`` keeps messages in a list for tests.
"""

from __future__ import annotations

import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._@+-]")


@dataclass(frozen=True, slots=True)
class Envelope:
    """SMTP envelope: the return path and the one recipient of this copy."""

    sender: str
    recipient: str


@dataclass(frozen=True, slots=True)
class Delivered:
    """What a transport did with one message."""

    recipient: str
    where: str  # a file path, a server reply, or "memory"
    size: int


class Transport(Protocol):
    async def deliver(self, envelope: Envelope, data: bytes) -> Delivered: ...

    async def close(self) -> None: ...


@dataclass
class Memory:
    """Keeps every message it is given, in order."""

    sent: list[tuple[Envelope, bytes]] = field(default_factory=list)

    async def deliver(self, envelope: Envelope, data: bytes) -> Delivered:
        self.sent.append((envelope, data))
        return Delivered(envelope.recipient, "memory", len(data))

    async def close(self) -> None:
        return None


def _write_atomically(path: Path, data: bytes) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    with open(temp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)


def clear_dry_run(folder: Path) -> None:
    """Remove what a dry run writes (``*.eml`` and ``index.html``) from ``folder``, nothing else."""
    if folder.is_dir():
        for old in [*folder.glob("*.eml"), folder / "index.html"]:
            old.unlink(missing_ok=True)


class EmlDirectory:
    """Writes one ``.eml`` file per message and, on close, an ``index.html`` to browse them.

    Files from an earlier dry run of the same folder are removed first (only ``*.eml`` and
    ``index.html``), so the folder always shows one run.
    """

    def __init__(self, folder: Path, title: str) -> None:
        self.folder = folder
        self.title = title
        self.rows: list[tuple[str, str, int]] = []
        folder.mkdir(parents=True, exist_ok=True)
        clear_dry_run(folder)

    def file_name(self, envelope: Envelope) -> str:
        return f"{len(self.rows) + 1:06d}-{_UNSAFE_NAME.sub('_', envelope.recipient)}.eml"

    async def deliver(self, envelope: Envelope, data: bytes) -> Delivered:
        name = self.file_name(envelope)
        _write_atomically(self.folder / name, data)
        self.rows.append((envelope.recipient, name, len(data)))
        return Delivered(envelope.recipient, str(self.folder / name), len(data))

    async def close(self) -> None:
        _write_atomically(self.folder / "index.html", self.index_html().encode("utf-8"))

    def index_html(self) -> str:
        rows = "\n".join(
            f'<tr><td>{n}</td><td>{html.escape(rcpt)}</td><td><a href="{html.escape(name)}">{html.escape(name)}</a></td>'
            f"<td>{size / 1024:.1f} KB</td></tr>"
            for n, (rcpt, name, size) in enumerate(self.rows, start=1)
        )
        title = html.escape(self.title)
        return (
            f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            "<style>body{font-family:system-ui,sans-serif;margin:2rem;color:#1b1f24}"
            "table{border-collapse:collapse}td,th{padding:.35rem .8rem;border-bottom:1px solid #ddd;text-align:left}"
            "</style></head><body>"
            f"<h1>{title}</h1><p>{len(self.rows)} messages. Open a file with a mail client to see it as a reader would.</p>"
            f"<table><thead><tr><th>#</th><th>Recipient</th><th>File</th><th>Size</th></tr></thead><tbody>\n{rows}\n"
            "</tbody></table></body></html>\n"
        )
