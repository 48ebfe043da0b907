"""Audit: re-read a whole store and recompute everything it claims.

The audit trusts nothing stored but the log's public key. It recomputes every
leaf and interior hash from the entry bytes, every block hash and link, every
checkpoint signature and root, and (when a state machine is given) replays the
state from genesis and compares each block's state digest and the final state.
It stops at the first discrepancy and names where it is.

Every stored checkpoint is checked, not only those at block ends: the log
serves a stored row for any size it is asked about, so a row at any size is a
signed statement clients may receive.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ledger.block import GENESIS_PREVIOUS, block_hash, decode_block
from ledger.checkpoint import verify_checkpoint
from ledger.errors import AuditDiscrepancy, LedgerError
from ledger.keys import Verifier
from ledger.kv import EMPTY_STATE_DIGEST, MemoryKV, Overlay, fold_state_digest
from ledger.leaf_index import FILTER_KEY, MERGED_KEY, RUNS_KEY, filter_of, read_stored
from ledger.log import StateMachineHook, open_tile_reader
from ledger.merkle import EMPTY_ROOT, CompactRange, leaf_hash
from ledger.merkle.hashing import HASH_SIZE
from ledger.storage import ReadTxn, Store, Table, from_u64
from ledger.storage.tiles import TILE_WIDTH, tile_key

__all__ = ["AuditReport", "audit_store", "stored_identity"]

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class AuditReport:
    origin: str
    entries: int
    blocks: int
    root: bytes
    state_digest: bytes


def stored_identity(store: Store) -> tuple[str, str, str]:
    """``(origin, vkey, machine_id)`` recorded when the ledger was created."""
    with store.read() as txn:
        fields = [txn.get(Table.META, k) for k in (b"origin", b"vkey", b"machine")]
    if any(f is None for f in fields):
        raise AuditDiscrepancy("meta", "not a ledger: origin, key or machine missing")
    origin, vkey, machine = (f.decode() for f in fields)  # type: ignore[union-attr]
    return origin, vkey, machine


def _leaf_at(row: bytes, i: int) -> bytes:
    return row[i * HASH_SIZE : (i + 1) * HASH_SIZE]


def _same(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def audit_store(
    store: Store,
    *,
    verifier: Verifier,
    machine: StateMachineHook | None = None,
    progress: Progress | None = None,
) -> AuditReport:
    """Audit ``store``; raise :class:`AuditDiscrepancy` at the first problem.

    ``verifier`` is the log key that must have signed every checkpoint.
    ``progress(done, total)`` is called as entries are checked.
    """
    origin, _, machine_id = stored_identity(store)
    want_machine = machine.machine_id if machine is not None else "none"
    if machine_id != want_machine:
        raise AuditDiscrepancy("meta", f"ledger uses state machine {machine_id!r}, audit has {want_machine!r}")
    with store.read() as txn:
        return _Auditor(txn, origin, verifier, machine, progress).run()


class _Auditor:
    def __init__(
        self,
        txn: ReadTxn,
        origin: str,
        verifier: Verifier,
        machine: StateMachineHook | None,
        progress: Progress | None,
    ) -> None:
        self.txn = txn
        self.origin = origin
        self.verifier = verifier
        self.machine = machine
        self.progress = progress
        self.read_node = open_tile_reader(txn)
        self.edge = CompactRange()
        self.state = MemoryKV()
        merged = txn.get(Table.META, MERGED_KEY)
        self.leaves_merged = from_u64(merged) if merged is not None else 0
        # The stored checkpoints, walked in tree-size order alongside the
        # entries: each is checked when the recomputed tree reaches its size,
        # against the root of the right edge at that moment (O(log n) hashes),
        # so no root is recomputed from the start of the log. ``pending_size``
        # is -1 once no row is left: a size no tree reaches.
        self.checkpoints = txn.scan(Table.CHECKPOINTS)
        self.pending_size, self.pending_note = -1, b""
        self._pull_checkpoint()
        self.checked_size = -1

    def run(self) -> AuditReport:
        last = self.txn.last(Table.BLOCKS)
        if last is None:
            raise AuditDiscrepancy("block 0", "missing")
        total = decode_block(last[1]).tree_size
        previous = None
        digest = EMPTY_STATE_DIGEST
        entries = self.txn.scan(Table.ENTRIES)
        blocks = 0
        for key, raw in self.txn.scan(Table.BLOCKS):
            height = from_u64(key)
            where = f"block {height}"
            try:
                block = decode_block(raw)
            except LedgerError as exc:
                raise AuditDiscrepancy(where, str(exc)) from exc
            # (1) The chain: heights in order, each block linked to the last.
            if block.height != height or height != blocks:
                raise AuditDiscrepancy(where, f"records height {block.height}, expected {blocks}")
            want_prev = GENESIS_PREVIOUS if previous is None else block_hash(previous)
            if not _same(block.previous_hash, want_prev):
                raise AuditDiscrepancy(where, "previous block hash does not match the block before it")
            if previous is not None and block.time < previous.time:
                raise AuditDiscrepancy(where, "time goes backwards")
            if block.first_index != self.edge.size or block.tree_size != block.end_index:
                raise AuditDiscrepancy(
                    where,
                    f"covers entries [{block.first_index}, {block.end_index}) with tree size "
                    f"{block.tree_size}, but the log so far has {self.edge.size} entries",
                )
            # (2) The entries: recompute every hash the block depends on.
            writes: list[tuple[bytes, bytes | None]] = []
            for index in range(block.first_index, block.end_index):
                pair = next(entries, None)
                if pair is None or from_u64(pair[0]) != index:
                    raise AuditDiscrepancy(f"entry {index}", "missing from the store")
                self._check_entry(index, pair[1], block.time, writes)
                if self.edge.size == self.pending_size and index + 1 < block.end_index:
                    self._check_checkpoint()
                if self.progress is not None and (index & 1023 == 1023 or index + 1 == total):
                    self.progress(index + 1, total)
            # (3) The block's root, state digest, and the signed checkpoint.
            root = self.edge.root() if self.edge.size else EMPTY_ROOT
            if not _same(block.root, root):
                raise AuditDiscrepancy(where, f"root {block.root.hex()} but entries hash to {root.hex()}")
            digest = fold_state_digest(digest, writes) if height else EMPTY_STATE_DIGEST
            if not _same(block.state_digest, digest):
                raise AuditDiscrepancy(where, "state digest does not match the replayed state")
            # Every block end must have its checkpoint; sizes inside the block
            # were checked as the entries went by.
            if self.edge.size == self.pending_size:
                self._check_checkpoint()
            if self.checked_size != block.tree_size:
                raise AuditDiscrepancy(where, f"no checkpoint for tree size {block.tree_size}")
            previous = block
            blocks += 1
        extra = next(entries, None)
        if extra is not None:
            raise AuditDiscrepancy(f"entry {from_u64(extra[0])}", "stored but in no block")
        if self.pending_size >= 0:
            raise AuditDiscrepancy(
                f"checkpoint {self.pending_size}", f"stored for a tree size past the log's {self.edge.size} entries"
            )
        self._check_leaf_index()
        if self.machine is not None:
            self._check_final_state()
        return AuditReport(self.origin, self.edge.size, blocks, self.edge.root(), digest)

    def _check_leaf_index(self) -> None:
        """The stored runs hold exactly the entries ``[0, merged)``, each at
        its index and under its leaf hash (the level-0 tiles, which the walk
        has just checked against every entry), laid out so that lookups find
        them; and the stored bitmap is theirs."""
        merged, size = self.leaves_merged, self.edge.size
        stored = read_stored(self.txn)
        if stored.problem is not None:
            raise AuditDiscrepancy("leaf index", stored.problem)
        if len(stored.indexes) != merged or merged > size:
            raise AuditDiscrepancy(
                "leaf index", f"holds {len(stored.indexes)} entries, expected {merged} of {size}"
            )
        order = np.argsort(stored.indexes, kind="stable")
        misplaced = np.flatnonzero(stored.indexes[order] != np.arange(merged, dtype=np.uint64))
        if misplaced.size:
            raise AuditDiscrepancy(f"entry {int(misplaced[0])}", "the leaf index does not record it at its index")
        # The records' hashes in index order, against the tiles a row at a time.
        by_index = np.frombuffer(stored.hashes, dtype=f"V{HASH_SIZE}")[order].tobytes()
        for start in range(0, merged, TILE_WIDTH):
            tile = self.txn.get(Table.TILES, tile_key(0, start // TILE_WIDTH)) or b""
            end = min(start + TILE_WIDTH, merged)
            want, have = tile[: (end - start) * HASH_SIZE], by_index[start * HASH_SIZE : end * HASH_SIZE]
            if not _same(want, have):
                wrong = next(
                    i for i in range(start, end) if _leaf_at(want, i - start) != _leaf_at(have, i - start)
                )
                raise AuditDiscrepancy(f"entry {wrong}", "the leaf index records another leaf hash for it")
        raw_filter = self.txn.get(Table.META, FILTER_KEY)
        if raw_filter is None or self.txn.get(Table.META, RUNS_KEY) is None:
            # No bitmap (open builds it), or the earlier format's (open rewrites it).
            return
        if not _same(raw_filter, bytes(filter_of(stored.hashes))):
            # A bit missing would let an entry be appended twice.
            raise AuditDiscrepancy("leaf index", "the leaf filter does not match the merged leaves")

    def _check_entry(self, index: int, entry: bytes, time: int, writes: list[tuple[bytes, bytes | None]]) -> None:
        where = f"entry {index}"
        lh = leaf_hash(entry)
        nodes: list[tuple[int, int, bytes]] = []
        self.edge.append(lh, nodes)
        for level, node_index, h in nodes:
            try:
                stored = self.read_node(level, node_index)
            except LedgerError as exc:
                raise AuditDiscrepancy(where, str(exc)) from exc
            if not _same(stored, h):
                raise AuditDiscrepancy(
                    where, f"stored tree hash at level {level} index {node_index} does not match the entries"
                )
        if self.machine is not None:
            overlay = Overlay(self.state)
            try:
                self.machine.apply(overlay, entry, self.machine.context(index=index, time=time))
            except LedgerError as exc:
                raise AuditDiscrepancy(where, f"rejected on replay: {exc}") from exc
            overlay.commit_into(self.state)
            writes.extend(overlay.writes)

    def _pull_checkpoint(self) -> None:
        """Make the next stored checkpoint row the pending one."""
        row = next(self.checkpoints, None)
        if row is None:
            self.pending_size, self.pending_note = -1, b""
            return
        key, note = row
        if len(key) != 8:
            raise AuditDiscrepancy("checkpoints", f"row key {key.hex()} is not a tree size")
        self.pending_size, self.pending_note = from_u64(key), note

    def _check_checkpoint(self) -> None:
        """Check the pending checkpoint, whose size the recomputed tree has
        just reached: signed by the log key, for the size it is stored under,
        over the root of the first ``size`` entries."""
        size, note = self.pending_size, self.pending_note
        where = f"checkpoint {size}"
        try:
            cp = verify_checkpoint(note, self.verifier)
        except LedgerError as exc:
            raise AuditDiscrepancy(where, str(exc)) from exc
        if cp.size != size:
            raise AuditDiscrepancy(where, f"stored under tree size {size} but signs tree size {cp.size}")
        root = self.edge.root()
        if not _same(cp.root_hash, root):
            raise AuditDiscrepancy(
                where, f"signs root {cp.root_hash.hex()}, but the first {size} entries hash to {root.hex()}"
            )
        self.checked_size = size
        self._pull_checkpoint()

    def _check_final_state(self) -> None:
        stored = self.txn.scan(Table.STATE)
        for key, value in self.state.items():
            got = next(stored, None)
            if got != (key, value):
                raise AuditDiscrepancy(f"state key {key!r}", "stored state differs from the replayed state")
        extra = next(stored, None)
        if extra is not None:
            raise AuditDiscrepancy(f"state key {extra[0]!r}", "stored but not produced by replay")
