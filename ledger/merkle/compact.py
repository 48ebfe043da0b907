"""Appending leaves through a compact range (the tree's right edge).

A tree of ``n`` leaves is summarised by the roots of the perfect subtrees in
the binary decomposition of ``n`` (one per set bit, largest first). Appending
a leaf merges equal-sized subtrees, so it costs O(log n) hashes amortised
O(1), and yields every newly completed node for the store to keep.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from ledger.errors import StorageError
from ledger.merkle.fetch import ReadNode
from ledger.merkle.hashing import EMPTY_ROOT, NODE_PREFIX, node_hash

_sha256 = hashlib.sha256

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

    def extend(self, leaves: Sequence[bytes]) -> list[tuple[int, int, list[bytes]]]:
        """Add many leaf hashes at once; return the completed nodes as runs
        ``(level, first_index, hashes)``, one run per level, bottom up.

        Equivalent to :meth:`append` per leaf, but each level is hashed in one
        pass over a list, which is several times faster for large batches.
        """
        n0 = self.size
        n1 = n0 + len(leaves)
        if n1 == n0:
            return []
        # The old right edge, by level: bit k of n0 set means a left sibling
        # at level k, index (n0 >> k) - 1, that new nodes may complete.
        old = {}
        hashes = iter(self._hashes)
        for level in range(n0.bit_length() - 1, -1, -1):
            if n0 >> level & 1:
                old[level] = next(hashes)
        runs: list[tuple[int, int, list[bytes]]] = [(0, n0, list(leaves))]
        level = 0
        while True:
            _, start, below = runs[-1]
            level += 1
            lo, hi = n0 >> level, n1 >> level
            if hi <= lo:
                break
            # Children of the new nodes at this level start at index 2 * lo
            # one level down; if that is the old left sibling, put it first.
            children = [old[level - 1], *below] if start & 1 else below
            count = hi - lo
            h = _sha256
            runs.append(
                (
                    level,
                    lo,
                    [
                        h(NODE_PREFIX + left + right).digest()
                        for left, right in zip(children[0 : 2 * count : 2], children[1 : 2 * count : 2])
                    ],
                )
            )
        # The new right edge: for each set bit of n1, the node just left of
        # the boundary, which is either new in this batch or an old sibling.
        edge: list[bytes] = []
        by_level = {lv: (first, run) for lv, first, run in runs}
        for lv in range(n1.bit_length() - 1, -1, -1):
            if n1 >> lv & 1:
                index = (n1 >> lv) - 1
                first, run = by_level.get(lv, (index + 1, []))
                edge.append(run[index - first] if index >= first else old[lv])
        self._hashes = edge
        self.size = n1
        return runs

    def root(self) -> bytes:
        """MTH of the whole range (RFC 9162: fold the subtree roots from the right)."""
        if not self._hashes:
            return EMPTY_ROOT
        acc = self._hashes[-1]
        for h in reversed(self._hashes[:-1]):
            acc = node_hash(h, acc)
        return acc
