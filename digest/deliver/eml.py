"""The dry run's transport: each message written as an .eml file in the issue's own folder.

The dry run is a transport rather than a flag, so ``digest render`` writes the same bytes that a
send would put on the wire.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import DigestError
from ..files import write_atomically
from .transport import Envelope

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._@+-]")


@dataclass(frozen=True, slots=True)
class Delivered:
    """What a transport did with one message."""

    recipient: str
    where: str  # the .eml file written
    size: int

# --- the dry run's folder -----------------------------------------------------------------------
# Each issue gets its own folder (OUT/EDITION/DATE). A manifest in it lists every file digest
# wrote there, written before the file itself, so a later run (even after a crash) removes
# exactly digest's own files and nothing of the user's.

MANIFEST = ".digest-dry-run.jsonl"
_MANIFEST_HEADER = {"written_by": "digest", "what": "dry run; the files listed below are replaced by the next run"}


class DryRunFolderError(DigestError):
    """A dry run was pointed at a folder that holds files digest did not write."""

    exit_code = 2


def dry_run_files(folder: Path) -> list[str] | None:
    """The file names digest's manifest in ``folder`` lists; None when there is no manifest."""
    try:
        lines = (folder / MANIFEST).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        return None
    try:
        header = json.loads(lines[0]) if lines else None
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("written_by") != "digest":
        return None
    names = []
    for line in lines[1:]:
        try:
            name = json.loads(line)
        except ValueError:
            continue  # a line a crash cut short: its file was never started
        # Only plain names in this folder: a manifest is never a way to reach other files.
        if isinstance(name, str) and name not in ("", ".", "..", MANIFEST) and "/" not in name and "\\" not in name:
            names.append(name)
    return names


def claim_dry_run_folder(folder: Path) -> None:
    """Refuse ``folder`` when it holds anything but an earlier dry run of digest's."""
    if folder.is_dir() and dry_run_files(folder) is None and any(folder.iterdir()):
        raise DryRunFolderError(f"{folder} is not empty and holds no dry run of digest's (no {MANIFEST}); "
                                "nothing was written: give --out a new or empty folder")


def clear_dry_run(folder: Path) -> None:
    """Remove the files an earlier dry run of digest's wrote in ``folder`` (its manifest says which), nothing else."""
    names = dry_run_files(folder) if folder.is_dir() else None
    if names is None:
        return
    for name in names:
        (folder / name).unlink(missing_ok=True)
        (folder / f".{name}.tmp").unlink(missing_ok=True)
    (folder / MANIFEST).unlink(missing_ok=True)


class EmlDirectory:
    """Writes one ``.eml`` file per message and, on close, an ``index.html`` to browse them.

    The folder must be new, empty or an earlier dry run's (``claim_dry_run_folder``); that run's
    files are removed first, so the folder shows one run, and every file written is listed in
    the folder's manifest before it is written.
    """

    def __init__(self, folder: Path, title: str) -> None:
        self.folder = folder
        self.title = title
        self.rows: list[tuple[str, str, int]] = []
        claim_dry_run_folder(folder)
        folder.mkdir(parents=True, exist_ok=True)
        clear_dry_run(folder)
        self.manifest = open(folder / MANIFEST, "w", encoding="utf-8")
        self._list(_MANIFEST_HEADER)

    def _list(self, entry: object) -> None:
        self.manifest.write(json.dumps(entry) + "\n")
        self.manifest.flush()

    def file_name(self, envelope: Envelope) -> str:
        return f"{len(self.rows) + 1:06d}-{_UNSAFE_NAME.sub('_', envelope.recipient)}.eml"

    async def deliver(self, envelope: Envelope, data: bytes) -> Delivered:
        name = self.file_name(envelope)
        self._list(name)
        write_atomically(self.folder / name, data)
        self.rows.append((envelope.recipient, name, len(data)))
        return Delivered(envelope.recipient, str(self.folder / name), len(data))

    async def close(self) -> None:
        try:
            self._list("index.html")
            write_atomically(self.folder / "index.html", self.index_html().encode("utf-8"))
        finally:
            self.manifest.close()

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
