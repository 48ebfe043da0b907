"""Appending leaves through a compact range (the tree's right edge).

A tree of ``n`` leaves is summarised by the roots of the perfect subtrees in
the binary decomposition of ``n`` (one per set bit, largest first). Appending
a leaf merges equal-sized subtrees, so it costs O(log n) hashes amortised
O(1), and yields every newly completed node for the store to keep.
"""

from __future__ import annotations

from collections.abc import Iterable

from ledger.errors import StorageError
from ledger.merkle.fetch import ReadNode
from ledger.merkle.hashing import EMPTY_ROOT, node_hash

__all__ = ["CompactRange"]


class CompactRange:
    """The right edge of a tree over leaves ``[0, size)``."""

    __slots__ = ("_hashes", "size")

    def __init__(self, size: int = 0, hashes: Iterable[bytes] = ()) -> None:
        self.size = size
        self._hashes = list(hashes)
        if len(self._hashes) != size.bit_count():
            raise StorageError(f"compact range of size {size} needs {size.bit_count()} hashes")

    @classmethod
    def load(cls, read_node: ReadNode, size: int) -> CompactRange:
        """Rebuild the right edge of the stored tree of ``size`` leaves."""
        hashes = []
        begin = 0
        for level in range(size.bit_length() - 1, -1, -1):
            if size >> level & 1:
                hashes.append(read_node(level, begin >> level))
                begin += 1 << level
        return cls(size, hashes)

    def copy(self) -> CompactRange:
        return CompactRange(self.size, self._hashes)

    def append(self, leaf: bytes, out: list[tuple[int, int, bytes]]) -> None:
        """Add one leaf hash; append each completed ``(level, index, hash)`` to ``out``."""
        index = self.size
        h = leaf
        level = 0
        out.append((0, index, h))
        hashes = self._hashes
        # Each trailing one bit of the old size is a left sibling that the
        # new leaf completes.
        while index & 1:
            h = node_hash(hashes.pop(), h)
            index >>= 1
            level += 1
            out.append((level, index, h))
        hashes.append(h)
        self.size += 1

    def root(self) -> bytes:
        """MTH of the whole range (RFC 9162: fold the subtree roots from the right)."""
        if not self._hashes:
            return EMPTY_ROOT
        acc = self._hashes[-1]
        for h in reversed(self._hashes[:-1]):
            acc = node_hash(h, acc)
        return acc
