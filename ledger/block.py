"""Blocks: the chain of append batches.

A block records its height, the hash of the block before it, the range of
entry indexes it added, the tree size and root after it, the sequencer's time,
and the state digest after applying its entries. Its hash chains the blocks,
so rewriting any block changes every hash after it. Height 0 is the empty
block written when a ledger is created.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from ledger.errors import MalformedError

__all__ = ["GENESIS_PREVIOUS", "Block", "block_hash", "decode_block", "encode_block"]

_VERSION = 1
_FORMAT = struct.Struct(">BQ32sQQQ32sQ32s")
# Domain marker so a block hash can never collide with a Merkle or note hash.
_HASH_DOMAIN = b"carbonledger/block/v1\n"
GENESIS_PREVIOUS = bytes(32)


@dataclass(frozen=True, slots=True)
class Block:
    height: int
    previous_hash: bytes
    first_index: int
    count: int
    tree_size: int
    root: bytes
    time: int
    state_digest: bytes

    @property
    def end_index(self) -> int:
        """One past the last entry index this block added."""
        return self.first_index + self.count


def encode_block(block: Block) -> bytes:
    return _FORMAT.pack(
        _VERSION,
        block.height,
        block.previous_hash,
        block.first_index,
        block.count,
        block.tree_size,
        block.root,
        block.time,
        block.state_digest,
    )


def decode_block(data: bytes) -> Block:
    if len(data) != _FORMAT.size:
        raise MalformedError("block", f"{len(data)} bytes, want {_FORMAT.size}")
    version, *fields = _FORMAT.unpack(data)
    if version != _VERSION:
        raise MalformedError("block", f"unknown version {version}")
    return Block(*fields)


def block_hash(block: Block) -> bytes:
    return hashlib.sha256(_HASH_DOMAIN + encode_block(block)).digest()
