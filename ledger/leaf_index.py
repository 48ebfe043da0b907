"""Finding an entry's index by its leaf hash, for idempotent appends.

Every append looks up each entry's leaf hash, so that the same bytes appended
twice get the first index. A B-tree keyed by a hash is written at random: once
the table is larger than a batch, inserting entries one by one rewrites about
one 4 KiB page per entry, which made the index, not the tree, the cost of a
large log. So the index has two tiers, like a tiny LSM tree:

* the ``leaves`` table holds entries ``[0, merged)``;
* the newest entries ``[merged, size)`` are held in memory, and rebuilt at
  open from the level-0 tiles (which store every leaf hash by index).

From time to time the in-memory tier is written into the table in one
sorted pass, inside an append transaction. Its keys are random, so a merge
rewrites nearly every page of the table: merging every 65,536 entries spent
half the time of building a 10^6-entry log in merges. So the tier is merged
when it is as large as the table (between :data:`MERGE_MIN` and
:data:`MERGE_MAX` entries): the table doubles with each merge while it is
small, and later grows by :data:`MERGE_MAX` entries a merge, which bounds
the tier's memory (about 40 MB) and the time to rebuild it at open.

Almost every appended entry is new, so almost every lookup in the table is a
miss, and a miss still walks the B-tree (about 1 µs each, most of a large
log's append cost). A bitmap over the merged leaves, one bit chosen by the
first four bytes of each leaf hash (uniform: they are SHA-256 output), answers
"certainly not merged" for nearly all of them first. It is written with each
merge, in the same transaction, so it always covers exactly the table.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass

from ledger.errors import StorageError
from ledger.merkle.hashing import HASH_SIZE
from ledger.storage.base import ReadTxn, Table, WriteTxn, from_u64, u64
from ledger.storage.tiles import TILE_WIDTH, tile_key

__all__ = ["FILTER_BITS", "FILTER_KEY", "MERGED_KEY", "MERGE_MAX", "MERGE_MIN", "LeafIndex", "filter_of"]

#: The fewest and the most recent entries held in memory before they are
#: merged into the table (see above).
MERGE_MIN = 1 << 16
MERGE_MAX = 1 << 18
#: Metadata key: how many entries (from index 0) the ``leaves`` table holds.
MERGED_KEY = b"leaves_merged"
#: Metadata key: the bitmap over the leaves in the table.
FILTER_KEY = b"leaves_filter"
#: Bits in that bitmap (4 MiB). At 10^6 merged leaves about 3% of new leaves
#: hit a set bit and need a table lookup; at 10^7 about 26%. A hit is only a
#: reason to look, never an answer, so a fuller bitmap is slower, not wrong.
FILTER_BITS = 1 << 25
_BIT_MASK = FILTER_BITS - 1
_pack_u64 = struct.Struct(">Q").pack


@dataclass(slots=True)
class LeafIndex:
    """The two tiers. ``recent`` maps leaf hash -> index for ``[merged, size)``.

    Only the log's writer changes it, and only after its transaction has
    committed; readers may look things up at any time.
    """

    merged: int
    recent: dict[bytes, int]
    filter: bytearray

    @classmethod
    def empty(cls) -> LeafIndex:
        return cls(0, {}, bytearray(FILTER_BITS // 8))

    @classmethod
    def load(cls, txn: ReadTxn, size: int) -> LeafIndex:
        raw = txn.get(Table.META, MERGED_KEY)
        merged = from_u64(raw) if raw is not None else 0
        if merged > size:
            raise StorageError(f"leaf index covers {merged} entries, but the log has {size}")
        stored = txn.get(Table.META, FILTER_KEY)
        if stored is not None and len(stored) != FILTER_BITS // 8:
            raise StorageError(f"leaf filter is {len(stored)} bytes, expected {FILTER_BITS // 8}")
        if stored is not None:
            filt = bytearray(stored)
        else:
            # A ledger written before the bitmap existed: build it from the
            # table once; the next merge stores it.
            filt = filter_of([bytes(key) for key, _ in txn.scan(Table.LEAVES)])
        return cls(merged, dict(_leaf_hashes(txn, merged, size)), filt)

    def find(self, txn: ReadTxn, leaf: bytes) -> int | None:
        """The index of the entry with leaf hash ``leaf``, if it is in the log."""
        index = self.recent.get(leaf)
        if index is not None:
            return index
        stored = txn.get(Table.LEAVES, leaf)
        return from_u64(stored) if stored is not None else None

    def find_many(self, txn: ReadTxn, leaves: list[bytes]) -> dict[bytes, int]:
        """The indexes of those of ``leaves`` already in the log."""
        recent = self.recent
        found = {leaf: recent[leaf] for leaf in leaves if leaf in recent}
        unseen = [leaf for leaf in leaves if leaf not in found] if found else leaves
        filt = self.filter
        mask = _BIT_MASK
        rest = sorted(
            {leaf for leaf, w in zip(unseen, _filter_words(unseen)) if filt[(w & mask) >> 3] >> (w & 7) & 1}
        )
        if rest:
            found.update((leaf, from_u64(v)) for leaf, v in txn.get_many(Table.LEAVES, rest).items())
        return found

    def merge_due(self) -> bool:
        return len(self.recent) >= min(max(MERGE_MIN, self.merged), MERGE_MAX)

    def write_merge(self, txn: WriteTxn, size: int) -> bytearray:
        """Write the in-memory tier into the table, in key order, with the
        bitmap that covers it; return that bitmap, which the log hands to
        :meth:`committed` once the transaction has committed."""
        recent = self.recent
        leaves = sorted(recent)
        txn.put_many(Table.LEAVES, list(zip(leaves, map(_pack_u64, map(recent.__getitem__, leaves)))))
        txn.put(Table.META, MERGED_KEY, u64(size))
        filt = filter_of(leaves, self.filter)
        txn.put(Table.META, FILTER_KEY, bytes(filt))
        return filt

    def committed(self, added: dict[bytes, int], merged_size: int | None, filt: bytearray | None = None) -> None:
        """Record a committed batch: its new leaves, and the merge it wrote."""
        if merged_size is not None:
            assert filt is not None
            # New objects, so that a reader holding the old ones stays correct.
            self.recent = dict(added)
            self.filter = filt
            self.merged = merged_size
        else:
            self.recent.update(added)


def filter_of(leaves: list[bytes], base: bytearray | None = None) -> bytearray:
    """The bitmap with the bits of ``leaves`` set, on a copy of ``base``."""
    filt = bytearray(base) if base is not None else bytearray(FILTER_BITS // 8)
    for bit in _filter_bits(leaves):
        filt[bit >> 3] |= 1 << (bit & 7)
    return filt


def _filter_bits(leaves: list[bytes]) -> list[int]:
    """Each leaf's bit in the bitmap."""
    return [w & _BIT_MASK for w in _filter_words(leaves)]


def _filter_words(leaves: list[bytes]) -> list[int]:
    """Each leaf's first four bytes as a little-endian integer; its bit in the
    bitmap is that, masked to the bitmap's size."""
    if not leaves:
        return []
    if sys.byteorder == "little":
        # One C pass: view the joined hashes as 32-bit words; every eighth
        # word is the first four bytes of a hash.
        return memoryview(b"".join(leaves)).cast("I")[::8].tolist()
    return [int.from_bytes(leaf[:4], "little") for leaf in leaves]  # pragma: no cover


def _leaf_hashes(txn: ReadTxn, start: int, end: int) -> Iterator[tuple[bytes, int]]:
    """``(leaf hash, index)`` for ``[start, end)``, read from level-0 tiles."""
    index = start
    while index < end:
        tile_index = index // TILE_WIDTH
        tile = txn.get(Table.TILES, tile_key(0, tile_index))
        if tile is None:
            raise StorageError(f"tile 0/{tile_index} is missing")
        stop = min(end, (tile_index + 1) * TILE_WIDTH)
        # A tile row at a time (this runs at every open, over up to
        # MERGE_MAX leaves): slices of the row, paired with their indexes.
        base = tile_index * TILE_WIDTH
        row = bytes(tile)
        offsets = range((index - base) * HASH_SIZE, (stop - base) * HASH_SIZE, HASH_SIZE)
        yield from zip([row[o : o + HASH_SIZE] for o in offsets], range(index, stop))
        index = stop
