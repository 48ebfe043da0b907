"""The key-value view through which the state machine reads and writes state.

The state machine never sees LMDB. The log hands it a :class:`KV` that lives
inside the same write transaction as the entries being appended (or, in
tests, a :class:`MemoryKV`). Writes made while applying an entry go to an
:class:`Overlay` first; the log folds the overlay into the transaction only if
the entry is accepted, so a rejected entry changes nothing. The overlay also
records the accepted writes in order, which is what the state digest hashes.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from typing import Protocol

from sortedcontainers import SortedList  # type: ignore[import-untyped]

__all__ = ["EMPTY_STATE_DIGEST", "KV", "MemoryKV", "Overlay", "fold_state_digest"]


class KV(Protocol):
    """A sorted map of bytes to bytes. ``scan`` yields pairs in key order."""

    def get(self, key: bytes) -> bytes | None: ...

    def put(self, key: bytes, value: bytes) -> None: ...

    def delete(self, key: bytes) -> None: ...

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Pairs whose key starts with ``prefix``, from ``start`` (inclusive,
        defaults to ``prefix``) in ascending key order."""
        ...


class MemoryKV:
    """An in-memory sorted KV: the twin of the LMDB state table.

    Values live in a dict; the keys are also kept in a ``SortedList`` so that
    ``put`` of a new key and ``delete`` cost O(log n), not the O(n) of
    inserting into a flat Python list, and a scan seeks in O(log n).
    """

    # A scan copies out at most this many keys at a time, then re-seeks past
    # the last one. Most scans stop after one or two pairs (a seek to the
    # segment holding a serial), so the first chunk is small.
    _FIRST_CHUNK = 4
    _MAX_CHUNK = 256

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._keys: SortedList = SortedList()

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        if key not in self._data:
            self._keys.add(key)
        self._data[key] = bytes(value)

    def delete(self, key: bytes) -> None:
        if self._data.pop(key, None) is not None:
            self._keys.remove(key)

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        keys = self._keys
        data = self._data
        i = keys.bisect_left(start if start is not None and start > prefix else prefix)
        chunk = self._FIRST_CHUNK
        # Callers may write while iterating. Each chunk of keys is copied out
        # and the cursor re-seeks past the last key yielded, like the LMDB
        # store's scan: keys deleted meanwhile are skipped, and no key is
        # yielded twice or out of order.
        while True:
            batch = keys[i : i + chunk]
            if not batch:
                return
            for key in batch:
                if not key.startswith(prefix):
                    return
                value = data.get(key)
                if value is not None:
                    yield key, value
            i = keys.bisect_right(batch[-1])
            chunk = min(chunk * 2, self._MAX_CHUNK)

    def items(self) -> list[tuple[bytes, bytes]]:
        return [(k, self._data[k]) for k in self._keys]


class Overlay:
    """Buffers writes over a base KV until :meth:`commit_into` or discard.

    Reads see the overlay's own writes first. ``writes`` keeps every write in
    the order it was made (``None`` value = delete), for the state digest.
    """

    def __init__(self, base: KV) -> None:
        self._base = base
        self._pending: dict[bytes, bytes | None] = {}
        self.writes: list[tuple[bytes, bytes | None]] = []

    def get(self, key: bytes) -> bytes | None:
        if key in self._pending:
            return self._pending[key]
        return self._base.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        value = bytes(value)
        self._pending[key] = value
        self.writes.append((key, value))

    def delete(self, key: bytes) -> None:
        self._pending[key] = None
        self.writes.append((key, None))

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        lo = start if start is not None and start > prefix else prefix
        mine = sorted(k for k in self._pending if k.startswith(prefix) and k >= lo)
        base = self._base.scan(prefix, start)
        if not mine:
            # Nothing buffered under the prefix (the usual case: most scans
            # come before this entry's writes): the base's pairs as they are.
            yield from base
            return
        # Merge the base's sorted pairs with the overlay's sorted keys.
        i = 0
        for key, value in base:
            while i < len(mine) and mine[i] < key:
                pending = self._pending[mine[i]]
                if pending is not None:
                    yield mine[i], pending
                i += 1
            if i < len(mine) and mine[i] == key:
                pending = self._pending[key]
                i += 1
                if pending is not None:
                    yield key, pending
                continue
            yield key, value
        for key in mine[i:]:
            pending = self._pending[key]
            if pending is not None:
                yield key, pending

    def commit_into(self, target: KV) -> None:
        """Apply the buffered writes to ``target`` (normally the base)."""
        for key, value in self._pending.items():
            if value is None:
                target.delete(key)
            else:
                target.put(key, value)


# The digest of a state with no writes yet. Replaying the same entries makes
# the same writes in the same order, so the chained digest is reproducible.
EMPTY_STATE_DIGEST = hashlib.sha256(b"carbonledger/state/v1").digest()


def fold_state_digest(previous: bytes, writes: list[tuple[bytes, bytes | None]]) -> bytes:
    """Chain ``writes`` (in order) onto ``previous``: the per-block state digest.

    Each write is length-prefixed so no two different write lists share an
    encoding; a delete is marked by a length of 2**32 - 1.
    """
    h = hashlib.sha256(previous)
    for key, value in writes:
        h.update(struct.pack(">I", len(key)))
        h.update(key)
        if value is None:
            h.update(b"\xff\xff\xff\xff")
        else:
            h.update(struct.pack(">I", len(value)))
            h.update(value)
    return h.digest()
