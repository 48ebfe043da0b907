"""RFC 9162 Merkle trees: hashing, compact-range append, proof nodes, verification."""

from ledger.merkle.compact import CompactRange
from ledger.merkle.fetch import ReadNode, consistency_proof, inclusion_proof, range_hash, root_at
from ledger.merkle.hashing import (
    EMPTY_ROOT,
    HASH_SIZE,
    LEAF_PREFIX,
    NODE_PREFIX,
    leaf_hash,
    node_hash,
)
from ledger.merkle.verify import root_from_inclusion_proof, verify_consistency, verify_inclusion

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "LEAF_PREFIX",
    "NODE_PREFIX",
    "CompactRange",
    "ReadNode",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "range_hash",
    "root_at",
    "root_from_inclusion_proof",
    "verify_consistency",
    "verify_inclusion",
]
