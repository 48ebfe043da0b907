"""The in-memory twin of the LMDB store: same tables, same transaction
semantics (all or nothing), no durability. Used by tests and tools."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import pairwise
from threading import Lock
from typing import Any

from ledger.errors import StorageError
from ledger.kv import KV, MemoryKV, Overlay
from ledger.storage.base import TABLES, T

__all__ = ["MemoryStore"]


class _Txn:
    """A transaction over per-table KVs: the tables themselves for a reader,
    overlays on them for a writer."""

    def __init__(self, tables: dict[str, MemoryKV], writable: bool) -> None:
        self._tables = tables
        self._writable = writable
        self.overlays: dict[str, Overlay] = {}
        if writable:
            self.overlays = {name: Overlay(kv) for name, kv in tables.items()}

    def _kv(self, table: str) -> KV:
        return self.overlays[table] if self._writable else self._tables[table]

    def get(self, table: str, key: bytes) -> bytes | None:
        return self._kv(table).get(key)

    def get_many(self, table: str, keys: list[bytes]) -> dict[bytes, bytes]:
        kv = self._kv(table)
        found = {k: kv.get(k) for k in keys}
        return {k: v for k, v in found.items() if v is not None}

    def last(self, table: str) -> tuple[bytes, bytes] | None:
        last = None
        for pair in self._kv(table).scan(b""):
            last = pair
        return last

    def scan(self, table: str, start: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        return self._kv(table).scan(b"", start)

    def kv(self, table: str) -> KV:
        return self._kv(table)

    def put(self, table: str, key: bytes, value: bytes, *, append: bool = False) -> None:
        if not self._writable:
            raise PermissionError("write in a read transaction")
        if append:
            self._check_append(table, [key])
        self.overlays[table].put(bytes(key), bytes(value))

    def put_many(self, table: str, items: list[tuple[bytes, bytes]], *, append: bool = False) -> None:
        if append:
            self._check_append(table, [key for key, _ in items])
        for key, value in items:
            self.put(table, key, value)

    def _check_append(self, table: str, keys: list[bytes]) -> None:
        """As LMDB's append: each key above every key already in the table."""
        if not keys:
            return
        if any(a >= b for a, b in pairwise(keys)) or next(self.scan(table, keys[0]), None) is not None:
            raise StorageError(f"append to {table} out of key order")

    def delete(self, table: str, key: bytes) -> None:
        if not self._writable:
            raise PermissionError("write in a read transaction")
        self.overlays[table].delete(key)


class MemoryStore:
    """Tables in sorted in-memory maps. A write transaction buffers its writes
    and folds them in only when it completes without error."""

    def __init__(self) -> None:
        self._tables = {name: MemoryKV() for name in TABLES}
        self._lock = Lock()

    @contextmanager
    def read(self) -> Iterator[_Txn]:
        yield _Txn(self._tables, writable=False)

    @contextmanager
    def write(self) -> Iterator[_Txn]:
        with self._lock:
            txn = _Txn(self._tables, writable=True)
            yield txn
            for name, overlay in txn.overlays.items():
                overlay.commit_into(self._tables[name])

    def run_write(self, work: Callable[[Any], T]) -> T:
        with self.write() as txn:
            return work(txn)

    def close(self) -> None:
        pass
