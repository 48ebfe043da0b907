"""Finding an entry's index by its leaf hash, for idempotent appends.

Every append looks up each entry's leaf hash, so that the same bytes appended
twice get the first index. A B-tree keyed by a hash is written at random: once
the table is larger than a batch, inserting entries one by one rewrites about
one 4 KiB page per entry, which made the index, not the tree, the cost of a
large log. So the index has two tiers, like a tiny LSM tree:

* the ``leaves`` table holds entries ``[0, merged)``;
* the newest entries ``[merged, size)`` are held in memory, and rebuilt at
  open from the level-0 tiles (which store every leaf hash by index).

Every :data:`MERGE_EVERY` entries the in-memory tier is written into the
table in one sorted pass, inside an append transaction, which rewrites each
page at most once per merge.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ledger.errors import StorageError
from ledger.merkle.hashing import HASH_SIZE
from ledger.storage.base import ReadTxn, Table, WriteTxn, from_u64, u64
from ledger.storage.tiles import TILE_WIDTH, tile_key

__all__ = ["MERGED_KEY", "MERGE_EVERY", "LeafIndex"]

#: How many recent entries to hold in memory before merging them into the table.
MERGE_EVERY = 1 << 16
#: Metadata key: how many entries (from index 0) the ``leaves`` table holds.
MERGED_KEY = b"leaves_merged"


@dataclass(slots=True)
class LeafIndex:
    """The two tiers. ``recent`` maps leaf hash -> index for ``[merged, size)``.

    Only the log's writer changes it, and only after its transaction has
    committed; readers may look things up at any time.
    """

    merged: int
    recent: dict[bytes, int]

    @classmethod
    def load(cls, txn: ReadTxn, size: int) -> LeafIndex:
        raw = txn.get(Table.META, MERGED_KEY)
        merged = from_u64(raw) if raw is not None else 0
        if merged > size:
            raise StorageError(f"leaf index covers {merged} entries, but the log has {size}")
        return cls(merged, dict(_leaf_hashes(txn, merged, size)))

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
        rest = sorted({leaf for leaf in leaves if leaf not in found})
        if rest:
            found.update((leaf, from_u64(v)) for leaf, v in txn.get_many(Table.LEAVES, rest).items())
        return found

    def merge_due(self) -> bool:
        return len(self.recent) >= MERGE_EVERY

    def write_merge(self, txn: WriteTxn, size: int) -> None:
        """Write the in-memory tier into the table, in key order; the log
        calls :meth:`merged_into_table` once the transaction has committed."""
        txn.put_many(Table.LEAVES, sorted((leaf, u64(i)) for leaf, i in self.recent.items()))
        txn.put(Table.META, MERGED_KEY, u64(size))

    def committed(self, added: dict[bytes, int], merged_size: int | None) -> None:
        """Record a committed batch: its new leaves, and the merge it wrote."""
        if merged_size is not None:
            # A new dict, so that a reader holding the old one stays correct.
            self.recent = dict(added)
            self.merged = merged_size
        else:
            self.recent.update(added)


def _leaf_hashes(txn: ReadTxn, start: int, end: int) -> Iterator[tuple[bytes, int]]:
    """``(leaf hash, index)`` for ``[start, end)``, read from level-0 tiles."""
    index = start
    while index < end:
        tile_index = index // TILE_WIDTH
        tile = txn.get(Table.TILES, tile_key(0, tile_index))
        if tile is None:
            raise StorageError(f"tile 0/{tile_index} is missing")
        stop = min(end, (tile_index + 1) * TILE_WIDTH)
        for i in range(index, stop):
            offset = (i % TILE_WIDTH) * HASH_SIZE
            yield bytes(tile[offset : offset + HASH_SIZE]), i
        index = stop
