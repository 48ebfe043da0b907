"""Tests of ledger.tlog_proof: the tlog-proof text and offline verification.

Trees and inclusion proofs come from a naive recursive implementation of
RFC 9162 section 2.1 written here, independent of ledger.merkle.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.checkpoint import Checkpoint, cosign_checkpoint, sign_checkpoint
from ledger.errors import InvalidProof, InvalidSignature, MalformedError, QuorumNotMet, RootMismatch
from ledger.keys import Signer
from ledger.policy import parse_policy
from ledger.tlog_proof import (
    MAX_PROOF_HASHES,
    TlogProof,
    format_tlog_proof,
    parse_tlog_proof,
    verify_tlog_proof,
)
from tests.test_note import assert_only_ledger_errors, mutations

LOG = Signer.from_seed("ledger.example/log", bytes([1]) * 32)
W1 = Signer.from_seed("w1.example", bytes([2]) * 32, cosigner=True)
W2 = Signer.from_seed("w2.example", bytes([3]) * 32, cosigner=True)
POLICY = parse_policy(
    f"log {LOG.vkey}\nwitness W1 {W1.vkey}\nwitness W2 {W2.vkey}\ngroup G 2 W1 W2\nquorum G\n"
)


def _mth(leaves: list[bytes]) -> bytes:
    # RFC 9162 2.1.1: MTH of a list of entries.
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1 << ((n - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


def _path(m: int, leaves: list[bytes]) -> list[bytes]:
    # RFC 9162 2.1.3.1: PATH(m, D[n]).
    n = len(leaves)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return _path(m, leaves[:k]) + [_mth(leaves[k:])]
    return _path(m - k, leaves[k:]) + [_mth(leaves[:k])]


def entries(n: int) -> list[bytes]:
    return [f"entry {i}".encode() for i in range(n)]


def witnessed_note(size: int, root: bytes, *witnesses: Signer) -> str:
    note = sign_checkpoint(Checkpoint("ledger.example/log", size, root), LOG)
    for i, w in enumerate(witnesses):
        note = cosign_checkpoint(note, w, 1700000000 + i)
    return note


def proof_text(index: int, leaves: list[bytes], *, extra: bytes | None = None) -> str:
    note = witnessed_note(len(leaves), _mth(leaves), W1, W2)
    return format_tlog_proof(TlogProof(index, tuple(_path(index, leaves)), note, extra))


def test_reference_tree_matches_known_empty_root() -> None:
    # RFC 9162 2.1.1: the empty tree hashes to SHA-256 of the empty string.
    assert _mth([]).hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_verify_every_index_for_small_trees() -> None:
    for size in range(1, 12):
        leaves = entries(size)
        for index in range(size):
            text = proof_text(index, leaves)
            cp = verify_tlog_proof(text, leaves[index], POLICY)
            assert (cp.size, cp.root_hash) == (size, _mth(leaves))
            assert verify_tlog_proof(text.encode(), leaves[index], POLICY) == cp


def test_format_matches_spec_layout() -> None:
    leaves = entries(5)
    text = proof_text(2, leaves, extra=b"context")
    head, note = text.split("\n\n", 1)
    lines = head.split("\n")
    assert lines[0] == "c2sp.org/tlog-proof@v1"
    assert lines[1] == "extra " + base64.b64encode(b"context").decode()
    assert lines[2] == "index 2"
    assert lines[3:] == [base64.b64encode(h).decode() for h in _path(2, leaves)]
    assert note.startswith("ledger.example/log\n5\n")


def test_round_trip_with_and_without_extra() -> None:
    leaves = entries(7)
    for extra in (None, b"\x00\xff"):
        text = proof_text(6, leaves, extra=extra)
        p = parse_tlog_proof(text)
        assert p.extra == extra and p.index == 6
        assert format_tlog_proof(p) == text


def test_single_leaf_tree_has_no_proof_lines() -> None:
    text = proof_text(0, entries(1))
    assert text.startswith("c2sp.org/tlog-proof@v1\nindex 0\n\n")
    verify_tlog_proof(text, b"entry 0", POLICY)


def test_wrong_entry_or_index_fails() -> None:
    leaves = entries(6)
    text = proof_text(3, leaves)
    with pytest.raises(RootMismatch):
        verify_tlog_proof(text, b"entry 4", POLICY)
    moved = text.replace("index 3\n", "index 2\n")
    with pytest.raises(RootMismatch):
        verify_tlog_proof(moved, leaves[2], POLICY)
    beyond = text.replace("index 3\n", "index 6\n")
    with pytest.raises(InvalidProof):
        verify_tlog_proof(beyond, leaves[3], POLICY)


def test_wrong_proof_shape_fails() -> None:
    leaves = entries(6)
    note = witnessed_note(6, _mth(leaves), W1, W2)
    path = _path(3, leaves)
    with pytest.raises(InvalidProof):
        verify_tlog_proof(
            format_tlog_proof(TlogProof(3, tuple(path[:-1]), note)), leaves[3], POLICY
        )
    with pytest.raises(InvalidProof):
        verify_tlog_proof(
            format_tlog_proof(TlogProof(3, (*path, path[0]), note)), leaves[3], POLICY
        )
    tampered = (bytes([path[0][0] ^ 1]) + path[0][1:], *path[1:])
    with pytest.raises(RootMismatch):
        verify_tlog_proof(format_tlog_proof(TlogProof(3, tampered, note)), leaves[3], POLICY)


def test_policy_is_enforced() -> None:
    leaves = entries(4)
    one_witness = witnessed_note(4, _mth(leaves), W1)
    text = format_tlog_proof(TlogProof(1, tuple(_path(1, leaves)), one_witness))
    with pytest.raises(QuorumNotMet):
        verify_tlog_proof(text, leaves[1], POLICY)
    impostor = Signer.from_seed("ledger.example/log", bytes([9]) * 32)
    forged = cosign_checkpoint(
        cosign_checkpoint(
            sign_checkpoint(Checkpoint("ledger.example/log", 4, _mth(leaves)), impostor), W1, 1
        ),
        W2,
        2,
    )
    text = format_tlog_proof(TlogProof(1, tuple(_path(1, leaves)), forged))
    with pytest.raises(InvalidSignature):
        verify_tlog_proof(text, leaves[1], POLICY)


@pytest.mark.parametrize(
    "edit",
    [
        lambda t: t.replace("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2"),
        lambda t: t.replace("c2sp.org/tlog-proof@v1\n", ""),
        lambda t: t.replace("index 3", "index 03"),
        lambda t: t.replace("index 3", "index -3"),
        lambda t: t.replace("index 3", "index  3"),
        lambda t: t.replace("index 3", "index 3 "),
        lambda t: t.replace("index 3", "index 18446744073709551616"),
        lambda t: t.replace("index 3\n", ""),
        lambda t: t.replace("index 3", "extra \nindex 3"),
        lambda t: t.replace("index 3", "extra AA=\nindex 3"),
        lambda t: t.replace("index 3", "index 3\nextra AAAA"),
        lambda t: t.replace("\n\n", "\n", 1),
        lambda t: t.replace("\n\n", "\n\n\n", 1),
        lambda t: t.replace("=\n", "\n", 1),
        lambda t: t.replace("index 3\n", "index 3\nAAAA\n"),
        lambda t: t.split("\n\n")[0] + "\n\n",
        lambda t: t.replace("\n", "\r\n"),
        lambda t: t + "garbage",
    ],
)
def test_parse_rejects(edit: object) -> None:
    text = proof_text(3, entries(6))
    bad = edit(text)  # type: ignore[operator]
    assert bad != text
    with pytest.raises(MalformedError):
        parse_tlog_proof(bad)


def test_parse_rejects_too_many_hashes_and_oversize() -> None:
    note = witnessed_note(6, _mth(entries(6)))
    many = "c2sp.org/tlog-proof@v1\nindex 0\n" + (base64.b64encode(bytes(32)).decode() + "\n") * (
        MAX_PROOF_HASHES + 1
    )
    with pytest.raises(MalformedError):
        parse_tlog_proof(many + "\n" + note)
    with pytest.raises(MalformedError):
        parse_tlog_proof(b"c2sp.org/tlog-proof@v1\nindex 0\n\n" + b"A" * (3 << 20))
    with pytest.raises(MalformedError):
        TlogProof(0, (bytes(31),), note)
    with pytest.raises(MalformedError):
        TlogProof(0, (), note, b"")
    with pytest.raises(MalformedError):
        TlogProof(-1, (), note)


@settings(max_examples=60, deadline=None)
@given(
    index=st.integers(min_value=0, max_value=2**64 - 1),
    proof=st.lists(st.binary(min_size=32, max_size=32), max_size=MAX_PROOF_HASHES),
    extra=st.none() | st.binary(min_size=1, max_size=64),
)
def test_format_parse_round_trip(index: int, proof: list[bytes], extra: bytes | None) -> None:
    p = TlogProof(index, tuple(proof), witnessed_note(1, bytes(32)), extra)
    assert parse_tlog_proof(format_tlog_proof(p)) == p


def test_mutated_proofs_raise_only_ledger_errors() -> None:
    leaves = entries(6)
    data = proof_text(3, leaves, extra=b"x").encode()

    def canonical(raw: bytes, p: TlogProof) -> None:
        assert format_tlog_proof(p).encode("utf-8") == raw

    rejected = assert_only_ledger_errors(
        parse_tlog_proof, mutations(data, budget=200), on_success=canonical
    )
    assert rejected > 100
    assert_only_ledger_errors(
        lambda d: verify_tlog_proof(d, leaves[3], POLICY), mutations(data, budget=120)
    )
