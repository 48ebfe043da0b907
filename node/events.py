"""Events for subscribers, derived from entries and the state they produced.

The log stores entries, not the events the state machine emitted while
applying them, so a subscription that resumes from an old index derives the
events again from each entry and the current state. This works because the
facts involved are never rewritten: a retirement is in its entry, and a
footprint made stale by a deprecation keeps a stale mark naming that entry's
index. The same function serves live subscribers, so a resumed stream and a
live one carry exactly the same events.

Kinds: ``entry`` (every entry, with its op type), ``units.transferred``,
``units.retired`` (GEC retirement or CCER cancellation, refs = the holder),
``footprint.deprecated`` and ``footprint.stale`` (subject = the deprecated
footprint, refs = every footprint downstream that became stale, then their
owners).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ledger.envelope import parse_envelope
from ledger.errors import LedgerError, MalformedError
from ledger.kv import KV
from ledger.records import parse_operation
from ledger.records.ops import OP_TYPES
from ledger.state import queries

__all__ = ["KINDS", "EventFilter", "LedgerEvent", "events_for_entry"]

_RETIRE_OPS = {"gec.retire": "gec", "ccer.cancel": "ccer"}
_TRANSFER_OPS = {"gec.transfer": "gec", "ccer.transfer": "ccer"}


@dataclass(frozen=True, slots=True)
class LedgerEvent:
    index: int
    kind: str
    op: str
    org: str
    subject: str
    refs: tuple[str, ...] = ()


#: Every kind :func:`events_for_entry` makes.
KINDS = frozenset({"entry", "units.transferred", "units.retired", "footprint.deprecated", "footprint.stale"})


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Empty sets match everything. A kind or operation type that no event
    can have is refused (MalformedError): a subscriber with a typo would
    otherwise wait for ever."""

    kinds: frozenset[str] = frozenset()
    op_types: frozenset[str] = frozenset()
    accounts: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for field, given, known in (("kinds", self.kinds, KINDS), ("op_types", self.op_types, OP_TYPES.keys())):
            unknown = sorted(given - known)
            if unknown:
                raise MalformedError(field, f"no event has {unknown[0][:64]!r}; known: {', '.join(sorted(known))}")

    def matches(self, event: LedgerEvent) -> bool:
        if self.kinds and event.kind not in self.kinds:
            return False
        if self.op_types and event.op not in self.op_types:
            return False
        return not (self.accounts and event.org not in self.accounts and not self.accounts.intersection(event.refs))


def _stale_from(kv: KV, root: str, index: int) -> list[str]:
    """Footprints marked stale by the deprecation of ``root`` at ``index``,
    then their owners (so that an owner's subscription sees them)."""
    out: list[str] = []
    owners: list[str] = []
    queue, seen = [root], {root}
    while queue:
        for down in queries.downstream_of(kv, queue.pop(0)):
            if down in seen:
                continue
            seen.add(down)
            info = queries.get_footprint(kv, down)
            if any(m.root == root and m.index == index for m in info.stale_marks):
                out.append(down)
                queue.append(down)
                if info.owner not in owners:
                    owners.append(info.owner)
    return out + owners if out else []


def _deprecated_by(kv: KV, candidates: Iterable[str], index: int) -> list[str]:
    out = []
    for pf in candidates:
        try:
            if queries.get_footprint(kv, pf).deprecated == index:
                out.append(pf.lower())
        except LedgerError:
            continue
    return out


def events_for_entry(kv: KV, index: int, entry: bytes) -> list[LedgerEvent]:
    """The events of the (accepted) entry at ``index``, read against ``kv``."""
    try:
        op = parse_operation(parse_envelope(entry).payload)
    except LedgerError:
        return []  # a plain log without the state machine: nothing to say
    events = [LedgerEvent(index, "entry", op.op, op.org, op.op)]
    body = op.body
    if op.op in _RETIRE_OPS:
        label = f"{_RETIRE_OPS[op.op]}:{body.start}-{body.end}"  # type: ignore[attr-defined]
        events.append(LedgerEvent(index, "units.retired", op.op, op.org, label, (op.org,)))
    elif op.op in _TRANSFER_OPS:
        label = f"{_TRANSFER_OPS[op.op]}:{body.start}-{body.end}"  # type: ignore[attr-defined]
        to = body.to  # type: ignore[attr-defined]
        events.append(LedgerEvent(index, "units.transferred", op.op, op.org, label, (op.org, to)))
    elif op.op in ("pcf.deprecate", "pcf.publish"):
        if op.op == "pcf.deprecate":
            candidates: Iterable[str] = [body.pfId]  # type: ignore[attr-defined]
        else:
            candidates = op.footprint.preceding if op.footprint is not None else ()
        for root in _deprecated_by(kv, candidates, index):
            events.append(LedgerEvent(index, "footprint.deprecated", op.op, op.org, root))
            stale = _stale_from(kv, root, index)
            if stale:
                events.append(LedgerEvent(index, "footprint.stale", op.op, op.org, root, tuple(stale)))
    return events
