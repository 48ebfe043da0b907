"""Finding an entry's index by its leaf hash, for idempotent appends.

Every append looks up each entry's leaf hash, so that the same bytes appended
twice get the first index. The index is a small log-structured merge tree:

* the newest entries ``[merged, size)`` are held in memory (``recent``), and
  rebuilt at open from the level-0 tiles, which store every leaf hash by index;
* the entries ``[0, merged)`` are in *runs* in the ``leaves`` table. A run is
  an array of 40-byte records (leaf hash, big-endian index) sorted by hash,
  stored in chunks of :data:`CHUNK_RECORDS` records, each keyed by the run's
  id and the chunk's last leaf hash, so that the chunk that would hold a hash
  is the first at or after ``(run id, hash)``.

When ``recent`` holds :data:`FLUSH_ENTRIES` entries it is sorted and written
as a new run, inside an append transaction; while the newest stored run is
less than twice as large as the one being written, the two are merged into
one first. Run sizes then follow a binary counter: about log2(merged /
FLUSH_ENTRIES) runs, and each record is rewritten about that many times.
A merge streams: it reads :data:`MERGE_CHUNKS` chunks of each run at a time
and writes the merged records as they become final, so it holds a few MB
however large the runs are (merging whole runs in memory raised the peak
resident set of a 10^6-entry ingest by 54 MB at its 2^19-entry merge).

Why runs and not one B-tree keyed by hash: leaf hashes are random, so
inserting a batch of them into a B-tree rewrites nearly every page of it, and
that made the index, not the tree, the cost of building a large log (and its
dirty pages most of the writer's memory). A run is written in key order past
the end of the table, so writing one costs its own pages only. Sorting and
merging records is done by NumPy, a C pass instead of a Python call per
record.

Almost every appended entry is new, so almost every lookup is a miss, and a
miss would probe every run. A bitmap filter answers "certainly not in the
log" for nearly all of them first: each leaf sets two bits, chosen by bytes
0-3 and 4-7 of its hash (uniform: they are SHA-256 output). At 10^6 leaves
about 0.3% of new leaves find both bits set and need a look; at 10^7 about
20%. A set bit is only a reason to look, never an answer, so a fuller bitmap
is slower, not wrong. In memory the bitmap covers every entry, runs and
``recent``; the stored copy is written with each flush, in the same
transaction, so it covers exactly the runs, which is what the audit checks.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice

import numpy as np

from ledger.errors import StorageError
from ledger.merkle.hashing import HASH_SIZE
from ledger.storage.base import ReadTxn, Table, WriteTxn, from_u64, u64
from ledger.storage.tiles import TILE_WIDTH, tile_key

__all__ = [
    "CHUNK_RECORDS",
    "FILTER_BITS",
    "FILTER_KEY",
    "FLUSH_ENTRIES",
    "MERGED_KEY",
    "MERGE_CHUNKS",
    "RECORD_SIZE",
    "RUNS_KEY",
    "LeafFlush",
    "LeafIndex",
    "Run",
    "StoredRecords",
    "clear_stored",
    "filter_of",
    "read_stored",
]

#: Entries held in memory before they are written as a run (about 9 MB of
#: dict at this size; the time to rebuild them at open grows with it too).
FLUSH_ENTRIES = 1 << 16
#: Records per stored chunk: 4,000 bytes, one 4 KiB page.
CHUNK_RECORDS = 100
#: Chunks read from each run being merged per step of a merge.
MERGE_CHUNKS = 256
RECORD_SIZE = HASH_SIZE + 8
#: Metadata key: how many entries (from index 0) the runs hold.
MERGED_KEY = b"leaves_merged"
#: Metadata key: the bitmap over the leaves in the runs.
FILTER_KEY = b"leaves_filter"
#: Metadata key: the next run id (u32), then (run id u32, record count u64)
#: for each run, oldest first. Its absence with ``merged > 0`` marks the
#: earlier format (one row per leaf, keyed by hash), upgraded at open.
RUNS_KEY = b"leaves_runs"
#: Bits in the bitmap (4 MiB).
FILTER_BITS = 1 << 25
_BIT_MASK = FILTER_BITS - 1
_RUN_ID = struct.Struct(">I")
_RUN_ENTRY = struct.Struct(">IQ")


@dataclass(frozen=True, slots=True)
class Run:
    id: int
    count: int

    @property
    def prefix(self) -> bytes:
        return _RUN_ID.pack(self.id)


@dataclass(frozen=True, slots=True)
class LeafFlush:
    """A flush written in a transaction, applied to memory once it commits."""

    merged: int
    runs: tuple[Run, ...]
    next_id: int


@dataclass(slots=True)
class LeafIndex:
    """The two tiers. Only the log's writer changes it, and only after its
    transaction has committed; readers may look things up at any time."""

    #: ``(merged, recent)``, replaced together so that a reader sees a pair:
    #: ``recent`` maps leaf hash -> index for ``[merged, size)``.
    tier: tuple[int, dict[bytes, int]]
    runs: tuple[Run, ...]
    next_id: int
    #: Covers every entry (see the module docstring).
    filter: bytearray
    #: Stored in the earlier one-row-per-leaf format: :meth:`upgrade` it.
    legacy: bool = False

    @property
    def merged(self) -> int:
        return self.tier[0]

    @property
    def recent(self) -> dict[bytes, int]:
        return self.tier[1]

    @classmethod
    def empty(cls) -> LeafIndex:
        return cls((0, {}), (), 0, bytearray(FILTER_BITS // 8))

    @classmethod
    def load(cls, txn: ReadTxn, size: int) -> LeafIndex:
        merged, runs, next_id = _stored_layout(txn)
        if merged > size:
            raise StorageError(f"leaf index covers {merged} entries, but the log has {size}")
        legacy = merged > 0 and txn.get(Table.META, RUNS_KEY) is None
        stored = txn.get(Table.META, FILTER_KEY)
        if stored is not None and len(stored) != FILTER_BITS // 8:
            raise StorageError(f"leaf filter is {len(stored)} bytes, expected {FILTER_BITS // 8}")
        if legacy:
            filt = bytearray(FILTER_BITS // 8)  # rebuilt by upgrade()
        elif stored is not None:
            filt = bytearray(stored)
        else:
            filt = filter_of(read_stored(txn).hashes)
        recent = dict(_leaf_hashes(txn, merged, size))
        _set_bits(filt, b"".join(recent))
        return cls((merged, recent), runs, next_id, filt, legacy)

    def upgrade(self, txn: WriteTxn) -> None:
        """Rewrite a table in the earlier format (one row per leaf, keyed by
        hash) as one run, with this format's bitmap; load the index again
        once this has committed."""
        merged = self.merged
        rows = list(txn.scan(Table.LEAVES))
        if len(rows) != merged or any(len(k) != HASH_SIZE or len(v) != 8 for k, v in rows):
            raise StorageError(f"leaf index: {len(rows)} rows in the earlier format, expected {merged}")
        for key, _ in rows:
            txn.delete(Table.LEAVES, key)
        # LMDB kept the rows in key order, which is the order of a run.
        records = np.frombuffer(b"".join(k + v for k, v in rows), dtype=">u8").reshape(-1, 5)
        self._write_run(txn, iter([records]), len(records), (), 0, merged)
        txn.put(Table.META, FILTER_KEY, bytes(filter_of(b"".join(k for k, _ in rows))))

    # -- lookups ----------------------------------------------------------

    def find(self, txn: ReadTxn, leaf: bytes) -> int | None:
        """The index of the entry with leaf hash ``leaf``, if ``txn`` has it.

        Safe from any thread: the runs are read from ``txn`` itself. If a
        flush committed after ``txn`` began, the entries it moved out of
        memory are not in ``txn``'s runs; they are looked for in its tiles.
        """
        merged, recent = self.tier
        index = recent.get(leaf)
        if index is not None:
            return index
        txn_merged, runs, _ = _stored_layout(txn)
        index = _find_in_runs(txn, runs, leaf)
        if index is None and txn_merged < merged:
            index = _find_in_tiles(txn, leaf, txn_merged, merged)
        return index

    def find_many(self, txn: WriteTxn, leaves: list[bytes]) -> dict[bytes, int]:
        """The indexes of those of ``leaves`` already in the log (the writer's
        lookup: memory and ``txn`` agree)."""
        if not leaves:
            return {}
        recent = self.recent
        found: dict[bytes, int] = {}
        for i in _maybe_present(self.filter, b"".join(leaves)):
            leaf = leaves[i]
            index = recent.get(leaf)
            if index is None:
                index = _find_in_runs(txn, self.runs, leaf)
            if index is not None:
                found[leaf] = index
        return found

    # -- flushing -------------------------------------------------------

    def flush_due(self) -> bool:
        return len(self.recent) >= FLUSH_ENTRIES

    def write_flush(self, txn: WriteTxn, size: int) -> LeafFlush:
        """Write ``recent`` (the entries ``[merged, size)``) as a run, merged
        with the newest runs while they are less than twice its size, and the
        bitmap that covers the runs. Memory changes only in :meth:`committed`."""
        merged, recent = self.tier
        if merged + len(recent) != size:
            raise StorageError(f"leaf index holds {merged + len(recent)} entries, the log {size}")
        indexes = np.fromiter(recent.values(), dtype=np.uint64, count=len(recent))
        hashes = np.frombuffer(b"".join(recent), dtype=">u8").reshape(-1, 4)
        records = np.empty((len(recent), 5), dtype=">u8")
        records[:, :4] = hashes
        records[:, 4] = indexes
        records = records[_hash_order(records)]
        # The same runs as merging pairwise from the newest would take.
        runs = list(self.runs)
        taken: list[Run] = []
        count = len(records)
        while runs and runs[-1].count < 2 * count:
            taken.append(runs.pop())
            count += taken[-1].count
        readers = [_RunReader(txn, run) for run in taken]
        flush = self._write_run(txn, _merge_blocks(records, readers), count, tuple(runs), self.next_id, size)
        for reader in readers:
            reader.check_read_all()
        # In memory the bitmap covers every entry; here those are exactly the runs'.
        txn.put(Table.META, FILTER_KEY, bytes(self.filter))
        return flush

    def _write_run(
        self,
        txn: WriteTxn,
        blocks: Iterator[np.ndarray],
        count: int,
        kept: tuple[Run, ...],
        run_id: int,
        merged: int,
    ) -> LeafFlush:
        """Write the sorted records of ``blocks`` (``count`` of them, in
        order) as run ``run_id``, after the runs ``kept``."""
        run = Run(run_id, count)
        prefix = run.prefix
        written = 0
        carry = np.empty((0, 5), dtype=">u8")
        for block in blocks:
            if len(carry):
                block = np.concatenate((carry, block), dtype=">u8")
            whole = len(block) - len(block) % CHUNK_RECORDS
            _put_chunks(txn, prefix, block[:whole])
            written += whole
            carry = block[whole:]
        _put_chunks(txn, prefix, carry)
        written += len(carry)
        if written != count:
            raise StorageError(f"leaf index: wrote {written} records as run {run_id}, expected {count}")
        runs = (*kept, run)
        txn.put(Table.META, RUNS_KEY, _encode_runs(run_id + 1, runs))
        txn.put(Table.META, MERGED_KEY, u64(merged))
        return LeafFlush(merged, runs, run_id + 1)

    def committed(self, added: dict[bytes, int], flush: LeafFlush | None) -> None:
        """Record a committed batch: its new leaves, and the flush it wrote."""
        _set_bits(self.filter, b"".join(added))
        if flush is not None:
            # A new dict, so that a reader holding the old pair stays correct.
            self.runs, self.next_id = flush.runs, flush.next_id
            self.tier = (flush.merged, dict(added))
        else:
            self.recent.update(added)


# -- the stored runs, for the audit ----------------------------------------


@dataclass(frozen=True, slots=True)
class StoredRecords:
    """Every record of the stored runs, and what is wrong with their layout."""

    hashes: bytes  # the records' leaf hashes, joined, in run order
    indexes: np.ndarray  # their indexes, same order
    problem: str | None


def read_stored(txn: ReadTxn) -> StoredRecords:
    """Read every stored record, checking the runs' layout on the way: each
    run's records sorted by hash, each chunk keyed by its run and its last
    hash, the counts as recorded, and no row outside every run. In the
    earlier format, each row is one record."""
    merged, runs, _ = _stored_layout(txn)
    if merged > 0 and txn.get(Table.META, RUNS_KEY) is None:
        rows = list(txn.scan(Table.LEAVES))
        raw = b"".join(k + v for k, v in rows if len(k) == HASH_SIZE and len(v) == 8)
        records = np.frombuffer(raw, dtype=">u8").reshape(-1, 5)
        problem = None if len(records) == len(rows) else "a row in the earlier format is malformed"
        return StoredRecords(records[:, :4].tobytes(), records[:, 4].astype(np.uint64), problem)
    parts: list[np.ndarray] = []
    problem = None
    listed = {run.prefix for run in runs}
    for key, _ in txn.scan(Table.LEAVES):
        if key[:4] not in listed:
            problem = f"row {key.hex()} belongs to no run"
            break
    for run in runs:
        chunks = list(_run_chunks(txn, run))
        records = _records_of(chunks)
        if records is None:
            problem = problem or f"run {run.id}: a chunk is not whole records"
            continue
        if len(records) != run.count:
            problem = problem or f"run {run.id} holds {len(records)} records, recorded {run.count}"
        elif not _strictly_sorted(records):
            problem = problem or f"run {run.id} is not sorted by leaf hash"
        elif any(key != run.prefix + value[-RECORD_SIZE:-8] for key, value in chunks):
            problem = problem or f"run {run.id}: a chunk's key is not its last leaf hash"
        parts.append(records)
    records = np.concatenate(parts, dtype=">u8") if parts else np.empty((0, 5), dtype=">u8")
    return StoredRecords(records[:, :4].tobytes(), records[:, 4].astype(np.uint64), problem)


def clear_stored(txn: WriteTxn) -> None:
    """Drop the stored tier: the next open rebuilds the index from the tiles
    (for tools that rewrite history; the ledger itself never does this)."""
    for key, _ in list(txn.scan(Table.LEAVES)):
        txn.delete(Table.LEAVES, key)
    for key in (MERGED_KEY, FILTER_KEY, RUNS_KEY):
        if txn.get(Table.META, key) is not None:
            txn.delete(Table.META, key)


# -- the bitmap -------------------------------------------------------------


def filter_of(hashes: bytes, base: bytearray | None = None) -> bytearray:
    """The bitmap with the bits of the joined leaf ``hashes`` set, on a copy
    of ``base``."""
    filt = bytearray(base) if base is not None else bytearray(FILTER_BITS // 8)
    _set_bits(filt, hashes)
    return filt


def _bit_pairs(hashes: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Each leaf's two bits: bytes 0-3 and 4-7 of its hash, little-endian,
    masked to the bitmap's size."""
    words = np.frombuffer(hashes, dtype="<u4").reshape(-1, HASH_SIZE // 4)
    return words[:, 0] & _BIT_MASK, words[:, 1] & _BIT_MASK


def _set_bits(filt: bytearray, hashes: bytes) -> None:
    if not hashes:
        return
    view = np.frombuffer(filt, dtype=np.uint8)
    for bits in _bit_pairs(hashes):
        np.bitwise_or.at(view, bits >> 3, np.left_shift(1, bits & 7).astype(np.uint8))


def _maybe_present(filt: bytearray, hashes: bytes) -> list[int]:
    """The positions of the leaves whose two bits are both set."""
    view = np.frombuffer(filt, dtype=np.uint8)
    first, second = _bit_pairs(hashes)
    hit = (view[first >> 3] >> (first & 7).astype(np.uint8)) & (view[second >> 3] >> (second & 7).astype(np.uint8))
    return np.flatnonzero(hit & 1).tolist()


# -- runs -------------------------------------------------------------------


def _stored_layout(txn: ReadTxn) -> tuple[int, tuple[Run, ...], int]:
    """``(merged, runs, next run id)`` as ``txn`` has them."""
    raw = txn.get(Table.META, MERGED_KEY)
    merged = from_u64(raw) if raw is not None else 0
    layout = txn.get(Table.META, RUNS_KEY)
    if layout is None:
        return merged, (), 0
    if len(layout) < 4 or (len(layout) - 4) % _RUN_ENTRY.size:
        raise StorageError(f"leaf index run list is {len(layout)} bytes")
    runs = tuple(Run(i, n) for i, n in _RUN_ENTRY.iter_unpack(layout[4:]))
    return merged, runs, _RUN_ID.unpack_from(layout)[0]


def _encode_runs(next_id: int, runs: tuple[Run, ...]) -> bytes:
    return _RUN_ID.pack(next_id) + b"".join(_RUN_ENTRY.pack(r.id, r.count) for r in runs)


def _find_in_runs(txn: ReadTxn, runs: tuple[Run, ...], leaf: bytes) -> int | None:
    for run in runs:
        prefix = run.prefix
        row = next(txn.scan(Table.LEAVES, prefix + leaf), None)
        if row is None or not row[0].startswith(prefix):
            continue
        chunk = row[1]
        at = chunk.find(leaf)
        while at >= 0 and at % RECORD_SIZE:
            at = chunk.find(leaf, at + 1)
        if at >= 0:
            return from_u64(chunk[at + HASH_SIZE : at + RECORD_SIZE])
    return None


def _run_chunks(txn: ReadTxn, run: Run, start: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
    """The run's chunks in key order, from the first keyed at or after
    ``run.prefix + start``."""
    prefix = run.prefix
    for key, value in txn.scan(Table.LEAVES, prefix + start):
        if not key.startswith(prefix):
            return
        yield key, value


def _records_of(chunks: list[tuple[bytes, bytes]]) -> np.ndarray | None:
    data = b"".join(value for _, value in chunks)
    if len(data) % RECORD_SIZE or any(not value or len(value) % RECORD_SIZE for _, value in chunks):
        return None
    return np.frombuffer(data, dtype=">u8").reshape(-1, 5)


class _RunReader:
    """Reads a stored run for a merge, :data:`MERGE_CHUNKS` chunks at a
    time, deleting the chunks it has read."""

    def __init__(self, txn: WriteTxn, run: Run) -> None:
        self._txn = txn
        self._run = run
        self._after = b""  # the last chunk's leaf hash, plus one byte
        self._read = 0
        self.done = False

    def read(self) -> np.ndarray:
        """The run's next records, in order (none once it is done)."""
        if self.done:
            return np.empty((0, 5), dtype=">u8")
        # A scan of its own each time: deleting would move a live cursor's pages.
        chunks = list(islice(_run_chunks(self._txn, self._run, self._after), MERGE_CHUNKS))
        records = _records_of(chunks)
        if records is None:
            raise StorageError(f"leaf index run {self._run.id} is damaged (run `carbonledger audit`)")
        for key, _ in chunks:
            self._txn.delete(Table.LEAVES, key)
        if len(chunks) < MERGE_CHUNKS:
            self.done = True
        else:
            self._after = chunks[-1][0][len(self._run.prefix) :] + b"\x00"
        self._read += len(records)
        return records

    def check_read_all(self) -> None:
        if not self.done or self._read != self._run.count:
            raise StorageError(f"leaf index run {self._run.id} is damaged (run `carbonledger audit`)")


def _hash_order(records: np.ndarray) -> np.ndarray:
    """The permutation that sorts records by leaf hash (bytewise, which is
    the order of its four big-endian words)."""
    first = records[:, 0].astype(np.uint64)
    order = np.argsort(first, kind="stable")
    ordered = first[order]
    if len(ordered) > 1 and bool((ordered[1:] == ordered[:-1]).any()):
        # Hashes that share their first 8 bytes (rare, but anyone can make
        # them): order by all 32.
        words = records[:, :4].astype(np.uint64)
        order = np.lexsort((words[:, 3], words[:, 2], words[:, 1], words[:, 0]))
    return order


def _merge_blocks(fresh: np.ndarray, readers: list[_RunReader]) -> Iterator[np.ndarray]:
    """The records of ``fresh`` (sorted) and of the runs that ``readers``
    read, merged: sorted blocks whose concatenation is one sorted run.

    Each step takes, from every buffer, the records up to the smallest last
    hash among the buffers of runs not yet read to the end: no record still
    unread can sort before them. The run that set that bound is emptied, and
    read again at the next step.
    """
    buffers = [fresh] + [reader.read() for reader in readers]
    sources: list[_RunReader | None] = [None, *readers]
    while True:
        for i, source in enumerate(sources):
            if source is not None and not len(buffers[i]):
                buffers[i] = source.read()
        bounds = [
            buffers[i][-1, :4].tobytes()
            for i, source in enumerate(sources)
            if source is not None and not source.done and len(buffers[i])
        ]
        parts = []
        for i, buffer in enumerate(buffers):
            n = len(buffer) if not bounds else int(np.searchsorted(_hashes(buffer), min(bounds), side="right"))
            if n:
                parts.append(buffer[:n])
                buffers[i] = buffer[n:]
        if not parts:
            return
        block = np.concatenate(parts, dtype=">u8") if len(parts) > 1 else parts[0]  # (numpy would pick native order)
        # A stable sort of a few sorted pieces is a linear merge.
        yield block[_hash_order(block)] if len(parts) > 1 else block


_HASH_AND_INDEX = np.dtype([("hash", f"S{HASH_SIZE}"), ("index", ">u8")])


def _hashes(records: np.ndarray) -> np.ndarray:
    """The records' leaf hashes as 32-byte strings, which NumPy compares
    bytewise (a view, no copy)."""
    return records.view(_HASH_AND_INDEX).reshape(-1)["hash"]


def _put_chunks(txn: WriteTxn, prefix: bytes, records: np.ndarray) -> None:
    """Append ``records`` (sorted, after every stored run's) to the table in
    chunks of :data:`CHUNK_RECORDS`, each keyed by ``prefix`` and its last
    leaf hash."""
    if not len(records):
        return
    data = records.tobytes()
    step = CHUNK_RECORDS * RECORD_SIZE
    chunks = []
    for lo in range(0, len(data), step):
        hi = min(lo + step, len(data))
        chunks.append((prefix + data[hi - RECORD_SIZE : hi - 8], data[lo:hi]))
    # The run's id is above every stored run's, and its chunks are in key
    # order: each goes past the end of the table.
    txn.put_many(Table.LEAVES, chunks, append=True)


def _strictly_sorted(records: np.ndarray) -> bool:
    if len(records) < 2:
        return True
    words = records[:, :4].astype(np.uint64)
    prev, nxt = words[:-1], words[1:]
    # Row-wise lexicographic prev < next: the first differing word decides.
    differs = prev != nxt
    first = np.argmax(differs, axis=1)
    rows = np.arange(len(prev))
    return bool(differs.any(axis=1).all() and (prev[rows, first] < nxt[rows, first]).all())


def _find_in_tiles(txn: ReadTxn, leaf: bytes, start: int, end: int) -> int | None:
    """The index of ``leaf`` among the level-0 tile hashes ``[start, end)``
    that ``txn`` has (a slow path: see :meth:`LeafIndex.find`)."""
    for tile_index in range(start // TILE_WIDTH, (end + TILE_WIDTH - 1) // TILE_WIDTH):
        tile = txn.get(Table.TILES, tile_key(0, tile_index))
        if tile is None:
            break
        row = bytes(tile[: TILE_WIDTH * HASH_SIZE])
        at = row.find(leaf)
        while at >= 0 and at % HASH_SIZE:
            at = row.find(leaf, at + 1)
        index = tile_index * TILE_WIDTH + at // HASH_SIZE
        if at >= 0 and start <= index < end:
            return index
    return None


def _leaf_hashes(txn: ReadTxn, start: int, end: int) -> Iterator[tuple[bytes, int]]:
    """``(leaf hash, index)`` for ``[start, end)``, read from level-0 tiles."""
    index = start
    while index < end:
        tile_index = index // TILE_WIDTH
        tile = txn.get(Table.TILES, tile_key(0, tile_index))
        if tile is None:
            raise StorageError(f"tile 0/{tile_index} is missing")
        stop = min(end, (tile_index + 1) * TILE_WIDTH)
        # A tile row at a time (this runs at every open, over up to
        # FLUSH_ENTRIES leaves): slices of the row, paired with their indexes.
        base = tile_index * TILE_WIDTH
        row = bytes(tile)
        offsets = range((index - base) * HASH_SIZE, (stop - base) * HASH_SIZE, HASH_SIZE)
        yield from zip([row[o : o + HASH_SIZE] for o in offsets], range(index, stop))
        index = stop
