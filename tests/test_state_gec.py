"""GEC: projects, issuance, transfer with split and merge, retirement,
expiry; and the queries over units."""

from __future__ import annotations

import pytest

from ledger.errors import NotFound, PermissionDenied, StateRuleError
from ledger.records import MAX_SERIAL
from ledger.state._codec import enc
from ledger.state.queries import batch_supply, get_holdings, get_unit, unit_history
from tests.test_state_world import T0, Y2024, World

H1 = (Y2024[0], Y2024[0] + 182 * 86400)
H2 = (H1[1], Y2024[1])


def issue_body(batch: str, quantity: int, period: tuple[int, int] = Y2024, **kw: object) -> dict[str, object]:
    return {"batchId": batch, "projectId": "P1", "periodStart": period[0], "periodEnd": period[1], "quantity": quantity, "validityEnd": T0 + 86400 * 700, **kw}


def test_register_project_rules() -> None:
    w = World()
    body = {"projectId": "P1", "name": "Wind", "technology": "wind", "capacityKw": 10, "location": "Gansu", "owner": "GEN"}
    w.reject(PermissionDenied, "missing_role", "gec.register_project", "REG", body)
    w.reject(StateRuleError, "org_not_found", "gec.register_project", "GECI", {**body, "owner": "NOPE"})
    w.ok("gec.register_project", "GECI", body)
    w.reject(StateRuleError, "project_exists", "gec.register_project", "GECI", body)


def test_issue_rules() -> None:
    w = World(orgs={"GECI": ["gec_issuer"], "GECI2": ["gec_issuer"], "GEN": ["supplier"]})
    w.gec_project(capacity_kw=1000)  # 1 MW: at most 8784 MWh in 2024
    w.reject(StateRuleError, "project_not_found", "gec.issue", "GECI", {**issue_body("B1", 10), "projectId": "P2"})
    w.reject(PermissionDenied, "not_project_issuer", "gec.issue", "GECI2", issue_body("B1", 10))
    w.reject(PermissionDenied, "missing_role", "gec.issue", "GEN", issue_body("B1", 10))
    w.reject(StateRuleError, "exceeds_capacity", "gec.issue", "GECI", issue_body("B1", 8785))
    w.reject(StateRuleError, "period_not_ended", "gec.issue", "GECI", issue_body("B1", 10, (Y2024[0], T0 + 1000)))
    w.reject(StateRuleError, "already_expired", "gec.issue", "GECI", issue_body("B1", 10, H1, validityEnd=T0))
    w.ok("gec.issue", "GECI", issue_body("B1", 4000, H1))
    w.reject(StateRuleError, "batch_exists", "gec.issue", "GECI", issue_body("B1", 10, H2))
    # Never twice for the same project and period, nor any overlap of it.
    w.reject(StateRuleError, "period_already_issued", "gec.issue", "GECI", issue_body("B2", 10, H1))
    w.reject(StateRuleError, "period_already_issued", "gec.issue", "GECI", issue_body("B2", 10, (H1[1] - 1, H2[1])))
    w.reject(StateRuleError, "period_already_issued", "gec.issue", "GECI", issue_body("B2", 10, Y2024))
    w.ok("gec.issue", "GECI", issue_body("B2", 4000, H2))
    assert batch_supply(w.kv, "gec", "B2", w.time).held == 4000


def test_issue_stops_at_the_last_nameable_serial() -> None:
    # Serials past MAX_SERIAL could never be named by a transfer, retirement
    # or claim, so a batch that would reach past it is refused, before any write.
    # A batch is at most 10^9 units, so a ledger gets there only after
    # millions of batches: the counter is set as such a ledger would have it.
    w = World()
    w.gec_project()
    w.kv.put(b"a/gec/next", enc(MAX_SERIAL - 5))
    err = w.reject(StateRuleError, "serials_exhausted", "gec.issue", "GECI", issue_body("B1", 6))
    assert isinstance(err, StateRuleError) and err.field == "body.quantity"
    assert "5 remain, 6 asked" in str(err)
    # The period is still free: the refused batch wrote nothing.
    s, e = w.gec_issue("B1", 5)
    assert (s, e) == (MAX_SERIAL - 5, MAX_SERIAL)
    # The very last unit moves like any other.
    w.ok("gec.transfer", "GEN", {"start": MAX_SERIAL - 1, "end": MAX_SERIAL, "to": "STEEL"})
    assert [(h.start, h.end) for h in get_holdings(w.kv, "STEEL", time=w.time).holdings] == [(MAX_SERIAL - 1, MAX_SERIAL)]


def test_transfer_split_merge_and_holdings() -> None:
    w = World()
    w.gec_project()
    s, e = w.gec_issue("B1", 100)
    w.ok("gec.transfer", "GEN", {"start": s + 10, "end": s + 20, "to": "STEEL"})
    w.ok("gec.transfer", "GEN", {"start": s + 30, "end": s + 40, "to": "STEEL"})
    gen = get_holdings(w.kv, "GEN", time=w.time).holdings
    assert [(h.start, h.end) for h in gen] == [(s, s + 10), (s + 20, s + 30), (s + 40, e)]
    # Giving the gap back and forth merges the ranges again.
    w.ok("gec.transfer", "GEN", {"start": s + 20, "end": s + 30, "to": "STEEL"})
    steel = get_holdings(w.kv, "STEEL", time=w.time).holdings
    assert [(h.start, h.end, h.status) for h in steel] == [(s + 10, s + 40, "held")]
    w.ok("gec.transfer", "STEEL", {"start": s + 10, "end": s + 40, "to": "GEN"})
    assert [(h.start, h.end) for h in get_holdings(w.kv, "GEN", time=w.time).holdings] == [(s, e)]
    assert get_holdings(w.kv, "STEEL", time=w.time).holdings == ()
    history = unit_history(w.kv, "gec", s + 15, s + 16)
    assert [ev.op for ev in history] == ["issue", "transfer", "transfer"]
    assert dict(history[1].detail) == {"from": "GEN", "to": "STEEL"}


def test_transfer_rules() -> None:
    w = World()
    w.gec_project()
    s, e = w.gec_issue("B1", 100)
    w.reject(StateRuleError, "units_not_issued", "gec.transfer", "GEN", {"start": s + 50, "end": e + 1, "to": "STEEL"})
    w.reject(PermissionDenied, "not_owner", "gec.transfer", "STEEL", {"start": s, "end": s + 1, "to": "EXCH"})
    w.reject(StateRuleError, "self_transfer", "gec.transfer", "GEN", {"start": s, "end": s + 1, "to": "GEN"})
    w.reject(StateRuleError, "org_not_found", "gec.transfer", "GEN", {"start": s, "end": s + 1, "to": "NOPE"})
    w.ok("gec.transfer", "GEN", {"start": s, "end": s + 50, "to": "STEEL"})
    # A range spanning two owners is refused as a whole.
    w.reject(PermissionDenied, "not_owner", "gec.transfer", "STEEL", {"start": s + 40, "end": s + 60, "to": "EXCH"})


def test_retire_and_no_movement_after() -> None:
    w = World()
    w.gec_project()
    s, e = w.gec_issue("B1", 100)
    retire = {"start": s, "end": s + 30, "beneficiary": "Steel Co.", "periodStart": Y2024[0], "periodEnd": Y2024[1]}
    w.reject(PermissionDenied, "not_owner", "gec.retire", "STEEL", retire)
    w.ok("gec.retire", "GEN", retire)
    w.reject(StateRuleError, "units_retired", "gec.retire", "GEN", {**retire, "start": s + 29})
    w.reject(StateRuleError, "units_retired", "gec.transfer", "GEN", {"start": s, "end": s + 1, "to": "STEEL"})
    unit = get_unit(w.kv, "gec", s + 5, time=w.time)
    assert unit.status == "retired" and unit.retirement is not None
    assert unit.retirement.index == w.index - 1 and unit.retirement.beneficiary == "Steel Co."
    assert unit.claimed_by is None
    assert batch_supply(w.kv, "gec", "B1", w.time).retired == 30
    with pytest.raises(NotFound):
        get_unit(w.kv, "gec", e, time=w.time)


def test_expired_units_cannot_move() -> None:
    w = World()
    w.gec_project()
    s, e = w.gec_issue("B1", 100, validity=T0 + 1000)
    w.time = T0 + 999  # the last second they are valid
    w.ok("gec.transfer", "GEN", {"start": s, "end": s + 10, "to": "STEEL"})
    assert batch_supply(w.kv, "gec", "B1", w.time).expired == 0
    w.time = T0 + 1000  # the validity end: expired, as issuance has it
    w.reject(StateRuleError, "units_expired", "gec.transfer", "GEN", {"start": s + 10, "end": s + 20, "to": "STEEL"})
    w.reject(StateRuleError, "units_expired", "gec.retire", "STEEL", {"start": s, "end": s + 10, "beneficiary": "x", "periodStart": 0, "periodEnd": 1})
    supply = batch_supply(w.kv, "gec", "B1", w.time)
    assert (supply.issued, supply.held, supply.expired) == (100, 0, 100)


def test_queries_show_held_units_past_their_validity_end_as_expired() -> None:
    # The state machine refuses to move or retire them (the test above), so
    # the queries must not show them as held: at their validity end they
    # turn "expired", as batch_supply and reconciliation count them.
    w = World()
    w.gec_project()
    s, e = w.gec_issue("B1", 100, period=H1, validity=T0 + 1000)
    s2, e2 = w.gec_issue("B2", 50, period=H2, validity=T0 + 5000)
    w.ok("gec.transfer", "GEN", {"start": s, "end": s + 10, "to": "STEEL"})
    w.ok("gec.retire", "STEEL", {"start": s, "end": s + 4, "beneficiary": "Steel Co.", "periodStart": H1[0], "periodEnd": H1[1]})
    w.ok("gec.transfer", "GEN", {"start": s2, "end": s2 + 5, "to": "STEEL"})

    def steel(time: int) -> list[tuple[str, int, int, str]]:
        return [(h.batch, h.start, h.end, h.status) for h in get_holdings(w.kv, "STEEL", time=time).holdings]

    valid = [("B1", s, s + 4, "retired"), ("B1", s + 4, s + 10, "held"), ("B2", s2, s2 + 5, "held")]
    assert steel(T0 + 999) == valid
    assert get_unit(w.kv, "gec", s + 5, time=T0 + 999).status == "held"
    # From B1's validity end on, its held units are expired; its retired
    # units stay retired, and B2, valid longer, stays held.
    assert steel(T0 + 1000) == [("B1", s, s + 4, "retired"), ("B1", s + 4, s + 10, "expired"), ("B2", s2, s2 + 5, "held")]
    assert [(h.start, h.end, h.status) for h in get_holdings(w.kv, "GEN", time=T0 + 1000).holdings] == [
        (s + 10, e, "expired"), (s2 + 5, e2, "held")
    ]
    assert get_unit(w.kv, "gec", s + 5, time=T0 + 1000).status == "expired"
    assert get_unit(w.kv, "gec", s + 2, time=T0 + 1000).status == "retired"
    assert get_unit(w.kv, "gec", s2, time=T0 + 1000).status == "held"
    assert get_unit(w.kv, "gec", s2, time=T0 + 5000).status == "expired"
    # Held and expired units of a batch add up as its supply counts them.
    listed = get_holdings(w.kv, "STEEL", time=T0 + 1000).holdings + get_holdings(w.kv, "GEN", time=T0 + 1000).holdings
    supply = batch_supply(w.kv, "gec", "B1", T0 + 1000)
    assert supply.expired == sum(h.end - h.start for h in listed if h.batch == "B1" and h.status == "expired") == 96


def test_holdings_pagination() -> None:
    w = World()
    w.gec_project()
    s, _ = w.gec_issue("B1", 100)
    for i in range(5):
        w.ok("gec.transfer", "GEN", {"start": s + 2 * i, "end": s + 2 * i + 1, "to": "STEEL"})
    page1 = get_holdings(w.kv, "STEEL", time=w.time, limit=2)
    page2 = get_holdings(w.kv, "STEEL", time=w.time, limit=2, page_token=page1.next_page_token)
    page3 = get_holdings(w.kv, "STEEL", time=w.time, limit=2, page_token=page2.next_page_token)
    got = [h.start for p in (page1, page2, page3) for h in p.holdings]
    assert got == [s, s + 2, s + 4, s + 6, s + 8] and page3.next_page_token is None


def test_holdings_pages_do_not_repeat_units_of_a_range_that_grew_across_the_token() -> None:
    w = World()
    w.gec_project()
    s, _ = w.gec_issue("B1", 100)
    w.ok("gec.transfer", "GEN", {"start": s, "end": s + 10, "to": "STEEL"})
    w.ok("gec.transfer", "GEN", {"start": s + 20, "end": s + 30, "to": "STEEL"})
    page1 = get_holdings(w.kv, "STEEL", time=w.time, limit=1)
    assert [(h.start, h.end) for h in page1.holdings] == [(s, s + 10)]
    # The gap comes to STEEL: its two ranges merge into one stored under
    # s + 30, past the token, which also holds the units page 1 listed.
    w.ok("gec.transfer", "GEN", {"start": s + 10, "end": s + 20, "to": "STEEL"})
    page2 = get_holdings(w.kv, "STEEL", time=w.time, limit=1, page_token=page1.next_page_token)
    assert [(h.kind, h.start, h.end) for h in page2.holdings] == [("gec", s + 10, s + 30)]
    assert page2.next_page_token is None


def _units_of(kv: object, account: str) -> set[tuple[str, int]]:
    from ledger.state.queries import account_runs

    return {(kind, u) for kind in ("ccer", "gec") for r in account_runs(kv, account, kind) for u in range(r.start, r.end)}  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(30))
def test_holdings_pages_list_each_unit_once_while_ranges_move_between_pages(seed: int) -> None:
    """Random transfers between pages split and merge STEEL's ranges. No
    unit is listed on two pages, every unit listed was STEEL's when its page
    was read, and every unit STEEL held throughout is listed. CCER and GEC
    serials overlap, so a CCER token must not clip GEC ranges."""
    import random

    from tests.test_state_ccer import report_body, validate_body

    rng = random.Random(seed)
    w = World()
    w.gec_project(capacity_kw=10**6)
    batches = [w.gec_issue("B1", 60, period=H1), w.gec_issue("B2", 60, period=H2)]
    w.ok("ccer.validate_project", "VER", validate_body(gecProjectId=None))
    w.ok("ccer.register_project", "REG", {"projectId": "C1"})
    w.ok("ccer.verify_report", "VER", report_body())
    issued = w.ok("ccer.issue", "REG", {"batchId": "CB1", "reportId": "R1", "quantity": 60})
    cs, ce = (int(x) for x in issued.events[0].subject.split(":")[1].split("-"))
    ranges = [("gec", *b) for b in batches] + [("ccer", cs, ce)]

    def move() -> None:
        # A random sub-range of one stored segment held by GEN or STEEL,
        # given to the other: this splits and merges STEEL's ranges.
        kind, lo, hi = rng.choice(ranges)
        a = rng.randrange(lo, hi)
        b = min(hi, a + rng.randint(1, 12))
        owner = get_unit(w.kv, kind, a, time=w.time).owner
        for u in range(a, b):
            if get_unit(w.kv, kind, u, time=w.time).owner != owner:
                b = u
                break
        w.ok(f"{kind}.transfer", owner, {"start": a, "end": b, "to": "STEEL" if owner == "GEN" else "GEN"})

    for _ in range(15):
        move()
    listed: list[tuple[str, int]] = []
    throughout = _units_of(w.kv, "STEEL")
    token = None
    for _ in range(200):
        now = _units_of(w.kv, "STEEL")
        throughout &= now
        page = get_holdings(w.kv, "STEEL", time=w.time, limit=rng.randint(1, 3), page_token=token)
        for h in page.holdings:
            units = [(h.kind, u) for u in range(h.start, h.end)]
            assert set(units) <= now, f"page lists units STEEL does not hold: {h}"
            listed += units
        token = page.next_page_token
        if token is None:
            break
        for _ in range(rng.randint(0, 3)):
            move()
    assert token is None
    assert len(listed) == len(set(listed)), "a unit was listed on two pages"
    assert throughout <= set(listed), "a unit held throughout was not listed"
