"""Reconciliation: the path at the state's own size (state indexes and
LastChanges) against the replay of the unit history, on random ledgers and
random books; and the Reconciler's choice of path, answers and errors."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.errors import LedgerError, MalformedError, NotFound
from ledger.kv import MemoryKV
from ledger.state.queries import account_runs, get_batch, unit_runs
from node.reconcile import (
    AMOUNT_DIFFERS,
    MISSING_FROM_BOOKS,
    NOT_HELD_ON_LEDGER,
    STATUS_DIFFERS,
    BookRow,
    LastChanges,
    Reconciler,
    reconcile,
    reconcile_current,
)
from tests.test_node_support import Net, open_ledger
from tests.test_state_world import T0, Y2024, World

HOLDERS = ["GEN", "STEEL", "PARTS", "CARS", "EXCH"]
DAY = 86400

row_strategy = st.one_of(
    st.builds(
        lambda account, kind, batch, start, length: BookRow(account, kind, batch, start, start + length),
        st.sampled_from([*HOLDERS, "NOBODY"]),
        st.sampled_from(["gec", "gec", "gec", "ccer"]),
        st.sampled_from(["", "", "B0", "B1"]),
        st.integers(0, 520),
        st.integers(1, 150),
    ),
    st.builds(
        lambda account, kind, batch, amount: BookRow(account, kind, batch, amount=amount),
        st.sampled_from([*HOLDERS, "NOBODY"]),
        st.sampled_from(["gec", "ccer"]),
        st.sampled_from(["", "B0", "B2"]),
        st.integers(1, 400),
    ),
)


def new_world() -> World:
    w = World()
    w.gec_project(capacity_kw=10**6)
    w.gec_issue("B0", 300, period=(Y2024[0], Y2024[0] + DAY), validity=T0 + 5 * DAY)
    w.ok("ccer.validate_project", "VER", {"projectId": "C1", "name": "c", "methodology": "m", "proponent": "GEN", "creditingStart": Y2024[0], "creditingEnd": Y2024[1], "gecProjectId": "P1", "statement": "s"})
    return w


def drive(w: World, rng: random.Random, count: int, tag: str) -> None:
    """Apply ``count`` random operations, most of them valid: units move
    between holders in ranges that often abut (so segments merge over runs
    that different entries last changed), are retired, claimed, frozen,
    and new batches are issued. Rejected ones leave the state as it was."""
    for n in range(count):
        op = rng.choices(["transfer", "retire", "claim", "issue", "freeze", "any"], [12, 4, 2, 1, 0.3, 2])[0]
        start = rng.choice([10 * rng.randint(0, 44), rng.randint(0, 449)])
        if rng.random() < 0.5:  # the start of some segment
            start = rng.choice(list(unit_runs(w.kv, "gec", 0, 1 << 40))).start
        seg = next(unit_runs(w.kv, "gec", start, start + 1), None)
        if seg is None or seg.start > start:
            seg = None
        owner = seg.owner if seg is not None else rng.choice(HOLDERS)
        length = rng.choice([10, 20, rng.randint(1, 40)])
        if seg is not None and op != "any":
            length = min(length, seg.end - start)
        to = rng.choice([h for h in HOLDERS if h != owner])
        before = next(unit_runs(w.kv, "gec", start - 1, start), None) if start > 0 else None
        if before is not None and before.owner != owner and rng.random() < 0.6:
            to = before.owner  # the moved units merge with their left neighbor
        batches = sum(1 for _ in w.kv.scan(b"ab/gec/"))
        try:
            if op in ("transfer", "any"):
                w.ok("gec.transfer", owner if op == "transfer" else rng.choice(HOLDERS), {"start": start, "end": start + length, "to": to})
            elif op == "retire":
                w.ok("gec.retire", owner, {"start": start, "end": start + length, "beneficiary": to, "periodStart": Y2024[0], "periodEnd": Y2024[1]})
            elif op == "claim":
                w.publish(owner, f"pf-{tag}-{n}", "1", claims={"gec": [{"start": start, "end": start + length}]})
            elif op == "issue":
                w.gec_issue(f"B{batches}", 50, period=(Y2024[0] + batches * DAY, Y2024[0] + (batches + 1) * DAY))
            else:  # registering the CCER project freezes the project's untraded GEC
                w.ok("ccer.register_project", "REG", {"projectId": "C1"})
        except LedgerError:
            pass


def counted_once(rows: list[BookRow]) -> list[BookRow]:
    """``rows`` without those that count units a kept row already counts
    (books the node refuses)."""
    kept: list[BookRow] = []
    for row in rows:
        if not any(
            (k.account, k.kind) == (row.account, row.kind)
            and (
                (k.is_range and row.is_range and k.start < row.end and row.start < k.end)
                or (not k.is_range and not row.is_range and k.batch == row.batch)
            )
            for k in kept
        ):
            kept.append(row)
    return kept


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32), st.integers(0, 80), st.integers(0, 80), st.lists(row_strategy, min_size=1, max_size=12))
def test_current_path_equals_replay_on_random_books(seed: int, first: int, then: int, rows: list[BookRow]) -> None:
    rows = counted_once(rows)
    rng = random.Random(seed)
    w = new_world()
    drive(w, rng, first, "a")
    # The index is brought up to date once midway and once at the end, as a
    # node does between calls.
    changes = {kind: LastChanges(kind) for kind in ("gec", "ccer")}
    for c in changes.values():
        c.advance(w.kv, w.index)
    assert reconcile_current(w.kv, rows, changes) == reconcile(w.kv, rows, w.index)
    drive(w, rng, then, "b")
    for c in changes.values():
        c.advance(w.kv, w.index)
    expected = reconcile(w.kv, rows, w.index)
    assert reconcile_current(w.kv, rows, changes) == expected
    # A fresh index, built in one step, agrees too.
    fresh = {kind: LastChanges(kind) for kind in ("gec", "ccer")}
    for c in fresh.values():
        c.advance(w.kv, w.index)
    assert reconcile_current(w.kv, rows, fresh) == expected


def test_current_path_reports_each_kind_of_mismatch() -> None:
    w = new_world()
    issue_index = get_batch(w.kv, "gec", "B0").issued
    w.ok("gec.transfer", "GEN", {"start": 0, "end": 50, "to": "STEEL"})
    transfer_index = w.index - 1
    w.ok("gec.retire", "STEEL", {"start": 10, "end": 20, "beneficiary": "x", "periodStart": Y2024[0], "periodEnd": Y2024[1]})
    retire_index = w.index - 1
    changes = {"gec": LastChanges("gec")}
    changes["gec"].advance(w.kv, w.index)
    rows = [
        BookRow("STEEL", "gec", "B0", 0, 30),  # [10, 20) retired; [30, 50) missing from the books
        BookRow("STEEL", "gec", "", 290, 310),  # [290, 300) held by GEN, [300, 310) never issued
        BookRow("GEN", "gec", amount=1),  # GEN holds 250
    ]
    got = reconcile_current(w.kv, rows, changes)
    assert got == reconcile(w.kv, rows, w.index)
    assert [(m.kind, m.start, m.end, m.proving_indexes, m.row) for m in got] == [
        (STATUS_DIFFERS, 10, 20, (retire_index,), 0),
        (NOT_HELD_ON_LEDGER, 290, 300, (issue_index,), 1),
        (NOT_HELD_ON_LEDGER, 300, 310, (), 1),
        (AMOUNT_DIFFERS, 0, 0, (issue_index,), 2),
        (MISSING_FROM_BOOKS, 30, 50, (transfer_index,), -1),
    ]


def test_last_changes_refuses_to_go_back() -> None:
    w = new_world()
    changes = LastChanges("gec")
    changes.advance(w.kv, w.index)
    with pytest.raises(ValueError):
        changes.advance(w.kv, w.index - 1)


def _ledger_with_transfers(tmp_path: Path) -> tuple[object, Net]:
    led = open_ledger(tmp_path / "ledger")
    net = Net()
    results = led.submit([*net.setup(), net.gec_project(), net.gec_issue()])
    assert all(not isinstance(r, Exception) for r in results)
    return led, net


def test_reconciler_current_older_and_remembered(tmp_path: Path) -> None:
    led, net = _ledger_with_transfers(tmp_path)
    try:
        rec = Reconciler(led)
        rows = [BookRow("EXCH", "gec", "B1", 0, 40), BookRow("STEEL", "gec", amount=100)]
        before = led.size  # type: ignore[attr-defined]
        size, none = rec.reconcile(rows)
        assert size == before and [m.kind for m in none] == [NOT_HELD_ON_LEDGER]
        led.submit([net.transfer("gec", "STEEL", 0, 50, "EXCH")])  # type: ignore[attr-defined]
        size, now = rec.reconcile(rows)
        assert size == before + 1
        with led.state() as kv:  # type: ignore[attr-defined]
            assert now == reconcile(kv, rows, size)
            assert [(m.kind, m.start, m.end) for m in now] == [(AMOUNT_DIFFERS, 0, 0), (MISSING_FROM_BOOKS, 40, 50)]
            # The older size is replayed, or served from the remembered answer.
            assert rec.reconcile(rows, before) == (before, none)
            other = [BookRow("STEEL", "gec", amount=100)]
            assert rec.reconcile(other, before) == (before, reconcile(kv, other, before))
        with pytest.raises(NotFound):
            rec.reconcile(rows, size + 1)
        with pytest.raises(MalformedError):
            rec.reconcile([BookRow("EXCH", "gec")])
    finally:
        led.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("rows", "field", "message"),
    [
        ([BookRow("EXCH", "gec", "", 0, 100), BookRow("EXCH", "gec", "", 0, 100)], "rows[1]", "overlaps rows[0]: EXCH gec 0-100"),
        ([BookRow("EXCH", "gec", "", 50, 100), BookRow("EXCH", "gec", "", 0, 60)], "rows[1]", "overlaps rows[0]: EXCH gec 50-60"),
        ([BookRow("EXCH", "gec", amount=100), BookRow("EXCH", "gec", amount=100)], "rows[1]", "repeats the amount of rows[0]"),
    ],
)
def test_books_that_count_units_twice_are_refused(rows: list[BookRow], field: str, message: str) -> None:
    # Each row alone matches a ledger where EXCH holds 0-100; together they
    # claim more than it holds, so they must not reconcile as matching.
    with pytest.raises(MalformedError) as err:
        reconcile(MemoryKV(), rows, 0)
    assert err.value.what == field and message in err.value.reason


def test_books_may_list_adjacent_ranges_other_accounts_and_batch_totals() -> None:
    rows = [
        BookRow("EXCH", "gec", "", 0, 50), BookRow("EXCH", "gec", "", 50, 100), BookRow("STEEL", "gec", "", 0, 100),
        BookRow("EXCH", "ccer", "", 0, 100), BookRow("EXCH", "gec", amount=100), BookRow("EXCH", "gec", "B1", amount=100),
    ]  # fmt: skip
    reconcile(MemoryKV(), rows, 0)


def test_the_checkpoint_of_a_size_the_ledger_has_not_published_yet(tmp_path: Path) -> None:
    # Reconcile reads its size from a read transaction, which can hold a
    # commit the ledger has not yet published as its head: the checkpoint of
    # that size comes from the store, not Ledger.checkpoint (NOT_FOUND then).
    led, _net = _ledger_with_transfers(tmp_path)
    try:

        class Unpublished:
            store = led.store  # type: ignore[attr-defined]

            def checkpoint(self, size: int) -> str:
                raise NotFound("tree size", size)

        rec = Reconciler(Unpublished())
        size, _ = rec.reconcile([BookRow("EXCH", "gec", amount=1)])
        assert rec.checkpoint(size) == led.checkpoint(size)  # type: ignore[attr-defined]
    finally:
        led.close()  # type: ignore[attr-defined]


def test_units_past_their_validity_end_are_expired_not_held(tmp_path: Path) -> None:
    # The state machine refuses to move or retire GEC past its validity end,
    # so books that still count them as held do not match the ledger.
    led, net = _ledger_with_transfers(tmp_path)
    try:
        led.submit([net.transfer("gec", "STEEL", 0, 50, "EXCH")])  # type: ignore[attr-defined]
        before = led.size  # type: ignore[attr-defined]
        books = [BookRow("EXCH", "gec", "B1", 0, 50), BookRow("EXCH", "gec", amount=50)]
        rec = Reconciler(led)
        assert rec.reconcile(books) == (before, [])
        # A year and a day on (B1's validity end is a year after issue), a
        # new batch is issued: the block time passes B1's validity end.
        net.now += 366 * 86400
        led._clock = lambda: float(net.now)  # type: ignore[attr-defined]
        led.submit([net.gec_issue("B2")])  # type: ignore[attr-defined]
        size, now = rec.reconcile(books)
        assert [(m.kind, m.start, m.end, m.detail, m.ledger_amount) for m in now] == [
            (STATUS_DIFFERS, 0, 50, "expired", 50),
            (AMOUNT_DIFFERS, 0, 0, "ledger holds 0 units", 0),
        ]
        with led.state() as kv:  # type: ignore[attr-defined]
            assert reconcile(kv, books, size, led.head.time) == now  # type: ignore[attr-defined]
        # At the older size the units were still valid, on both paths.
        assert Reconciler(led).reconcile(books, before) == (before, [])
    finally:
        led.close()  # type: ignore[attr-defined]


def test_missing_from_books_with_many_rows_matches_unit_sets() -> None:
    # Thousands of serial rows for one account, against holdings cut into
    # many runs: the units reported missing from the books must be exactly
    # the units held minus those listed, each once, and every one inside a
    # single held run (its proving entry is that run's last change).
    rng = random.Random(7)
    w = World()
    w.gec_project(capacity_kw=10**7)
    w.gec_issue("B0", 20_000, period=(Y2024[0], Y2024[0] + DAY))
    # GEN sends every third block of 40 units away and gets half of each
    # back: its holdings become many runs, last changed by different entries.
    for start in range(0, 20_000, 120):
        w.ok("gec.transfer", "GEN", {"start": start, "end": start + 40, "to": "STEEL"})
        w.ok("gec.transfer", "STEEL", {"start": start + 20, "end": start + 40, "to": "GEN"})
    rows, cursor = [], 0
    while cursor < 20_500:  # past the last serial issued, too
        length = rng.randint(1, 9)
        if rng.random() < 0.6:
            rows.append(BookRow("GEN", "gec", "", cursor, cursor + length))
        cursor += length + rng.choice([0, 0, 1, 3])
    rng.shuffle(rows)
    assert len(rows) > 2_000
    changes = {"gec": LastChanges("gec")}
    changes["gec"].advance(w.kv, w.index)
    got = reconcile_current(w.kv, rows, changes)
    assert got == reconcile(w.kv, rows, w.index)
    held_runs = [(r.start, r.end) for r in account_runs(w.kv, "GEN", "gec") if r.status == "held"]
    held = {u for s, e in held_runs for u in range(s, e)}
    listed = {u for r in rows for u in range(r.start, r.end)}
    missing = [m for m in got if m.kind == MISSING_FROM_BOOKS]
    reported = [u for m in missing for u in range(m.start, m.end)]
    assert len(reported) == len(set(reported))
    assert set(reported) == held - listed and len(reported) > 1_000
    for m in missing:
        assert m.account == "GEN" and m.row == -1 and m.ledger_amount == m.end - m.start
        assert any(s <= m.start and m.end <= e for s, e in held_runs)
        assert len(m.proving_indexes) == 1
