"""The LMDB store unmaps the pages of its file that this process holds
mapped (see ledger/storage/lmdb_store.py, "mapped pages"): nothing is lost,
not even a transaction's uncommitted changes, the pages leave the resident
set, and only shared mappings of the store's file are advised."""

from __future__ import annotations

import mmap
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ledger.errors import StorageError
from ledger.storage import LmdbStore, Table, lmdb_store, u64

pytestmark = pytest.mark.skipif(
    lmdb_store._madvise is None,
    reason="needs madvise and /proc (Linux)",
)

ROOT = Path(__file__).resolve().parents[1]
VALUE = 3000  # bytes: a few values per page, like ledger entries


def mapped_rss(path: Path) -> int:
    """Bytes of ``path`` resident in this process's mappings, from smaps."""
    st = os.stat(path)
    total, inside = 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5:  # a mapping's header line
                inside = fields[4] == str(st.st_ino) and len(fields) >= 6
            elif inside and fields[0] == "Rss:":
                total += int(fields[1]) * 1024
    return total


def fill(store: LmdbStore, n: int) -> dict[bytes, bytes]:
    values = {u64(i): os.urandom(16) * (VALUE // 16) for i in range(n)}
    store.run_write(lambda txn: txn.put_many(Table.ENTRIES, sorted(values.items()), append=True))
    return values


def read_all(store: LmdbStore, values: dict[bytes, bytes]) -> None:
    with store.read() as txn:
        for key, value in values.items():
            assert txn.get(Table.ENTRIES, key) == value


def test_release_unmaps_pages_and_loses_nothing(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path / "l", mapped_budget=None)
    try:
        values = fill(store, 2000)  # about 6 MiB
        read_all(store, values)
        data_file = tmp_path / "l" / "data.mdb"
        assert mapped_rss(data_file) >= 4 << 20
        map_size = store.map_size  # reads the meta pages, through the map
        assert store.release_mapped_pages() == map_size
        assert mapped_rss(data_file) == 0
        # Reads after the release, in the same and in new transactions, see
        # the same bytes; a view taken before the release still reads them.
        with store.read() as txn:
            view = txn.get_view(Table.ENTRIES, u64(7))
            assert view is not None
            store.release_mapped_pages()
            assert bytes(view) == values[u64(7)]
        read_all(store, values)
        assert mapped_rss(data_file) > 0
    finally:
        store.close()


def test_a_release_inside_a_write_transaction_loses_nothing(tmp_path: Path) -> None:
    """The store may release in the middle of a write transaction (it looks
    every few operations): the transaction still reads its own changes and
    commits them."""
    store = LmdbStore(tmp_path / "l", mapped_budget=None)
    try:
        values = fill(store, 500)
        changed = {key: value[::-1] for key, value in list(values.items())[::7]}

        def work(txn: lmdb_store._Txn) -> None:
            for key, value in changed.items():
                txn.put(Table.ENTRIES, key, value)
            store.release_mapped_pages()
            for key, value in changed.items():
                assert txn.get(Table.ENTRIES, key) == value
            store.release_mapped_pages()

        store.run_write(work)
        values.update(changed)
        read_all(store, values)
    finally:
        store.close()
    reopened = LmdbStore(tmp_path / "l", mapped_budget=None)
    try:
        read_all(reopened, values)
    finally:
        reopened.close()


def test_the_budget_is_kept_by_the_operations_themselves(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path / "l", mapped_budget=1 << 20)
    try:
        values = fill(store, 2000)
        read_all(store, values)
        first = store._mapped.releases
        assert first >= 1
        # Bulk reads look at the budget between chunks.
        with store.read() as txn:
            assert txn.get_many(Table.ENTRIES, sorted(values)) == values
        assert store._mapped.releases > first
    finally:
        store.close()


def test_only_shared_read_only_mappings_are_advised(tmp_path: Path) -> None:
    """A private mapping of the same file keeps its own changes
    (MADV_DONTNEED would drop them); a closed store advises nothing."""
    store = LmdbStore(tmp_path / "l", mapped_budget=None)
    data_file = tmp_path / "l" / "data.mdb"
    try:
        fill(store, 100)
        with open(data_file, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) as private:
            private[8192:8200] = b"CHANGED!"
            assert store.release_mapped_pages() == store.map_size
            assert private[8192:8200] == b"CHANGED!"
    finally:
        store.close()
    assert lmdb_store.release_mapped_pages(data_file) == 0


def test_journal_swaps_on_the_lmdb_kv_and_rolls_back_byte_for_byte(tmp_path: Path) -> None:
    """The store's KV puts and hands back the old value in one step (LMDB
    replace), and a Journal over it undoes writes exactly: overwritten
    values of several sizes (a copy, not a view the write moved) and new keys."""
    from ledger.kv import Journal

    store = LmdbStore(tmp_path / "s")
    before = {b"a": b"1" * 3000, b"b": b"2", b"c": b"3" * 50}
    with store.write() as txn:
        for key, value in before.items():
            txn.put(Table.STATE, key, value)
    with store.write() as txn:
        kv = txn.kv(Table.STATE)
        journal = Journal(kv)
        assert journal.put == journal._put_swap  # the one-step path is taken
        mark = journal.savepoint()
        journal.put(b"a", b"x" * 10)  # shrinks: LMDB rewrites the node in place
        journal.put(b"b", b"y" * 5000)  # grows onto overflow pages
        journal.put(b"new", b"z")
        journal.delete(b"c")
        assert kv.swap(b"b", b"y" * 5000) == b"y" * 5000
        assert dict(kv.scan(b"")) == {b"a": b"x" * 10, b"b": b"y" * 5000, b"new": b"z"}
        journal.rollback(mark)
        assert dict(kv.scan(b"")) == before
    with store.read() as txn:
        assert dict(txn.scan(Table.STATE)) == before
    store.close()


# -- a map grown by another process -------------------------------------------

_GROWER = """
import sys
from ledger.storage import LmdbStore, Table, u64
store = LmdbStore(sys.argv[1], map_size=1 << 20, mapped_budget=None)
print("open", flush=True)
sys.stdin.readline()
for i in range(40):  # 12 MB in all: the map doubles from 1 MiB to 16 MiB
    rows = [(u64(i * 100 + j), bytes([i]) * 3000) for j in range(100)]
    store.run_write(lambda txn: txn.put_many(Table.ENTRIES, rows, append=True))
print(store.map_size, flush=True)
sys.stdin.readline()
"""


class _Grower:
    """A writer process that grows the store's map when told to."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _GROWER, str(path)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline() == "open\n"

    def grow(self) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("grow\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def end(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("end\n")
        self.proc.stdin.flush()
        assert self.proc.wait(30) == 0


def test_a_reader_process_follows_a_map_the_writer_grew(tmp_path: Path) -> None:
    """LMDB refuses a reader's next transaction (MDB_MAP_RESIZED) once the
    writer process has grown the map past the reader's: what
    `carbonledger audit` beside a node meets. The store adopts the size."""
    grower = _Grower(tmp_path / "l")
    try:
        reader = LmdbStore(tmp_path / "l", map_size=1 << 20, mapped_budget=None)
        try:
            with reader.read() as txn:
                assert txn.get(Table.ENTRIES, u64(0)) is None
            grown = grower.grow()
            assert grown > reader.map_size
            with reader.read() as txn:
                assert bytes(txn.get(Table.ENTRIES, u64(3999))) == bytes([39]) * 3000
            assert reader.map_size == grown
        finally:
            reader.close()
    finally:
        grower.end()


def test_a_transaction_held_open_is_named_not_waited_for_forever(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Following the writer's map needs every transaction of this process
    # closed; one this very thread holds never will be.
    monkeypatch.setattr(lmdb_store, "_ADOPT_WAIT", 0.2)
    grower = _Grower(tmp_path / "l")
    try:
        reader = LmdbStore(tmp_path / "l", map_size=1 << 20, mapped_budget=None)
        try:
            with reader.read() as outer:
                grower.grow()
                with pytest.raises(StorageError, match="grew in another process"), reader.read():
                    pass
                assert outer.get(Table.ENTRIES, u64(0)) is None  # its snapshot still reads
            with reader.read() as txn:  # closed: followed
                assert bytes(txn.get(Table.ENTRIES, u64(0))) == bytes(3000)
        finally:
            reader.close()
    finally:
        grower.end()
