"""One conformance suite for the log, run on LMDB and on the in-memory twin."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger import merkle
from ledger.checkpoint import verify_checkpoint
from ledger.errors import LedgerError, MalformedError, NotFound, StorageError
from ledger.keys import Signer
from ledger.log import MAX_ENTRY_BYTES, Ledger
from ledger.policy import parse_policy
from ledger.storage import LmdbStore, Table
from ledger.tlog_proof import verify_tlog_proof
from tests import merkle_reference as ref

SIGNER = Signer.from_seed("example.org/carbon", hashlib.sha256(b"conformance").digest())


@pytest.fixture(params=["lmdb", "memory"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    if request.param == "lmdb":
        led = Ledger.open(tmp_path / "ledger", signer=SIGNER)
    else:
        led = Ledger.memory(signer=SIGNER)
    yield led
    led.close()


def entries(n: int, start: int = 0) -> list[bytes]:
    return [f"entry-{i}".encode() for i in range(start, start + n)]


def test_new_ledger_is_empty_with_signed_checkpoint(ledger: Ledger) -> None:
    assert ledger.size == 0
    cp = verify_checkpoint(ledger.checkpoint(), SIGNER.verifier())
    assert (cp.origin, cp.size, cp.root_hash) == ("example.org/carbon", 0, merkle.EMPTY_ROOT)


def test_append_assigns_consecutive_indexes_and_roots_match_reference(ledger: Ledger) -> None:
    data = entries(300)
    got: list[int] = []
    # Batches of uneven sizes cross tile boundaries (256) at odd points.
    for lo, hi in ((0, 1), (1, 2), (2, 37), (37, 255), (255, 257), (257, 300)):
        got += ledger.append(data[lo:hi])
        assert ledger.root() == ref.mth(data[:hi])
    assert got == list(range(300))
    assert [ledger.entry(i) for i in (0, 150, 299)] == [data[0], data[150], data[299]]
    assert list(ledger.entries(298)) == [(298, data[298]), (299, data[299])]


def test_append_is_idempotent_per_entry_bytes(ledger: Ledger) -> None:
    assert ledger.append([b"a", b"b", b"a"]) == [0, 1, 0]
    assert ledger.append([b"b", b"c"]) == [1, 2]
    assert ledger.size == 3
    assert ledger.index_of(b"c") == 2
    with pytest.raises(NotFound):
        ledger.index_of(b"zzz")


def test_proofs_for_every_historical_size_match_reference(ledger: Ledger) -> None:
    data = entries(70)
    for lo in range(0, 70, 9):
        ledger.append(data[lo : lo + 9])
    for size in range(1, 71):
        root = ledger.root(size)
        assert root == ref.mth(data[:size])
        for index in range(0, size, 7):
            proof = ledger.inclusion_proof(index, size)
            assert proof == ref.path(index, data[:size])
            merkle.verify_inclusion(merkle.leaf_hash(data[index]), index, size, proof, root)
        for size1 in range(1, size + 1, 5):
            assert ledger.consistency_proof(size1, size) == ref.proof(size1, data[:size])


def test_checkpoints_are_signed_for_every_size(ledger: Ledger) -> None:
    ledger.append(entries(10))
    ledger.append(entries(5, 10))
    for size in (0, 3, 10, 15):
        cp = verify_checkpoint(ledger.checkpoint(size), SIGNER.verifier())
        assert cp.size == size and cp.root_hash == ref.mth(entries(15)[:size])
    # Stored and freshly signed checkpoints are the same bytes (Ed25519 is deterministic).
    assert ledger.checkpoint(10) == ledger.checkpoint(10)


def test_tlog_proof_verifies_offline(ledger: Ledger) -> None:
    data = entries(40)
    ledger.append(data)
    policy = parse_policy(f"log {SIGNER.vkey}\nquorum none\n")
    for index in (0, 17, 39):
        text = ledger.tlog_proof(index)
        cp = verify_tlog_proof(text, data[index], policy)
        assert cp.size == 40
        with pytest.raises(LedgerError):
            verify_tlog_proof(text, data[index] + b"x", policy)
    old = ledger.tlog_proof(3, size=5)
    assert verify_tlog_proof(old, data[3], policy).size == 5
    other = Signer.generate("example.org/carbon")
    with pytest.raises(LedgerError):
        verify_tlog_proof(old, data[3], parse_policy(f"log {other.vkey}\nquorum none\n"))


def test_blocks_chain_batches(ledger: Ledger) -> None:
    ledger.append(entries(3))
    ledger.append(entries(2, 3))
    ledger.append(entries(2, 3))  # duplicates only: no new block
    b1, b2 = ledger.block(1), ledger.block(2)
    assert (b1.first_index, b1.count, b1.tree_size) == (0, 3, 3)
    assert (b2.first_index, b2.count, b2.tree_size) == (3, 2, 5)
    assert ledger.head == b2
    with pytest.raises(NotFound):
        ledger.block(3)


def test_bad_input_gets_typed_errors_and_changes_nothing(ledger: Ledger) -> None:
    ledger.append([b"keep"])
    before = (ledger.size, ledger.root(), ledger.checkpoint())
    with pytest.raises(MalformedError):
        ledger.append([b"ok", "not bytes"])  # type: ignore[list-item]
    with pytest.raises(MalformedError):
        ledger.append([b"x" * (MAX_ENTRY_BYTES + 1)])
    for bad in (-1, 1, 2):
        with pytest.raises(NotFound):
            ledger.entry(bad)
    with pytest.raises(NotFound):
        ledger.inclusion_proof(0, 5)
    with pytest.raises(LedgerError):
        ledger.consistency_proof(0, 1)
    with pytest.raises(NotFound):
        ledger.checkpoint(9)
    assert (ledger.size, ledger.root(), ledger.checkpoint()) == before


def test_lmdb_reopen_keeps_everything(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l", signer=SIGNER) as led:
        led.append(entries(500))
        root, note = led.root(), led.checkpoint()
    with Ledger.open(tmp_path / "l", signer=SIGNER) as led:
        assert (led.size, led.root(), led.checkpoint()) == (500, root, note)
        assert led.append(entries(1, 500)) == [500]
        assert led.append(entries(1, 7)) == [7]


def test_lmdb_refuses_another_signer(tmp_path: Path) -> None:
    Ledger.open(tmp_path / "l", signer=SIGNER).close()
    with pytest.raises(StorageError):
        Ledger.open(tmp_path / "l", signer=Signer.generate("example.org/carbon"))


def test_lmdb_grows_past_its_map_size(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l", signer=SIGNER, map_size=256 << 10) as led:
        start = led.store.map_size  # type: ignore[attr-defined]
        blob = [bytes([i % 251]) * 4000 + i.to_bytes(4, "big") for i in range(400)]
        assert led.append(blob) == list(range(400))
        assert led.store.map_size > start  # type: ignore[attr-defined]
        assert led.entry(399) == blob[399]
    with Ledger.open(tmp_path / "l", signer=SIGNER) as led:
        assert led.root() == ref.mth(blob)


def test_lmdb_grows_while_readers_run(tmp_path: Path) -> None:
    """Map growth waits for open read transactions instead of racing them."""
    import threading
    import time

    with Ledger.open(tmp_path / "l", signer=SIGNER, map_size=256 << 10) as led:
        led.append([b"first"])
        stop = threading.Event()
        errors: list[BaseException] = []

        def reader() -> None:
            try:
                while not stop.is_set():
                    size = led.size
                    led.inclusion_proof(0, size)
                    assert led.entry(0) == b"first"
                    # Like real readers, pause between requests: three threads
                    # in a tight loop would starve the writer of the GIL.
                    time.sleep(0.001)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        start = led.store.map_size  # type: ignore[attr-defined]
        for i in range(20):
            led.append([bytes([i]) * 3000 + j.to_bytes(4, "big") for j in range(20)])
        stop.set()
        for t in threads:
            t.join()
        assert errors == []
        assert led.store.map_size > start  # type: ignore[attr-defined]
        assert led.size == 401


def test_leaf_filter_finds_every_merged_leaf_and_passes_new_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bitmap in front of the merged table: a merged entry appended again
    gets its first index after a reopen (its bit is set), and most new leaves
    skip the table (their bits are clear)."""
    from ledger import leaf_index
    from ledger.merkle import leaf_hash

    monkeypatch.setattr(leaf_index, "FLUSH_ENTRIES", 64)
    data = entries(300)
    with Ledger.open(tmp_path / "l", signer=SIGNER) as led:
        for lo in range(0, 300, 25):
            led.append(data[lo : lo + 25])
    with Ledger.open(tmp_path / "l", signer=SIGNER) as led:
        merged = led._leaves.merged
        assert merged >= 150
        assert led.append(data[:merged]) == list(range(merged))
        assert led.size == 300
        fresh = [leaf_hash(b"fresh %d" % i) for i in range(1000)]
        assert len(leaf_index._maybe_present(led._leaves.filter, b"".join(fresh))) <= 10


def test_leaf_filter_of_the_wrong_size_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ledger import leaf_index

    monkeypatch.setattr(leaf_index, "FLUSH_ENTRIES", 10)
    with Ledger.open(tmp_path / "l", signer=SIGNER) as led:
        led.append(entries(30))
    store = LmdbStore(tmp_path / "l")
    store.run_write(lambda txn: txn.put(Table.META, leaf_index.FILTER_KEY, b"short"))
    store.close()
    with pytest.raises(StorageError, match="leaf filter is 5 bytes"):
        Ledger.open(tmp_path / "l", signer=SIGNER)


def test_ledger_without_a_leaf_filter_builds_it_at_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ledger written before the bitmap existed still finds its merged entries."""
    from ledger import leaf_index
    from ledger.audit import audit_store

    monkeypatch.setattr(leaf_index, "FLUSH_ENTRIES", 10)
    data = entries(60)
    with Ledger.open(tmp_path / "l", signer=SIGNER) as led:
        for lo in range(0, 60, 15):
            led.append(data[lo : lo + 15])
        merged = led._leaves.merged
    assert merged > 0
    store = LmdbStore(tmp_path / "l")
    store.run_write(lambda txn: txn.delete(Table.META, leaf_index.FILTER_KEY))
    store.close()
    with Ledger.open(tmp_path / "l", signer=SIGNER) as led:
        audit_store(led.store, verifier=SIGNER.verifier())
        assert led.append(data[:merged]) == list(range(merged))
        assert led.size == 60


def test_leaf_index_merges_and_survives_reopen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Idempotency across the two tiers of the leaf index and a reopen."""
    from ledger import leaf_index
    from ledger.audit import audit_store

    monkeypatch.setattr(leaf_index, "FLUSH_ENTRIES", 50)
    data = entries(400)
    with Ledger.open(tmp_path / "l", signer=SIGNER) as led:
        for lo in range(0, 400, 30):
            assert led.append(data[lo : lo + 30]) == list(range(lo, min(lo + 30, 400)))
            # Every earlier entry is found again, merged or recent.
            assert led.append([data[0], data[lo // 2], data[lo]]) == [0, lo // 2, lo]
        merged = led._leaves.merged
        assert 0 < merged < 400 and len(led._leaves.recent) == 400 - merged
    with Ledger.open(tmp_path / "l", signer=SIGNER) as led:
        assert [led.index_of(data[i]) for i in (0, merged - 1, merged, 399)] == [0, merged - 1, merged, 399]
        assert led.append([data[7], data[399], b"new"]) == [7, 399, 400]
        audit_store(led.store, verifier=SIGNER.verifier())


def test_proofs_through_the_full_tile_cache_match_a_fresh_read(tmp_path: Path) -> None:
    """Level-1 tile 0 is complete once the log holds 65,536 entries: the
    ledger keeps it across calls only then, and proofs at sizes on either
    side of that, before and after it is kept, match ones read afresh."""
    from ledger.log import open_tile_reader

    data = entries(70_000)
    with Ledger.open(tmp_path / "l", signer=SIGNER) as led:
        led.append(data[:60_000])
        early = [(i, 59_999) for i in (0, 12_345, 59_998)]
        got = [led.inclusion_proof(i, n) for i, n in early]
        assert led._full_tiles.get(0 << 8 | 1) is None  # partial: not kept
        led.append(data[60_000:])
        later = [(i, n) for n in (65_535, 65_536, 65_537, 70_000) for i in (0, 40_000, n - 1)]
        got += [led.inclusion_proof(i, n) for i, n in later]
        assert led._full_tiles.get(0 << 8 | 1) is not None  # complete: kept
        got += [led.inclusion_proof(i, n) for i, n in early]
        got_cons = [led.consistency_proof(a, b) for a, b in ((1000, 65_536), (65_536, 70_000), (59_999, 65_535))]
        with led.store.read() as txn:
            fresh = open_tile_reader(txn)
            want = [merkle.inclusion_proof(fresh, i, n) for i, n in [*early, *later, *early]]
            want_cons = [
                merkle.consistency_proof(fresh, a, b) for a, b in ((1000, 65_536), (65_536, 70_000), (59_999, 65_535))
            ]
        assert got == want and got_cons == want_cons
        for (i, n), proof in zip([*early, *later], got):
            merkle.verify_inclusion(merkle.leaf_hash(data[i]), i, n, proof, led.root(n))


def test_full_tiles_keeps_only_complete_tiles_and_stays_bounded() -> None:
    from ledger.log import FullTiles

    tiles = FullTiles()
    partial = bytes(16_320)
    complete = bytes(255 * 32) + b"\x01" * 32 + bytes(16_320 - 256 * 32)
    tiles.keep(1, partial)
    tiles.keep(2, complete)
    assert tiles.get(1) is None and tiles.get(2) == complete
    for key in range(3, 3 + FullTiles.LIMIT):
        tiles.keep(key, complete)
    assert sum(tiles.get(k) is not None for k in range(2, 3 + FullTiles.LIMIT)) <= FullTiles.LIMIT


def test_tile_reader_finds_nodes_where_node_slot_puts_them() -> None:
    """The reader's per-level table, checked against ``node_slot`` at every
    level a u64 tree size can have (the trees in these tests reach ~17): a
    fake store hands out tiles whose every hash names its own slot."""
    import random

    from ledger.log import open_tile_reader
    from ledger.storage.tiles import TILE_BYTES, node_slot, tile_key

    def named_slot(key: bytes, slot: int) -> bytes:  # never all zeros (a missing node)
        return b"\xff" + key.ljust(23, b"\x00") + slot.to_bytes(8, "big")

    def tile_naming_its_slots(key: bytes) -> bytes:
        return b"".join(named_slot(key, slot) for slot in range(TILE_BYTES // 32))

    class Tiles:
        def get(self, table: str, key: bytes) -> bytes:
            return tile_naming_its_slots(key)

    read_node = open_tile_reader(Tiles())
    rng = random.Random(7)
    for level in range(64):
        for index in (0, 1, 255, 256, (1 << (63 - level)) - 1, rng.randrange(1 << (64 - level))):
            tile_level, tile_index, offset = node_slot(level, index)
            want = named_slot(tile_key(tile_level, tile_index), offset // 32)
            assert read_node(level, index) == want, (level, index)


def test_time_at_a_size_is_the_last_block_ending_at_or_below_it(ledger: Ledger) -> None:
    from ledger.log import snapshot_size, time_at

    created = ledger.block(0).time
    for n, t in ((3, created + 10), (2, created + 20), (4, created + 30)):
        ledger.submit(entries(n, ledger.size), time=t)
    with ledger.store.read() as txn:
        assert snapshot_size(txn) == 9
        got = [time_at(txn, size) for size in range(12)]
    # Blocks end at sizes 0, 3, 5 and 9; a size inside a block has the time
    # of the block before it, and a size past the log the last block's.
    want = [created] * 3 + [created + 10] * 2 + [created + 20] * 4 + [created + 30] * 3
    assert got == want
