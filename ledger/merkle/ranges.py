"""Leaf ranges and the stored subtrees under them.

A proof node is named by the half-open leaf range ``(begin, end)`` it covers.
A range is either a perfect subtree (its width a power of two, ``begin``
aligned to it), which the store holds, or the right edge of a tree (``end`` is
the tree size), whose hash is folded from a few perfect subtrees. Which nodes
a proof needs is decided in ``fetch``, walking up from the leaf.
"""

from __future__ import annotations

__all__ = ["perfect_subtrees", "split_point"]

Range = tuple[int, int]


def split_point(width: int) -> int:
    """The largest power of two strictly below ``width`` (RFC 9162's k).

    Requires ``width >= 2``.
    """
    return 1 << ((width - 1).bit_length() - 1)


def perfect_subtrees(begin: int, end: int) -> list[tuple[int, int]]:
    """Decompose ``[begin, end)`` into RFC 9162 subtrees as ``(level, index)``.

    Requires ``begin`` aligned so that the range is a perfect subtree or the
    right edge of one (true of every range the functions above return). The
    hash of the range is the right fold of these nodes' hashes.
    """
    nodes: list[tuple[int, int]] = []
    lo = begin
    while lo < end:
        width = end - lo
        if width & (width - 1) == 0:
            level = width.bit_length() - 1
            nodes.append((level, lo >> level))
            break
        k = split_point(width)
        level = k.bit_length() - 1
        nodes.append((level, lo >> level))
        lo += k
    return nodes
