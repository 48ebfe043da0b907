"""The fast Merkle code against the naive RFC 9162 reference.

Exhaustive for every (index, size) and consistency pair up to 64 leaves, then
property tests at random larger sizes.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import merkle
from ledger.errors import LedgerError
from tests import merkle_reference as ref

# Distinct leaves of varied lengths (1 to 3 repeats of a 4-byte counter).
LEAVES = [i.to_bytes(4, "big") * (1 + i % 3) for i in range(2100)]


class Tree:
    """The fast code's view: every completed node from CompactRange.append."""

    def __init__(self, leaves: list[bytes]) -> None:
        self.nodes: dict[tuple[int, int], bytes] = {}
        self.edge = merkle.CompactRange()
        for leaf in leaves:
            out: list[tuple[int, int, bytes]] = []
            self.edge.append(merkle.leaf_hash(leaf), out)
            self.nodes.update({(lv, ix): h for lv, ix, h in out})

    def read(self, level: int, index: int) -> bytes:
        return self.nodes[(level, index)]


SMALL = Tree(LEAVES[:64])
LARGE = Tree(LEAVES)


def test_roots_up_to_64() -> None:
    for size in range(65):
        assert merkle.root_at(SMALL.read, size) == ref.mth(LEAVES[:size])


def test_inclusion_up_to_64() -> None:
    for size in range(1, 65):
        root = ref.mth(LEAVES[:size])
        for index in range(size):
            want = ref.path(index, LEAVES[:size])
            got = merkle.inclusion_proof(SMALL.read, index, size)
            assert got == want, (index, size)
            merkle.verify_inclusion(merkle.leaf_hash(LEAVES[index]), index, size, got, root)


def test_consistency_up_to_64() -> None:
    roots = [ref.mth(LEAVES[:n]) for n in range(65)]
    for size2 in range(1, 65):
        for size1 in range(1, size2 + 1):
            want = ref.proof(size1, LEAVES[:size2])
            got = merkle.consistency_proof(SMALL.read, size1, size2)
            assert got == want, (size1, size2)
            merkle.verify_consistency(size1, size2, got, roots[size1], roots[size2])


def _mutations(proof: list[bytes]) -> list[list[bytes]]:
    """Mechanical corruptions of a proof: each must be rejected."""
    out = [proof + [b"\x00" * 32], [b"\x00" * 32] + proof]
    if proof:
        out.append(proof[:-1])
        out.append(proof[1:])
        for i in range(len(proof)):
            flipped = bytearray(proof[i])
            flipped[i % 32] ^= 1
            out.append(proof[:i] + [bytes(flipped)] + proof[i + 1:])
        out.append([proof[0][:31]] + proof[1:])
    return out


def test_mutated_inclusion_proofs_fail_up_to_32() -> None:
    for size in range(1, 33):
        root = ref.mth(LEAVES[:size])
        for index in range(size):
            leaf = merkle.leaf_hash(LEAVES[index])
            good = merkle.inclusion_proof(SMALL.read, index, size)
            for bad in _mutations(good):
                with pytest.raises(LedgerError):
                    merkle.verify_inclusion(leaf, index, size, bad, root)
            # The vectors' mutations: index +-1, size *2 and /2. (A size +1 can
            # share the proof's shape, e.g. index 0 of 3 and of 4: RFC 9162 binds
            # the size through the signed checkpoint, not through the path.)
            mutated = ((index + 1, size), (index - 1, size), (index, size * 2), (index, size // 2))
            for bad_index, bad_size in mutated:
                if not 0 <= bad_index < bad_size:
                    continue
                with pytest.raises(LedgerError):
                    merkle.verify_inclusion(leaf, bad_index, bad_size, good, root)
            with pytest.raises(LedgerError):
                merkle.verify_inclusion(merkle.leaf_hash(b"other"), index, size, good, root)


def test_mutated_consistency_proofs_fail_up_to_32() -> None:
    roots = [ref.mth(LEAVES[:n]) for n in range(33)]
    for size2 in range(2, 33):
        for size1 in range(1, size2):
            good = merkle.consistency_proof(SMALL.read, size1, size2)
            for bad in _mutations(good):
                with pytest.raises(LedgerError):
                    merkle.verify_consistency(size1, size2, bad, roots[size1], roots[size2])
            with pytest.raises(LedgerError):
                merkle.verify_consistency(size1, size2, good, roots[size2], roots[size1])


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_random_large_inclusion(data: st.DataObject) -> None:
    size = data.draw(st.integers(65, len(LEAVES)))
    index = data.draw(st.integers(0, size - 1))
    got = merkle.inclusion_proof(LARGE.read, index, size)
    assert got == ref.path(index, LEAVES[:size])
    merkle.verify_inclusion(merkle.leaf_hash(LEAVES[index]), index, size, got, merkle.root_at(LARGE.read, size))


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_random_large_consistency(data: st.DataObject) -> None:
    size2 = data.draw(st.integers(65, len(LEAVES)))
    size1 = data.draw(st.integers(1, size2))
    got = merkle.consistency_proof(LARGE.read, size1, size2)
    assert got == ref.proof(size1, LEAVES[:size2])
    merkle.verify_consistency(
        size1, size2, got, merkle.root_at(LARGE.read, size1), merkle.root_at(LARGE.read, size2)
    )


def test_a_range_memo_shared_by_every_proof_changes_no_proof() -> None:
    """One memo across all sizes, as a log keeps it: the right-edge ranges of
    one size are reused by later proofs at that size and at others."""
    memo: dict[tuple[int, int], bytes] = {}
    for size in range(1, 65):
        assert merkle.root_at(SMALL.read, size, memo) == ref.mth(LEAVES[:size])
        for index in range(size):
            assert merkle.inclusion_proof(SMALL.read, index, size, memo) == ref.path(index, LEAVES[:size])
        for size1 in range(1, size + 1):
            assert merkle.consistency_proof(SMALL.read, size1, size, memo) == ref.proof(size1, LEAVES[:size])
    assert memo  # it was used


def test_preconditions_are_typed_errors() -> None:
    for bad in ((0, 0), (5, 5), (-1, 4)):
        with pytest.raises(LedgerError):
            merkle.inclusion_proof(SMALL.read, *bad)
    for bad in ((0, 4), (5, 4), (-1, 3)):
        with pytest.raises(LedgerError):
            merkle.consistency_proof(SMALL.read, *bad)


@settings(max_examples=80, deadline=None)
@given(batches=st.lists(st.sampled_from([0, 1, 2, 3, 5, 7, 8, 13, 64, 255, 256, 257, 600]), max_size=8))
def test_extend_equals_appending_one_by_one(batches: list[int]) -> None:
    """The batched append yields the same nodes and edge as single appends."""
    one, many = merkle.CompactRange(), merkle.CompactRange()
    nodes_one: dict[tuple[int, int], bytes] = {}
    nodes_many: dict[tuple[int, int], bytes] = {}
    total = 0
    for count in batches:
        leaves = [merkle.leaf_hash(LEAVES[(total + i) % len(LEAVES)] + b"x") for i in range(count)]
        total += count
        for leaf in leaves:
            out: list[tuple[int, int, bytes]] = []
            one.append(leaf, out)
            nodes_one.update({(lv, ix): h for lv, ix, h in out})
        for level, first, run in many.extend(leaves):
            nodes_many.update({(level, first + j): h for j, h in enumerate(run)})
        assert (many.size, many.root()) == (one.size, one.root())
    assert nodes_many == nodes_one
