"""The leaf index (idempotent appends): runs, their merges, the bitmap, the
earlier format's upgrade, and readers racing a flush."""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from ledger import leaf_index
from ledger.audit import audit_store
from ledger.keys import Signer
from ledger.log import Ledger
from ledger.merkle import leaf_hash
from ledger.storage import LmdbStore, Table, u64

SIGNER = Signer.from_seed("example.org/carbon", hashlib.sha256(b"leaf index").digest())


@pytest.fixture(autouse=True)
def small_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flush every 16 entries, in chunks of 3 records, merging 2 chunks of
    each run at a time: many runs, and merges of many steps."""
    monkeypatch.setattr(leaf_index, "FLUSH_ENTRIES", 16)
    monkeypatch.setattr(leaf_index, "CHUNK_RECORDS", 3)
    monkeypatch.setattr(leaf_index, "MERGE_CHUNKS", 2)


@pytest.fixture(params=["lmdb", "memory"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger.open(tmp_path / "l", signer=SIGNER) if request.param == "lmdb" else Ledger.memory(signer=SIGNER)
    yield led
    led.close()


def entries(n: int, start: int = 0) -> list[bytes]:
    return [b"entry %d" % i for i in range(start, start + n)]


def test_every_entry_keeps_its_first_index_through_many_flushes(ledger: Ledger) -> None:
    rng = random.Random(5)
    data = entries(1200)
    at = 0
    while at < len(data):
        n = rng.randint(1, 40)
        assert ledger.append(data[at : at + n]) == list(range(at, min(at + n, len(data))))
        at = min(at + n, len(data))
        again = rng.sample(range(at), min(at, 5))
        assert ledger.append([data[i] for i in again]) == again
        assert ledger.size == at
    index = ledger._leaves
    assert index.merged + len(index.recent) == len(data)
    # Run sizes follow a binary counter: each at least twice the next.
    counts = [run.count for run in index.runs]
    assert sum(counts) == index.merged
    assert all(a >= 2 * b for a, b in pairwise(counts)), counts
    assert len(counts) <= (index.merged // 16).bit_length()
    assert [ledger.index_of(data[i]) for i in range(0, 1200, 7)] == list(range(0, 1200, 7))
    audit_store(ledger.store, verifier=SIGNER.verifier())


def test_runs_survive_a_reopen(tmp_path: Path) -> None:
    data = entries(500)
    with Ledger.open(tmp_path / "l", signer=SIGNER) as led:
        for lo in range(0, 500, 23):
            led.append(data[lo : lo + 23])
        runs, merged = led._leaves.runs, led._leaves.merged
    with Ledger.open(tmp_path / "l", signer=SIGNER) as led:
        assert (led._leaves.runs, led._leaves.merged) == (runs, merged)
        assert led.append(data[::-1]) == list(range(499, -1, -1))
        assert led.append([b"new"]) == [500]


def _to_earlier_format(txn, merged: int) -> None:  # type: ignore[no-untyped-def]
    """Rewrite the runs as the earlier layout had them: one row per leaf,
    keyed by hash, no run list, a bitmap of one bit per leaf."""
    stored = leaf_index.read_stored(txn)
    pairs = sorted(
        (stored.hashes[i * 32 : (i + 1) * 32], int(stored.indexes[i])) for i in range(len(stored.indexes))
    )
    assert len(pairs) == merged
    leaf_index.clear_stored(txn)
    for leaf, index in pairs:
        txn.put(Table.LEAVES, leaf, u64(index))
    txn.put(Table.META, leaf_index.MERGED_KEY, u64(merged))
    old_filter = bytearray(leaf_index.FILTER_BITS // 8)
    for leaf, _ in pairs:
        bit = int.from_bytes(leaf[:4], "little") & (leaf_index.FILTER_BITS - 1)
        old_filter[bit >> 3] |= 1 << (bit & 7)
    txn.put(Table.META, leaf_index.FILTER_KEY, bytes(old_filter))


def test_a_leaf_index_in_the_earlier_format_is_upgraded_at_open(tmp_path: Path) -> None:
    data = entries(300)
    with Ledger.open(tmp_path / "l", signer=SIGNER) as led:
        for lo in range(0, 300, 50):
            led.append(data[lo : lo + 50])
        merged = led._leaves.merged
    store = LmdbStore(tmp_path / "l")
    store.run_write(lambda txn: _to_earlier_format(txn, merged))
    audit_store(store, verifier=SIGNER.verifier())  # the earlier format audits too
    store.close()
    with Ledger.open(tmp_path / "l", signer=SIGNER) as led:
        assert not led._leaves.legacy
        assert [run.count for run in led._leaves.runs] == [merged]
        with led.store.read() as txn:
            assert txn.get(Table.META, leaf_index.RUNS_KEY) is not None
        audit_store(led.store, verifier=SIGNER.verifier())
        assert led.append(data) == list(range(300))
        assert led.append([b"new"]) == [300]


def test_a_reader_that_began_before_a_flush_still_finds_every_entry(tmp_path: Path) -> None:
    """A flush moves entries out of memory into runs that an older read
    transaction cannot see: it finds them in its tiles instead."""
    data = entries(40)
    with Ledger.open(tmp_path / "l", signer=SIGNER) as led:
        led.append(data[:20])  # recent: 20 entries, nothing flushed
        with led.store.read() as old:
            led.append(data[20:])  # this batch flushes the first 20
            assert led._leaves.merged == 20
            assert [led._leaves.find(old, leaf_hash(data[i])) for i in (0, 19)] == [0, 19]
            assert led._leaves.find(old, leaf_hash(data[30])) in (None, 30)


def test_hashes_sharing_their_first_eight_bytes_still_sort_by_all_32() -> None:
    hashes = [bytes(8) + bytes([b]) * 24 for b in (9, 3, 7, 1)] + [b"\x01" * 32]
    records = np.empty((len(hashes), 5), dtype=">u8")
    records[:, :4] = np.frombuffer(b"".join(hashes), dtype=">u8").reshape(-1, 4)
    records[:, 4] = np.arange(len(hashes), dtype=np.uint64)
    ordered = records[leaf_index._hash_order(records)]
    got = [bytes(row[:4].tobytes()) for row in ordered]
    assert got == sorted(hashes)
    assert leaf_index._strictly_sorted(ordered)
    assert not leaf_index._strictly_sorted(records)


def _sorted_records(hashes: list[bytes], first_index: int) -> np.ndarray:
    records = np.empty((len(hashes), 5), dtype=">u8")
    records[:, :4] = np.frombuffer(b"".join(hashes), dtype=">u8").reshape(-1, 4)
    records[:, 4] = np.arange(first_index, first_index + len(hashes), dtype=np.uint64)
    ordered: np.ndarray = records[leaf_index._hash_order(records)]
    return ordered


@pytest.mark.parametrize("seed", range(6))
def test_a_streamed_merge_equals_sorting_every_record(seed: int) -> None:
    """Runs of uneven sizes, read 2 chunks of 3 records at a time, merged
    with the fresh records: one sorted run of every record, each once, and
    the old runs' chunks gone. Some hashes share their first 8 bytes across
    runs (where a merge on the first word alone would misorder them)."""
    from ledger.storage import MemoryStore

    rng = random.Random(seed)
    shared = [rng.randbytes(8) for _ in range(4)]
    hashes = list({(rng.choice(shared) if rng.random() < 0.3 else rng.randbytes(8)) + rng.randbytes(24)
                   for _ in range(400)})  # fmt: skip
    sizes = [rng.randint(0, 120) for _ in range(3)]
    pieces, at = [], 0
    for n in sizes:
        pieces.append(hashes[at : at + n])
        at += n
    fresh = _sorted_records(hashes[at:], at)
    runs = [leaf_index.Run(i, len(p)) for i, p in enumerate(pieces)]
    store = MemoryStore()

    def merge(txn):  # type: ignore[no-untyped-def]
        first = 0
        for run, piece in zip(runs, pieces, strict=True):
            leaf_index._put_chunks(txn, run.prefix, _sorted_records(piece, first))
            first += len(piece)
        readers = [leaf_index._RunReader(txn, run) for run in runs]
        blocks = list(leaf_index._merge_blocks(fresh, readers))
        for reader in readers:
            reader.check_read_all()
        return blocks, list(txn.scan(Table.LEAVES))

    blocks, left = store.run_write(merge)
    merged = np.concatenate(blocks, dtype=">u8")
    assert [r[:4].tobytes() for r in merged] == sorted(hashes)
    assert sorted(int(i) for i in merged[:, 4]) == list(range(len(hashes)))
    assert leaf_index._strictly_sorted(merged)
    assert left == []


def test_every_stored_record_is_found_and_a_near_miss_is_not(ledger: Ledger) -> None:
    """Lookups seek the chunk by the whole hash and match whole records."""
    data = entries(200)
    for lo in range(0, 200, 20):
        ledger.append(data[lo : lo + 20])
    with ledger.store.read() as txn:
        stored = leaf_index.read_stored(txn)
    assert stored.problem is None
    for i in range(0, len(stored.indexes), 11):
        leaf = stored.hashes[i * 32 : (i + 1) * 32]
        with ledger.store.read() as txn:
            assert ledger._leaves.find(txn, leaf) == int(stored.indexes[i])
        # A hash one bit away is not found.
        other = leaf[:31] + bytes([leaf[31] ^ 1])
        with ledger.store.read() as txn:
            assert ledger._leaves.find(txn, other) is None


def test_appending_out_of_key_order_is_refused_by_both_stores(ledger: Ledger) -> None:
    from ledger.errors import StorageError

    ledger.append([b"a"])
    with pytest.raises(StorageError, match="out of key order"):
        ledger.store.run_write(lambda txn: txn.put_many(Table.BLOCKS, [(u64(0), b"x")], append=True))
    with pytest.raises(StorageError, match="out of key order"):
        ledger.store.run_write(lambda txn: txn.put(Table.ENTRIES, struct.pack(">Q", 0), b"x", append=True))
    assert ledger.entry(0) == b"a"
