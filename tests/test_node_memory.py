"""How a node process holds memory (``node.memory``): the node's store gets
the node's mapped-page budget, and on glibc large blocks get pages of their
own once the allocator is tuned."""

from __future__ import annotations

import ctypes
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ledger.storage import LmdbStore
from ledger.storage.lmdb_store import MAPPED_BUDGET
from node import cli, memory

ROOT = Path(__file__).resolve().parents[1]


def test_a_node_opens_its_ledger_with_the_node_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli.main(["init", str(tmp_path / "n"), "--origin", "example.org/memory"]) == 0
    budgets: list[Any] = []

    def spy(path: Any, **kwargs: Any) -> Any:
        budgets.append(kwargs.get("mapped_budget"))
        return LmdbStore(path, **kwargs)

    monkeypatch.setattr("ledger.log.LmdbStore", spy)
    with cli._open_ledger(tmp_path / "n") as led:
        assert led.size == 1  # the genesis
    assert budgets == [memory.NODE_MAPPED_BUDGET]
    # Lower than the store's default, which the Merkle benchmark keeps.
    assert 0 < memory.NODE_MAPPED_BUDGET < MAPPED_BUDGET


# Run in a fresh interpreter: a long-lived process's heap may hold large free
# chunks, which serve large blocks whatever the thresholds.
_PROBE = """
import ctypes, sys
from node import memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
# Untuned, freeing a mapped 8 MiB block raises glibc's threshold to 8 MiB,
# and the blocks below that come from the heap.
big = bytes(8 << 20)
del big
tuned = memory.tune_allocator()
before = libc.mallinfo2().hblkhd
block = bytes(4 * memory.MMAP_THRESHOLD)
during = libc.mallinfo2().hblkhd
del block
print(tuned, during - before, libc.mallinfo2().hblkhd - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt thresholds are glibc's")
def test_after_tuning_a_large_block_gets_pages_of_its_own() -> None:
    if not hasattr(ctypes.CDLL(None), "mallinfo2"):
        pytest.skip("glibc before 2.33 has no mallinfo2")
    out = subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60)
    tuned, mapped, left = out.stdout.split()
    assert tuned == "True"
    # The block was mapped on its own (counted in hblkhd), and unmapped when freed.
    assert int(mapped) >= 4 * memory.MMAP_THRESHOLD
    assert int(left) == 0
