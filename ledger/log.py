"""Sequencing: batch -> block -> checkpoint, in one durable transaction.

:class:`Ledger` is the log's public face. An append batch is written in one
store transaction holding the entries, their tree hashes, the state machine's
changes, the block that records the batch, and the signed checkpoint for the
new tree size. The transaction commits durably before any index is returned;
if anything fails, nothing of the batch is left behind.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, Self, TypeVar

from ledger.block import GENESIS_PREVIOUS, Block, block_hash, decode_block, encode_block
from ledger.block_note import BlockNote, sign_block_note
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.errors import LedgerError, MalformedError, NotFound, StorageError
from ledger.keys import Signer
from ledger.kv import EMPTY_STATE_DIGEST, KV, Journal, fold_state_digest
from ledger.leaf_index import LeafFlush, LeafIndex
from ledger.merkle import (
    EMPTY_ROOT,
    LEAF_PREFIX,
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_at,
)
from ledger.merkle.fetch import ReadNode
from ledger.merkle.hashing import HASH_SIZE
from ledger.storage import LmdbStore, MemoryStore, ReadTxn, Store, Table, WriteTxn, from_u64, u64
from ledger.storage.lmdb_store import MAPPED_BUDGET
from ledger.storage.tiles import ROW_OFFSET, TILE_HEIGHT, TILE_WIDTH, TileWriter, tile_key
from ledger.storage.writer_lock import WriterLock
from ledger.tlog_proof import TlogProof, format_tlog_proof
from ledger.tlog_tiles import MAX_BUNDLE_ENTRY_BYTES, TileRef, encode_entry_bundle, unbundlable

__all__ = [
    "MAX_BATCH",
    "MAX_ENTRY_BYTES",
    "META_PREFIX",
    "Ledger",
    "Receipt",
    "StateMachineHook",
    "open_tile_reader",
    "snapshot_size",
    "time_at",
]

#: Largest entry the log accepts. A DSSE envelope with a full PACT document
#: and its extensions is a few KiB; 1 MiB leaves room and caps abuse.
MAX_ENTRY_BYTES = 1 << 20
#: Most entries in one append batch (one transaction).
MAX_BATCH = 100_000

_FORMAT_VERSION = b"carbonledger/ledger/v1"
_NO_MACHINE = "none"
_ZERO_HASH = bytes(32)
_sha256 = hashlib.sha256
_pack_u64 = struct.Struct(">Q").pack  # u64(), without a Python call per key
#: Where ``submit(meta=...)`` items live in the metadata table, apart from the
#: ledger's own keys (format, origin...).
META_PREFIX = b"x/"


class StateMachineHook(Protocol):
    """What the log needs of a state machine (see ``ledger.state``)."""

    machine_id: str

    def apply(self, kv: KV, entry: bytes, ctx: Any, verified: frozenset[str] | None = None) -> Any: ...

    def context(self, *, index: int, time: int) -> Any: ...


@dataclass(frozen=True, slots=True)
class Receipt:
    """The outcome of one accepted entry: its ``index``; ``duplicate`` when the
    same bytes were already in the log (the index is the earlier one); and
    what the state machine reported (``applied``), if one is attached."""

    index: int
    duplicate: bool = False
    applied: Any = None


_K = TypeVar("_K")
_V = TypeVar("_V")


class _Memo(dict[_K, _V]):
    """A bounded memo of values that never change (the log only grows):
    when full it starts over, and a forgotten value is only read again."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def __setitem__(self, key: _K, value: _V) -> None:
        if len(self) >= self.limit:
            self.clear()
        super().__setitem__(key, value)


class FullTiles(_Memo[int, bytes]):
    """Complete tiles above level 0, kept across reads.

    A tile whose bottom row is full never changes again, so it can be kept
    for good, as tlog-tiles servers let clients cache full tiles. Every proof
    passes through the few upper tiles, which would otherwise be read again
    for each one; level-0 tiles (one per 256 entries) are left to the page
    cache.
    """

    LIMIT = 256  # 4 MiB; a 10^6-entry log has 16 upper tiles

    def __init__(self) -> None:
        super().__init__(self.LIMIT)

    def keep(self, key: int, tile: Any) -> None:
        if bytes(tile[_LAST_BOTTOM_SLOT]) != _ZERO_HASH:  # else not complete yet
            self[key] = bytes(tile)


#: Where the last node of a tile's bottom row is: once it is set, the tile is complete.
_LAST_BOTTOM_SLOT = slice((TILE_WIDTH - 1) * HASH_SIZE, TILE_WIDTH * HASH_SIZE)


def open_tile_reader(txn: ReadTxn, full_tiles: FullTiles | None = None) -> ReadNode:
    """A ``read_node(level, index)`` over the tiles visible to ``txn``.

    Tiles read once are kept for the life of the reader, so one proof reads
    each tile at most once; complete upper tiles are also looked for in, and
    kept in, ``full_tiles`` (never for an audit, which trusts no cache).
    """
    cache: dict[int, Any] = {}
    get = getattr(txn, "get_view", None) or txn.get
    levels = _LEVEL_SLOTS

    def read_node(level: int, index: int) -> bytes:
        # node_slot(), inlined and tabled: this is the innermost loop of
        # proof serving, and its cost per node is what grows with the tree.
        tile_level, shift, mask, row_offset = levels[level]
        tile_index = index >> shift
        cache_key = tile_index << 8 | tile_level
        tile = cache.get(cache_key)
        if tile is None:
            tile = full_tiles.get(cache_key) if full_tiles is not None and tile_level else None
            if tile is None:
                tile = get(Table.TILES, tile_key(tile_level, tile_index))
                if tile is None:
                    raise StorageError(f"tile {tile_level}/{tile_index} is missing")
                if full_tiles is not None and tile_level:
                    full_tiles.keep(cache_key, tile)
            cache[cache_key] = tile
        (node,) = _hash_at(tile, (row_offset + (index & mask)) << 5)
        if node == _ZERO_HASH:
            raise StorageError(f"tree node {level}/{index} is missing from its tile")
        return node

    return read_node


def _level_slot(level: int) -> tuple[int, int, int, int]:
    row = level % TILE_HEIGHT
    shift = TILE_HEIGHT - row
    return level // TILE_HEIGHT, shift, (1 << shift) - 1, ROW_OFFSET[row]


def snapshot_size(txn: ReadTxn) -> int:
    """The tree size of a read transaction: its last block's (the state is
    written in the same transaction as the block)."""
    last = txn.last(Table.BLOCKS)
    if last is None:
        return 0
    return decode_block(last[1]).tree_size


def time_at(txn: ReadTxn, size: int) -> int:
    """The ledger's time at tree ``size``: the time of the last block that
    ends at or below it (block times never go back), 0 before the first
    block. Binary search over block heights: O(log blocks) reads.

    Time-dependent answers read from a snapshot (a GEC batch past its
    validity end) are judged at ``time_at(txn, snapshot_size(txn))``, the
    time of the snapshot's latest block, never a clock: the same snapshot
    gives the same answer on every node.
    """
    last = txn.last(Table.BLOCKS)
    if last is None:
        return 0
    block = decode_block(last[1])
    if block.tree_size <= size:
        return block.time
    lo, hi = 0, block.height  # tree_size(lo) <= size < tree_size(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if decode_block(_block_at(txn, mid)).tree_size <= size:
            lo = mid
        else:
            hi = mid
    return decode_block(_block_at(txn, lo)).time


def _block_at(txn: ReadTxn, height: int) -> bytes:
    raw = txn.get(Table.BLOCKS, u64(height))
    if raw is None:
        raise StorageError(f"block {height} is missing below the last block")
    return raw


def _hashes_of(row: bytes) -> list[bytes]:
    return [row[p : p + HASH_SIZE] for p in range(0, len(row), HASH_SIZE)]


#: Per tree level: (tile level, index shift to the tile, mask of the index
#: inside the tile's row, the row's first hash). 64 levels cover any u64 size.
_LEVEL_SLOTS = tuple(_level_slot(level) for level in range(64))
#: One hash out of a tile at a byte offset: a third of the cost of slicing a
#: memoryview and copying the slice.
_hash_at = struct.Struct(f"{HASH_SIZE}s").unpack_from


_R = TypeVar("_R")


@dataclass(frozen=True, slots=True)
class _Batch(Generic[_R]):
    """What one append transaction produced, applied to the ledger's memory
    only after it committed: per-entry results, the new head (None if no
    entry was accepted), the new leaves, and the leaf-index flush it wrote."""

    results: list[_R]
    head: _Head | None
    leaves: dict[bytes, int]
    flush: LeafFlush | None


@dataclass(frozen=True, slots=True)
class _Head:
    block: Block
    block_hash: bytes
    edge: CompactRange
    checkpoint: str


class Ledger:
    """An append-only RFC 9162 log with signed checkpoints over a store.

    Open one with :meth:`open` (LMDB) or :meth:`memory` (the in-memory twin).
    Appends are serialised by an internal lock; reads may run concurrently.
    """

    def __init__(
        self,
        store: Store,
        *,
        signer: Signer,
        machine: StateMachineHook | None = None,
        created_time: int | None = None,
    ) -> None:
        self._store = store
        self._signer = signer
        self._machine = machine
        self._lock = threading.Lock()
        # Right-edge range hashes (see ledger.merkle.fetch.RangeMemo).
        self._ranges: _Memo[tuple[int, int], bytes] = _Memo(4096)
        self._full_tiles = FullTiles()
        self._clock: Callable[[], float] = time.time
        # Replicas of one log must share block 0 byte for byte, so a cluster
        # gives every node the same creation time instead of its clock.
        self._created_time = created_time
        # Held by a ledger opened on a directory (see Ledger.open).
        self._writer_lock: WriterLock | None = None
        self._head = self._load_or_create()

    # -- construction ---------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        signer: Signer,
        machine: StateMachineHook | None = None,
        map_size: int | None = None,
        created_time: int | None = None,
        mapped_budget: int | None = MAPPED_BUDGET,
    ) -> Ledger:
        """Open the LMDB ledger in directory ``path``, creating it if missing.

        The log's origin is the signer's name; opening an existing ledger
        with another signer, or with another state machine, is refused.
        ``created_time`` is the time of block 0 when the ledger is created
        (default: now); replicas of one log pass the same value.
        ``mapped_budget``: bytes of the file's pages the process may gain
        mapped before the store unmaps them (see ``LmdbStore``).
        """
        lock = WriterLock(path)
        try:
            store = LmdbStore(path, mapped_budget=mapped_budget, **({"map_size": map_size} if map_size else {}))
        except BaseException:
            lock.release()
            raise
        try:
            ledger = cls(store, signer=signer, machine=machine, created_time=created_time)
        except BaseException:
            store.close()
            lock.release()
            raise
        ledger._writer_lock = lock
        return ledger

    @classmethod
    def memory(
        cls, *, signer: Signer, machine: StateMachineHook | None = None, created_time: int | None = None
    ) -> Ledger:
        """A ledger in memory: same behaviour, no durability."""
        return cls(MemoryStore(), signer=signer, machine=machine, created_time=created_time)

    def close(self) -> None:
        self._store.close()
        if self._writer_lock is not None:
            self._writer_lock.release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def origin(self) -> str:
        return self._signer.name

    @property
    def vkey(self) -> str:
        return self._signer.vkey

    @property
    def store(self) -> Store:
        return self._store

    @property
    def machine(self) -> StateMachineHook | None:
        """The state machine entries are applied with, if any."""
        return self._machine

    @property
    def machine_id(self) -> str:
        return self._machine.machine_id if self._machine is not None else _NO_MACHINE

    def _load_or_create(self) -> _Head:
        with self._store.read() as txn:
            version = txn.get(Table.META, b"format")
            head = self._load(txn, version) if version is not None else None
        if head is None:
            return self._create()
        if self._leaves.legacy:
            # A leaf index in the earlier one-row-per-leaf format: rewrite it
            # once as a run, then load it as any other.
            self._store.run_write(self._leaves.upgrade)
            with self._store.read() as txn:
                self._leaves = LeafIndex.load(txn, head.block.tree_size)
        return head

    def _load(self, txn: ReadTxn, version: bytes) -> _Head:
        if version != _FORMAT_VERSION:
            raise StorageError(f"unknown ledger format {version!r}")
        for field, want in (
            (b"origin", self._signer.name),
            (b"vkey", self._signer.vkey),
            (b"machine", self.machine_id),
        ):
            have = (txn.get(Table.META, field) or b"").decode()
            if have != want:
                raise StorageError(f"ledger {field.decode()} is {have!r}, but was opened with {want!r}")
        last = txn.last(Table.BLOCKS)
        if last is None:
            raise StorageError("ledger has no blocks")
        block = decode_block(last[1])
        edge = CompactRange.load(open_tile_reader(txn), block.tree_size)
        if edge.root() != block.root:
            raise StorageError(f"stored tree root at size {block.tree_size} does not match block {block.height}")
        note = txn.get(Table.CHECKPOINTS, u64(block.tree_size))
        if note is None:
            raise StorageError(f"no checkpoint for tree size {block.tree_size}")
        self._leaves = LeafIndex.load(txn, block.tree_size)
        return _Head(block, block_hash(block), edge, note.decode())

    def _create(self) -> _Head:
        created = int(self._clock()) if self._created_time is None else self._created_time
        block = Block(0, GENESIS_PREVIOUS, 0, 0, 0, EMPTY_ROOT, created, EMPTY_STATE_DIGEST)
        note = sign_checkpoint(Checkpoint(self._signer.name, 0, EMPTY_ROOT), self._signer)

        def work(txn: WriteTxn) -> None:
            if txn.get(Table.META, b"format") is not None:
                raise StorageError("ledger was created concurrently")
            txn.put(Table.META, b"format", _FORMAT_VERSION)
            txn.put(Table.META, b"origin", self._signer.name.encode())
            txn.put(Table.META, b"vkey", self._signer.vkey.encode())
            txn.put(Table.META, b"machine", self.machine_id.encode())
            txn.put(Table.BLOCKS, u64(0), encode_block(block))
            txn.put(Table.CHECKPOINTS, u64(0), note.encode())

        self._store.run_write(work)
        self._leaves = LeafIndex.empty()
        return _Head(block, block_hash(block), CompactRange(), note)

    # -- appending ------------------------------------------------------

    def append(self, entries: Sequence[bytes]) -> list[int]:
        """Append ``entries`` in order; return their indexes once durable.

        Idempotent per entry bytes: an entry already in the log (or earlier
        in the same batch) gets its existing index. All or nothing: if the
        state machine rejects any entry, the error is raised and nothing of
        the batch is written.
        """
        if self._machine is not None:
            receipts = self.submit(entries, all_or_nothing=True)
            return [r.index for r in receipts]  # type: ignore[union-attr]
        # No state machine: no entry can be rejected, so the batch is hashed,
        # looked up and written a whole list at a time (the bulk-load path).
        _check_entries(entries, None, None)
        return self._commit(None, lambda txn, head, now: self._write_plain(txn, head, now, entries))

    def submit(
        self,
        entries: Sequence[bytes],
        *,
        verified: Sequence[frozenset[str] | None] | None = None,
        prepared: Sequence[Any] | None = None,
        all_or_nothing: bool = False,
        time: int | None = None,
        meta: Mapping[bytes, bytes] | None = None,
        check: Callable[[Block], None] | None = None,
    ) -> list[Receipt | LedgerError]:
        """Append what the state machine accepts; report each entry's outcome.

        ``verified[i]`` lists the keys whose signatures on entry ``i`` were
        already checked (so the state machine need not check them again).
        ``prepared[i]``, if given, is what the state machine's stateless
        ``prepare`` made of entry ``i`` (in the node's parallel stage); it is
        handed to ``apply`` instead of the bytes, which are not parsed again.
        The accepted entries become durable in one transaction before this
        returns; a rejected entry is not appended and changes nothing.

        For replication: ``time`` is the block time to use instead of the
        local clock (the ordering service's batch time, so that every replica
        writes the same block; it never goes below the previous block's);
        ``meta`` items are written to the metadata table in the same
        transaction, even if no entry is accepted (a replica's applied
        position); ``check(block)`` sees the new block before the commit and
        aborts the whole transaction by raising.
        """
        _check_entries(entries, verified, prepared)

        def write(txn: WriteTxn, head: _Head, now: int) -> _Batch[Receipt | LedgerError]:
            batch = self._write_batch(txn, head, now, entries, verified, all_or_nothing, prepared)
            if check is not None and batch.head is not None:
                check(batch.head.block)
            for key, value in (meta or {}).items():
                txn.put(Table.META, META_PREFIX + key, value)
            return batch

        return self._commit(time, write)

    def _commit(self, time: int | None, write: Callable[[WriteTxn, _Head, int], _Batch[_R]]) -> list[_R]:
        """Run ``write`` in one durable transaction, then move the head."""
        with self._lock:
            head = self._head
            now = max(head.block.time, int(self._clock()) if time is None else time)
            batch = self._store.run_write(lambda txn: write(txn, head, now))
            if batch.head is not None:
                self._leaves.committed(batch.leaves, batch.flush)
                self._head = batch.head
            return batch.results

    def _write_plain(self, txn: WriteTxn, head: _Head, now: int, entries: Sequence[bytes]) -> _Batch[int]:
        """The batch of :meth:`append` without a state machine: every entry is
        accepted, so the common case (all new) needs no loop per entry."""
        first = head.edge.size
        # leaf_hash(), inlined: one comprehension over the batch is the hot path.
        hashes = [_sha256(LEAF_PREFIX + entry).digest() for entry in entries]
        logged = self._leaves.find_many(txn, hashes)
        staged = dict(zip(hashes, range(first, first + len(hashes))))
        if not logged and len(staged) == len(hashes):
            return self._seal(txn, head, now, list(range(first, first + len(entries))), entries, hashes, staged, [])
        # Some entries repeat earlier ones: give each its first index.
        staged = {}
        indexes: list[int] = []
        accepted: list[bytes] = []
        leaves: list[bytes] = []
        for entry, lh in zip(entries, hashes):
            earlier = logged.get(lh)
            if earlier is None:
                earlier = staged.get(lh)
            if earlier is None:
                earlier = staged[lh] = first + len(accepted)
                accepted.append(entry)
                leaves.append(lh)
            indexes.append(earlier)
        return self._seal(txn, head, now, indexes, accepted, leaves, staged, [])

    def _write_batch(
        self,
        txn: WriteTxn,
        head: _Head,
        now: int,
        entries: Sequence[bytes],
        verified: Sequence[frozenset[str] | None] | None,
        all_or_nothing: bool,
        prepared: Sequence[Any] | None = None,
    ) -> _Batch[Receipt | LedgerError]:
        first = head.edge.size
        leaf_index = self._leaves
        staged: dict[bytes, int] = {}
        state = txn.kv(Table.STATE)
        # One journal for the batch: writes go straight into the transaction, and
        # a rejected entry is rolled back to the savepoint taken before it.
        journal = Journal(state)
        state_writes = journal.writes
        results: list[Receipt | LedgerError] = []
        accepted: list[bytes] = []
        leaves: list[bytes] = []
        machine = self._machine
        # leaf_hash(), inlined: one comprehension over the batch is the hot path.
        hashes = [_sha256(LEAF_PREFIX + entry).digest() for entry in entries]
        # Entries already in the log, found in one pass over sorted keys.
        logged = leaf_index.find_many(txn, hashes)
        for i, entry in enumerate(entries):
            lh = hashes[i]
            earlier = logged.get(lh)
            if earlier is None:
                earlier = staged.get(lh)
            if earlier is not None:
                results.append(Receipt(earlier, duplicate=True))
                continue
            index = first + len(accepted)
            applied = None
            if machine is not None:
                savepoint = journal.savepoint()
                try:
                    applied = machine.apply(
                        journal,
                        entry if prepared is None else prepared[i],
                        machine.context(index=index, time=now),
                        verified[i] if verified is not None else None,
                    )
                except LedgerError as exc:
                    journal.rollback(savepoint)
                    if all_or_nothing:
                        raise
                    results.append(exc)
                    continue
            accepted.append(entry)
            leaves.append(lh)
            staged[lh] = index
            results.append(Receipt(index, applied=applied))
        return self._seal(txn, head, now, results, accepted, leaves, staged, state_writes)

    def _seal(
        self,
        txn: WriteTxn,
        head: _Head,
        now: int,
        results: list[_R],
        accepted: Sequence[bytes],
        leaves: list[bytes],
        staged: dict[bytes, int],
        state_writes: list[tuple[bytes, bytes | None]],
    ) -> _Batch[_R]:
        """Write the accepted entries, their tree hashes, the block and the
        signed checkpoint into ``txn`` (nothing, if no entry was accepted)."""
        if not accepted:
            return _Batch(results, None, {}, None)
        first = head.edge.size
        # Flush the in-memory tier of the leaf index while we hold a write
        # transaction anyway (see ledger.leaf_index).
        flush = self._leaves.write_flush(txn, first) if self._leaves.flush_due() else None
        keys = map(_pack_u64, range(first, first + len(accepted)))
        txn.put_many(Table.ENTRIES, list(zip(keys, accepted)), append=True)
        edge = head.edge.copy()
        tiles = TileWriter(lambda key: txn.get(Table.TILES, key), lambda key, value: txn.put(Table.TILES, key, value))
        for level, first_node, run in edge.extend(leaves):
            tiles.set_run(level, first_node, run)
        tiles.flush()
        root = edge.root()
        block = Block(
            height=head.block.height + 1,
            previous_hash=head.block_hash,
            first_index=first,
            count=edge.size - first,
            tree_size=edge.size,
            root=root,
            time=now,
            state_digest=fold_state_digest(head.block.state_digest, state_writes),
        )
        note = sign_checkpoint(Checkpoint(self._signer.name, edge.size, root), self._signer)
        txn.put(Table.BLOCKS, u64(block.height), encode_block(block), append=True)
        txn.put(Table.CHECKPOINTS, u64(edge.size), note.encode(), append=True)
        new_head = _Head(block, block_hash(block), edge, note)
        return _Batch(results, new_head, staged, flush)

    # -- reading --------------------------------------------------------

    def meta(self, key: bytes) -> bytes | None:
        """A metadata item written by ``submit(meta=...)``, if any."""
        with self._store.read() as txn:
            return txn.get(Table.META, META_PREFIX + key)

    @property
    def size(self) -> int:
        return self._head.edge.size

    @property
    def head(self) -> Block:
        """The latest block."""
        return self._head.block

    def root(self, size: int | None = None) -> bytes:
        """The tree root at ``size`` (default: now); ``0 <= size <= self.size``."""
        size = self._check_size(size)
        if size == self.size:
            return self._head.edge.root()
        with self._store.read() as txn:
            return root_at(open_tile_reader(txn, self._full_tiles), size, self._ranges)

    def entry(self, index: int) -> bytes:
        """The exact bytes of entry ``index``, as hashed into the tree."""
        with self._store.read() as txn:
            value = txn.get(Table.ENTRIES, u64(index)) if 0 <= index < self.size else None
        if value is None:
            raise NotFound("entry", index)
        return value

    def entries(self, start: int = 0, end: int | None = None) -> Iterator[tuple[int, bytes]]:
        """``(index, bytes)`` for entries ``[start, end)`` in order."""
        end = self.size if end is None else min(end, self.size)
        with self._store.read() as txn:
            for key, value in txn.scan(Table.ENTRIES, u64(max(start, 0))):
                index = from_u64(key)
                if index >= end:
                    break
                yield index, value

    def index_of(self, entry: bytes) -> int:
        """The index of an entry by its bytes."""
        with self._store.read() as txn:
            index = self._leaves.find(txn, leaf_hash(entry))
        if index is None or index >= self.size:
            raise NotFound("entry", leaf_hash(entry).hex())
        return index

    def block(self, height: int) -> Block:
        with self._store.read() as txn:
            value = txn.get(Table.BLOCKS, u64(height)) if height >= 0 else None
        if value is None:
            raise NotFound("block", height)
        return decode_block(value)

    def block_note(self, height: int, position: bytes | None = None) -> str:
        """Block ``height`` as stored here, with the ``position`` the caller
        recorded with it (opaque; None for none), in a block note signed with
        this ledger's log key (ledger/block_note.py). Raises
        :class:`NotFound` for a height past the head."""
        return sign_block_note(BlockNote(self._signer.name, self.block(height), position), self._signer)

    def checkpoint(self, size: int | None = None) -> str:
        """The signed checkpoint note for tree ``size`` (default: the latest).

        Sizes where a block ended have a stored checkpoint; any other earlier
        size gets a freshly signed one (Ed25519 is deterministic, so the bytes
        are the same every time).
        """
        if size is None or size == self.size:
            return self._head.checkpoint
        size = self._check_size(size)
        with self._store.read() as txn:
            stored = txn.get(Table.CHECKPOINTS, u64(size))
            if stored is not None:
                return stored.decode()
            root = root_at(open_tile_reader(txn, self._full_tiles), size, self._ranges)
        return sign_checkpoint(Checkpoint(self._signer.name, size, root), self._signer)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 inclusion proof of entry ``index`` in tree ``size``.

        Requires ``0 <= index < size <= self.size``.
        """
        size = self._check_size(size)
        if not 0 <= index < size:
            raise NotFound("entry", index)
        with self._store.read() as txn:
            return inclusion_proof(open_tile_reader(txn, self._full_tiles), index, size, self._ranges)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """RFC 9162 consistency proof from ``size1`` to ``size2``.

        Requires ``0 < size1 <= size2 <= self.size``.
        """
        size2 = self._check_size(size2)
        if not 0 < size1 <= size2:
            raise MalformedError("size1", f"must be in [1, {size2}], got {size1}")
        with self._store.read() as txn:
            return consistency_proof(open_tile_reader(txn, self._full_tiles), size1, size2, self._ranges)

    def tlog_proof(self, index: int, size: int | None = None) -> str:
        """A C2SP tlog-proof of entry ``index`` in tree ``size`` (default: now),
        verifiable offline with the entry bytes and a tlog-policy."""
        size = self.size if size is None else size
        proof = self.inclusion_proof(index, size)
        return format_tlog_proof(TlogProof(index, tuple(proof), self.checkpoint(size)))

    def hash_tile(self, level: int, index: int, width: int = TILE_WIDTH) -> bytes:
        """The c2sp.org/tlog-tiles hash tile ``level``/``index`` of ``width``
        hashes (see :mod:`ledger.tlog_tiles`): the bottom row of the stored
        tile, as far as it goes. Raises :class:`NotFound` unless the tree
        holds every one of its hashes."""
        ref = TileRef(level, index, width)
        with self._store.read() as txn:
            if ref.end > snapshot_size(txn):
                raise NotFound("tile", ref.path)
            tile = txn.get(Table.TILES, tile_key(level, index))
            data = None if tile is None else bytes(tile[: width * HASH_SIZE])
        # Unset slots are zeros (one C search; the aligned check only if it finds some).
        if data is None or (_ZERO_HASH in data and _ZERO_HASH in _hashes_of(data)):
            raise StorageError(f"{ref.path} is missing from the store below the tree size")
        return data

    def entry_bundle(self, index: int, width: int = TILE_WIDTH) -> bytes:
        """The c2sp.org/tlog-tiles entry bundle ``index`` of ``width``
        entries. Raises :class:`NotFound` unless the tree holds them all, and
        :class:`~ledger.errors.TooLarge` if one is over the format's 65,535
        bytes."""
        ref = TileRef(None, index, width)
        start = index * TILE_WIDTH
        entries: list[bytes] = []
        # A scan, not get_many: a third faster for 256 consecutive keys here.
        with self._store.read() as txn:
            if ref.end > snapshot_size(txn):
                raise NotFound("entry bundle", ref.path)
            for key, value in txn.scan(Table.ENTRIES, _pack_u64(start)):
                if key != _pack_u64(start + len(entries)):
                    break
                if len(value) > MAX_BUNDLE_ENTRY_BYTES:
                    # Refused before 255 more entries of up to 1 MiB are copied.
                    raise unbundlable(len(entries), len(value))
                entries.append(value)
                if len(entries) == width:
                    break
        if len(entries) != width:
            raise StorageError(f"entry {start + len(entries)} is missing from the store below the tree size")
        return encode_entry_bundle(entries)

    def state(self) -> _StateReader:
        """A read-only snapshot of the state machine's KV, for queries::

            with ledger.state() as kv: ...
        """
        return _StateReader(self._store)

    def _check_size(self, size: int | None) -> int:
        current = self.size
        if size is None:
            return current
        if type(size) is not int or not 0 <= size <= current:
            raise NotFound("tree size", size)
        return size


class _StateReader:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._cm: Any = None

    def __enter__(self) -> KV:
        self._cm = self._store.read()
        txn = self._cm.__enter__()
        return txn.kv(Table.STATE)  # type: ignore[no-any-return]

    def __exit__(self, *exc: object) -> None:
        self._cm.__exit__(*exc)


def _check_entries(
    entries: Sequence[bytes],
    verified: Sequence[frozenset[str] | None] | None,
    prepared: Sequence[Any] | None,
) -> None:
    """Refuse a malformed batch before anything is written, naming the entry."""
    if len(entries) > MAX_BATCH:
        raise MalformedError("batch", f"{len(entries)} entries, at most {MAX_BATCH}")
    if prepared is not None and len(prepared) != len(entries):
        raise MalformedError("prepared", "must have one item per entry")
    if verified is not None and len(verified) != len(entries):
        raise MalformedError("verified", "must have one item per entry")
    # Checked a whole list at a time (C loops); the per-entry loop below runs
    # only to name the first bad entry.
    if set(map(type, entries)) <= {bytes} and max(map(len, entries), default=0) <= MAX_ENTRY_BYTES:
        return
    for i, entry in enumerate(entries):
        if not isinstance(entry, bytes):
            raise MalformedError(f"entry {i}", "must be bytes")
        if len(entry) > MAX_ENTRY_BYTES:
            raise MalformedError(f"entry {i}", f"{len(entry)} bytes, at most {MAX_ENTRY_BYTES}")
