"""Which addresses subscribers.csv has had so far, and on which line: duplicates are found while the
file streams, in about 48 bytes per address instead of the ~140 a dict of strings takes (a million
readers: under 50 MB rather than 120).

An address key is kept as a 96-bit BLAKE2b fingerprint in a preshed map (a C hash table of 64-bit
keys and values, spaCy's): 64 bits as the key, 32 more beside the line number in the value. Two
different addresses share a fingerprint with odds of about 1 in 10^16 for a million of them, and
even then the later row is reported, never dropped silently. Two that share only the 64-bit key
(odds of about 1 in 37 million for a million addresses) are told apart: the second is kept in a
plain dict. preshed is imported here only.
"""

from __future__ import annotations

import hashlib

from preshed.maps import PreshMap

_LINE_LIMIT = 1 << 32


class SeenAddresses:
    """Address keys already read, each with the line of the row that had it first."""

    def __init__(self) -> None:
        self._map = PreshMap()
        self._overflow: dict[str, int] = {}  # keys whose map cell another address's fingerprint holds

    @staticmethod
    def _fingerprint(key: str) -> tuple[int, int]:
        digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=12).digest()
        # preshed keeps 0 and 1 for its empty and deleted cells: the lowest bit pair is never 00 or 01.
        return int.from_bytes(digest[:8], "little") | 2, int.from_bytes(digest[8:], "little")

    def line_of(self, key: str) -> int | None:
        """The line where ``key`` was first seen, or None."""
        slot, check = self._fingerprint(key)
        value = self._map[slot]
        if value is not None and value & 0xFFFFFFFF == check:
            return value >> 32
        return self._overflow.get(key) if self._overflow else None

    def add(self, key: str, line: int) -> None:
        """Remember ``key`` as first seen on ``line`` (a line already kept for it stays)."""
        if not 0 < line < _LINE_LIMIT:
            raise ValueError(f"line {line} is out of range")
        slot, check = self._fingerprint(key)
        value = self._map[slot]
        if value is None:
            self._map[slot] = (line << 32) | check
        elif value & 0xFFFFFFFF != check:
            self._overflow.setdefault(key, line)
