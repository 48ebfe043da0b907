"""Fetching proof nodes and roots from stored subtree hashes.

The store is a parameter: ``read_node(level, index)`` returns the hash of the
perfect subtree covering leaves ``[index * 2**level, (index + 1) * 2**level)``.
Every function here needs O(log n) reads, whatever the tree size.
"""

from __future__ import annotations

from collections.abc import Callable

from ledger.errors import InvalidProof
from ledger.merkle.hashing import EMPTY_ROOT, node_hash
from ledger.merkle.ranges import consistency_ranges, inclusion_ranges, perfect_subtrees

__all__ = ["ReadNode", "consistency_proof", "inclusion_proof", "range_hash", "root_at"]

ReadNode = Callable[[int, int], bytes]


def range_hash(read_node: ReadNode, begin: int, end: int) -> bytes:
    """MTH of leaves ``[begin, end)``; requires ``begin < end`` and a range as
    produced by ``ledger.merkle.ranges``."""
    width = end - begin
    if width & (width - 1) == 0:
        # A perfect subtree (the common case): one stored node.
        level = width.bit_length() - 1
        return read_node(level, begin >> level)
    nodes = perfect_subtrees(begin, end)
    acc = read_node(*nodes[-1])
    for level, index in reversed(nodes[:-1]):
        acc = node_hash(read_node(level, index), acc)
    return acc


def root_at(read_node: ReadNode, size: int) -> bytes:
    """The root hash of the tree of the first ``size`` leaves (``size >= 0``)."""
    if size < 0:
        raise InvalidProof(f"tree size must not be negative, got {size}")
    if size == 0:
        return EMPTY_ROOT
    return range_hash(read_node, 0, size)


def inclusion_proof(read_node: ReadNode, index: int, size: int) -> list[bytes]:
    """RFC 9162 inclusion proof for leaf ``index`` in the tree of ``size``.

    Requires ``0 <= index < size``.
    """
    return [range_hash(read_node, b, e) for b, e in inclusion_ranges(index, size)]


def consistency_proof(read_node: ReadNode, size1: int, size2: int) -> list[bytes]:
    """RFC 9162 consistency proof from ``size1`` to ``size2``.

    Requires ``0 < size1 <= size2``.
    """
    return [range_hash(read_node, b, e) for b, e in consistency_ranges(size1, size2)]
