"""How a node process holds memory: the C allocator's thresholds and the
LMDB store's mapped-page budget, both set when the node starts.

The node's peak resident set while ingesting (issue 5: under 300 MB at 10^6
entries) was about half file pages and half heap:

* file pages: LMDB maps the ledger's file, and the store unmaps its pages
  past a budget (see ``ledger.storage.lmdb_store``). A node sets a smaller
  budget than the store's default (which the Merkle benchmark's proof
  figures assume). Ingesting 10^6 entries (``python -m loadtests.bench
  --only big-ingest``, with the heap changes below), 128 MiB gave a peak of
  290 MB (163 MB file-backed at the largest sample), 96 MiB 253 MB (135
  MB) and 64 MiB 223-225 MB (88-100 MB). But each release makes the writer
  fault its pages in again: in alternating runs of 2 x 10^5 entries, 64 MiB
  cost 7-14% more CPU per entry than 128 MiB, and 96 MiB no difference
  beyond the noise (2,284 and 2,684 entries per CPU-second against 2,396).
* heap: glibc raises its mmap threshold each time a large block is freed
  (up to 32 MiB), so after the leaf index's first flush the large
  temporary arrays of later flushes came from the heap, and the heap kept
  their pages: 30-55 MB of free heap at 6 x 10^5 entries. Fixed thresholds
  (which also turn that raising off) give blocks of 256 KiB or more pages
  of their own, returned when they are freed, and return the heap's free
  top past 1 MiB, so that it does not serve large blocks either.
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["MMAP_THRESHOLD", "NODE_MAPPED_BUDGET", "TRIM_THRESHOLD", "tune_allocator"]

#: Bytes of the ledger file's pages the node may gain mapped before its
#: store unmaps them (``Ledger.open(mapped_budget=...)``).
NODE_MAPPED_BUDGET = 96 << 20
#: Allocations of this many bytes or more get pages of their own (glibc).
MMAP_THRESHOLD = 256 << 10
#: Free bytes at the top of the heap past which glibc returns them.
TRIM_THRESHOLD = 1 << 20

# mallopt parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_allocator() -> bool:
    """Fix glibc's mmap and trim thresholds for this process (see the module
    docstring); return whether the allocator took them (False elsewhere,
    e.g. musl or macOS, where this changes nothing)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
    except OSError:
        return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success, 0 on error.
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))

