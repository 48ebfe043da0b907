"""The events of expensive entries, derived once and shared by subscribers.

A deprecation's events name every footprint downstream of the deprecated
one that existed when it was made (:func:`node.events.operation_events`),
and deriving them walks that whole graph: 100,000 reads for a steel grade
that 100,000 footprints use. Every subscriber reads every entry, live ones
together right after the commit and resuming ones later, so without sharing
a hundred subscribers walk the same graph a hundred times on the node's read
threads for the same answer.

The answer can be shared because it never changes: the events of the
accepted entry at an index are a pure function of the log up to it (the
deprecation's index is in the deprecated footprint's record, components
never change, and footprints published later are left out by index). So an
:class:`EventCache` holds one ledger's derived events by entry index. It
belongs to one ledger: the same index in another ledger is another entry,
and a process may serve several ledgers (a test cluster, the bench).

Only entries that walk the downstream graph go through it
(:func:`node.events.walks_downstream`); every other entry's events come
from the entry alone and are cheaper to derive than to look up, so they
never touch the lock or take room. Of those, results naming fewer than
:data:`MIN_KEPT_REFS` refs are shared with readers waiting at that moment
but not kept, so that a run of small re-versions does not push out the
walks worth keeping.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ledger.kv import KV
from node.events import LedgerEvent, entry_operation, operation_events, walks_downstream

__all__ = ["DEFAULT_MAX_REFS", "MIN_KEPT_REFS", "CacheStats", "EventCache"]

#: Refs (footprint ids and owner ids in the events' ``refs``) one ledger's
#: cache holds. A ref costs about 100 bytes (a 36-character footprint id is
#: an 85-byte str, plus its slot in a tuple; measured with tracemalloc), so
#: the default holds about 100 MB at most: the events of ten deprecations of
#: footprints that 100,000 others use. A deprecation whose events name more
#: than this is not kept (readers at the same moment still share one walk).
DEFAULT_MAX_REFS = 1_000_000
#: Fewer refs than this and an entry's events are not kept: their walk read
#: fewer footprints than that, about what reading the stream's entries
#: around it costs.
MIN_KEPT_REFS = 100


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counts since the cache was made, and what it holds now.

    ``hits``: answers from kept events; ``derived``: derivations run;
    ``shared``: readers that waited for another reader's derivation of the
    same entry instead of running their own; ``evicted``: entries dropped to
    stay within the bound."""

    entries: int
    refs: int
    hits: int
    derived: int
    shared: int
    evicted: int


class _Flight:
    """One derivation in progress; readers of the same entry wait on it."""

    __slots__ = ("done", "events")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.events: tuple[LedgerEvent, ...] | None = None  # None once done: it failed


def _refs(events: Iterable[LedgerEvent]) -> int:
    return sum(len(e.refs) for e in events)


class EventCache:
    """One ledger's derived events of entries that walk downstream, kept by
    entry index, least recently used first out, within ``max_refs`` refs.
    Thread-safe: subscribers read in the node's worker threads."""

    def __init__(self, max_refs: int = DEFAULT_MAX_REFS, *, min_refs: int = MIN_KEPT_REFS) -> None:
        # An entry naming no refs would take no room, and the entries kept
        # would have no bound; it was one empty read to derive anyway.
        if max_refs < 0 or min_refs < 1:
            raise ValueError("max_refs must not be negative, nor min_refs less than 1")
        self._max_refs = max_refs
        self._min_refs = min_refs
        self._lock = threading.Lock()
        self._kept: OrderedDict[int, tuple[LedgerEvent, ...]] = OrderedDict()
        self._refs = 0
        self._flights: dict[int, _Flight] = {}
        self._hits = self._derived = self._shared = self._evicted = 0

    def events_for_entry(self, kv: KV, index: int, entry: bytes) -> Sequence[LedgerEvent]:
        """What :func:`node.events.events_for_entry` gives for the accepted
        ``entry`` at ``index`` of this cache's ledger, read against ``kv``
        (a state holding the entry), shared with other readers of the same
        entry when its derivation walks downstream (the shared events are a
        tuple: readers in other threads hold the same one)."""
        op = entry_operation(entry)
        if op is None:
            return ()
        if not walks_downstream(op):
            return operation_events(kv, index, op)
        return self.get_or_derive(index, lambda: operation_events(kv, index, op))

    def get_or_derive(self, index: int, derive: Callable[[], Iterable[LedgerEvent]]) -> tuple[LedgerEvent, ...]:
        """The kept events of the entry at ``index``, or ``derive()``'s.

        One reader derives; readers of the same index meanwhile wait for its
        result. If ``derive`` raises, the exception goes to that reader only
        and nothing is kept: the readers that were waiting go round again,
        and one of them derives (a failure, such as a read that hit a full
        reader table, must not become every reader's answer, nor the key's
        for good)."""
        while True:
            with self._lock:
                kept = self._kept.get(index)
                if kept is not None:
                    self._kept.move_to_end(index)
                    self._hits += 1
                    return kept
                flight = self._flights.get(index)
                if flight is None:
                    flight = self._flights[index] = _Flight()
                    self._derived += 1
                    deriving = True
                else:
                    self._shared += 1
                    deriving = False
            if deriving:
                return self._derive(index, flight, derive)
            flight.done.wait()
            if flight.events is not None:
                return flight.events

    def _derive(
        self, index: int, flight: _Flight, derive: Callable[[], Iterable[LedgerEvent]]
    ) -> tuple[LedgerEvent, ...]:
        try:
            events = tuple(derive())
        except BaseException:
            with self._lock:
                del self._flights[index]
            flight.done.set()  # events None: waiters go round again
            raise
        with self._lock:
            del self._flights[index]
            self._keep(index, events)
        flight.events = events
        flight.done.set()
        return events

    def _keep(self, index: int, events: tuple[LedgerEvent, ...]) -> None:
        """Requires the lock."""
        refs = _refs(events)
        if refs < self._min_refs or refs > self._max_refs:
            return
        while self._refs + refs > self._max_refs:
            _, dropped = self._kept.popitem(last=False)
            self._refs -= _refs(dropped)
            self._evicted += 1
        self._kept[index] = events
        self._refs += refs

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(len(self._kept), self._refs, self._hits, self._derived, self._shared, self._evicted)
