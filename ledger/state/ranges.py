"""Serial-range bookkeeping for certificates and credits.

The units of an asset kind (``gec`` or ``ccer``) are numbered by serial. The
state keeps them as a partition into *segments*: maximal runs ``[s, e)`` of
units with the same batch, owner, status, retirement and claim. A segment is
stored under its **end** serial (``sg/{kind}/{e}``) so that the segment holding
serial ``x`` is the first key at or after ``x + 1``: one ordered scan finds it
without a reverse iterator. Touching a range therefore costs O(log n) for the
seek plus O(segments touched), never a scan of the whole kind.

Every segment is mirrored under its owner (``ao/{org}/{kind}/{e}``) so that an
account's holdings are one prefix scan. Splitting, rewriting and re-merging is
done by :func:`rewrite`, which deletes the keys it does not write again, then
puts, each in serial order, so that the write list, and so the state digest,
depends only on the operation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from ledger.errors import StateRuleError
from ledger.kv import KV
from ledger.state._codec import DecodeCache, dec, enc, encode_string

__all__ = ["Segment", "covering", "rewrite", "add_segment", "segment_key", "owner_key"]

# Statuses of a unit. "expired" is not stored: it is a held unit whose batch's
# validity ended before the block time, decided when the unit tries to move.
HELD = "held"
FROZEN = "frozen"
RETIRED = "retired"


class Segment(NamedTuple):
    """Units ``[start, end)`` sharing one value (batch, owner, status, ...).

    A NamedTuple rather than a frozen dataclass: a range rewrite builds and
    compares several per entry, and two segments are equal exactly when
    their start, end and value are.
    """

    start: int
    end: int
    value: dict[str, Any]  # without "s"; never mutated after construction

    @property
    def owner(self) -> str:
        return str(self.value["o"])

    @property
    def status(self) -> str:
        return str(self.value["st"])


def segment_key(kind: str, end: int) -> bytes:
    # key("sg", kind, n16(end)), in one formatting step: this is built for
    # every segment read or written.
    return f"sg/{kind}/{end:016x}".encode()


def owner_key(owner: str, kind: str, end: int) -> bytes:
    return f"ao/{owner}/{kind}/{end:016x}".encode()


def _prefix(kind: str) -> bytes:
    prefix = _PREFIXES.get(kind)
    if prefix is None:
        prefix = _PREFIXES[kind] = f"sg/{kind}/".encode()
    return prefix


_PREFIXES: dict[str, bytes] = {}

# Segments are built as the tuples they are, without the generated
# ``Segment.__new__`` (a Python frame per segment read or changed).
_new_tuple = tuple.__new__


# Segment values by their stored bytes: (start, value without "s"). Filled by
# both reads and writes, since the segments an entry writes are the neighbors
# the next entries read. Keyed by content, so always right; the values are
# never mutated (see Segment). A segment is about 50 bytes stored and 350
# decoded: this keeps the last 1,000 to 2,000, under 1 MiB. The segments in
# use are the few at the edge of the ranges being issued and moved: 32,768
# of them (the bound before, 11 MiB) saved a seventh of the decodes and no
# measurable time.
_SEGMENTS = DecodeCache(128 << 10)


def _decode(end_hex: bytes, raw: bytes) -> Segment:
    hit = _SEGMENTS.get(raw)
    if hit is None:
        value = dec(raw)
        hit = (value.pop("s"), value)
        _SEGMENTS.put(raw, hit)
    return _new_tuple(Segment, (hit[0], int(end_hex, 16), hit[1]))


def encode_segment(start: int, value: dict[str, Any]) -> bytes:
    """The stored bytes of a segment: ``enc({**value, "s": start})``.

    Formatted directly for the shape every segment has (string ``b``, ``o``
    and ``st``; optional string ``c`` and integer ``r``), which is a third of
    the cost of the general encoder; any other shape goes to :func:`enc`.
    Keys are written in sorted order, as :func:`enc` writes them.
    """
    b = value.get("b")
    o = value.get("o")
    st = value.get("st")
    if len(value) == 3 and type(b) is str and type(o) is str and type(st) is str and type(start) is int:
        # Held or frozen units, the most common shape: no "c", no "r".
        return f'{{"b":{encode_string(b)},"o":{encode_string(o)},"s":{start},"st":{encode_string(st)}}}'.encode()
    c = value.get("c")
    r = value.get("r")
    if (
        type(b) is str
        and type(o) is str
        and type(st) is str
        and (c is None or type(c) is str)
        and (r is None or type(r) is int)
        and type(start) is int
        and len(value) == 3 + (c is not None) + (r is not None)
    ):
        text = '{"b":' + encode_string(b)
        if c is not None:
            text += ',"c":' + encode_string(c)
        text += ',"o":' + encode_string(o)
        if r is not None:
            text += f',"r":{r}'
        return f'{text},"s":{start},"st":{encode_string(st)}}}'.encode()
    return enc({**value, "s": start})


def covering(kv: KV, kind: str, start: int, end: int, field: str = "body") -> list[Segment]:
    """The segments that together hold every unit of ``[start, end)``, in order.

    Requires ``start < end``. Raises StateRuleError ``units_not_issued`` if any
    unit in the range was never issued.
    """
    prefix = _prefix(kind)
    cut = len(prefix)
    out: list[Segment] = []
    expect = start
    for k, raw in kv.scan(prefix, b"%s%016x" % (prefix, start + 1)):
        seg = _decode(k[cut:], raw)
        if seg.start > expect:
            break
        out.append(seg)
        expect = seg.end
        if expect >= end:
            return out
    raise StateRuleError(
        "units_not_issued", f"{kind} units [{start}, {end}) were not all issued", field
    )


def _neighbor_before(kv: KV, kind: str, start: int) -> Segment | None:
    raw = kv.get(segment_key(kind, start))
    if raw is None:
        return None
    hit = _SEGMENTS.get(raw)
    if hit is None:
        return _decode(b"%016x" % start, raw)
    return _new_tuple(Segment, (hit[0], start, hit[1]))


def _neighbor_after(kv: KV, kind: str, end: int) -> Segment | None:
    prefix = _prefix(kind)
    for k, raw in kv.scan(prefix, b"%s%016x" % (prefix, end + 1)):
        seg = _decode(k[len(prefix) :], raw)
        return seg if seg.start == end else None
    return None


# A segment being built: (start, end, value), like a Segment's fields.
_Piece = tuple[int, int, dict[str, Any]]


def _put(kv: KV, kind: str, seg: _Piece) -> None:
    start, end, value = seg
    raw = encode_segment(start, value)
    _SEGMENTS.put(raw, (start, value))
    tail = f"{kind}/{end:016x}"
    kv.put(f"sg/{tail}".encode(), raw)
    kv.put(f"ao/{value['o']}/{tail}".encode(), raw)


def add_segment(kv: KV, kind: str, start: int, end: int, value: dict[str, Any]) -> None:
    """Write a fresh segment of newly issued units (no neighbors to merge:
    batches never merge with one another because their ``b`` differs)."""
    _put(kv, kind, Segment(start, end, value))


def rewrite(
    kv: KV,
    kind: str,
    start: int,
    end: int,
    segs: list[Segment],
    change: Callable[[dict[str, Any]], dict[str, Any]],
    *,
    merge_before: bool = True,
    merge_after: bool = True,
) -> list[Segment]:
    """Give units ``[start, end)`` the value ``change(old value)``.

    ``segs`` must be :func:`covering` of the range (the caller has checked
    them). Parts of the first and last segment outside the range keep their
    value; adjacent segments with equal values, including the untouched
    neighbors, are merged. Returns the new segments inside the range.

    ``merge_before`` (``merge_after``) False says that the stored neighbor
    before ``start`` (after ``end``) cannot hold a changed value, for example
    because the value names this entry: it is then not read, which changes
    no write.
    """
    # Stored segments are maximal runs (every write goes through this merge),
    # so a neighbor can merge only with a changed piece that reaches it: when
    # the range starts inside segs[0] (or ends inside segs[-1]), the
    # unchanged remainder keeps segs[0]'s value, which already differs from
    # the neighbor's. Skipping that read changes no write.
    before = _neighbor_before(kv, kind, start) if merge_before and start == segs[0].start else None
    after = _neighbor_after(kv, kind, end) if merge_after and end == segs[-1].end else None
    old = [s for s in (before, *segs, after) if s is not None]
    # Pieces are plain (start, end, value) tuples, which compare equal to
    # Segments with the same fields; only the changed ones, returned, are
    # built as Segments.
    pieces: list[_Piece] = []
    if before is not None:
        pieces.append(before)
    changed: list[Segment] = []
    for seg_start, seg_end, value in segs:
        if seg_start < start:
            pieces.append((seg_start, start, value))
        mid: Segment = _new_tuple(Segment, (max(seg_start, start), min(seg_end, end), change(value)))
        pieces.append(mid)
        changed.append(mid)
        if seg_end > end:
            pieces.append((end, seg_end, value))
    if after is not None:
        pieces.append(after)
    merged: list[_Piece] = [pieces[0]]
    for piece in pieces[1:]:
        last = merged[-1]
        if last[1] == piece[0] and last[2] == piece[2]:
            merged[-1] = (last[0], piece[1], piece[2])
        else:
            merged.append(piece)
    # Both lists hold at most a handful of segments: compare them directly
    # (tuple and dict equality) rather than encoding each to bytes.
    fresh = [piece for piece in merged if piece not in old]
    # A rewritten segment often keeps its end key (the remainder of a split,
    # a retired head): a key that is written again is not deleted first.
    # Deletes, then puts, each in serial order, so the write list follows the
    # operation only.
    rewritten = {piece[1]: piece[2]["o"] for piece in fresh}
    for seg in old:
        if seg not in merged:
            gone = seg.end
            owner = seg.value["o"]
            new_owner = rewritten.get(gone)
            if new_owner is None:
                kv.delete(f"sg/{kind}/{gone:016x}".encode())
            if new_owner != owner:
                kv.delete(f"ao/{owner}/{kind}/{gone:016x}".encode())
    for piece in fresh:
        _put(kv, kind, piece)
    return changed
