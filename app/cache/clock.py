"""Per-key invalidation shared by every worker process of one machine.

A small memory-mapped file holds a global sequence number and 65,536 slots. Invalidating
a key stores a new sequence number in the key's slot (keys hash to slots; a collision
only invalidates a little more than needed), and then publishes it as the global number.
A cached entry remembers the global number read before its response was computed; it is
valid while every slot of its keys is at most that number. So an invalidation that lands
while a response is being computed keeps that response out of the cache, and one that
lands later makes it invalid, in every process that maps the file, with no message to
send. Writers take an exclusive `flock`; readers read without a lock, checking the global
number before the slots (writers store the slots first).
"""

from __future__ import annotations

import fcntl
import mmap
import os
import secrets
import zlib
from collections.abc import Iterable
from pathlib import Path

SLOTS = 1 << 16
_MAGIC = int.from_bytes(b"nwsclk01", "little")
# Header words: magic, origin (two words), sequence, floor; then padding to 8 words.
_MAGIC_AT, _ORIGIN_AT, _SEQ_AT, _FLOOR_AT = 0, 1, 3, 4
_HEADER_WORDS = 8
_SIZE = (_HEADER_WORDS + SLOTS) * 8


def slot_of(key: str) -> int:
    return _HEADER_WORDS + (zlib.crc32(key.encode()) & (SLOTS - 1))


class KeyClock:
    """The invalidation state of one machine (one file)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            fresh = os.fstat(self._fd).st_size != _SIZE
            if fresh:
                os.ftruncate(self._fd, 0)
                os.ftruncate(self._fd, _SIZE)
            self._map = mmap.mmap(self._fd, _SIZE)
            self._words = memoryview(self._map).cast("Q")
            if fresh or self._words[_MAGIC_AT] != _MAGIC:
                self._words[_ORIGIN_AT] = int.from_bytes(secrets.token_bytes(8), "little")
                self._words[_ORIGIN_AT + 1] = int.from_bytes(secrets.token_bytes(8), "little")
                self._words[_MAGIC_AT] = _MAGIC
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        # Which machine an invalidation came from (all workers sharing this file).
        self.origin = f"{self._words[_ORIGIN_AT]:016x}{self._words[_ORIGIN_AT + 1]:016x}"

    def now(self) -> int:
        """The sequence number to remember before computing a response."""
        return int(self._words[_SEQ_AT])

    def valid(self, slots: Iterable[int], since: int) -> bool:
        """Whether nothing touching these slots was invalidated after `since`."""
        words = self._words
        if words[_FLOOR_AT] > since:
            return False
        return all(words[slot] <= since for slot in slots)

    def invalidate(self, keys: Iterable[str]) -> int:
        """Invalidate these keys on this machine; returns the new sequence number."""
        slots = {slot_of(key) for key in keys}
        return self._advance(slots, everything=False)

    def invalidate_all(self) -> int:
        return self._advance(set(), everything=True)

    def _advance(self, slots: set[int], *, everything: bool) -> int:
        words = self._words
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            sequence = words[_SEQ_AT] + 1
            for slot in slots:
                words[slot] = sequence
            if everything:
                words[_FLOOR_AT] = sequence
            # Published last: a reader that sees this number sees the slots written above.
            words[_SEQ_AT] = sequence
            return int(sequence)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self._words.release()
        self._map.close()
        os.close(self._fd)
