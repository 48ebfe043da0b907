"""CCER lifecycle and the GEC freeze on CCER registration."""

from __future__ import annotations

from ledger.errors import PermissionDenied, StateRuleError
from ledger.records import MAX_SERIAL
from ledger.state._codec import enc
from ledger.state.queries import batch_supply, get_holdings, get_record
from tests.test_state_world import T0, Y2024, World

CREDIT = (Y2024[0], Y2024[0] + 10 * 365 * 86400)


def validate_body(**kw: object) -> dict[str, object]:
    body: dict[str, object] = {"projectId": "C1", "name": "Wind CCER", "methodology": "CCER-14-001-V01", "proponent": "GEN", "creditingStart": CREDIT[0], "creditingEnd": CREDIT[1], "gecProjectId": "P1", "statement": "validated"}
    body.update(kw)
    return body


def report_body(**kw: object) -> dict[str, object]:
    body: dict[str, object] = {"reportId": "R1", "projectId": "C1", "periodStart": Y2024[0], "periodEnd": Y2024[1], "reductions": 500, "statement": "verified"}
    body.update(kw)
    return body


def test_validate_register_verify_issue_transfer_cancel() -> None:
    w = World()
    w.gec_project()
    w.reject(PermissionDenied, "missing_role", "ccer.validate_project", "REG", validate_body())
    w.reject(StateRuleError, "not_independent", "ccer.validate_project", "VER", validate_body(proponent="VER", gecProjectId=None))
    w.reject(StateRuleError, "gec_project_not_found", "ccer.validate_project", "VER", validate_body(gecProjectId="P9"))
    w.reject(StateRuleError, "gec_project_owner_mismatch", "ccer.validate_project", "VER", validate_body(proponent="STEEL"))
    w.reject(StateRuleError, "org_not_found", "ccer.validate_project", "VER", validate_body(proponent="NOPE"))
    w.reject(StateRuleError, "project_not_registered", "ccer.verify_report", "VER", report_body())
    w.ok("ccer.validate_project", "VER", validate_body())
    w.reject(StateRuleError, "project_exists", "ccer.validate_project", "VER", validate_body())
    w.reject(PermissionDenied, "missing_role", "ccer.register_project", "VER", {"projectId": "C1"})
    w.reject(StateRuleError, "project_not_found", "ccer.register_project", "REG", {"projectId": "C9"})
    w.ok("ccer.register_project", "REG", {"projectId": "C1"})
    w.reject(StateRuleError, "project_already_registered", "ccer.register_project", "REG", {"projectId": "C1"})
    w.reject(StateRuleError, "period_outside_crediting", "ccer.verify_report", "VER", report_body(periodStart=CREDIT[0] - 1))
    w.reject(StateRuleError, "period_not_ended", "ccer.verify_report", "VER", report_body(periodEnd=T0 + 1000))
    w.reject(PermissionDenied, "missing_role", "ccer.issue", "VER", {"batchId": "CB1", "reportId": "R1", "quantity": 1})
    w.reject(StateRuleError, "report_not_found", "ccer.issue", "REG", {"batchId": "CB1", "reportId": "R1", "quantity": 1})
    w.ok("ccer.verify_report", "VER", report_body())
    w.reject(StateRuleError, "report_exists", "ccer.verify_report", "VER2", report_body())
    w.reject(StateRuleError, "period_already_reported", "ccer.verify_report", "VER2", report_body(reportId="R2"))
    w.reject(StateRuleError, "exceeds_verified_reductions", "ccer.issue", "REG", {"batchId": "CB1", "reportId": "R1", "quantity": 501})
    # A ledger millions of batches on (see the GEC test): the report stays unissued.
    w.kv.put(b"a/ccer/next", enc(MAX_SERIAL - 499))
    w.reject(StateRuleError, "serials_exhausted", "ccer.issue", "REG", {"batchId": "CB1", "reportId": "R1", "quantity": 500})
    w.kv.delete(b"a/ccer/next")
    issued = w.ok("ccer.issue", "REG", {"batchId": "CB1", "reportId": "R1", "quantity": 500})
    s = int(issued.events[0].subject.split(":")[1].split("-")[0])
    w.reject(StateRuleError, "report_already_issued", "ccer.issue", "REG", {"batchId": "CB2", "reportId": "R1", "quantity": 1})
    w.ok("ccer.transfer", "GEN", {"start": s, "end": s + 100, "to": "CARS"})
    cancel = {"start": s, "end": s + 40, "beneficiary": "Cars Co.", "purpose": "product offset", "periodStart": Y2024[0], "periodEnd": Y2024[1]}
    w.reject(PermissionDenied, "not_owner", "ccer.cancel", "GEN", cancel)
    w.ok("ccer.cancel", "CARS", cancel)
    w.reject(StateRuleError, "units_retired", "ccer.cancel", "CARS", cancel)
    supply = batch_supply(w.kv, "ccer", "CB1", w.time)
    assert (supply.issued, supply.held, supply.retired) == (500, 460, 40)
    # CCER batches have no validity end: their units never expire.
    far = w.time + 100 * 365 * 86400
    assert [h.status for h in get_holdings(w.kv, "CARS", time=far).holdings] == ["retired", "held"]
    assert get_record(w.kv, "ccer_report", "R1")["batch"] == "CB1"


def test_generation_sold_as_gec_is_not_credited_again() -> None:
    w = World()
    w.gec_project()
    h1 = (Y2024[0], Y2024[0] + 182 * 86400)
    h2 = (h1[1], Y2024[1])
    s1, _ = w.gec_issue("B1", 300, period=h1)
    w.gec_issue("B2", 300, period=h2)
    w.ok("gec.transfer", "GEN", {"start": s1, "end": s1 + 1, "to": "STEEL"})  # one MWh of H1 sold as GEC
    w.ok("ccer.validate_project", "VER", validate_body())
    w.ok("ccer.register_project", "REG", {"projectId": "C1"})  # freezes the rest of B1 and all of B2
    # H1's generation is partly GEC: no reductions may be credited for it.
    err = w.reject(StateRuleError, "generation_counted_as_gec", "ccer.verify_report", "VER", report_body(periodStart=h1[0], periodEnd=h1[1]))
    assert "GEC batch B1 of project P1" in str(err)
    w.reject(StateRuleError, "generation_counted_as_gec", "ccer.verify_report", "VER", report_body())  # all of 2024
    # H2's certificates were all frozen: its reductions may be credited.
    w.ok("ccer.verify_report", "VER", report_body(periodStart=h2[0], periodEnd=h2[1]))


def test_verifier_independence_on_reports() -> None:
    w = World(orgs={"GECI": ["gec_issuer"], "REG": ["ccer_registry"], "VER": ["verifier"], "VGEN": ["verifier", "supplier"]})
    w.ok("ccer.validate_project", "VER", validate_body(proponent="VGEN", gecProjectId=None))
    w.ok("ccer.register_project", "REG", {"projectId": "C1"})
    w.reject(StateRuleError, "not_independent", "ccer.verify_report", "VGEN", report_body())


def test_registration_freezes_untraded_gec_for_the_same_generation() -> None:
    w = World()
    w.gec_project()
    s, e = w.gec_issue("B1", 300)
    w.ok("gec.transfer", "GEN", {"start": s, "end": s + 100, "to": "EXCH"})  # traded: stays free
    w.ok("gec.retire", "GEN", {"start": s + 100, "end": s + 150, "beneficiary": "GEN", "periodStart": Y2024[0], "periodEnd": Y2024[1]})
    w.ok("ccer.validate_project", "VER", validate_body())
    applied = w.ok("ccer.register_project", "REG", {"projectId": "C1"})
    assert [ev.kind for ev in applied.events].count("units.frozen") == 1
    supply = batch_supply(w.kv, "gec", "B1", w.time)
    assert (supply.held, supply.retired, supply.frozen) == (100, 50, 150)
    w.reject(StateRuleError, "units_frozen", "gec.transfer", "GEN", {"start": s + 150, "end": s + 151, "to": "EXCH"})
    w.ok("gec.transfer", "EXCH", {"start": s, "end": s + 10, "to": "STEEL"})
    assert [h.status for h in get_holdings(w.kv, "GEN", time=w.time).holdings] == ["retired", "frozen"]
    # Past B1's validity end only held units turn expired: frozen and
    # retired units keep the status that stops them first.
    late = T0 + 3 * 365 * 86400
    assert [h.status for h in get_holdings(w.kv, "GEN", time=late).holdings] == ["retired", "frozen"]
    assert [h.status for h in get_holdings(w.kv, "EXCH", time=late).holdings] == ["expired"]
    # No more GEC for generation the CCER project credits.
    w.time = T0 + 400 * 86400
    w.reject(StateRuleError, "period_under_ccer", "gec.issue", "GECI", {"batchId": "B2", "projectId": "P1", "periodStart": Y2024[1], "periodEnd": Y2024[1] + 86400, "quantity": 1, "validityEnd": w.time + 86400})
    # And a GEC project is linked to one CCER project at most.
    w.reject(StateRuleError, "gec_project_already_linked", "ccer.validate_project", "VER", validate_body(projectId="C2"))
