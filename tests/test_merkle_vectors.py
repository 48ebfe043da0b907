"""The published transparency-dev/merkle vectors in shared/vectors/merkle.

Each file states whether verification must fail; every case is run as stated.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from ledger import merkle
from ledger.errors import LedgerError

# shared/ sits beside the repository checkout, here and in CI.
VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "merkle"

LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
)]


def _cases(kind: str) -> list[Path]:
    return sorted((VECTORS / kind).rglob("*.json"))


def _id(p: Path) -> str:
    return str(p.relative_to(VECTORS))


def test_vectors_are_present() -> None:
    assert len(_cases("inclusion")) > 80
    assert len(_cases("consistency")) > 80


@pytest.mark.parametrize("path", _cases("inclusion"), ids=_id)
def test_inclusion_vector(path: Path) -> None:
    case = json.loads(path.read_text())
    args = (
        base64.b64decode(case["leafHash"]),
        case["leafIdx"],
        case["treeSize"],
        [base64.b64decode(p) for p in case["proof"] or []],
        base64.b64decode(case["root"]),
    )
    if case["wantErr"]:
        with pytest.raises(LedgerError):
            merkle.verify_inclusion(*args)
    else:
        merkle.verify_inclusion(*args)


@pytest.mark.parametrize("path", _cases("consistency"), ids=_id)
def test_consistency_vector(path: Path) -> None:
    case = json.loads(path.read_text())
    args = (
        case["size1"],
        case["size2"],
        [base64.b64decode(p) for p in case["proof"] or []],
        base64.b64decode(case["root1"]),
        base64.b64decode(case["root2"]),
    )
    if case["wantErr"]:
        with pytest.raises(LedgerError):
            merkle.verify_consistency(*args)
    else:
        merkle.verify_consistency(*args)


def test_root_of_the_eight_vector_leaves() -> None:
    # From shared/vectors/merkle/README.md.
    ranges = merkle.CompactRange()
    for leaf in LEAVES:
        ranges.append(merkle.leaf_hash(leaf), [])
    assert ranges.root().hex() == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"


def test_happy_path_proofs_are_what_we_generate() -> None:
    """Our generated proofs equal the published ones byte for byte."""
    nodes: dict[tuple[int, int], bytes] = {}
    ranges = merkle.CompactRange()
    for leaf in LEAVES:
        out: list[tuple[int, int, bytes]] = []
        ranges.append(merkle.leaf_hash(leaf), out)
        nodes.update({(lv, ix): h for lv, ix, h in out})

    def read(level: int, index: int) -> bytes:
        return nodes[(level, index)]

    for path in _cases("inclusion"):
        case = json.loads(path.read_text())
        if case["desc"] == "happy path" and case["treeSize"] <= 8:
            want = [base64.b64decode(p) for p in case["proof"] or []]
            assert merkle.inclusion_proof(read, case["leafIdx"], case["treeSize"]) == want
    for path in _cases("consistency"):
        case = json.loads(path.read_text())
        if case["desc"] == "happy path" and 0 < case["size1"] <= case["size2"] <= 8:
            want = [base64.b64decode(p) for p in case["proof"] or []]
            assert merkle.consistency_proof(read, case["size1"], case["size2"]) == want
