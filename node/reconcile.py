"""Reconciliation: an exchange's books against the ledger at a checkpoint.

Books come as rows: a serial range of a batch held by an account, or a total
amount of a kind (optionally of one batch) held by an account. Serial rows are
compared unit by unit; amount rows by total. An account reconciled by serial
rows also gets every ledger range it holds that the books do not list. Every
mismatch names the entries that prove the ledger's side: for each run of
units, the last entry that changed it, which with an inclusion proof against
the checkpoint proves who holds the units and in what status.

Two ways to the same answer:

- :func:`reconcile_current`, at the state's own tree size: the state's
  segments (by serial, and by owner) give owners and statuses, so a row costs
  O(log n + the segments it covers) and an account's holdings O(account).
  The proving entries come from :class:`LastChanges`, an index of the last
  entry to change each run of units that is brought up to date from the
  history records written since its last use (one seek per batch).
- :func:`reconcile`, at any tree size ``N``: replays the whole unit history
  (``ledger.state.queries.unit_history``) up to ``N``. O(history of the kinds
  reconciled); used for sizes older than the state.

Both split the ledger's side into the same runs: a run ends wherever some
history record starts or ends, and a stored segment (a maximal run of equal
owner, status, batch and claim) always ends at such a point, so the answers
are equal, list for list (tests compare them on random books).

:class:`Reconciler` picks the path, keeps the indexes of one ledger, and
remembers the last few answers so that later pages of an answer do not
replay an older tree size.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sortedcontainers import SortedList  # type: ignore[import-untyped]

from ledger.errors import MalformedError, NotFound
from ledger.kv import KV
from ledger.log import snapshot_size, time_at
from ledger.state import queries
from ledger.storage.base import Table, u64

__all__ = [
    "MAX_ROWS",
    "BookRow",
    "LastChanges",
    "Mismatch",
    "Reconciler",
    "reconcile",
    "reconcile_current",
    "stored_checkpoint",
]

#: Most book rows in one request.
MAX_ROWS = 100_000
_KINDS = ("gec", "ccer")
_ALL_UNITS = 1 << 62
_MAX_PROOFS = 64

NOT_HELD_ON_LEDGER = "NOT_HELD_ON_LEDGER"
MISSING_FROM_BOOKS = "MISSING_FROM_BOOKS"
AMOUNT_DIFFERS = "AMOUNT_DIFFERS"
STATUS_DIFFERS = "STATUS_DIFFERS"


@dataclass(frozen=True, slots=True)
class BookRow:
    account: str
    kind: str
    batch: str = ""
    start: int = 0
    end: int = 0
    amount: int = 0

    @property
    def is_range(self) -> bool:
        return self.end > self.start


@dataclass(frozen=True, slots=True)
class Mismatch:
    kind: str
    account: str
    asset: str
    batch: str
    start: int
    end: int
    books_amount: int
    ledger_amount: int
    detail: str
    proving_indexes: tuple[int, ...]
    row: int = -1


@dataclass(slots=True)
class _Run:
    end: int
    batch: str
    owner: str
    status: str = "held"
    last: int = 0
    claim: str | None = None


@dataclass(slots=True)
class _Units:
    """Disjoint runs of units keyed by start serial."""

    starts: list[int] = field(default_factory=list)
    runs: dict[int, _Run] = field(default_factory=dict)

    def _split(self, at: int) -> None:
        i = bisect.bisect_right(self.starts, at) - 1
        if i < 0:
            return
        s = self.starts[i]
        run = self.runs[s]
        if s < at < run.end:
            self.runs[at] = _Run(run.end, run.batch, run.owner, run.status, run.last, run.claim)
            run.end = at
            self.starts.insert(i + 1, at)

    def add(self, start: int, run: _Run) -> None:
        bisect.insort(self.starts, start)
        self.runs[start] = run

    def within(self, start: int, end: int) -> list[tuple[int, _Run]]:
        """The runs of [start, end), split at its edges."""
        self._split(start)
        self._split(end)
        lo = bisect.bisect_left(self.starts, start)
        hi = bisect.bisect_left(self.starts, end)
        return [(s, self.runs[s]) for s in self.starts[lo:hi]]

    def overlapping(self, start: int, end: int) -> list[tuple[int, int, _Run]]:
        """Runs clipped to [start, end), without splitting anything."""
        i = max(0, bisect.bisect_right(self.starts, start) - 1)
        out = []
        for s in self.starts[i:]:
            if s >= end:
                break
            run = self.runs[s]
            if run.end > start:
                out.append((max(s, start), min(run.end, end), run))
        return out


def _replay(kv: KV, kind: str, tree_size: int) -> _Units:
    units = _Units()
    for ev in queries.unit_history(kv, kind, 0, _ALL_UNITS):
        if ev.index >= tree_size:
            continue  # history is sorted by index per kind, but be safe
        detail = dict(ev.detail)
        if ev.op == "issue":
            units.add(ev.start, _Run(ev.end, ev.batch, detail.get("to", ""), last=ev.index))
            continue
        for _s, run in units.within(ev.start, ev.end):
            run.last = ev.index
            if ev.op == "transfer":
                run.owner = detail.get("to", run.owner)
            elif ev.op == "retire":
                run.status = "retired"
            elif ev.op == "freeze":
                run.status = "frozen"
            elif ev.op == "claim":
                run.claim = detail.get("pf")
    return units


def _check_rows(rows: Sequence[BookRow]) -> None:
    if len(rows) > MAX_ROWS:
        raise MalformedError("rows", f"at most {MAX_ROWS} rows")
    for i, row in enumerate(rows):
        if row.kind not in _KINDS:
            raise MalformedError(f"rows[{i}].kind", f"must be one of {_KINDS}")
        if not row.account:
            raise MalformedError(f"rows[{i}].account", "required")
        if row.is_range == (row.amount > 0):
            raise MalformedError(f"rows[{i}]", "give either a serial range (start < end) or an amount")
    _check_no_unit_twice(rows)


def _check_no_unit_twice(rows: Sequence[BookRow]) -> None:
    """Refuse books that count units twice: serial rows of one account and
    kind that overlap, or two amount rows for the same account, kind and
    batch. Each row is compared with the ledger on its own, so such books
    would reconcile as matching while their totals exceed what is held."""
    ranges: dict[tuple[str, str], list[tuple[int, int, int]]] = {}
    totals: dict[tuple[str, str, str], int] = {}
    for i, row in enumerate(rows):
        if row.is_range:
            ranges.setdefault((row.account, row.kind), []).append((row.start, row.end, i))
            continue
        first = totals.setdefault((row.account, row.kind, row.batch), i)
        if first != i:
            raise MalformedError(
                f"rows[{i}]", f"repeats the amount of rows[{first}] ({row.account}, {row.kind} {row.batch or 'all batches'})"
            )
    for (account, kind), spans in ranges.items():
        spans.sort()
        for (_, e0, i0), (s1, e1, i1) in itertools.pairwise(spans):
            if s1 < e0:
                first, second = sorted((i0, i1))
                raise MalformedError(
                    f"rows[{second}]", f"overlaps rows[{first}]: {account} {kind} {s1}-{min(e0, e1)} is listed twice"
                )


def _proofs(indexes: Sequence[int]) -> tuple[int, ...]:
    return tuple(sorted(set(indexes)))[:_MAX_PROOFS]


def reconcile(kv: KV, rows: Sequence[BookRow], tree_size: int, time: int | None = None) -> list[Mismatch]:
    """Every mismatch between ``rows`` and the ledger at ``tree_size``, by
    replaying the unit history.

    Requires ``kv`` to be the state at a size of at least ``tree_size``.
    """
    _check_rows(rows)
    units = {kind: _replay(kv, kind, tree_size) for kind in sorted({r.kind for r in rows})}
    return _compare(rows, _expiring(_ReplayedView(units), kv, time))


#: A run of units as the comparison sees it: ``(start, end, owner, status,
#: batch, last)``, ``last`` being the last entry that changed it.
_Piece = tuple[int, int, str, str, str, int]


class _View(Protocol):
    """The ledger's side of a comparison, as runs in serial order."""

    def over(self, kind: str, start: int, end: int) -> Iterable[_Piece]:
        """The runs of ``[start, end)``, clipped to it."""
        ...

    def held(self, account: str, kind: str) -> Iterable[_Piece]:
        """The runs that ``account`` holds (status "held")."""
        ...


class _ReplayedView:
    def __init__(self, units: Mapping[str, _Units]) -> None:
        self._units = units

    def over(self, kind: str, start: int, end: int) -> Iterator[_Piece]:
        for s, e, run in self._units[kind].overlapping(start, end):
            yield s, e, run.owner, run.status, run.batch, run.last

    def held(self, account: str, kind: str) -> Iterator[_Piece]:
        for s, e, run in self._units[kind].overlapping(0, _ALL_UNITS):
            if run.owner == account and run.status == "held":
                yield s, e, run.owner, run.status, run.batch, run.last


class _ExpiringView:
    """Held units of a batch past its validity end, as of ``time``, shown
    as "expired" and not held: they can no longer move or be retired (the
    state machine refuses it), so books that still count them are wrong.
    The state stores no such status; the batch's ``validityEnd`` decides."""

    def __init__(self, view: _View, kv: KV, time: int) -> None:
        self._view = view
        self._expired = queries.ExpiredBatches(kv, time)

    def over(self, kind: str, start: int, end: int) -> Iterator[_Piece]:
        for s, e, owner, status, batch, last in self._view.over(kind, start, end):
            if status == "held" and self._expired(kind, batch):
                status = queries.EXPIRED
            yield s, e, owner, status, batch, last

    def held(self, account: str, kind: str) -> Iterator[_Piece]:
        for piece in self._view.held(account, kind):
            if not self._expired(kind, piece[4]):
                yield piece


def _expiring(view: _View, kv: KV, time: int | None) -> _View:
    return view if time is None else _ExpiringView(view, kv, time)


def _compare(rows: Sequence[BookRow], view: _View) -> list[Mismatch]:
    out: list[Mismatch] = []
    covered: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for i, row in enumerate(rows):
        if not row.is_range:
            held = [p for p in view.held(row.account, row.kind) if not row.batch or p[4] == row.batch]
            total = sum(p[1] - p[0] for p in held)
            if total != row.amount:
                out.append(Mismatch(
                    AMOUNT_DIFFERS, row.account, row.kind, row.batch, 0, 0, row.amount, total,
                    f"ledger holds {total} units", _proofs([p[5] for p in held]), i,
                ))  # fmt: skip
            continue
        covered.setdefault((row.account, row.kind), []).append((row.start, row.end))
        cursor = row.start
        for s, e, owner, status, batch, last in view.over(row.kind, row.start, row.end):
            if s > cursor:
                out.append(Mismatch(
                    NOT_HELD_ON_LEDGER, row.account, row.kind, row.batch, cursor, s, s - cursor, 0,
                    "units not issued", (), i,
                ))  # fmt: skip
            cursor = e
            if owner != row.account:
                kind, detail = NOT_HELD_ON_LEDGER, f"held by {owner}"
            elif status != "held":
                kind, detail = STATUS_DIFFERS, status
            elif row.batch and batch != row.batch:
                kind, detail = NOT_HELD_ON_LEDGER, f"units belong to batch {batch}"
            else:
                continue
            out.append(Mismatch(
                kind, row.account, row.kind, batch, s, e, e - s, e - s if kind == STATUS_DIFFERS else 0,
                detail, (last,), i,
            ))  # fmt: skip
        if cursor < row.end:
            out.append(Mismatch(
                NOT_HELD_ON_LEDGER, row.account, row.kind, row.batch, cursor, row.end, row.end - cursor, 0,
                "units not issued", (), i,
            ))  # fmt: skip
    for (account, kind), ranges in sorted(covered.items()):
        out.extend(_missing_from_books(account, kind, ranges, view))
    return out


def _missing_from_books(account: str, kind: str, ranges: list[tuple[int, int]], view: _View) -> Iterator[Mismatch]:
    """The units ``account`` holds that none of its serial ``ranges`` lists.

    Requires ``ranges`` to be disjoint (``_check_no_unit_twice``), so that,
    sorted by start, their ends are sorted too: each held run bisects to the
    first range ending past its start and walks only the ranges it meets.
    That costs O((runs + rows) log rows), where comparing every run with
    every row cost O(runs x rows).
    """
    ranges.sort()
    ends = [re_ for _, re_ in ranges]
    for s, e, _owner, _status, batch, last in view.held(account, kind):
        cursor = s
        i = bisect.bisect_right(ends, s)
        while i < len(ranges) and ranges[i][0] < e:
            rs, re_ = ranges[i]
            if rs > cursor:
                yield _missing(account, kind, batch, last, cursor, rs)
            cursor = max(cursor, re_)
            i += 1
        if cursor < e:
            yield _missing(account, kind, batch, last, cursor, e)


def _missing(account: str, kind: str, batch: str, last: int, s: int, e: int) -> Mismatch:
    return Mismatch(MISSING_FROM_BOOKS, account, kind, batch, s, e, 0, e - s, "held on the ledger", (last,))



# --- at the state's own size ----------------------------------------------------------


class LastChanges:
    """For every issued unit of one kind, the last entry that changed it, as
    of tree size :attr:`size`.

    Kept as runs split at both ends of every history record and never merged,
    as the replay keeps them. :meth:`advance` applies the records written
    since; a run costs under 200 bytes of memory (there is a run per record
    end, so at most two per unit-moving entry).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.size = 0
        self._starts = SortedList()
        self._runs: dict[int, tuple[int, int]] = {}  # start -> (end, last)

    def __len__(self) -> int:
        return len(self._runs)

    def advance(self, kv: KV, size: int) -> None:
        """Apply the history records of entries ``[self.size, size)``.

        Requires ``kv`` to be the state at tree size ``size``, and ``size``
        not below :attr:`size`.
        """
        if size < self.size:
            raise ValueError(f"{self.kind} changes are at size {self.size}, past {size}")
        if size == self.size:
            return
        for ev in queries.unit_history_since(kv, self.kind, self.size):
            if ev.op == "issue":
                self._starts.add(ev.start)
                self._runs[ev.start] = (ev.end, ev.index)
                continue
            self._split(ev.start)
            self._split(ev.end)
            for s in self._starts.irange(ev.start, ev.end, inclusive=(True, False)):
                self._runs[s] = (self._runs[s][0], ev.index)
        self.size = size

    def _split(self, at: int) -> None:
        i = self._starts.bisect_right(at) - 1
        if i < 0:
            return
        s = self._starts[i]
        end, last = self._runs[s]
        if s < at < end:
            self._runs[s] = (at, last)
            self._runs[at] = (end, last)
            self._starts.add(at)

    def runs(self, start: int, end: int) -> Iterator[tuple[int, int, int]]:
        """``(s, e, last)`` for the runs of ``[start, end)``, clipped to it, in
        serial order (nothing for units never issued)."""
        i = max(0, self._starts.bisect_right(start) - 1)
        for s in self._starts.islice(i):
            if s >= end:
                return
            e, last = self._runs[s]
            if e > start:
                yield max(s, start), min(e, end), last


def reconcile_current(
    kv: KV, rows: Sequence[BookRow], changes: Mapping[str, LastChanges], time: int | None = None
) -> list[Mismatch]:
    """Every mismatch between ``rows`` and the ledger at the state's size,
    equal to :func:`reconcile` at that size.

    Requires ``changes[kind]``, for every kind in ``rows``, to be advanced to
    the tree size of ``kv``.
    """
    _check_rows(rows)
    return _compare(rows, _expiring(_StateView(kv, changes), kv, time))


class _StateView:
    """Owners and statuses from the state's segments (by serial, or by
    owner); each segment split into the runs of :class:`LastChanges`."""

    def __init__(self, kv: KV, changes: Mapping[str, LastChanges]) -> None:
        self._kv = kv
        self._changes = changes

    def over(self, kind: str, start: int, end: int) -> Iterator[_Piece]:
        runs = self._changes[kind].runs
        for seg in queries.unit_runs(self._kv, kind, start, end):
            for s, e, last in runs(max(seg.start, start), min(seg.end, end)):
                yield s, e, seg.owner, seg.status, seg.batch, last

    def held(self, account: str, kind: str) -> Iterator[_Piece]:
        runs = self._changes[kind].runs
        for seg in queries.account_runs(self._kv, account, kind):
            if seg.status == "held":
                for s, e, last in runs(seg.start, seg.end):
                    yield s, e, seg.owner, seg.status, seg.batch, last


def stored_checkpoint(ledger: Any, size: int) -> str:
    """``ledger``'s signed checkpoint of a size a reconciliation answered at.

    Read from the store, not the ledger's head: a size taken from a read
    transaction can be one whose commit the ledger has not yet published
    (``Ledger.checkpoint`` would refuse it as past the log for a moment).
    Every such size ends a block, so its checkpoint is stored.
    """
    with ledger.store.read() as txn:
        stored = txn.get(Table.CHECKPOINTS, u64(size))
    return stored.decode() if stored is not None else ledger.checkpoint(size)  # type: ignore[no-any-return]


class Reconciler:
    """Reconciliation against one ledger, safe to call from several threads.

    At the state's own tree size (what ``tree_size=0`` asks for) it uses
    :func:`reconcile_current` and keeps one :class:`LastChanges` per kind,
    advanced under a lock by each call; an older size is replayed. The last
    few answers are kept by (size, rows), so the later pages of one answer
    come from memory even after the log has grown.

    ``ledger`` needs ``store`` (read transactions holding the blocks and the
    state) and nothing else.
    """

    #: Answers kept for later pages.
    KEEP = 4

    def __init__(self, ledger: Any) -> None:
        self._ledger = ledger
        self._lock = threading.Lock()  # the indexes
        self._answers_lock = threading.Lock()
        self._changes: dict[str, LastChanges] = {}
        self._answers: OrderedDict[tuple[int, tuple[BookRow, ...]], list[Mismatch]] = OrderedDict()

    def reconcile(self, rows: Sequence[BookRow], tree_size: int = 0) -> tuple[int, list[Mismatch]]:
        """``(size, mismatches)`` at ``tree_size`` (0: the latest).

        Raises MalformedError for bad rows, NotFound for a size past the log.
        """
        _check_rows(rows)
        books = tuple(rows)
        if tree_size:
            found = self._remembered(tree_size, books)
            if found is not None:
                return tree_size, found
        with self._lock, self._ledger.store.read() as txn:
            size = snapshot_size(txn)
            if tree_size > size:
                raise NotFound("tree size", tree_size)
            if tree_size in (0, size):
                kv = txn.kv(Table.STATE)
                changes = {kind: self._advanced(kv, kind, size) for kind in sorted({r.kind for r in books})}
                out = reconcile_current(kv, books, changes, time_at(txn, size))
                self._remember(size, books, out)
                return size, out
        # An older tree: replay, outside the lock (the indexes are not used).
        with self._ledger.store.read() as txn:
            out = reconcile(txn.kv(Table.STATE), books, tree_size, time_at(txn, tree_size))
        self._remember(tree_size, books, out)
        return tree_size, out

    def checkpoint(self, size: int) -> str:
        """The signed checkpoint of a size :meth:`reconcile` answered at
        (see :func:`stored_checkpoint`)."""
        return stored_checkpoint(self._ledger, size)

    def _advanced(self, kv: KV, kind: str, size: int) -> LastChanges:
        changes = self._changes.get(kind)
        if changes is None:
            changes = self._changes[kind] = LastChanges(kind)
        changes.advance(kv, size)
        return changes

    def _remembered(self, size: int, books: tuple[BookRow, ...]) -> list[Mismatch] | None:
        with self._answers_lock:
            found = self._answers.get((size, books))
            if found is not None:
                self._answers.move_to_end((size, books))
            return found

    def _remember(self, size: int, books: tuple[BookRow, ...], out: list[Mismatch]) -> None:
        with self._answers_lock:
            self._answers[(size, books)] = out
            self._answers.move_to_end((size, books))
            while len(self._answers) > self.KEEP:
                self._answers.popitem(last=False)
