"""Moving units of either asset kind: issue, transfer, retire, freeze, claim.

GEC and CCER share these rules; only who may issue differs (see
:mod:`ledger.state.gec` and :mod:`ledger.state.ccer`). Every change also
writes a history record per batch touched, so the history of any unit range
is a scan of its batches' histories, each record naming the entry index that
proves it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ledger.errors import PermissionDenied, StateRuleError
from ledger.records import MAX_SERIAL
from ledger.state._codec import enc, encode_string, n16
from ledger.state._tx import Tx
from ledger.state.ranges import FROZEN, HELD, RETIRED, Segment, add_segment, covering, rewrite

__all__ = [
    "first_free_serial",
    "issue_units",
    "check_movable",
    "transfer_units",
    "retire_units",
    "freeze_segment",
    "check_claims",
    "apply_claims",
    "range_label",
]


def range_label(kind: str, start: int, end: int) -> str:
    return f"{kind}:{start}-{end}"


# History records, formatted directly: one per batch touched by every move,
# retirement and claim, and the general encoder costs three times as much.
# Each gives the bytes enc() makes of {"op": ..., "s": s, "e": e, ...}, keys
# in sorted order (a property test checks them against enc).
HistoryRecord = Callable[[int, int], bytes]


def transfer_record(sender: str, to: str) -> HistoryRecord:
    a, b = encode_string(sender), encode_string(to)
    return lambda s, e: f'{{"e":{e},"from":{a},"op":"transfer","s":{s},"to":{b}}}'.encode()


def retire_record(by: str) -> HistoryRecord:
    a = encode_string(by)
    return lambda s, e: f'{{"by":{a},"e":{e},"op":"retire","s":{s}}}'.encode()


def freeze_record(reason: str) -> HistoryRecord:
    a = encode_string(reason)
    return lambda s, e: f'{{"e":{e},"op":"freeze","reason":{a},"s":{s}}}'.encode()


def claim_record(pf_id: str) -> HistoryRecord:
    a = encode_string(pf_id)
    return lambda s, e: f'{{"e":{e},"op":"claim","pf":{a},"s":{s}}}'.encode()


def encode_retirement(rec: dict[str, Any]) -> bytes:
    """``enc(rec)`` for a retirement record as GEC and CCER write them, keys
    in sorted order; formatted directly (the general encoder costs ~2 us
    for these six or seven fields). Any other shape goes to :func:`enc`."""
    beneficiary, by, e, period_end, period_start, s = (
        rec.get("beneficiary"), rec.get("by"), rec.get("e"), rec.get("periodEnd"), rec.get("periodStart"), rec.get("s")
    )
    purpose = rec.get("purpose")
    if (
        type(beneficiary) is not str
        or type(by) is not str
        or type(e) is not int
        or type(period_end) is not int
        or type(period_start) is not int
        or type(s) is not int
        or not (purpose is None or type(purpose) is str)
        or len(rec) != 6 + (purpose is not None)
    ):
        return enc(rec)
    head = f'{{"beneficiary":{encode_string(beneficiary)},"by":{encode_string(by)},"e":{e},'
    head += f'"periodEnd":{period_end},"periodStart":{period_start},'
    if purpose is not None:
        head += f'"purpose":{encode_string(purpose)},'
    return f'{head}"s":{s}}}'.encode()


def _history(tx: Tx, kind: str, segs: list[Segment], record: HistoryRecord) -> None:
    # One record per batch touched, clipped to the units of that batch.
    index = tx.ctx.index
    if len(segs) == 1:  # the usual case: one segment, so one batch
        s, e, value = segs[0]
        tx.kv.put(f"ah/{kind}/{value['b']}/{index:016x}/{s:016x}".encode(), record(s, e))
        return
    by_batch: dict[str, list[int]] = {}
    for seg in segs:
        batch = str(seg.value["b"])
        if batch not in by_batch:
            by_batch[batch] = [seg.start, seg.end]
        else:
            by_batch[batch][1] = seg.end
    for batch, (s, e) in by_batch.items():  # dicts keep insertion (serial) order
        tx.kv.put(f"ah/{kind}/{batch}/{index:016x}/{s:016x}".encode(), record(s, e))


def first_free_serial(tx: Tx, kind: str, quantity: int) -> int:
    """The first serial a new batch of ``quantity`` units of ``kind`` gets.

    Refuses a batch that would run past :data:`MAX_SERIAL`: no operation can
    name a serial beyond it (JSON readers lose integers past 2^53), so such
    units could never be transferred, retired or claimed. Handlers call this
    among their checks, before they write anything.
    """
    nxt = tx.get("a", kind, "next")
    start = int(nxt) if nxt is not None else 0
    if start + quantity > MAX_SERIAL:
        raise StateRuleError(
            "serials_exhausted",
            f"{kind} serials run out at {MAX_SERIAL}: {MAX_SERIAL - start} remain, {quantity} asked",
            "body.quantity",
        )
    return start


def issue_units(tx: Tx, kind: str, batch_id: str, record: dict[str, Any], start: int, quantity: int, to: str) -> tuple[int, int]:
    """Allocate serials ``[start, start + quantity)`` of ``kind`` (``start``
    from :func:`first_free_serial`) to a new batch held by ``to``."""
    end = start + quantity
    tx.put(end, "a", kind, "next")
    tx.put({**record, "start": start, "end": end, "issued": tx.ctx.index, "to": to}, "ab", kind, batch_id)
    tx.put(batch_id, "as", kind, n16(end))
    add_segment(tx.kv, kind, start, end, {"b": batch_id, "o": to, "st": HELD})
    tx.put(
        {"op": "issue", "s": start, "e": end, "to": to},
        *("ah", kind, batch_id, n16(tx.ctx.index), n16(start)),
    )
    tx.emit("units.issued", range_label(kind, start, end), batch_id, to)
    return start, end


def check_movable(tx: Tx, kind: str, start: int, end: int) -> list[Segment]:
    """The segments of ``[start, end)`` if the acting org may move them all:
    it holds them, and none is retired, frozen or (GEC) past its validity."""
    segs = covering(tx.kv, kind, start, end)
    org = tx.op.org
    checked: str | None = None  # the last batch whose validity was checked
    for seg in segs:
        value = seg.value
        if value["o"] != org:
            raise PermissionDenied("not_owner", "units held by another account", "body.start")
        status = value["st"]
        if status == RETIRED:
            raise StateRuleError("units_retired", "units already retired or cancelled", "body.start")
        if status == FROZEN:
            raise StateRuleError("units_frozen", "units frozen by a CCER registration", "body.start")
        batch = value["b"]
        if batch != checked:
            # Segments come in serial order and a batch's units are
            # contiguous, so each batch is checked once.
            rec = tx.read("ab", kind, batch)
            end_of_validity = None if rec is None else rec.get("validityEnd")
            # Valid until, not through, the validity end: issuance refuses a
            # validity end that is not in the future by the same measure.
            if end_of_validity is not None and end_of_validity <= tx.ctx.time:
                raise StateRuleError("units_expired", "units past their validity end", "body.start")
            checked = batch
    return segs


def transfer_units(tx: Tx, kind: str, start: int, end: int, to: str) -> None:
    segs = check_movable(tx, kind, start, end)
    if to == tx.op.org:
        raise StateRuleError("self_transfer", "sender and recipient are the same", "body.to")
    tx.require_org_exists(to, "body.to")
    changed = rewrite(tx.kv, kind, start, end, segs, lambda v: {**v, "o": to})
    _history(tx, kind, changed, transfer_record(tx.op.org, to))
    tx.emit("units.transferred", range_label(kind, start, end), tx.op.org, to)


def retire_units(tx: Tx, kind: str, start: int, end: int, record: dict[str, Any]) -> None:
    """Retire (GEC 核销) or cancel (CCER 注销) units held by the acting org."""
    segs = check_movable(tx, kind, start, end)
    index = tx.ctx.index
    # The new value names this entry ("r"), so no stored neighbor holds it.
    change: Callable[[dict[str, Any]], dict[str, Any]] = lambda v: {**v, "st": RETIRED, "r": index}
    changed = rewrite(tx.kv, kind, start, end, segs, change, merge_before=False, merge_after=False)
    # Read back by the claims that cite these units: hand the record over.
    retirement = {**record, "by": tx.op.org, "s": start, "e": end}
    tx.put_shared(retirement, "ar", kind, n16(index), raw=encode_retirement(retirement))
    _history(tx, kind, changed, retire_record(tx.op.org))
    tx.emit("units.retired", range_label(kind, start, end), tx.op.org)


def freeze_segment(tx: Tx, kind: str, seg: Segment, reason: str) -> None:
    segs = covering(tx.kv, kind, seg.start, seg.end)
    changed = rewrite(tx.kv, kind, seg.start, seg.end, segs, lambda v: {**v, "st": FROZEN})
    _history(tx, kind, changed, freeze_record(reason))
    tx.emit("units.frozen", range_label(kind, seg.start, seg.end), seg.owner)


def check_claims(
    tx: Tx, kind: str, ranges: list[tuple[int, int]], owner: str, ref_start: int, ref_end: int
) -> list[tuple[int, int, list[Segment]]]:
    """Check that a footprint may claim ``ranges`` of ``kind`` (see
    :func:`apply_claims`); return the ranges with their segments."""
    out: list[tuple[int, int, list[Segment]]] = []
    prev_end = -1
    for i, (start, end) in sorted(enumerate(ranges), key=lambda x: x[1]):
        where = f"body.claims.{kind}[{i}]"
        if start < prev_end:
            raise StateRuleError("duplicate_claim", "claimed ranges overlap", where)
        prev_end = end
        segs = covering(tx.kv, kind, start, end, where)
        for seg in segs:
            if seg.status != RETIRED:
                raise StateRuleError("units_not_retired", "claimed units are not retired", where)
            if "c" in seg.value:
                raise StateRuleError(
                    "units_already_claimed", f"units back footprint {seg.value['c']}", where
                )
            ret = tx.read("ar", kind, n16(int(seg.value["r"])))
            if ret is None or ret["by"] != owner:
                raise StateRuleError(
                    "not_retired_by_owner", "units were retired by another org", where
                )
            if not (ref_start <= ret["periodStart"] and ret["periodEnd"] <= ref_end):
                raise StateRuleError(
                    "period_outside_reference",
                    "retirement period is not inside the footprint's reference period",
                    where,
                )
        out.append((start, end, segs))
    return out


def apply_claims(tx: Tx, kind: str, checked: list[tuple[int, int, list[Segment]]], pf_id: str) -> None:
    """Bind retired units to footprint ``pf_id``: each unit backs one claim, ever."""
    change: Callable[[dict[str, Any]], dict[str, Any]] = lambda v: {**v, "c": pf_id}  # noqa: E731
    record = claim_record(pf_id)
    prev_end = -1
    for start, end, segs in checked:
        # The ranges come sorted and disjoint. Rewriting the previous range
        # changed at most the segments up to and including the one starting
        # at its end (a merged neighbor); re-read only if this range's
        # segments begin there.
        if segs[0].start <= prev_end:
            segs = covering(tx.kv, kind, start, end)
        # Only this entry's earlier ranges hold claims of pf_id, a new id:
        # a neighbor can merge only if the previous range ended here.
        changed = rewrite(
            tx.kv, kind, start, end, segs, change, merge_before=start == prev_end, merge_after=False
        )
        prev_end = end
        _history(tx, kind, changed, record)
        tx.emit("units.claimed", range_label(kind, start, end), pf_id)
