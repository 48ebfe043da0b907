"""The embedded default store: one LMDB environment, one named database per
table, ``sync`` and ``metasync`` on, so a committed write transaction is on
disk before ``commit`` returns."""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import lmdb

from ledger.errors import StorageError, StorageWriteFailed
from ledger.storage.base import TABLES, T

__all__ = ["MAPPED_BUDGET", "LmdbStore", "release_mapped_pages"]

#: Seconds a transaction waits for this process's others to end before it
#: adopts a map grown by another process (see LmdbStore._begin).
_ADOPT_WAIT = 10.0

# Address space, not disk: LMDB's file grows with the data, so a generous
# initial map makes growth (which must wait for every reader) rare.
_INITIAL_MAP_SIZE = 1 << 30
_MAX_MAP_SIZE = 1 << 40
#: Bytes of file-backed pages this process may gain mapped since the store
#: opened before the store unmaps its file's pages (see "mapped pages").
#: Every release makes the next reads fault their pages in again: at 32 MiB
#: a 10^6-entry log released while serving proofs, and proof cost grew 1.87x
#: from 10^4 to 10^6 entries instead of 1.33x (loadtests.bench_merkle).
#: 128 MiB holds the tiles of a 10^6-entry log with room to spare.
MAPPED_BUDGET = 128 << 20
#: Store operations between two looks at the process's mapped pages. A look
#: costs about as much as a few reads; one read may map up to 2 MiB.
_OPS_PER_LOOK = 32


# -- mapped pages --------------------------------------------------------------
#
# LMDB reads its file through a shared, read-only memory map (it writes with
# pwrite). Every page a transaction reads stays mapped in this process, and
# the kernel maps neighbours of it that are in the page cache too: up to 16
# pages around it (fault-around, which readahead=False, MDB_NORDAHEAD, does
# not turn off), or the whole large folio holding it (up to 2 MiB, measured
# on Linux 6.18 with ext4). Those pages count in the process's resident set
# (RssFile) though they belong to the page cache: a node that had appended
# 10^6 entries had 1.2 GB of its 1.8 GB file mapped, and a node serving 2,000
# random proofs and entries from it had 400 MB. State lookups land all over
# the file, so one write transaction can map hundreds of MB by itself.
#
# madvise(MADV_DONTNEED) on a shared file mapping only removes this process's
# page-table entries: nothing is lost, and the page cache keeps the pages, so
# the next read of one costs a minor fault, not a disk read. Transactions may
# hold pointers into the map meanwhile (LMDB's pages, zero-copy buffers): the
# addresses stay valid and fault the same bytes back in. So the store looks
# at the process's file-backed resident set every few operations and, past a
# budget, unmaps its file's pages. It looks in the operations themselves, not
# on a timer thread, because a busy writer keeps a timer thread from the GIL
# for long enough (up to 0.9 s measured) to map hundreds of MB meanwhile.

_MADV_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)


def _load_madvise() -> Any:
    if _MADV_DONTNEED is None or not os.path.exists("/proc/self/maps"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    except OSError:
        return None
    fn = getattr(libc, "madvise", None)
    if fn is not None:
        fn.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        fn.restype = ctypes.c_int
    return fn


_madvise = _load_madvise()


def _shared_mappings(st: os.stat_result) -> list[tuple[int, int]]:
    """Address ranges where this process maps the file ``st`` shared, from
    /proc/self/maps (device and inode identify the file)."""
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}"
    inode = str(st.st_ino)
    ranges = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            # Only shared ("s") mappings: a private one may hold copied
            # pages of its own, which MADV_DONTNEED would discard.
            shared = len(fields) >= 5 and fields[1].endswith("s")
            if shared and fields[3] == device and fields[4] == inode:
                start, _, end = fields[0].partition("-")
                ranges.append((int(start, 16), int(end, 16)))
    return ranges


def release_mapped_pages(path: str | os.PathLike[str]) -> int:
    """Unmap from this process the pages of file ``path`` that its shared
    mappings hold; return the bytes of mapping advised (0 where the platform
    has no madvise or /proc). The file's data is untouched."""
    if _madvise is None:
        return 0
    advised = 0
    for start, end in _shared_mappings(os.stat(path)):
        if _madvise(start, end - start, _MADV_DONTNEED) != 0:
            err = ctypes.get_errno()
            raise StorageError(f"madvise of {path} failed: {os.strerror(err)}")
        advised += end - start
    return advised


class _MappedPages:
    """Keeps this process's mapped pages of one LMDB file under a budget:
    every :data:`_OPS_PER_LOOK` operations, :meth:`touched` looks at the
    process's file-backed resident set and, when it has grown by more than
    ``budget`` since the store opened, unmaps the file's pages.

    ``lock`` is held while advising and by whoever unmaps or moves the map
    (closing the environment, growing it), so the advice never lands on an
    address range that has meanwhile been given to something else.
    """

    def __init__(self, data_file: Path, budget: int | None, lock: threading.Lock) -> None:
        self._data_file = data_file
        self._lock = lock
        self._closed = False
        self._countdown = _OPS_PER_LOOK
        self._statm = -1
        self._pid = -1
        self.releases = 0
        self._limit = None if budget is None or _madvise is None else self._resident() + budget

    def _resident(self) -> int:
        """Bytes of file-backed (and shared) pages resident in this process,
        from /proc/self/statm, kept open (a look is one pread)."""
        if self._pid != os.getpid():  # opened before a fork: another process's
            self._pid = os.getpid()
            self._statm = os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)
        return int(os.pread(self._statm, 128, 0).split()[2]) * mmap.PAGESIZE

    def touched(self, operations: int = 1) -> None:
        """Count ``operations`` on the store; look every few of them.
        Unlocked: a count lost to a race only delays a look."""
        self._countdown -= operations
        if self._countdown > 0:
            return
        self._countdown = _OPS_PER_LOOK
        if self._limit is None or self._resident() <= self._limit:
            return
        with self._lock:
            if self._closed:
                return
            try:
                release_mapped_pages(self._data_file)
            except (OSError, StorageError):
                # A saving, never a reason to fail the transaction: stop
                # trying (the file is gone, or the platform refuses).
                self._limit = None
                return
            self.releases += 1

    def close(self) -> None:
        """Stop; call holding ``lock``, before the map goes."""
        self._closed = True
        self._close_statm()

    def _close_statm(self) -> None:
        if self._statm >= 0 and self._pid == os.getpid():
            os.close(self._statm)
        self._statm = -1

    def __del__(self) -> None:
        # A store dropped without close() still gives its descriptor back.
        try:
            self._close_statm()
        except (OSError, AttributeError, TypeError):
            pass


#: Items per call into LMDB in get_many and put_many, so that the mapped
#: pages are looked at during a bulk operation too.
_BULK_CHUNK = 256


class _KV:
    """A KV over one named database inside one LMDB transaction."""

    __slots__ = ("_db", "_mapped", "_txn")

    def __init__(self, txn: lmdb.Transaction, db: Any, mapped: _MappedPages) -> None:
        self._txn = txn
        self._db = db
        self._mapped = mapped

    def get(self, key: bytes) -> bytes | None:
        self._mapped.touched()
        value = self._txn.get(key, db=self._db)
        return None if value is None else bytes(value)

    def put(self, key: bytes, value: bytes) -> None:
        self._mapped.touched()
        self._txn.put(key, value, db=self._db)

    def swap(self, key: bytes, value: bytes) -> bytes | None:
        """:meth:`put`, returning the value it replaced (None if the key was
        new), in one B-tree descent: what a ``Journal`` keeps to undo the
        write. LMDB's replace hands back a copy, even with ``buffers``."""
        self._mapped.touched()
        return self._txn.replace(key, value, db=self._db)

    def delete(self, key: bytes) -> None:
        self._mapped.touched()
        self._txn.delete(key, db=self._db)

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        begin = start if start is not None and start > prefix else prefix
        cursor = self._txn.cursor(db=self._db)
        touched = self._mapped.touched
        # Re-seek past the last key each step and copy each pair out: a caller
        # may write to this table while iterating, which moves LMDB's pages.
        key = begin
        while cursor.set_range(key):
            touched()
            found = bytes(cursor.key())
            if not found.startswith(prefix):
                return
            yield found, bytes(cursor.value())
            key = found + b"\x00"


class _Txn:
    __slots__ = ("_dbs", "_mapped", "_txn")

    def __init__(self, txn: lmdb.Transaction, dbs: dict[str, Any], mapped: _MappedPages) -> None:
        self._txn = txn
        self._dbs = dbs
        self._mapped = mapped

    def get(self, table: str, key: bytes) -> bytes | None:
        self._mapped.touched()
        value = self._txn.get(key, db=self._dbs[table])
        return None if value is None else bytes(value)

    def get_many(self, table: str, keys: list[bytes]) -> dict[bytes, bytes]:
        # One C-level pass per chunk instead of a Python call per key.
        cursor = self._txn.cursor(db=self._dbs[table])
        found: dict[bytes, bytes] = {}
        for lo in range(0, len(keys), _BULK_CHUNK):
            chunk = keys[lo : lo + _BULK_CHUNK]
            found.update((bytes(k), bytes(v)) for k, v in cursor.getmulti(chunk))
            self._mapped.touched(len(chunk))
        return found

    def get_view(self, table: str, key: bytes) -> memoryview | None:
        """Zero-copy read; valid only until this transaction ends or writes."""
        self._mapped.touched()
        value = self._txn.get(key, db=self._dbs[table])
        return None if value is None else memoryview(value)

    def last(self, table: str) -> tuple[bytes, bytes] | None:
        self._mapped.touched()
        cursor = self._txn.cursor(db=self._dbs[table])
        if not cursor.last():
            return None
        return bytes(cursor.key()), bytes(cursor.value())

    def scan(self, table: str, start: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        cursor = self._txn.cursor(db=self._dbs[table])
        touched = self._mapped.touched
        touched()
        if not cursor.set_range(start):
            return
        for key, value in cursor:
            touched()
            yield bytes(key), bytes(value)

    def kv(self, table: str) -> _KV:
        return _KV(self._txn, self._dbs[table], self._mapped)

    def put(self, table: str, key: bytes, value: bytes, *, append: bool = False) -> None:
        self._mapped.touched()
        if not self._txn.put(key, value, db=self._dbs[table], append=append):
            raise StorageError(f"append to {table} out of key order")

    def put_many(self, table: str, items: list[tuple[bytes, bytes]], *, append: bool = False) -> None:
        cursor = self._txn.cursor(db=self._dbs[table])
        for lo in range(0, len(items), _BULK_CHUNK):
            chunk = items[lo : lo + _BULK_CHUNK]
            consumed, added = cursor.putmulti(chunk, append=append)
            if consumed != len(chunk):
                raise StorageError(f"wrote {lo + consumed} of {len(items)} items to {table}")
            if added != consumed:
                # LMDB skips, without an error, an appended key that is not
                # above the table's last one (an overwrite still counts).
                raise StorageError(f"append to {table} out of key order")
            self._mapped.touched(len(chunk))

    def delete(self, table: str, key: bytes) -> None:
        self._mapped.touched()
        self._txn.delete(key, db=self._dbs[table])


class _ResizeGate:
    """Shared for transactions, exclusive for growing the map: LMDB forbids
    ``set_mapsize`` while this process has any transaction open."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active = 0
        self._resizing = False

    def enter(self) -> None:
        """Take a share (a transaction is about to begin); :meth:`leave` it."""
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._active += 1

    def leave(self) -> None:
        with self._cond:
            self._active -= 1
            if self._active == 0:
                self._cond.notify_all()

    @contextmanager
    def shared(self) -> Iterator[None]:
        self.enter()
        try:
            yield
        finally:
            self.leave()

    @contextmanager
    def exclusive(self, timeout: float | None = None) -> Iterator[None]:
        """Wait until no share is held (at most ``timeout`` seconds, then
        TimeoutError), keeping new ones out until the block ends."""
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._resizing = True
            if not self._cond.wait_for(lambda: not self._active, timeout):
                self._resizing = False
                self._cond.notify_all()
                raise TimeoutError("transactions still open")
        try:
            yield
        finally:
            with self._cond:
                self._resizing = False
                self._cond.notify_all()


def _lmdb_reason(exc: lmdb.Error) -> str:
    # py-lmdb's text is "mdb_txn_commit: No space left on device": the reason
    # is after the function's name.
    return str(exc).rpartition(": ")[2] or type(exc).__name__


class LmdbStore:
    """An LMDB environment in directory ``path`` (created if missing)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        map_size: int = _INITIAL_MAP_SIZE,
        mapped_budget: int | None = MAPPED_BUDGET,
    ) -> None:
        """``mapped_budget``: bytes of file pages this process may gain
        mapped before the store unmaps its own (None: never)."""
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
        self._map_lock = threading.Lock()
        self._mapped = _MappedPages(self.path / "data.mdb", mapped_budget, self._map_lock)

    @property
    def map_size(self) -> int:
        return int(self._env.info()["map_size"])

    def _begin(self, *, write: bool) -> Any:
        """Take a share of the gate and begin a transaction; the caller
        leaves the gate when the transaction ends.

        The writer process may have grown the map past this process's (a
        reader such as ``carbonledger audit`` beside a node): LMDB then
        refuses to begin (MDB_MAP_RESIZED) until this process adopts the new
        size, which it may do only with no transaction of its own open.
        """
        while True:
            self._gate.enter()
            try:
                return self._env.begin(write=write, buffers=True)
            except lmdb.MapResizedError:
                self._gate.leave()
                self._adopt_map_size()
            except BaseException:
                self._gate.leave()
                raise

    def _adopt_map_size(self) -> None:
        try:
            # A transaction this thread holds open would never end while it
            # waits here: give up after a while instead of hanging.
            with self._gate.exclusive(timeout=_ADOPT_WAIT), self._map_lock:
                self._env.set_mapsize(0)  # 0: LMDB adopts the size in the file
        except TimeoutError:
            raise StorageError(
                f"LMDB map at {self.path} grew in another process, and transactions held open here"
                f" for {_ADOPT_WAIT:.0f} s keep this process from following it; retry"
            ) from None

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[_Txn]:
        txn = self._begin(write=write)
        try:
            with txn:
                yield _Txn(txn, self._dbs, self._mapped)
        finally:
            self._gate.leave()

    def read(self) -> AbstractContextManager[_Txn]:
        return self._transaction(write=False)

    @contextmanager
    def write(self) -> Iterator[_Txn]:
        """A write transaction, committed when the block exits. An LMDB error
        other than a full map (disk full, I/O error, on commit or when LMDB
        spills pages during the transaction) raises
        :class:`StorageWriteFailed`: the transaction is aborted, so nothing
        of it is written."""
        try:
            with self._transaction(write=True) as txn:
                yield txn
        except lmdb.MapFullError:
            raise  # run_write grows the map and runs the work again
        except lmdb.Error as exc:
            raise StorageWriteFailed(str(self.path), _lmdb_reason(exc)) from exc

    def release_mapped_pages(self) -> int:
        """Unmap this store's file pages from the process now (see
        :func:`release_mapped_pages`); return the bytes of mapping advised."""
        with self._map_lock:
            return release_mapped_pages(self.path / "data.mdb")

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
            with self._map_lock:
                self._env.set_mapsize(min(size * 2, _MAX_MAP_SIZE))

    def copy_to(self, dest: str | os.PathLike[str]) -> None:
        """Write a compacted copy of the whole store into the empty directory
        ``dest``, as of one read transaction, and sync it to disk.

        Safe beside a running writer (this process's or another's): the copy
        is the store as one reader sees it, while the writer goes on
        committing. Compaction leaves out free pages, so the copy is as small
        as the data. Raises :class:`StorageError` naming LMDB's reason.
        """
        data_file = Path(dest) / "data.mdb"
        txn = self._begin(write=False)
        try:
            with txn:
                self._env.copy(str(dest), compact=True, txn=txn)
            # LMDB writes the copy without syncing it: a backup is only one
            # once it is on disk.
            fd = os.open(data_file, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except lmdb.Error as exc:
            raise StorageError(f"cannot copy the LMDB store at {self.path} to {dest}: {_lmdb_reason(exc)}") from exc
        finally:
            self._gate.leave()

    def disk_bytes(self) -> int:
        """Bytes allocated on disk (the data file is sparse up to the map size)."""
        return sum(p.stat().st_blocks * 512 for p in self.path.iterdir() if p.is_file())

    def close(self) -> None:
        with self._map_lock:
            self._mapped.close()
            self._env.close()
