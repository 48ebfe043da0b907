"""RFC 9162 section 2.1.1 hashing: the leaf and node hashes of the log's Merkle tree."""

from __future__ import annotations

import hashlib

__all__ = ["EMPTY_ROOT", "HASH_SIZE", "LEAF_PREFIX", "NODE_PREFIX", "leaf_hash", "node_hash"]

HASH_SIZE = 32

# RFC 9162 2.1.1: domain separation between leaves and interior nodes, so that
# no interior node can be passed off as a leaf (second-preimage resistance).
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"

# RFC 9162 2.1.1: MTH({}) = SHA-256() of the empty string.
# Reproduce: printf '' | sha256sum
EMPTY_ROOT = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256


def leaf_hash(entry: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d) for one entry's exact bytes."""
    return _sha256(LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right) for an interior node."""
    return _sha256(NODE_PREFIX + left + right).digest()
