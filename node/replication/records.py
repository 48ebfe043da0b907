"""The batch record a node puts to etcd, one per key ``<prefix>log/<seq>``.

Binary and versioned, parsed strictly::

    "CLB1"  u64 time  u8 len(node) node  16-byte batch id  u32 count
    then count times: u32 len(entry) entry

``time`` (unix seconds, from the submitting node's clock) becomes the block
time on every replica, so replicas write identical blocks. ``node`` and the
batch id let the submitting node find its own batch when it comes back in
order. A record stays under :data:`MAX_RECORD_BYTES` so that etcd takes it
(its default request limit is 1.5 MiB); :func:`split_batch` cuts a group of
entries accordingly.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from ledger.errors import MalformedError

__all__ = ["MAX_RECORD_BYTES", "BatchRecord", "decode_record", "encode_record", "split_batch"]

#: Largest record put to etcd (one entry larger than this goes alone; the
#: ledger caps an entry at 1 MiB, which still fits etcd's 1.5 MiB default).
MAX_RECORD_BYTES = 1 << 20
_MAGIC = b"CLB1"
_HEAD = struct.Struct(">4sQB")
_U32 = struct.Struct(">I")
_MAX_ENTRIES = 100_000
_MAX_TOTAL = (3 << 20) // 2


@dataclass(frozen=True, slots=True)
class BatchRecord:
    time: int
    node: str
    batch_id: bytes
    entries: tuple[bytes, ...]


def encode_record(rec: BatchRecord) -> bytes:
    node = rec.node.encode()
    if len(node) > 255 or len(rec.batch_id) != 16:
        raise MalformedError("batch record", "node name over 255 bytes or batch id not 16 bytes")
    parts = [_HEAD.pack(_MAGIC, rec.time, len(node)), node, rec.batch_id, _U32.pack(len(rec.entries))]
    for e in rec.entries:
        parts += [_U32.pack(len(e)), e]
    return b"".join(parts)


def decode_record(data: bytes) -> BatchRecord:
    """Parse a record; raises :class:`MalformedError` on anything off."""
    if len(data) > _MAX_TOTAL:
        raise MalformedError("batch record", "too large")
    try:
        magic, time, node_len = _HEAD.unpack_from(data, 0)
        if magic != _MAGIC:
            raise MalformedError("batch record", "bad magic")
        pos = _HEAD.size
        node = data[pos : pos + node_len].decode()
        pos += node_len
        batch_id = data[pos : pos + 16]
        pos += 16
        (count,) = _U32.unpack_from(data, pos)
        pos += 4
        if count > _MAX_ENTRIES or len(batch_id) != 16:
            raise MalformedError("batch record", "bad header")
        entries = []
        for _ in range(count):
            (n,) = _U32.unpack_from(data, pos)
            pos += 4
            if pos + n > len(data):
                raise MalformedError("batch record", "truncated entry")
            entries.append(data[pos : pos + n])
            pos += n
    except (struct.error, UnicodeDecodeError):
        raise MalformedError("batch record", "truncated or not UTF-8") from None
    if pos != len(data):
        raise MalformedError("batch record", "trailing bytes")
    return BatchRecord(time, node, batch_id, tuple(entries))


def split_batch(entries: Sequence[bytes], limit: int = MAX_RECORD_BYTES) -> list[tuple[int, int]]:
    """``[start, end)`` slices of ``entries`` whose records stay under ``limit``
    (header room included); never an empty slice, an oversized entry alone."""
    out: list[tuple[int, int]] = []
    start, size = 0, 512
    for i, e in enumerate(entries):
        if i > start and size + 4 + len(e) > limit:
            out.append((start, i))
            start, size = i, 512
        size += 4 + len(e)
    if start < len(entries):
        out.append((start, len(entries)))
    return out
