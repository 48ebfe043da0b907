"""c2sp.org/tlog-tiles: paths, entry bundles, and the tiles a ledger serves.

Tile contents are checked against the specification's definition,
MTH(D[(n * 256 + i) * 256**l : (n * 256 + i + 1) * 256**l]), computed by the
naive reference tree; roots and proofs computed from tiles alone are checked
against the ledger's own.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from ledger.errors import (
    InconsistencyError,
    InvalidProof,
    MalformedError,
    NotFound,
    RootMismatch,
    StorageError,
    TooLarge,
)
from ledger.keys import Signer
from ledger.log import Ledger
from ledger.merkle import leaf_hash, node_hash
from ledger.tlog_tiles import (
    MAX_BUNDLE_ENTRY_BYTES,
    TiledTree,
    TileRef,
    decode_entry_bundle,
    encode_entry_bundle,
    entry_bundle_refs,
    parse_tile_path,
    tile_for,
    verify_consistency_from_tiles,
    verify_entry_from_tiles,
)
from tests.merkle_reference import mth

SIGNER = Signer.from_seed("tiles.example/log", hashlib.sha256(b"tiles").digest())


def entries(n: int, start: int = 0) -> list[bytes]:
    # Lengths vary so that bundles are not all alike.
    return [b"entry %d " % i + b"." * (i % 7) for i in range(start, start + n)]


def ledger_of(n: int, batch: int = 10_000) -> tuple[Ledger, list[bytes]]:
    led = Ledger.memory(signer=SIGNER, created_time=0)
    data = entries(n)
    for i in range(0, n, batch):
        led.append(data[i : i + batch])
    return led, data


def fetcher(led: Ledger, log: list[str] | None = None):  # type: ignore[no-untyped-def]
    """fetch(path) from a ledger, as an HTTP client would get it."""

    def fetch(path: str) -> bytes:
        if log is not None:
            log.append(path)
        ref = parse_tile_path(path)
        if ref.level is None:
            return led.entry_bundle(ref.index, ref.width)
        return led.hash_tile(ref.level, ref.index, ref.width)

    return fetch


# -- paths ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "path"),
    [
        (TileRef(0, 0), "tile/0/000"),
        (TileRef(0, 5, 17), "tile/0/005.p/17"),
        (TileRef(1, 999), "tile/1/999"),
        (TileRef(2, 1000), "tile/2/x001/000"),
        (TileRef(0, 1234067), "tile/0/x001/x234/067"),  # the specification's example
        (TileRef(63, 10**9, 255), "tile/63/x001/x000/x000/000.p/255"),
        (TileRef(None, 273, 112), "tile/entries/273.p/112"),
        (TileRef(None, 1234067), "tile/entries/x001/x234/067"),
    ],
)
def test_paths_are_written_and_read_as_the_specification_spells_them(ref: TileRef, path: str) -> None:
    assert ref.path == path
    assert parse_tile_path(path) == ref


def test_paths_round_trip() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        ref = TileRef(rng.choice([None, *range(64)]), rng.randrange(10 ** rng.randrange(1, 19)), rng.randrange(1, 257))
        assert parse_tile_path(ref.path) == ref


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("tile/00/000", "leading zeros"),
        ("tile/01/000", "leading zeros"),
        ("tile/64/000", "0 to 63"),
        ("tile/-1/000", "0 to 63"),
        ("tile/abc/000", "0 to 63"),
        ("tile/0/000.p/0", "1 to 255"),
        ("tile/0/000.p/256", "1 to 255"),
        ("tile/0/000.p/010", "1 to 255"),
        ("tile/0/000.p/", "1 to 255"),
        ("tile/0/00", "3-digit groups"),
        ("tile/0/0000", "3-digit groups"),
        ("tile/0/x000", "3-digit groups"),
        ("tile/0/001/002", "3-digit groups"),
        ("tile/0/x1/002", "3-digit groups"),
        ("tile/0/000/", "3-digit groups"),
        ("tile/0/x000/001", "leading zero group"),
        ("tile/0/+01", "3-digit groups"),
        ("tile/0/ 01", "3-digit groups"),
        ("tile/0/٠٠١", "3-digit groups"),  # Unicode digits are not ASCII digits
        ("tile/0", "is not tile/"),
        ("tiles/0/000", "is not tile/"),
        ("", "is not tile/"),
    ],
)
def test_malformed_paths_are_refused_naming_the_problem(path: str, says: str) -> None:
    with pytest.raises(MalformedError, match="tile path") as err:
        parse_tile_path(path)
    assert says in str(err.value)


def test_the_specification_s_example_of_a_tree_of_70000() -> None:
    # "273 full level 0 tiles, one partial level 0 tile of width 112, one
    # full level 1 tile, one partial level 1 tile of width 17, and one
    # partial level 2 tile of width 1."
    size = 70_000
    assert tile_for(0, 0, size) == TileRef(0, 0)
    assert tile_for(0, 272 * 256 + 255, size) == TileRef(0, 272)
    assert tile_for(0, 273 * 256, size) == TileRef(0, 273, 112)
    assert tile_for(1, 255, size) == TileRef(1, 0)
    assert tile_for(1, 256, size) == TileRef(1, 1, 17)
    assert tile_for(2, 0, size) == TileRef(2, 0, 1)
    # "a tree of size 256 will be represented by a full level 0 tile and a
    # partial level 1 tile of width 1."
    assert tile_for(0, 0, 256) == TileRef(0, 0)
    assert tile_for(1, 0, 256) == TileRef(1, 0, 1)
    assert [r.path for r in entry_bundle_refs(513)] == ["tile/entries/000", "tile/entries/001", "tile/entries/002.p/1"]
    assert entry_bundle_refs(0) == []


# -- entry bundles ----------------------------------------------------------


def test_entry_bundles_round_trip_including_empty_and_largest_entries() -> None:
    data = [b"", b"a", bytes(range(256)) * 3, b"x" * MAX_BUNDLE_ENTRY_BYTES]
    bundle = encode_entry_bundle(data)
    assert bundle[:2] == b"\x00\x00" and bundle[2:4] == b"\x00\x01"
    assert decode_entry_bundle(bundle, len(data)) == data


def test_an_entry_over_65535_bytes_cannot_be_bundled() -> None:
    with pytest.raises(TooLarge, match="entry 1 of the bundle is 65,536 bytes"):
        encode_entry_bundle([b"ok", b"x" * (MAX_BUNDLE_ENTRY_BYTES + 1)])


@pytest.mark.parametrize(
    ("bundle", "count", "says"),
    [
        (b"\x00", 1, "length prefix is cut off at byte 0"),
        (b"\x00\x05abc", 1, "entry 0 says 5 bytes, 3 remain"),
        (b"\x00\x01a\x00\x01b", 1, "2 entries where the tile holds 1"),
        (b"\x00\x01a", 2, "1 entries where the tile holds 2"),
        (b"", 1, "0 entries where the tile holds 1"),
    ],
)
def test_malformed_bundles_are_refused(bundle: bytes, count: int, says: str) -> None:
    with pytest.raises(MalformedError, match=says):
        decode_entry_bundle(bundle, count)


# -- what a ledger serves ---------------------------------------------------


def reference_tile(leaves: list[bytes], ref: TileRef) -> bytes:
    span = 256 ** (ref.level or 0)
    return b"".join(
        mth(leaves[(ref.index * 256 + i) * span : (ref.index * 256 + i + 1) * span]) for i in range(ref.width)
    )


def test_a_ledger_of_70000_serves_exactly_the_specification_s_tiles() -> None:
    led, data = ledger_of(70_000)
    # Every hash of every tile is the specification's MTH of its range.
    full0 = [TileRef(0, i) for i in range(273)]
    for ref in [full0[0], full0[1], full0[272], TileRef(0, 273, 112), TileRef(1, 0), TileRef(1, 1, 17), TileRef(2, 0, 1)]:
        assert led.hash_tile(ref.level, ref.index, ref.width) == reference_tile(data, ref), ref.path  # type: ignore[arg-type]
    # Narrower partial tiles are prefixes of the same hashes.
    assert led.hash_tile(0, 273, 5) == led.hash_tile(0, 273, 112)[: 5 * 32]
    assert led.hash_tile(1, 0, 3) == led.hash_tile(1, 0)[: 3 * 32]
    # Nothing the tree does not hold yet, and no tile of a level it has not reached.
    for level, index, width in [(0, 273, 113), (0, 273, 256), (0, 274, 1), (1, 1, 18), (2, 0, 2), (3, 0, 1), (63, 0, 1)]:
        with pytest.raises(NotFound, match="tile not found"):
            led.hash_tile(level, index, width)
    # Entry bundles: the entries, in order, length-prefixed.
    assert decode_entry_bundle(led.entry_bundle(0), 256) == data[:256]
    assert decode_entry_bundle(led.entry_bundle(273, 112), 112) == data[273 * 256 :]
    assert decode_entry_bundle(led.entry_bundle(100, 3), 3) == data[25_600:25_603]
    for index, width in [(273, 113), (274, 1), (273, 256)]:
        with pytest.raises(NotFound, match="entry bundle not found"):
            led.entry_bundle(index, width)


def test_roots_and_proofs_from_tiles_alone_match_the_ledger_at_every_checkpoint() -> None:
    led = Ledger.memory(signer=SIGNER, created_time=0)
    rng = random.Random(3)
    data: list[bytes] = []
    sizes = []
    while len(data) < 3 * 65_536 + 700:
        batch = entries(rng.choice([1, 7, 255, 256, 257, 3000, 40_000]), len(data))
        led.append(batch)
        data += batch
        sizes.append(len(data))
    fetch = fetcher(led)
    for size in sizes:
        tree = TiledTree(fetch, size)
        assert tree.root() == led.root(size), size
        for index in {0, size - 1, rng.randrange(size), rng.randrange(size)}:
            assert tree.inclusion_proof(index) == led.inclusion_proof(index, size), (index, size)


def test_an_entry_is_proven_from_tiles_and_a_signed_root() -> None:
    led, data = ledger_of(1_000)
    log: list[str] = []
    for size in (1, 256, 257, 1_000):
        root = led.root(size)
        for index in {0, size // 2, size - 1}:
            log.clear()
            assert verify_entry_from_tiles(fetcher(led, log), size, root, index) == data[index]
            assert log[0].startswith("tile/entries/")
    # A client with the entry in hand fetches no bundle.
    log.clear()
    verify_entry_from_tiles(fetcher(led, log), 1_000, led.root(1_000), 700, data[700])
    assert not any(p.startswith("tile/entries/") for p in log)
    with pytest.raises(InvalidProof, match="not in a tree of 1000"):
        verify_entry_from_tiles(fetcher(led), 1_000, led.root(1_000), 1_000)


def tampered(led: Ledger, path: str, change):  # type: ignore[no-untyped-def]
    honest = fetcher(led)

    def fetch(p: str) -> bytes:
        data = honest(p)
        return change(data) if p == path else data

    return fetch


def flip(data: bytes, at: int = 40) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


def test_a_tampered_tile_or_entry_is_caught() -> None:
    led, data = ledger_of(70_000)
    size, root = 70_000, led.root(70_000)
    index = 1_000  # under level-0 tile 3, level-1 tile 0
    # A sibling hash in a level-0 tile, a hash in the upper tile, the right edge's partial tile.
    for path in ["tile/0/003", "tile/1/000", "tile/1/001.p/17", "tile/0/273.p/112"]:
        with pytest.raises(RootMismatch):
            verify_entry_from_tiles(tampered(led, path, flip), size, root, index)
    # The entry's own leaf hash in its tile, or the entry in its bundle.
    with pytest.raises(InvalidProof, match="leaf hash"):
        verify_entry_from_tiles(tampered(led, "tile/0/003", lambda d: flip(d, (1_000 % 256) * 32)), size, root, index)
    with pytest.raises(InvalidProof, match="leaf hash"):
        verify_entry_from_tiles(tampered(led, "tile/entries/003", lambda d: d[:-1] + b"!"), 70_000, root, 1_023)
    # A tile of the wrong length is refused before any hash is used.
    with pytest.raises(MalformedError, match=r"tile/0/003: 8160 bytes, not 256 hashes"):
        verify_entry_from_tiles(tampered(led, "tile/0/003", lambda d: d[:-32]), size, root, index)
    # A root that is not the log's.
    with pytest.raises(RootMismatch):
        verify_entry_from_tiles(fetcher(led), size, led.root(69_999), index)
    assert verify_entry_from_tiles(fetcher(led), size, root, index) == data[index]


def test_consistency_from_tiles_alone_is_the_ledger_s_proof() -> None:
    led, _ = ledger_of(70_000)
    fetch = fetcher(led)
    pairs = [
        (1, 2), (1, 70_000), (255, 256), (256, 257), (256, 70_000), (300, 600), (4_096, 65_536),
        (65_535, 65_536), (65_536, 70_000), (69_999, 70_000), (12_345, 54_321),
    ]  # fmt: skip
    for old, new in pairs:
        proof = verify_consistency_from_tiles(fetch, old, led.root(old), new, led.root(new))
        assert proof == led.consistency_proof(old, new), (old, new)
    # Nothing to prove from the empty tree, or between equal trees.
    assert verify_consistency_from_tiles(fetch, 0, led.root(0), 500, led.root(500)) == []
    assert verify_consistency_from_tiles(fetch, 500, led.root(500), 500, led.root(500)) == []


def test_a_fork_a_shrink_or_two_roots_at_one_size_is_an_inconsistency() -> None:
    led, data = ledger_of(1_000)
    # The same log key signing other entries from index 600 on: a fork.
    fork = Ledger.memory(signer=SIGNER, created_time=0)
    fork.append(data[:600] + [b"forked %d" % i for i in range(600, 800)])
    fetch = fetcher(led)
    for old in (601, 700, 768, 800):
        with pytest.raises(InconsistencyError, match=f"at size {old}, not the .* log forked") as err:
            verify_consistency_from_tiles(fetch, old, fork.root(old), 1_000, led.root(1_000))
        assert err.value.evidence["root_at_old_size"] == led.root(old)
        assert err.value.evidence["old_root"] == fork.root(old)
    # Up to 600 the two agree.
    verify_consistency_from_tiles(fetch, 600, fork.root(600), 1_000, led.root(1_000))
    with pytest.raises(InconsistencyError, match="shrank: tree size 900 after 1000"):
        verify_consistency_from_tiles(fetch, 1_000, led.root(1_000), 900, led.root(900))
    with pytest.raises(InconsistencyError, match="two roots at tree size 700"):
        verify_consistency_from_tiles(fetch, 700, fork.root(700), 700, led.root(700))


def test_tampered_tiles_are_not_taken_for_a_fork() -> None:
    # Tiles are not signed: ones that do not lead to the new root prove
    # nothing about the log, so they fail as a mismatch, never as a fork.
    led, _ = ledger_of(1_000)
    old, new = (700, led.root(700)), (1_000, led.root(1_000))
    for path in ["tile/0/002", "tile/0/003.p/232", "tile/1/000.p/3"]:
        with pytest.raises(RootMismatch) as err:
            verify_consistency_from_tiles(tampered(led, path, flip), *old, *new)
        assert not isinstance(err.value, InconsistencyError)
    with pytest.raises(MalformedError, match="tile/0/002: 8160 bytes"):
        verify_consistency_from_tiles(tampered(led, "tile/0/002", lambda d: d[:-32]), *old, *new)


def test_a_tile_node_is_the_hash_of_the_hashes_under_it() -> None:
    # read_node for a level between tile levels rehashes the tile's row.
    led, _ = ledger_of(600)
    tree = TiledTree(fetcher(led), 600)
    row = led.hash_tile(0, 0)
    hashes = [row[i : i + 32] for i in range(0, 64 * 32, 32)]
    while len(hashes) > 1:
        hashes = [node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)]
    assert tree.read_node(6, 0) == hashes[0]
    assert tree.read_node(0, 599) == leaf_hash(entries(600)[599])
    with pytest.raises(InvalidProof, match="not complete in a tree of 600"):
        tree.read_node(8, 2)  # leaves 512..767


def test_a_lmdb_ledger_serves_the_same_tiles_after_reopening(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l", signer=SIGNER, created_time=0) as led:
        led.append(entries(300))
        before = led.hash_tile(0, 1, 44), led.hash_tile(0, 0), led.entry_bundle(1, 44)
    with Ledger.open(tmp_path / "l", signer=SIGNER) as led:
        assert (led.hash_tile(0, 1, 44), led.hash_tile(0, 0), led.entry_bundle(1, 44)) == before
        assert TiledTree(fetcher(led), 300).root() == led.root()


def test_a_bundle_holding_an_entry_over_65535_bytes_is_refused_by_name(tmp_path: Path) -> None:
    led = Ledger.memory(signer=SIGNER, created_time=0)
    led.append([b"small", b"y" * 70_000, b"small too"])
    with pytest.raises(TooLarge, match="entry 1 of the bundle is 70,000 bytes"):
        led.entry_bundle(0, 3)
    # Its hash tile is served all the same: the tree does not depend on the bundle format.
    assert led.hash_tile(0, 0, 3)[32:64] == leaf_hash(b"y" * 70_000)


def test_a_store_that_lost_an_entry_or_a_tree_node_says_so(tmp_path: Path) -> None:
    from ledger.storage import Table, u64
    from ledger.storage.tiles import tile_key

    with Ledger.open(tmp_path / "l", signer=SIGNER, created_time=0) as led:
        led.append(entries(300))
        store = led.store

        def lose_entry(txn):  # type: ignore[no-untyped-def]
            txn.delete(Table.ENTRIES, u64(270))

        store.run_write(lose_entry)
        with pytest.raises(StorageError, match="entry 270 is missing from the store below the tree size"):
            led.entry_bundle(1, 44)
        assert decode_entry_bundle(led.entry_bundle(1, 14), 14) == entries(14, 256)

        def zero_node(txn):  # type: ignore[no-untyped-def]
            tile = bytearray(txn.get(Table.TILES, tile_key(0, 1)))
            tile[5 * 32 : 6 * 32] = bytes(32)
            txn.put(Table.TILES, tile_key(0, 1), bytes(tile))

        store.run_write(zero_node)
        with pytest.raises(StorageError, match=r"tile/0/001.p/44 is missing from the store"):
            led.hash_tile(0, 1, 44)
        assert len(led.hash_tile(0, 1, 5)) == 5 * 32


@pytest.mark.parametrize(("level", "index", "width"), [(0, 5, 0), (0, 5, 257), (64, 0, 1), (-1, 0, 1), (None, -1, 1)])
def test_a_tile_no_path_can_name_is_refused(level: int | None, index: int, width: int) -> None:
    with pytest.raises(ValueError, match="out of range|is not 0 to 63"):
        TileRef(level, index, width)
