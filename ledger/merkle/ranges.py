"""Which subtrees a proof needs: RFC 9162 proofs expressed as leaf ranges.

Deciding which nodes a proof needs is kept apart from fetching them (see
``fetch``) and from verifying them (see ``verify``). A proof node is named by
the half-open leaf range ``(begin, end)`` it covers. A range is either a
perfect subtree (its width a power of two, ``begin`` aligned to it), which the
store holds, or the right edge of a tree (``end`` is the tree size), whose hash
is folded from a few perfect subtrees.
"""

from __future__ import annotations

from ledger.errors import InvalidProof

__all__ = ["consistency_ranges", "inclusion_ranges", "perfect_subtrees", "split_point"]

Range = tuple[int, int]


def split_point(width: int) -> int:
    """The largest power of two strictly below ``width`` (RFC 9162's k).

    Requires ``width >= 2``.
    """
    return 1 << ((width - 1).bit_length() - 1)


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The ranges of RFC 9162 2.1.3.1 PATH(index, D[0:size]), leaf first.

    Requires ``0 <= index < size``.
    """
    if not 0 <= index < size:
        raise InvalidProof(f"inclusion proof needs 0 <= index < size, got index {index}, size {size}")
    out: list[Range] = []
    lo, hi = 0, size
    # Walk from the root down, then reverse: PATH lists the leaf's sibling first.
    while hi - lo > 1:
        mid = lo + split_point(hi - lo)
        if index < mid:
            out.append((mid, hi))
            hi = mid
        else:
            out.append((lo, mid))
            lo = mid
    out.reverse()
    return out


def consistency_ranges(size1: int, size2: int) -> list[Range]:
    """The ranges of RFC 9162 2.1.4.1 PROOF(size1, D[0:size2]).

    Requires ``0 < size1 <= size2``; the proof for equal sizes is empty.
    """
    if not 0 < size1 <= size2:
        raise InvalidProof(f"consistency proof needs 0 < size1 <= size2, got {size1}, {size2}")
    out: list[Range] = []
    lo, hi, m, whole = 0, size2, size1, True
    # SUBPROOF(m, D[lo:hi], whole) unrolled; nodes are appended after the
    # recursive part in the RFC, so collect outer nodes first and reverse.
    while True:
        if m == hi - lo:
            if not whole:
                out.append((lo, hi))
            break
        mid = lo + split_point(hi - lo)
        if m <= mid - lo:
            out.append((mid, hi))
            hi = mid
        else:
            out.append((lo, mid))
            m -= mid - lo
            lo = mid
            whole = False
    out.reverse()
    return out


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
