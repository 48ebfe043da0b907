"""Events for subscribers, derived from entries and the state they produced.

The log stores entries, not the events the state machine emitted while
applying them, so a subscription that resumes from an old index derives the
events again from each entry and the current state. This works because the
facts involved are never rewritten: a retirement is in its entry, a
deprecation's index is in the deprecated footprint's record, and the
footprints it made stale are those downstream of it that were published
before it (components never change). The same function serves live
subscribers, so a resumed stream and a live one carry exactly the same events.
A deprecation's events walk its whole downstream graph, so the node derives
them once per ledger and shares them between subscribers
(:mod:`node.event_cache`, which uses :func:`walks_downstream` to tell those
entries from the cheap ones).

Kinds: ``entry`` (every entry, with its op type), ``units.transferred``,
``units.retired`` (GEC retirement or CCER cancellation, refs = the holder),
``footprint.deprecated`` and ``footprint.stale`` (subject = the deprecated
footprint, refs = footprints downstream that became stale, at most
:data:`MAX_STALE_PER_EVENT` per event, then their owners; a deprecation that
made more stale gives several such events).

A submitter's receipt carries the events the state machine emitted. The state
machine no longer walks downstream at a deprecation, so
:func:`with_stale_events` adds the ``footprint.stale`` events it used to emit
(refs = the footprints only, the first :data:`MAX_STALE_EVENTS_PER_RECEIPT`
events of them), read here, off the sequencer's path.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ledger.envelope import parse_envelope
from ledger.errors import LedgerError, MalformedError
from ledger.kv import KV
from ledger.records import Operation, parse_operation
from ledger.records.ops import OP_TYPES
from ledger.state import Event, queries

__all__ = [
    "KINDS",
    "EventFilter",
    "LedgerEvent",
    "entry_operation",
    "events_for_entry",
    "operation_events",
    "walks_downstream",
    "with_stale_events",
]

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


#: Footprints one ``footprint.stale`` event names. A deprecation that made
#: more stale gives several events, in order: one event (one message of the
#: stream) naming them all would pass gRPC's message size with about 200,000,
#: and every subscriber resuming across it would fail there for good.
MAX_STALE_PER_EVENT = 1_000
#: ``footprint.stale`` events a Submit receipt carries per deprecation (so
#: up to 10,000 footprints); the event stream carries them all.
MAX_STALE_EVENTS_PER_RECEIPT = 10


def _stale_chunks(kv: KV, root: str, index: int) -> list[tuple[str, ...]]:
    """Footprints made stale by the deprecation of ``root`` at ``index``
    (see :func:`ledger.state.queries.made_stale_by`), at most
    :data:`MAX_STALE_PER_EVENT` per chunk, each followed by those
    footprints' owners (so that an owner's subscription sees them)."""
    stale = queries.made_stale_by(kv, root, index)
    chunks = []
    for lo in range(0, len(stale), MAX_STALE_PER_EVENT):
        part = stale[lo : lo + MAX_STALE_PER_EVENT]
        owners = dict.fromkeys(owner for _, owner in part)
        chunks.append((*(pf for pf, _ in part), *owners))
    return chunks


def with_stale_events(kv: KV, index: int, events: Sequence[Event]) -> tuple[Event, ...]:
    """The state machine's ``events`` for the entry at ``index``, with a
    ``footprint.stale`` event after each ``footprint.deprecated`` one that
    made footprints stale: subject the deprecated footprint, refs those
    footprints (no owners) in the order of :func:`_stale_chunks`, at most
    :data:`MAX_STALE_PER_EVENT` per event and
    :data:`MAX_STALE_EVENTS_PER_RECEIPT` events. ``kv`` may be any state
    holding the entry: later footprints are left out by index."""
    out: list[Event] = []
    for event in events:
        out.append(event)
        if event.kind == "footprint.deprecated":
            most = MAX_STALE_PER_EVENT * MAX_STALE_EVENTS_PER_RECEIPT
            stale = queries.made_stale_by(kv, event.subject, index, limit=most)
            for lo in range(0, len(stale), MAX_STALE_PER_EVENT):
                part = stale[lo : lo + MAX_STALE_PER_EVENT]
                out.append(Event("footprint.stale", event.subject, tuple(pf for pf, _ in part)))
    return tuple(out)


def _deprecated_by(kv: KV, candidates: Iterable[str], index: int) -> list[str]:
    out = []
    for pf in candidates:
        try:
            if queries.deprecated_at(kv, pf) == index:
                out.append(pf.lower())
        except LedgerError:
            continue
    return out


def entry_operation(entry: bytes) -> Operation | None:
    """The operation an entry carries, or None for an entry that is not a
    signed operation (a plain log without the state machine)."""
    try:
        return parse_operation(parse_envelope(entry).payload)
    except LedgerError:
        return None


def walks_downstream(op: Operation) -> bool:
    """Whether deriving ``op``'s events walks the downstream graph: a
    deprecation, or a new version that deprecates the ones it names. Only
    these are expensive to derive (the walk is unbounded); every other
    entry's events come from the entry alone."""
    if op.op == "pcf.deprecate":
        return True
    return op.op == "pcf.publish" and op.footprint is not None and bool(op.footprint.preceding)


def operation_events(kv: KV, index: int, op: Operation) -> list[LedgerEvent]:
    """The events of the (accepted) entry at ``index`` carrying ``op``, read
    against ``kv`` (see :func:`events_for_entry`)."""
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
            for chunk in _stale_chunks(kv, root, index):
                events.append(LedgerEvent(index, "footprint.stale", op.op, op.org, root, chunk))
    return events


def events_for_entry(kv: KV, index: int, entry: bytes) -> list[LedgerEvent]:
    """The events of the (accepted) entry at ``index``, read against ``kv``."""
    op = entry_operation(entry)
    return [] if op is None else operation_events(kv, index, op)
