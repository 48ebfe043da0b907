"""Verifying RFC 9162 proofs. Pure: no storage, only the proof and the roots.

Verification functions return ``None`` (or the computed root) and raise a
``VerificationError`` subclass; they never return a bool.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from ledger.errors import InvalidProof, RootMismatch
from ledger.merkle.hashing import HASH_SIZE, node_hash

__all__ = ["root_from_inclusion_proof", "verify_consistency", "verify_inclusion"]


def _check_hash(what: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise InvalidProof(f"{what} is {len(value)} bytes, want {HASH_SIZE}")


def _check_match(expected: bytes, calculated: bytes) -> None:
    if not hmac.compare_digest(expected, calculated):
        raise RootMismatch(expected, calculated)


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """The root that ``proof`` implies for ``leaf_hash`` at ``index`` in a
    tree of ``size`` leaves (RFC 9162 2.1.3.2). Requires ``0 <= index < size``.
    """
    if not 0 <= index < size:
        raise InvalidProof(f"leaf index {index} is outside a tree of size {size}")
    _check_hash("leaf hash", leaf_hash)
    for i, p in enumerate(proof):
        _check_hash(f"proof hash {i}", p)
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            raise InvalidProof(f"inclusion proof has {len(proof)} hashes, too many for index {index} in size {size}")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InvalidProof(f"inclusion proof has {len(proof)} hashes, too few for index {index} in size {size}")
    return r


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is at ``index`` in the tree of ``size`` with ``root``."""
    _check_hash("root", root)
    _check_match(root, root_from_inclusion_proof(leaf_hash, index, size, proof))


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree of ``size2`` with ``root2`` extends the tree of
    ``size1`` with ``root1`` (RFC 9162 2.1.4.2).

    Requires ``0 < size1 <= size2``: every tree extends the empty tree, so a
    proof from size 0 proves nothing and is refused rather than trusted.
    """
    if size1 <= 0 or size2 < size1:
        raise InvalidProof(f"consistency needs 0 < size1 <= size2, got {size1}, {size2}")
    if size1 == size2:
        if proof:
            raise InvalidProof("equal tree sizes need an empty consistency proof")
        _check_match(root2, root1)
        return
    _check_hash("first root", root1)
    _check_hash("second root", root2)
    for i, p in enumerate(proof):
        _check_hash(f"proof hash {i}", p)
    if not proof:
        raise InvalidProof(f"empty consistency proof from {size1} to {size2}")
    path = list(proof)
    # (1) A first tree whose size is a power of two is itself a subtree of the
    # second, and the RFC leaves its root out of the proof.
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # (2) Rebuild both roots from the shared path.
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise InvalidProof(f"consistency proof from {size1} to {size2} is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InvalidProof(f"consistency proof from {size1} to {size2} is too short")
    # (3) Both must match what the two checkpoints claim.
    _check_match(root1, fr)
    _check_match(root2, sr)
