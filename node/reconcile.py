"""Reconciliation: an exchange's books against the ledger at a checkpoint.

The ledger's holdings at tree size ``N`` are rebuilt by replaying the unit
history (``ledger.state.queries.unit_history``: every issue, transfer,
retirement, freeze and claim, each with the index of its entry) up to ``N``.
Replaying also gives, for every run of units, the last entry that changed it:
that entry, with an inclusion proof against checkpoint ``N``, proves the
ledger's side of a mismatch.

Books come as rows: a serial range of a batch held by an account, or a total
amount of a kind (optionally of one batch) held by an account. Serial rows are
compared unit by unit; amount rows by total. An account reconciled by serial
rows also gets every ledger range it holds that the books do not list.

Cost: O(history of the kinds reconciled). That is fine for an exchange's
periodic run; an index of history by account would make it O(account).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

from ledger.errors import MalformedError
from ledger.kv import KV
from ledger.state import queries

__all__ = ["MAX_ROWS", "BookRow", "Mismatch", "reconcile"]

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


def _proofs(indexes: Sequence[int]) -> tuple[int, ...]:
    return tuple(sorted(set(indexes)))[:_MAX_PROOFS]


def reconcile(kv: KV, rows: Sequence[BookRow], tree_size: int) -> list[Mismatch]:
    """Every mismatch between ``rows`` and the ledger at ``tree_size``.

    Requires ``kv`` to be the state at a size of at least ``tree_size``.
    """
    _check_rows(rows)
    out: list[Mismatch] = []
    units = {kind: _replay(kv, kind, tree_size) for kind in sorted({r.kind for r in rows})}
    covered: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for i, row in enumerate(rows):
        u = units[row.kind]
        if not row.is_range:
            held = [
                (s, e, run) for s, e, run in u.overlapping(0, _ALL_UNITS)
                if run.owner == row.account and run.status == "held" and (not row.batch or run.batch == row.batch)
            ]  # fmt: skip
            total = sum(e - s for s, e, _ in held)
            if total != row.amount:
                out.append(Mismatch(
                    AMOUNT_DIFFERS, row.account, row.kind, row.batch, 0, 0, row.amount, total,
                    f"ledger holds {total} units", _proofs([run.last for _, _, run in held]), i,
                ))  # fmt: skip
            continue
        covered.setdefault((row.account, row.kind), []).append((row.start, row.end))
        cursor = row.start
        for s, e, run in u.overlapping(row.start, row.end):
            if s > cursor:
                out.append(Mismatch(
                    NOT_HELD_ON_LEDGER, row.account, row.kind, row.batch, cursor, s, s - cursor, 0,
                    "units not issued", (), i,
                ))  # fmt: skip
            cursor = e
            if run.owner != row.account:
                kind, detail = NOT_HELD_ON_LEDGER, f"held by {run.owner}"
            elif run.status != "held":
                kind, detail = STATUS_DIFFERS, run.status
            elif row.batch and run.batch != row.batch:
                kind, detail = NOT_HELD_ON_LEDGER, f"units belong to batch {run.batch}"
            else:
                continue
            out.append(Mismatch(
                kind, row.account, row.kind, run.batch, s, e, e - s, e - s if kind == STATUS_DIFFERS else 0,
                detail, (run.last,), i,
            ))  # fmt: skip
        if cursor < row.end:
            out.append(Mismatch(
                NOT_HELD_ON_LEDGER, row.account, row.kind, row.batch, cursor, row.end, row.end - cursor, 0,
                "units not issued", (), i,
            ))  # fmt: skip
    for (account, kind), ranges in sorted(covered.items()):
        ranges.sort()
        for s, e, run in units[kind].overlapping(0, _ALL_UNITS):
            if run.owner != account or run.status != "held":
                continue
            cursor = s
            for rs, re_ in ranges:
                if re_ <= cursor or rs >= e:
                    continue
                if rs > cursor:
                    out.append(_missing(account, kind, run, cursor, rs))
                cursor = max(cursor, re_)
            if cursor < e:
                out.append(_missing(account, kind, run, cursor, e))
    return out


def _missing(account: str, kind: str, run: _Run, s: int, e: int) -> Mismatch:
    return Mismatch(
        MISSING_FROM_BOOKS, account, kind, run.batch, s, e, 0, e - s, "held on the ledger", (run.last,)
    )
