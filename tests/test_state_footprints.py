"""Footprints: publish, versions, deprecation, attestation, components,
claims, and the worked supply chain steel -> auto part -> car."""

from __future__ import annotations

import hashlib
import json

import pytest

from ledger.errors import PermissionDenied, StateRuleError
from ledger.state import footprints
from ledger.state.queries import downstream_of, footprint_versions, get_footprint, get_unit
from node.events import with_stale_events
from tests.test_state_world import T0, Y2024, World, pact_doc, pf_uuid

RETIRE_2024 = {"beneficiary": "x", "periodStart": Y2024[0], "periodEnd": Y2024[1]}


def test_publish_rules() -> None:
    w = World()
    w.reject(PermissionDenied, "missing_role", "pcf.publish", "VER", {"footprint": pact_doc("steel", "2")})
    doc = pact_doc("steel", "2")
    w.reject(StateRuleError, "status_not_active", "pcf.publish", "STEEL", {"footprint": {**doc, "status": "Deprecated"}})
    w.publish("STEEL", "steel", "2")
    w.reject(StateRuleError, "footprint_exists", "pcf.publish", "STEEL", {"footprint": doc})
    w.reject(StateRuleError, "predecessor_not_found", "pcf.publish", "STEEL", {"footprint": pact_doc("steel2", "2", preceding=["nothing"])})
    w.reject(PermissionDenied, "not_owner", "pcf.publish", "PARTS", {"footprint": pact_doc("x", "2", preceding=["steel"])})
    comp = {"pfId": pf_uuid("steel"), "quantity": "10", "unit": "kilogram"}
    w.reject(StateRuleError, "component_not_found", "pcf.publish", "PARTS", {"footprint": pact_doc("part", "30"), "components": [{**comp, "pfId": pf_uuid("nope")}]})
    w.reject(StateRuleError, "component_unit_mismatch", "pcf.publish", "PARTS", {"footprint": pact_doc("part", "30"), "components": [{**comp, "unit": "piece"}]})
    # 10 kg of steel at 2 kgCO2e/kg is 20: a part declared at 19.99 is too low.
    w.reject(StateRuleError, "pcf_below_components", "pcf.publish", "PARTS", {"footprint": pact_doc("part", "19.99"), "components": [comp]})
    w.ok("pcf.publish", "PARTS", {"footprint": pact_doc("part", "20"), "components": [comp]})
    assert downstream_of(w.kv, pf_uuid("steel")) == (pf_uuid("part"),)
    w.ok("pcf.deprecate", "STEEL", {"pfId": pf_uuid("steel"), "reason": "recalculated"})
    w.reject(StateRuleError, "component_not_active", "pcf.publish", "CARS", {"footprint": pact_doc("car", "100"), "components": [comp]})
    # Declared amounts scale contributions: the upstream PCF is per its declared unit.
    w.publish("STEEL", "coil", "500", amount="1000")
    w.ok("pcf.publish", "PARTS", {"footprint": pact_doc("bolt", "0.5"), "components": [{"pfId": pf_uuid("coil"), "quantity": "1", "unit": "kilogram"}]})


def test_upstream_sum_is_exact_across_denominators() -> None:
    w = World()
    w.publish("STEEL", "steel", "2")
    w.publish("STEEL", "coil", "500", amount="1000")
    w.publish("STEEL", "wire", "1", amount="3")
    # 0.1 x 2 + 0.3 x 500/1000 + 0.3 x 1/3 = 0.2 + 0.15 + 0.1 = 0.45, exactly.
    comps = [
        {"pfId": pf_uuid("steel"), "quantity": "0.1", "unit": "kilogram"},
        {"pfId": pf_uuid("coil"), "quantity": "0.3", "unit": "kilogram"},
        {"pfId": pf_uuid("wire"), "quantity": "0.3", "unit": "kilogram"},
    ]
    w.reject(StateRuleError, "pcf_below_components", "pcf.publish", "PARTS", {"footprint": pact_doc("part", "0.449999"), "components": comps})
    w.ok("pcf.publish", "PARTS", {"footprint": pact_doc("part", "0.45"), "components": comps})


def test_deprecate_and_attest_rules() -> None:
    w = World()
    applied = w.publish("STEEL", "steel", "2")
    entry = w.entries[-1][0]
    digest = hashlib.sha256(entry).hexdigest()
    att = {"pfId": pf_uuid("steel"), "footprintDigest": digest, "coverage": "product level", "assurance": "limited", "standardName": "ISO 14067", "statement": "ok"}
    w.reject(PermissionDenied, "missing_role", "pcf.attest", "PARTS", att)
    w.reject(StateRuleError, "digest_mismatch", "pcf.attest", "VER", {**att, "footprintDigest": "0" * 64})
    w.reject(StateRuleError, "footprint_not_found", "pcf.attest", "VER", {**att, "pfId": pf_uuid("nope")})
    w.ok("pcf.attest", "VER", att)
    w.reject(StateRuleError, "already_attested", "pcf.attest", "VER", att)
    w.ok("org.register", "AUTH", {"id": "SV", "name": "Self-verifier", "roles": ["supplier", "verifier"], "keys": [w.key("SV").vkey]})
    w.signers["SV"] = w.key("SV")
    w.publish("SV", "own", "1")
    own = hashlib.sha256(w.entries[-1][0]).hexdigest()
    w.reject(StateRuleError, "not_independent", "pcf.attest", "SV", {**att, "pfId": pf_uuid("own"), "footprintDigest": own})
    w.reject(PermissionDenied, "not_owner", "pcf.deprecate", "PARTS", {"pfId": pf_uuid("steel"), "reason": "x"})
    w.ok("pcf.deprecate", "STEEL", {"pfId": pf_uuid("steel"), "reason": "x"})
    w.reject(StateRuleError, "footprint_not_active", "pcf.deprecate", "STEEL", {"pfId": pf_uuid("steel"), "reason": "x"})
    w.reject(StateRuleError, "footprint_not_active", "pcf.attest", "VER2", att)
    info = get_footprint(w.kv, pf_uuid("steel"))
    assert info.attestations[0].verifier == "VER" and info.status == "Deprecated"
    assert applied.events[0].kind == "footprint.published"


def test_a_product_may_not_contain_a_version_of_itself() -> None:
    w = World()
    w.publish("STEEL", "steel", "2")
    w.ok("pcf.publish", "PARTS", {"footprint": pact_doc("part", "20"), "components": [{"pfId": pf_uuid("steel"), "quantity": "10", "unit": "kilogram"}]})
    # steel v2 containing the part, which contains steel v1: a cycle of products.
    w.reject(StateRuleError, "component_cycle", "pcf.publish", "STEEL", {"footprint": pact_doc("steel-v2", "50", preceding=["steel"]), "components": [{"pfId": pf_uuid("part"), "quantity": "1", "unit": "kilogram"}]})


def test_merged_product_lines_are_all_checked_for_cycles() -> None:
    w = World()
    w.publish("STEEL", "steel", "2")
    w.publish("STEEL", "other", "1")
    w.ok("pcf.publish", "PARTS", {"footprint": pact_doc("part", "20"), "components": [{"pfId": pf_uuid("steel"), "quantity": "10", "unit": "kilogram"}]})
    part = [{"pfId": pf_uuid("part"), "quantity": "1", "unit": "kilogram"}]
    # Naming another product first does not hide that the part contains steel.
    w.reject(StateRuleError, "component_cycle", "pcf.publish", "STEEL", {"footprint": pact_doc("steel-v2", "50", preceding=["other", "steel"]), "components": part})
    # PACT's merge: one footprint succeeds two. It carries the first line's
    # lineage, and its later versions are still checked against both.
    w.publish("STEEL", "merged", "2", preceding=["other", "steel"])
    assert {get_footprint(w.kv, pf_uuid(n)).status for n in ("other", "steel")} == {"Deprecated"}
    w.reject(StateRuleError, "component_cycle", "pcf.publish", "STEEL", {"footprint": pact_doc("merged-v2", "50", preceding=["merged"]), "components": part})
    # PACT's split: two footprints succeed one.
    w.publish("STEEL", "coil", "3")
    w.publish("STEEL", "coil-a", "3", preceding=["coil"])
    w.publish("STEEL", "coil-b", "3", preceding=["coil"])
    assert get_footprint(w.kv, pf_uuid("coil-b")).status == "Active"


def test_claim_rules() -> None:
    w = World()
    w.gec_project()
    s, _ = w.gec_issue("B1", 1000)
    w.ok("gec.transfer", "GEN", {"start": s, "end": s + 300, "to": "STEEL"})
    w.ok("gec.retire", "STEEL", {"start": s, "end": s + 100, **RETIRE_2024})
    w.ok("gec.retire", "STEEL", {"start": s + 100, "end": s + 150, "beneficiary": "x", "periodStart": Y2024[0], "periodEnd": T0 + 86400})
    w.ok("gec.retire", "GEN", {"start": s + 400, "end": s + 500, **RETIRE_2024})

    def claim(*ranges: tuple[int, int], name: str = "steel") -> dict[str, object]:
        return {"footprint": pact_doc(name, "2"), "claims": {"gec": [{"start": a, "end": b} for a, b in ranges]}}

    w.reject(StateRuleError, "units_not_retired", "pcf.publish", "STEEL", claim((s + 200, s + 210)))
    w.reject(StateRuleError, "units_not_issued", "pcf.publish", "STEEL", claim((s + 10**6, s + 10**6 + 1)))
    w.reject(StateRuleError, "not_retired_by_owner", "pcf.publish", "STEEL", claim((s + 400, s + 410)))
    w.reject(StateRuleError, "period_outside_reference", "pcf.publish", "STEEL", claim((s + 100, s + 110)))
    w.reject(StateRuleError, "duplicate_claim", "pcf.publish", "STEEL", claim((s, s + 50), (s + 40, s + 60)))
    w.ok("pcf.publish", "STEEL", claim((s, s + 60)))
    w.reject(StateRuleError, "units_already_claimed", "pcf.publish", "STEEL", claim((s + 50, s + 70), name="steel-b"))
    w.ok("pcf.publish", "STEEL", claim((s + 60, s + 100), name="steel-b"))
    assert get_unit(w.kv, "gec", s + 59, time=w.time).claimed_by == pf_uuid("steel")
    assert get_unit(w.kv, "gec", s + 60, time=w.time).claimed_by == pf_uuid("steel-b")
    assert get_footprint(w.kv, pf_uuid("steel")).gec_claims == ((s, s + 60),)


def test_claimed_pieces_of_one_retirement_merge() -> None:
    w = World()
    w.gec_project()
    s, _ = w.gec_issue("B1", 1000)
    w.ok("gec.transfer", "GEN", {"start": s, "end": s + 300, "to": "STEEL"})
    w.ok("gec.retire", "STEEL", {"start": s, "end": s + 200, **RETIRE_2024})
    w.ok("gec.retire", "STEEL", {"start": s + 200, "end": s + 300, **RETIRE_2024})
    ranges = [(s, s + 50), (s + 50, s + 120), (s + 200, s + 250)]
    w.ok("pcf.publish", "STEEL", {"footprint": pact_doc("steel", "2"), "claims": {"gec": [{"start": a, "end": b} for a, b in ranges]}})
    # Adjacent claimed pieces of one retirement become one segment; pieces of
    # another retirement stay apart (their retiring entry differs).
    runs = [(json.loads(raw)["s"], int(k.rsplit(b"/", 1)[1], 16), "c" in json.loads(raw)) for k, raw in w.kv.scan(b"sg/gec/")]
    assert runs[:4] == [(s, s + 120, True), (s + 120, s + 200, False), (s + 200, s + 250, True), (s + 250, s + 300, False)]


def test_worked_supply_chain_steel_part_car() -> None:
    w = World()
    w.gec_project(capacity_kw=100_000)
    s, _ = w.gec_issue("B1", 30_000)
    chain = [("STEEL", "steel", "2.0", None), ("PARTS", "door", "25", ("steel", "10")), ("CARS", "car", "3000", ("door", "4"))]
    cursor = s
    for org, name, pcf, upstream in chain:
        # Each maker buys green electricity, retires it for 2024, and claims it.
        w.ok("gec.transfer", "GEN", {"start": cursor, "end": cursor + 1000, "to": org})
        w.ok("gec.retire", org, {"start": cursor, "end": cursor + 1000, "beneficiary": f"{org} plant", "periodStart": Y2024[0], "periodEnd": Y2024[1]})
        comps = [] if upstream is None else [{"pfId": pf_uuid(upstream[0]), "quantity": upstream[1], "unit": "kilogram"}]
        w.publish(org, name, pcf, components=comps, claims={"gec": [{"start": cursor, "end": cursor + 1000}]})
        digest = hashlib.sha256(w.entries[-1][0]).hexdigest()
        w.ok("pcf.attest", "VER", {"pfId": pf_uuid(name), "footprintDigest": digest, "coverage": "product level", "assurance": "reasonable", "standardName": "ISO 14067", "statement": "verified"})
        cursor += 1000
    car = get_footprint(w.kv, pf_uuid("car"))
    assert car.components[0].pf_id == pf_uuid("door") and car.attestations[0].assurance == "reasonable"
    assert car.gec_claims == ((s + 2000, s + 3000),) and not car.stale
    # Steel re-versions: v1 is deprecated, the door and the car become stale.
    # The state machine reports the deprecation only (it no longer walks
    # downstream); the node adds who became stale, read from the state.
    applied = w.publish("STEEL", "steel-v2", "1.8", preceding=["steel"])
    assert [e.kind for e in applied.events if e.kind.startswith("footprint.")] == ["footprint.published", "footprint.deprecated"]
    stale = [e for e in with_stale_events(w.kv, w.index - 1, applied.events) if e.kind == "footprint.stale"]
    assert stale[0].subject == pf_uuid("steel") and stale[0].refs == (pf_uuid("door"), pf_uuid("car"))
    door, car = get_footprint(w.kv, pf_uuid("door")), get_footprint(w.kv, pf_uuid("car"))
    assert door.stale and car.stale and car.stale_marks[0].root == pf_uuid("steel")
    assert car.stale_marks[0].upstream == pf_uuid("door") and car.stale_marks[0].index == w.index - 1
    assert footprint_versions(w.kv, pf_uuid("steel")) == (pf_uuid("steel"), pf_uuid("steel-v2"))
    assert get_footprint(w.kv, pf_uuid("steel")).successor == pf_uuid("steel-v2")
    # A truck published now on the stale door is downstream of steel v1 too,
    # like the car: stale from the start, through the door.
    w.publish("CARS", "truck", "5000", components=[{"pfId": pf_uuid("door"), "quantity": "6", "unit": "kilogram"}])
    truck = get_footprint(w.kv, pf_uuid("truck"))
    assert [(m.upstream, m.root, m.index) for m in truck.stale_marks] == [(pf_uuid("door"), pf_uuid("steel"), car.stale_marks[0].index)]
    # The door maker re-versions on steel v2; the new door is fresh.
    w.publish("PARTS", "door-v2", "24", preceding=["door"], components=[{"pfId": pf_uuid("steel-v2"), "quantity": "10", "unit": "kilogram"}])
    assert not get_footprint(w.kv, pf_uuid("door-v2")).stale
    # On the fresh door v2, a new truck version is not stale.
    w.publish("CARS", "truck-v2", "5000", preceding=["truck"], components=[{"pfId": pf_uuid("door-v2"), "quantity": "6", "unit": "kilogram"}])
    assert not get_footprint(w.kv, pf_uuid("truck-v2")).stale


def test_upstream_walks_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    # A re-version walks its upstream graph and its version history, each
    # bounded by MAX_UPSTREAM_WALK footprints. The bound is lowered here so
    # that a small graph reaches it; the checks read it when they run.
    monkeypatch.setattr(footprints, "MAX_UPSTREAM_WALK", 3)
    w = World()
    kg = [{"quantity": "1", "unit": "kilogram"}]
    for name in ("steel", "a", "b", "c"):
        w.publish("STEEL", name, "1")
    w.publish("PARTS", "part", "2", components=[{"pfId": pf_uuid("a"), **kg[0]}, {"pfId": pf_uuid("b"), **kg[0]}])
    # part, a, b: three footprints to walk, the most allowed.
    w.publish("STEEL", "steel-v2", "2", preceding=["steel"], components=[{"pfId": pf_uuid("part"), **kg[0]}])
    too_large = {"footprint": pact_doc("steel-v3", "3", preceding=["steel-v2"]), "components": [{"pfId": pf_uuid("part"), **kg[0]}, {"pfId": pf_uuid("c"), **kg[0]}]}
    w.reject(StateRuleError, "component_graph_too_large", "pcf.publish", "STEEL", too_large)
    # Version history: a new version walks every earlier version of its
    # predecessor. steel-v5 walks v3, v2 and steel (three); v6 would walk four.
    for n in (3, 4, 5):
        w.publish("STEEL", f"steel-v{n}", "2", preceding=[f"steel-v{n - 1}"])
    err = w.reject(StateRuleError, "version_history_too_large", "pcf.publish", "STEEL", {"footprint": pact_doc("steel-v6", "2", preceding=["steel-v5"])})
    assert err.field == "body.footprint.precedingPfIds"
    assert get_footprint(w.kv, pf_uuid("steel-v5")).status == "Active"
