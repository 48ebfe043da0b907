"""Where each tree node lives: 256-wide tiles of stored subtree hashes.

The tree is cut into tiles of height 8, as in C2SP tlog-tiles: the tile at
tile-level ``L`` and index ``t`` spans nodes of levels ``8L`` to ``8L + 7``
over the level-``8L`` nodes ``[256t, 256t + 256)``. Unlike a C2SP tile, which
keeps only its bottom row, ours also keeps the seven rows above it, so that
any perfect subtree's hash is one read and a slice, and a proof for any tree
size costs O(log n) reads with no rehashing. The bottom rows are exactly the
C2SP tiles, so they can be served as such.

A stored tile has a fixed layout of 510 hashes: row ``j`` (256 >> j hashes)
starts at hash offset ``ROW_OFFSET[j]``. Positions not yet complete hold zeros.
"""

from __future__ import annotations

import struct

from ledger.merkle.hashing import HASH_SIZE

__all__ = ["ROW_OFFSET", "TILE_BYTES", "TILE_HEIGHT", "TILE_WIDTH", "node_slot", "tile_key"]

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
ROW_OFFSET = tuple(sum(TILE_WIDTH >> i for i in range(j)) for j in range(TILE_HEIGHT))
TILE_BYTES = (ROW_OFFSET[-1] + 2) * HASH_SIZE  # 510 hashes

_KEY = struct.Struct(">BQ")


def tile_key(tile_level: int, tile_index: int) -> bytes:
    """The store key of a tile: sorts by level, then index."""
    return _KEY.pack(tile_level, tile_index)


def node_slot(level: int, index: int) -> tuple[int, int, int]:
    """``(tile_level, tile_index, byte_offset)`` of node ``(level, index)``."""
    row = level & (TILE_HEIGHT - 1)
    shift = TILE_HEIGHT - row
    pos = ROW_OFFSET[row] + (index & ((1 << shift) - 1))
    return level >> 3, index >> shift, pos * HASH_SIZE
