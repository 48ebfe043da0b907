"""The key-value view through which the state machine reads and writes state.

The state machine never sees LMDB. The log hands it a :class:`KV` that lives
inside the same write transaction as the entries being appended (or, in
tests, a :class:`MemoryKV`). The log wraps that KV in a :class:`Journal` for
the whole batch: writes go straight through, and the journal keeps each
write's previous value, so a rejected entry is rolled back to the savepoint
taken before it and changes nothing. The journal also records the accepted
writes in order, which is what the state digest hashes. An :class:`Overlay`
instead buffers writes until they are committed (the memory store's
transactions use it).
"""

from __future__ import annotations

import hashlib
import struct
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator
from typing import Protocol

__all__ = ["EMPTY_STATE_DIGEST", "KV", "Journal", "MemoryKV", "Overlay", "fold_state_digest"]


class KV(Protocol):
    """A sorted map of bytes to bytes. ``scan`` yields pairs in key order."""

    def get(self, key: bytes) -> bytes | None: ...

    def put(self, key: bytes, value: bytes) -> None: ...

    def delete(self, key: bytes) -> None: ...

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Pairs whose key starts with ``prefix``, from ``start`` (inclusive,
        defaults to ``prefix``) in ascending key order."""
        ...


#: Marks a bucket that has no entry in ``MemoryKV._pending`` yet.
_NEW_BUCKET: set[bytes] = set()


class MemoryKV:
    """An in-memory sorted KV: the twin of the LMDB state table.

    Values live in a dict. The keys are also kept sorted, in blocks of at most
    ``2 * _BLOCK`` keys with each block's largest key in ``_maxes`` (the layout
    of sortedcontainers' SortedList, reduced to what a KV needs): inserting a
    new key or deleting one is two C bisections and a short list move, and a
    scan seeks with two bisections.

    A key family that no scan has walked yet is kept lazily: its keys wait
    in an unordered set in ``_pending`` (bucketed by their first
    :data:`_BUCKET` bytes) and are sorted into the blocks at once by the
    first scan that could yield them, after which the family is kept sorted
    as it is written. Several state families are written on most entries and
    never scanned by the state machine (unit history, retirements, holdings,
    footprints and their indexes): they cost a set insertion each until a
    query walks them.
    """

    _BLOCK = 256
    #: Length of the key prefix that buckets keys. State keys begin with a
    #: family of one or two letters and a slash (``sg/``, ``ah/``, ``f/``),
    #: so two bytes keep the families walked on every entry (segments)
    #: apart from those that are only written.
    _BUCKET = 2  # written out in swap

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._blocks: list[list[bytes]] = []
        self._maxes: list[bytes] = []
        # Bucket -> its keys, not in the blocks (a lazy bucket), or None once
        # a scan has sorted the bucket in (kept sorted from then on). Every
        # key of a lazy bucket is in its set, and no other key is.
        self._pending: dict[bytes, set[bytes] | None] = {}
        # Bumped by every insert and delete of a key, so that a scan knows to
        # re-seek when its caller changed the key set between two pairs.
        self._version = 0
        # Reads are the dict's own method: no Python frame per get.
        self.get = self._data.get  # type: ignore[method-assign,assignment]

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        data = self._data
        if key not in data:
            self._add(key)
        data[key] = value if type(value) is bytes else bytes(value)

    def swap(self, key: bytes, value: bytes) -> bytes | None:
        """:meth:`put`, returning the value it replaced (None if the key was
        new): what a :class:`Journal` keeps to undo the write, in one step."""
        data = self._data
        old = data.get(key)
        if old is None:  # self._add(key), inlined: a new key on most writes
            self._version += 1
            pending = self._pending.get(key[:2], _NEW_BUCKET)
            if pending is None:
                self._insert(key)
            elif pending is _NEW_BUCKET:
                self._pending[key[:2]] = {key}
            else:
                pending.add(key)
        data[key] = value if type(value) is bytes else bytes(value)
        return old

    def delete(self, key: bytes) -> None:
        if self._data.pop(key, None) is not None:
            self._version += 1
            pending = self._pending.get(key[: self._BUCKET])
            if pending is None:
                self._remove(key)
            else:  # a lazy bucket: the key is in its set
                pending.discard(key)

    def _add(self, key: bytes) -> None:
        self._version += 1
        bucket = key[: self._BUCKET]
        pending = self._pending.get(bucket, _NEW_BUCKET)
        if pending is None:
            self._insert(key)
        elif pending is _NEW_BUCKET:
            self._pending[bucket] = {key}
        else:
            pending.add(key)

    def _flush(self, bucket: bytes | None) -> None:
        """Sort the keys of lazy ``bucket`` (of every lazy bucket if None)
        into the blocks; the bucket is kept sorted from then on."""
        pending = self._pending
        buckets = [b for b, ks in pending.items() if ks is not None] if bucket is None else [bucket]
        for b in buckets:
            keys = pending.get(b)
            pending[b] = None
            if keys:
                for key in sorted(keys):  # in order: each lands at or after the last
                    self._insert(key)

    def _insert(self, key: bytes) -> None:
        maxes = self._maxes
        if not maxes:
            self._blocks.append([key])
            maxes.append(key)
            return
        i = bisect_left(maxes, key)
        if i == len(maxes):
            i -= 1
            block = self._blocks[i]
            block.append(key)
            maxes[i] = key
        else:
            block = self._blocks[i]
            insort(block, key)
        if len(block) > 2 * self._BLOCK:
            half = self._BLOCK
            self._blocks[i : i + 1] = [block[:half], block[half:]]
            maxes[i : i + 1] = [block[half - 1], block[-1]]

    def _remove(self, key: bytes) -> None:
        maxes = self._maxes
        i = bisect_left(maxes, key)
        block = self._blocks[i]
        j = bisect_left(block, key)
        del block[j]
        if not block:
            del self._blocks[i]
            del maxes[i]
        elif j == len(block):
            maxes[i] = block[-1]

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        # Every key the scan can yield starts with the prefix, so shares its
        # bucket; a prefix shorter than a bucket spans several.
        bucket = prefix[: self._BUCKET] if len(prefix) >= self._BUCKET else None
        if bucket is None or self._pending.get(bucket, _NEW_BUCKET) is not None:
            self._flush(bucket)
        blocks = self._blocks
        maxes = self._maxes
        data = self._data
        lo = start if start is not None and start > prefix else prefix
        i = bisect_left(maxes, lo)
        if i == len(maxes):
            return
        j = bisect_left(blocks[i], lo)
        version = self._version
        # Callers may write while iterating. If a key was inserted or deleted
        # since the last pair, the cursor re-seeks just past the key it
        # yielded, like the LMDB store's scan: keys deleted meanwhile are
        # skipped, and no key is yielded twice or out of order.
        while True:
            block = blocks[i]
            if j == len(block):
                i += 1
                if i == len(blocks):
                    return
                j = 0
                continue
            key = block[j]
            if not key.startswith(prefix):
                return
            yield key, data[key]
            if self._version != version:
                if bucket is None:  # a bucket created meanwhile is lazy
                    self._flush(None)
                version = self._version
                i = bisect_right(maxes, key)
                if i == len(maxes):
                    return
                j = bisect_right(blocks[i], key)
            else:
                j += 1

    def items(self) -> list[tuple[bytes, bytes]]:
        self._flush(None)
        data = self._data
        return [(k, data[k]) for block in self._blocks for k in block]


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


class Journal:
    """A write-through view of ``base`` that can undo its writes.

    Reads and scans are the base's own. Every write goes to the base at once
    and is recorded in ``writes`` (in order, ``None`` value = delete, for the
    state digest) beside the value it replaced, so :meth:`rollback` to a
    :meth:`savepoint` restores the base byte for byte. One journal serves a
    whole batch of entries: a savepoint per entry costs nothing, and an
    accepted entry needs no copying from a buffer into the base.
    """

    __slots__ = ("_base", "_replaced", "_swap", "get", "put", "scan", "writes")

    def __init__(self, base: KV) -> None:
        self._base = base
        self._replaced: list[bytes | None] = []
        self.writes: list[tuple[bytes, bytes | None]] = []
        self.get = base.get
        self.scan = base.scan
        # A base that can put and hand back the old value in one step (a
        # MemoryKV) saves a read and a call on every write.
        swap = getattr(base, "swap", None)
        if swap is not None:
            self._swap = swap
            self.put = self._put_swap
        else:
            self.put = self._put_read_first

    def _put_read_first(self, key: bytes, value: bytes) -> None:
        base = self._base
        self._replaced.append(base.get(key))
        self.writes.append((key, value))
        base.put(key, value)

    def _put_swap(self, key: bytes, value: bytes) -> None:
        self._replaced.append(self._swap(key, value))
        self.writes.append((key, value))

    def delete(self, key: bytes) -> None:
        base = self._base
        self._replaced.append(base.get(key))
        self.writes.append((key, None))
        base.delete(key)

    def savepoint(self) -> int:
        """A mark to :meth:`rollback` to: the number of writes so far."""
        return len(self.writes)

    def rollback(self, savepoint: int) -> None:
        """Undo every write made since ``savepoint``, newest first."""
        base = self._base
        writes = self.writes
        replaced = self._replaced
        for i in range(len(writes) - 1, savepoint - 1, -1):
            old = replaced[i]
            if old is None:
                base.delete(writes[i][0])
            else:
                base.put(writes[i][0], old)
        del writes[savepoint:]
        del replaced[savepoint:]


# The digest of a state with no writes yet. Replaying the same entries makes
# the same writes in the same order, so the chained digest is reproducible.
EMPTY_STATE_DIGEST = hashlib.sha256(b"carbonledger/state/v1").digest()


def fold_state_digest(previous: bytes, writes: list[tuple[bytes, bytes | None]]) -> bytes:
    """Chain ``writes`` (in order) onto ``previous``: the per-block state digest.

    Each write is length-prefixed so no two different write lists share an
    encoding; a delete is marked by a length of 2**32 - 1.
    """
    # SHA-256(previous || each write's length-prefixed key and value), the
    # pieces joined first: one hash update instead of four per write.
    parts = [previous]
    add = parts.append
    length = _LENGTH
    for key, value in writes:
        add(length(len(key)))
        add(key)
        if value is None:
            add(_DELETED)
        else:
            add(length(len(value)))
            add(value)
    return hashlib.sha256(b"".join(parts)).digest()


_LENGTH = struct.Struct(">I").pack
_DELETED = b"\xff\xff\xff\xff"
