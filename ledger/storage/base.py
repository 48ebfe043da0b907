"""The store interface the log is written against, and what both stores share.

A store holds named tables of bytes: entries by index, entry lookups by leaf
hash, tiles of tree hashes, blocks by height, signed checkpoints by tree size,
metadata, and the state machine's key-value state. All writes of one append
batch happen in one write transaction, which either commits durably or leaves
nothing behind.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Protocol, TypeVar

from ledger.kv import KV

T = TypeVar("T")

__all__ = ["TABLES", "ReadTxn", "Store", "Table", "WriteTxn", "from_u64", "u64"]


class Table:
    """Names of the store's tables."""

    META = "meta"
    ENTRIES = "entries"  # u64 index -> entry bytes
    LEAVES = "leaves"  # leaf hash -> u64 index (idempotent appends)
    TILES = "tiles"  # tile_key -> 510 hashes (see tiles.py)
    BLOCKS = "blocks"  # u64 height -> encoded block
    CHECKPOINTS = "checkpoints"  # u64 tree size -> signed checkpoint note
    STATE = "state"  # the state machine's KV


TABLES = (
    Table.META,
    Table.ENTRIES,
    Table.LEAVES,
    Table.TILES,
    Table.BLOCKS,
    Table.CHECKPOINTS,
    Table.STATE,
)

_U64 = struct.Struct(">Q")


def u64(n: int) -> bytes:
    """Big-endian key encoding, so keys sort as numbers."""
    return _U64.pack(n)


def from_u64(b: bytes) -> int:
    return int(_U64.unpack(b)[0])


class ReadTxn(Protocol):
    def get(self, table: str, key: bytes) -> bytes | None: ...

    def get_many(self, table: str, keys: list[bytes]) -> dict[bytes, bytes]:
        """The pairs among ``keys`` that exist. Sorted keys read fastest."""
        ...

    def last(self, table: str) -> tuple[bytes, bytes] | None:
        """The pair with the greatest key, if any."""
        ...

    def scan(self, table: str, start: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Pairs from ``start`` (inclusive) in key order."""
        ...

    def kv(self, table: str) -> KV:
        """A KV view of one table (writes fail in a read transaction)."""
        ...


class WriteTxn(ReadTxn, Protocol):
    def put(self, table: str, key: bytes, value: bytes, *, append: bool = False) -> None:
        """``append=True`` promises ``key`` is greater than every key in the table."""
        ...

    def put_many(self, table: str, items: list[tuple[bytes, bytes]], *, append: bool = False) -> None:
        """Put many pairs in one call; ``append=True`` as for :meth:`put`,
        for keys given in ascending order."""
        ...

    def delete(self, table: str, key: bytes) -> None: ...


class Store(Protocol):
    def read(self) -> AbstractContextManager[ReadTxn]: ...

    def write(self) -> AbstractContextManager[WriteTxn]:
        """A write transaction: commits durably on normal exit, aborts on error.

        May raise ``lmdb.MapFullError``-like growth requests internally; the
        store retries nothing itself, see :meth:`run_write`."""
        ...

    def run_write(self, work: Callable[[WriteTxn], T]) -> T:
        """Run ``work(txn)`` in a write transaction and commit; if the store
        runs out of space it grows and runs ``work`` again from scratch, so
        ``work`` must not change anything outside the transaction."""
        ...

    def close(self) -> None: ...
