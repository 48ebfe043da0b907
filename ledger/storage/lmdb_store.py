"""The embedded default store: one LMDB environment, one named database per
table, ``sync`` and ``metasync`` on, so a committed write transaction is on
disk before ``commit`` returns."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lmdb

from ledger.errors import StorageError
from ledger.storage.base import TABLES, T

__all__ = ["LmdbStore"]

# Address space, not disk: LMDB's file grows with the data, so a generous
# initial map makes growth (which must wait for every reader) rare.
_INITIAL_MAP_SIZE = 1 << 30
_MAX_MAP_SIZE = 1 << 40


class _KV:
    """A KV over one named database inside one LMDB transaction."""

    __slots__ = ("_db", "_txn")

    def __init__(self, txn: lmdb.Transaction, db: Any) -> None:
        self._txn = txn
        self._db = db

    def get(self, key: bytes) -> bytes | None:
        value = self._txn.get(key, db=self._db)
        return None if value is None else bytes(value)

    def put(self, key: bytes, value: bytes) -> None:
        self._txn.put(key, value, db=self._db)

    def delete(self, key: bytes) -> None:
        self._txn.delete(key, db=self._db)

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        begin = start if start is not None and start > prefix else prefix
        cursor = self._txn.cursor(db=self._db)
        # Re-seek past the last key each step and copy each pair out: a caller
        # may write to this table while iterating, which moves LMDB's pages.
        key = begin
        while cursor.set_range(key):
            found = bytes(cursor.key())
            if not found.startswith(prefix):
                return
            yield found, bytes(cursor.value())
            key = found + b"\x00"


class _Txn:
    __slots__ = ("_dbs", "_txn")

    def __init__(self, txn: lmdb.Transaction, dbs: dict[str, Any]) -> None:
        self._txn = txn
        self._dbs = dbs

    def get(self, table: str, key: bytes) -> bytes | None:
        value = self._txn.get(key, db=self._dbs[table])
        return None if value is None else bytes(value)

    def get_many(self, table: str, keys: list[bytes]) -> dict[bytes, bytes]:
        # One C-level pass instead of a Python call per key.
        cursor = self._txn.cursor(db=self._dbs[table])
        return {bytes(k): bytes(v) for k, v in cursor.getmulti(keys)}

    def get_view(self, table: str, key: bytes) -> memoryview | None:
        """Zero-copy read; valid only until this transaction ends or writes."""
        value = self._txn.get(key, db=self._dbs[table])
        return None if value is None else memoryview(value)

    def last(self, table: str) -> tuple[bytes, bytes] | None:
        cursor = self._txn.cursor(db=self._dbs[table])
        if not cursor.last():
            return None
        return bytes(cursor.key()), bytes(cursor.value())

    def scan(self, table: str, start: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        cursor = self._txn.cursor(db=self._dbs[table])
        if not cursor.set_range(start):
            return
        for key, value in cursor:
            yield bytes(key), bytes(value)

    def kv(self, table: str) -> _KV:
        return _KV(self._txn, self._dbs[table])

    def put(self, table: str, key: bytes, value: bytes, *, append: bool = False) -> None:
        self._txn.put(key, value, db=self._dbs[table], append=append)

    def put_many(self, table: str, items: list[tuple[bytes, bytes]], *, append: bool = False) -> None:
        cursor = self._txn.cursor(db=self._dbs[table])
        consumed, _ = cursor.putmulti(items, append=append)
        if consumed != len(items):
            raise StorageError(f"wrote {consumed} of {len(items)} items to {table}")

    def delete(self, table: str, key: bytes) -> None:
        self._txn.delete(key, db=self._dbs[table])


class _ResizeGate:
    """Shared for transactions, exclusive for growing the map: LMDB forbids
    ``set_mapsize`` while this process has any transaction open."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active = 0
        self._resizing = False

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                if self._active == 0:
                    self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._resizing = True
            while self._active:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._resizing = False
                self._cond.notify_all()


class LmdbStore:
    """An LMDB environment in directory ``path`` (created if missing)."""

    def __init__(self, path: str | os.PathLike[str], *, map_size: int = _INITIAL_MAP_SIZE) -> None:
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._env = lmdb.open(
                str(self.path),
                map_size=map_size,
                max_dbs=len(TABLES) + 1,
                sync=True,
                metasync=True,
                readahead=False,
                max_readers=512,
            )
        except (lmdb.Error, OSError) as exc:
            raise StorageError(f"cannot open LMDB store at {self.path}: {exc}") from exc
        self._dbs = {name: self._env.open_db(name.encode()) for name in TABLES}
        self._gate = _ResizeGate()

    @property
    def map_size(self) -> int:
        return int(self._env.info()["map_size"])

    @contextmanager
    def read(self) -> Iterator[_Txn]:
        with self._gate.shared(), self._env.begin(buffers=True) as txn:
            yield _Txn(txn, self._dbs)

    @contextmanager
    def write(self) -> Iterator[_Txn]:
        with self._gate.shared(), self._env.begin(write=True, buffers=True) as txn:
            yield _Txn(txn, self._dbs)

    def run_write(self, work: Callable[[Any], T]) -> T:
        while True:
            try:
                with self.write() as txn:
                    return work(txn)
            except lmdb.MapFullError:
                # The aborted transaction left nothing behind; grow and redo it.
                self._grow()

    def _grow(self) -> None:
        with self._gate.exclusive():
            size = self.map_size
            if size >= _MAX_MAP_SIZE:
                raise StorageError(f"LMDB map at {self.path} cannot grow past {size} bytes")
            self._env.set_mapsize(min(size * 2, _MAX_MAP_SIZE))

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())

    def close(self) -> None:
        self._env.close()
