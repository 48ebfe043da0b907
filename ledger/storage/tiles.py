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
from collections.abc import Callable, Sequence

from ledger.merkle.hashing import HASH_SIZE

__all__ = ["ROW_OFFSET", "TILE_BYTES", "TILE_HEIGHT", "TILE_WIDTH", "TileWriter", "node_slot", "tile_key"]

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


class TileWriter:
    """Collects the nodes completed by one append batch and writes each
    touched tile once, at :meth:`flush`.

    ``read(key)`` and ``write(key, value)`` are the transaction's tile table.
    """

    def __init__(self, read: Callable[[bytes], bytes | None], write: Callable[[bytes, bytes], None]) -> None:
        self._read = read
        self._write = write
        self._dirty: dict[tuple[int, int], bytearray] = {}

    def _tile(self, tile_level: int, tile_index: int) -> bytearray:
        buf = self._dirty.get((tile_level, tile_index))
        if buf is None:
            old = self._read(tile_key(tile_level, tile_index))
            buf = bytearray(old) if old is not None else bytearray(TILE_BYTES)
            self._dirty[(tile_level, tile_index)] = buf
        return buf

    def set_run(self, level: int, first: int, hashes: Sequence[bytes]) -> None:
        """Store ``hashes`` as nodes ``first, first + 1, ...`` of ``level``.

        A run is contiguous within each tile row, so it is copied in one
        slice per tile rather than one per node.
        """
        row = level & (TILE_HEIGHT - 1)
        width = TILE_WIDTH >> row
        done = 0
        while done < len(hashes):
            tile_level, tile_index, offset = node_slot(level, first + done)
            take = min(len(hashes) - done, width - ((first + done) & (width - 1)))
            self._tile(tile_level, tile_index)[offset : offset + take * HASH_SIZE] = b"".join(
                hashes[done : done + take]
            )
            done += take

    def flush(self) -> None:
        for (tile_level, tile_index), buf in sorted(self._dirty.items()):
            self._write(tile_key(tile_level, tile_index), bytes(buf))
