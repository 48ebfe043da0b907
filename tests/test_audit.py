"""Audit finds every kind of tampering, and the CLI reports it by exit code."""

from __future__ import annotations

import base64
import hashlib
import random
from pathlib import Path

import lmdb
import pytest

from client.cli import main
from ledger.audit import audit_store
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.errors import AuditDiscrepancy
from ledger.keys import Signer
from ledger.log import Ledger
from ledger.merkle import EMPTY_ROOT
from ledger.storage import LmdbStore, Table, u64

SIGNER = Signer.from_seed("example.org/audit", hashlib.sha256(b"audit").digest())


def make_ledger(path: Path, n: int = 600) -> list[bytes]:
    data = [f"entry {i} ".encode() * (1 + i % 4) for i in range(n)]
    with Ledger.open(path, signer=SIGNER) as led:
        for lo in range(0, n, 150):
            led.append(data[lo : lo + 150])
    return data


def tamper(path: Path, table: str, key: bytes, mutate: object) -> None:
    env = lmdb.open(str(path), max_dbs=16)
    db = env.open_db(table.encode())
    with env.begin(write=True) as txn:
        value = txn.get(key, db=db)
        new = mutate(bytes(value) if value is not None else None)  # type: ignore[operator]
        if new is None:
            txn.delete(key, db=db)
        else:
            txn.put(key, new, db=db)
    env.close()


def flip(offset: int):  # type: ignore[no-untyped-def]
    def mutate(value: bytes) -> bytes:
        b = bytearray(value)
        b[offset % len(b)] ^= 0x01
        return bytes(b)

    return mutate


def audit(path: Path) -> None:
    store = LmdbStore(path)
    try:
        audit_store(store, verifier=SIGNER.verifier())
    finally:
        store.close()


def test_clean_ledger_audits(tmp_path: Path) -> None:
    make_ledger(tmp_path / "l")
    audit(tmp_path / "l")


def test_any_single_flipped_entry_byte_is_found(tmp_path: Path) -> None:
    data = make_ledger(tmp_path / "l", 300)
    rng = random.Random(7)
    # Every byte of one entry, and a random byte of many others.
    targets = [(123, off) for off in range(len(data[123]))]
    targets += [(i, rng.randrange(len(data[i]))) for i in rng.sample(range(300), 20)]
    for index, offset in targets:
        tamper(tmp_path / "l", Table.ENTRIES, u64(index), flip(offset))
        with pytest.raises(AuditDiscrepancy) as err:
            audit(tmp_path / "l")
        assert err.value.location == f"entry {index}"
        tamper(tmp_path / "l", Table.ENTRIES, u64(index), flip(offset))  # undo
    audit(tmp_path / "l")


@pytest.mark.parametrize(
    "table,key,mutate,where",
    [
        (Table.ENTRIES, u64(42), lambda v: None, "entry 42"),
        (Table.ENTRIES, u64(42), lambda v: v + b"x", "entry 42"),
        (Table.ENTRIES, u64(600), lambda v: b"extra", "entry 600"),
        (Table.TILES, bytes([0]) + u64(1), flip(5 * 32), "entry 261"),
        (Table.TILES, bytes([1]) + u64(0), flip(0), "entry 255"),
        (Table.BLOCKS, u64(2), flip(20), "block 2"),
        (Table.BLOCKS, u64(3), flip(70), "block 3"),
        (Table.CHECKPOINTS, u64(300), flip(60), "checkpoint 300"),
        (Table.CHECKPOINTS, u64(450), lambda v: None, "block 3"),
        # A row in the leaf index outside every run (none is stored yet).
        (Table.LEAVES, hashlib.sha256(b"\x00" + b"entry 0 ").digest(), lambda v: u64(1), "leaf index"),
    ],
)
def test_tampering_is_found_and_named(tmp_path: Path, table: str, key: bytes, mutate: object, where: str) -> None:
    make_ledger(tmp_path / "l")
    tamper(tmp_path / "l", table, key, mutate)
    with pytest.raises(AuditDiscrepancy) as err:
        audit(tmp_path / "l")
    assert err.value.location == where


def _row(size: int, root: bytes, signer: Signer = SIGNER) -> object:
    """A mutation that stores a checkpoint for ``size`` and ``root`` signed by ``signer``."""
    return lambda v: sign_checkpoint(Checkpoint(signer.name, size, root), signer).encode()


def test_checkpoint_at_a_size_inside_a_block_is_checked(tmp_path: Path) -> None:
    """Blocks end at 150, 300, 450 and 600; a signed checkpoint stored at 200
    is served as it is (``Ledger.checkpoint(200)`` reads the row), so the
    audit must check its root against the first 200 entries, not only the
    rows at block ends."""
    make_ledger(tmp_path / "l")
    with Ledger.open(tmp_path / "l", signer=SIGNER) as led:
        root_200 = led.root(200)
        wrong = led.root(201)
    # A correct row at a size no block ends at audits clean...
    tamper(tmp_path / "l", Table.CHECKPOINTS, u64(200), _row(200, root_200))
    audit(tmp_path / "l")
    # ...and one signed by the log key over another root is named by its size.
    tamper(tmp_path / "l", Table.CHECKPOINTS, u64(200), _row(200, wrong))
    with Ledger.open(tmp_path / "l", signer=SIGNER) as led:
        # What clients would be served: the row as stored.
        assert led.checkpoint(200).startswith(f"{SIGNER.name}\n200\n{base64.b64encode(wrong).decode()}\n")
    with pytest.raises(AuditDiscrepancy) as err:
        audit(tmp_path / "l")
    assert err.value.location == "checkpoint 200"
    assert wrong.hex() in err.value.detail and root_200.hex() in err.value.detail


@pytest.mark.parametrize(
    "key,mutate,where,problem",
    [
        (u64(200), _row(200, EMPTY_ROOT, Signer.generate(SIGNER.name)), "checkpoint 200", "signature"),
        (u64(1), lambda v: b"garbage", "checkpoint 1", "malformed note"),
        (u64(201), _row(200, EMPTY_ROOT), "checkpoint 201", "signs tree size 200"),
        (u64(601), _row(601, EMPTY_ROOT), "checkpoint 601", "past the log's 600 entries"),
        (b"\x00\x01", lambda v: b"x", "checkpoints", "not a tree size"),
    ],
    ids=["foreign-key", "not-a-note", "other-size", "past-the-log", "bad-row-key"],
)
def test_bad_checkpoint_rows_at_any_size_are_found(
    tmp_path: Path, key: bytes, mutate: object, where: str, problem: str
) -> None:
    make_ledger(tmp_path / "l")
    tamper(tmp_path / "l", Table.CHECKPOINTS, key, mutate)
    with pytest.raises(AuditDiscrepancy) as err:
        audit(tmp_path / "l")
    assert err.value.location == where
    assert problem in err.value.detail


def _chunk_holding(path: Path, leaf: bytes) -> tuple[bytes, bytes]:
    """The stored run chunk (key, value) whose records include ``leaf``."""
    env = lmdb.open(str(path), max_dbs=16, readonly=True)
    try:
        with env.begin(db=env.open_db(Table.LEAVES.encode())) as txn:
            for key, value in txn.cursor():
                at = bytes(value).find(leaf)
                if at >= 0 and at % 40 == 0:
                    return bytes(key), bytes(value)
    finally:
        env.close()
    raise AssertionError("leaf not in any run")


def _full_chunk(path: Path, records: int) -> tuple[bytes, bytes]:
    """The first stored run chunk of ``records`` records."""
    env = lmdb.open(str(path), max_dbs=16, readonly=True)
    try:
        with env.begin(db=env.open_db(Table.LEAVES.encode())) as txn:
            return next((bytes(k), bytes(v)) for k, v in txn.cursor() if len(v) == records * 40)
    finally:
        env.close()


@pytest.fixture
def small_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flush the leaf index every 100 entries, in chunks of 7 records."""
    from ledger import leaf_index

    monkeypatch.setattr(leaf_index, "FLUSH_ENTRIES", 100)
    monkeypatch.setattr(leaf_index, "CHUNK_RECORDS", 7)


@pytest.mark.usefixtures("small_runs")
def test_tampered_leaf_index_record_is_found(tmp_path: Path) -> None:
    make_ledger(tmp_path / "l")  # flushes happen at the 150-entry batches
    first = hashlib.sha256(b"\x00" + b"entry 0 ").digest()
    key, chunk = _chunk_holding(tmp_path / "l", first)
    at = chunk.find(first)
    # Entry 0's record says index 3: entry 0 is then recorded nowhere.
    tamper(tmp_path / "l", Table.LEAVES, key, lambda v: v[: at + 32] + u64(3) + v[at + 40 :])
    with pytest.raises(AuditDiscrepancy) as err:
        audit(tmp_path / "l")
    assert err.value.location == "entry 0"


@pytest.mark.usefixtures("small_runs")
@pytest.mark.parametrize(
    "mutate,problem",
    [
        (lambda v: v[40:], "holds"),  # a record dropped
        (lambda v: v[:-1], "not whole records"),
        (lambda v: v[40:80] + v[:40] + v[80:], "not sorted"),
    ],
)
def test_damaged_leaf_index_run_is_found(tmp_path: Path, mutate: object, problem: str) -> None:
    make_ledger(tmp_path / "l")
    key, _ = _full_chunk(tmp_path / "l", 7)
    tamper(tmp_path / "l", Table.LEAVES, key, mutate)
    with pytest.raises(AuditDiscrepancy) as err:
        audit(tmp_path / "l")
    assert err.value.location == "leaf index"
    assert problem in str(err.value)


@pytest.mark.usefixtures("small_runs")
def test_leaf_index_chunk_under_the_wrong_key_is_found(tmp_path: Path) -> None:
    """A lookup seeks the first chunk keyed at or after the hash, so a chunk
    filed under another key would hide its records: the audit names it."""
    make_ledger(tmp_path / "l")
    key, chunk = _chunk_holding(tmp_path / "l", hashlib.sha256(b"\x00" + b"entry 0 ").digest())
    tamper(tmp_path / "l", Table.LEAVES, key, lambda v: None)
    tamper(tmp_path / "l", Table.LEAVES, key[:-1] + bytes([key[-1] ^ 1]), lambda v: chunk)
    with pytest.raises(AuditDiscrepancy) as err:
        audit(tmp_path / "l")
    assert err.value.location == "leaf index"
    assert "key" in str(err.value)


def test_leaf_filter_missing_a_merged_leaf_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cleared bit would let entry 0 be appended again as new: the audit
    recomputes the bitmap from the merged leaves and names it."""
    from ledger import leaf_index

    monkeypatch.setattr(leaf_index, "FLUSH_ENTRIES", 100)
    make_ledger(tmp_path / "l")
    first = hashlib.sha256(b"\x00" + b"entry 0 ").digest()
    bit = int.from_bytes(first[4:8], "little") & (leaf_index.FILTER_BITS - 1)

    def clear(value: bytes) -> bytes:
        b = bytearray(value)
        assert b[bit >> 3] >> (bit & 7) & 1, "the merged leaf's bit is set"
        b[bit >> 3] &= ~(1 << (bit & 7)) & 0xFF
        return bytes(b)

    tamper(tmp_path / "l", Table.META, leaf_index.FILTER_KEY, clear)
    with pytest.raises(AuditDiscrepancy) as err:
        audit(tmp_path / "l")
    assert err.value.location == "leaf index"
    assert "filter" in str(err.value)


def test_audit_with_a_foreign_key_fails(tmp_path: Path) -> None:
    make_ledger(tmp_path / "l", 10)
    store = LmdbStore(tmp_path / "l")
    with pytest.raises(AuditDiscrepancy):
        audit_store(store, verifier=Signer.generate("example.org/audit").verifier())
    store.close()


def test_cli_audit_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_ledger(tmp_path / "l", 50)
    assert main(["audit", str(tmp_path / "l"), "--quiet"]) == 0
    assert "audit ok" in capsys.readouterr().out
    tamper(tmp_path / "l", Table.ENTRIES, u64(7), flip(0))
    assert main(["audit", str(tmp_path / "l"), "--json"]) == 1
    assert '"location": "entry 7"' in capsys.readouterr().out
    assert main(["audit", str(tmp_path / "nothing")]) == 2
    # --vkey pins the log key: a file or the key itself; a missing file is one line.
    capsys.readouterr()
    assert main(["audit", str(tmp_path / "l"), "--vkey", str(tmp_path / "none.vkey")]) == 2
    assert capsys.readouterr().err == f"carbonledger: verifier key file {tmp_path}/none.vkey: no such file\n"
    (tmp_path / "log.vkey").write_text(SIGNER.vkey + "\n")
    for pinned in (str(tmp_path / "log.vkey"), SIGNER.vkey):
        assert main(["audit", str(tmp_path / "l"), "--json", "--vkey", pinned]) == 1  # entry 7 is still tampered
        assert '"location": "entry 7"' in capsys.readouterr().out


def test_cli_keygen_writes_interoperable_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keygen", "example.org/k", "--out", str(tmp_path)]) == 0
    skey = (tmp_path / "example.org_k.key").read_text().strip()
    vkey = (tmp_path / "example.org_k.vkey").read_text().strip()
    signer = Signer.from_key(skey)
    assert signer.vkey == vkey and skey.startswith("PRIVATE+KEY+example.org/k+")
    assert (tmp_path / "example.org_k.key").stat().st_mode & 0o077 == 0
    assert main(["keygen", "example.org/k", "--out", str(tmp_path)]) == 2  # never overwrites
