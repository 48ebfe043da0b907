"""Fetching proof nodes and roots from stored subtree hashes.

The store is a parameter: ``read_node(level, index)`` returns the hash of the
perfect subtree covering leaves ``[index * 2**level, (index + 1) * 2**level)``.
Every function here needs O(log n) reads, whatever the tree size.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping

from ledger.errors import InvalidProof
from ledger.merkle.hashing import EMPTY_ROOT, node_hash
from ledger.merkle.ranges import perfect_subtrees

__all__ = ["RangeMemo", "ReadNode", "consistency_proof", "inclusion_proof", "range_hash", "root_at"]

ReadNode = Callable[[int, int], bytes]
#: Hashes of ranges that are not perfect subtrees, by ``(begin, end)``: the
#: right edges of tree sizes, which every proof at that size shares and which
#: cost several reads and hashes each. A range's hash never changes once the
#: log holds it, so a log may keep one memo across calls.
RangeMemo = MutableMapping[tuple[int, int], bytes]


def range_hash(read_node: ReadNode, begin: int, end: int, memo: RangeMemo | None = None) -> bytes:
    """MTH of leaves ``[begin, end)``; requires ``begin < end`` and a range as
    produced by ``ledger.merkle.ranges``."""
    width = end - begin
    if width & (width - 1) == 0:
        # A perfect subtree (the common case): one stored node.
        level = width.bit_length() - 1
        return read_node(level, begin >> level)
    if memo is not None:
        known = memo.get((begin, end))
        if known is not None:
            return known
    nodes = perfect_subtrees(begin, end)
    acc = read_node(*nodes[-1])
    for level, index in reversed(nodes[:-1]):
        acc = node_hash(read_node(level, index), acc)
    if memo is not None:
        memo[(begin, end)] = acc
    return acc


def root_at(read_node: ReadNode, size: int, memo: RangeMemo | None = None) -> bytes:
    """The root hash of the tree of the first ``size`` leaves (``size >= 0``)."""
    if size < 0:
        raise InvalidProof(f"tree size must not be negative, got {size}")
    if size == 0:
        return EMPTY_ROOT
    return range_hash(read_node, 0, size, memo)


def inclusion_proof(read_node: ReadNode, index: int, size: int, memo: RangeMemo | None = None) -> list[bytes]:
    """RFC 9162 inclusion proof for leaf ``index`` in the tree of ``size``.

    Requires ``0 <= index < size``.
    """
    if not 0 <= index < size:
        raise InvalidProof(f"inclusion proof needs 0 <= index < size, got index {index}, size {size}")
    return _path(read_node, 0, index, size, memo)


def consistency_proof(
    read_node: ReadNode, size1: int, size2: int, memo: RangeMemo | None = None
) -> list[bytes]:
    """RFC 9162 consistency proof from ``size1`` to ``size2``.

    Requires ``0 < size1 <= size2``.
    """
    if not 0 < size1 <= size2:
        raise InvalidProof(f"consistency proof needs 0 < size1 <= size2, got {size1}, {size2}")
    if size1 == size2:
        return []
    # The largest perfect subtree that ends at size1, then its path up the
    # tree of size2; the subtree itself is left out when it is the whole old
    # tree (size1 a power of two: the verifier has that root already).
    level = (size1 & -size1).bit_length() - 1
    index = (size1 - 1) >> level
    path = _path(read_node, level, index, size2, memo)
    return path if index == 0 else [read_node(level, index), *path]


def _path(read_node: ReadNode, level: int, index: int, size: int, memo: RangeMemo | None) -> list[bytes]:
    """The siblings of node ``(level, index)`` and of its ancestors up to the
    root of the tree of ``size`` leaves, lowest first: RFC 9162 PATH, walked
    bottom up (as in its verification algorithm) instead of from the root.

    At each level, blocks are counted in units of that level: ``last`` holds
    the tree's last leaf. A sibling to the left is a whole stored subtree; to
    the right it is whole, or the tree's ragged right edge (hashed from the
    subtrees under it), or beyond the tree (the node has no sibling there).
    """
    out: list[bytes] = []
    last = (size - 1) >> level
    while last:
        sibling = index ^ 1
        if sibling < last or sibling < index or (sibling == last and (sibling + 1) << level <= size):
            out.append(read_node(level, sibling))
        elif sibling == last:
            out.append(range_hash(read_node, sibling << level, size, memo))
        index >>= 1
        last >>= 1
        level += 1
    return out
