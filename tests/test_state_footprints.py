"""Footprints: publish, versions, deprecation, attestation, components,
claims, and the worked supply chain steel -> auto part -> car."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from ledger.errors import PermissionDenied, StateRuleError, TooLarge
from ledger.kv import MemoryKV
from ledger.state import footprints
from ledger.state.queries import (
    StaleMark,
    downstream_of,
    footprint_versions,
    get_footprint,
    get_unit,
    stale_marks,
)
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


class _CountingKV:
    """A KV that records every key the state machine reads through it."""

    def __init__(self, base: MemoryKV) -> None:
        self.base = base
        self.read: list[bytes] = []

    def get(self, key: bytes) -> bytes | None:
        self.read.append(key)
        return self.base.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self.base.put(key, value)

    def delete(self, key: bytes) -> None:
        self.base.delete(key)

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        for k, v in self.base.scan(prefix, start):
            self.read.append(k)
            yield k, v

    def items(self) -> list[tuple[bytes, bytes]]:
        return self.base.items()


def _record(w: World, name: str) -> dict[str, Any]:
    raw = w.kv.get(f"f/{pf_uuid(name)}".encode())
    assert raw is not None
    return json.loads(raw)  # type: ignore[no-any-return]


def test_a_deprecation_writes_nothing_downstream_yet_all_of_it_reads_stale() -> None:
    w = World()
    kg = {"quantity": "1", "unit": "kilogram"}
    w.publish("STEEL", "steel", "1")
    w.publish("STEEL", "coil", "1")  # nobody uses it: the yardstick
    # 300 footprints downstream of steel: a chain of 150 and a fan of 150.
    n = 150
    for i in range(1, n + 1):
        up = "steel" if i == 1 else f"chain{i - 1}"
        w.publish("PARTS", f"chain{i}", str(i + 1), components=[{"pfId": pf_uuid(up), **kg}])
        w.publish("CARS", f"fan{i}", "2", components=[{"pfId": pf_uuid("steel"), **kg}])
    # Reached both through chain3 (3 steps from steel) and fan1 (1 step),
    # listed in that order: credited to the nearest, fan1. Two components
    # equally near: the first in stored order.
    w.publish("CARS", "near", "9", components=[{"pfId": pf_uuid("chain3"), **kg}, {"pfId": pf_uuid("fan1"), **kg}])
    w.publish("CARS", "tie", "9", components=[{"pfId": pf_uuid("fan2"), **kg}, {"pfId": pf_uuid("fan1"), **kg}])
    downstream = {f"chain{i}" for i in range(1, n + 1)} | {f"fan{i}" for i in range(1, n + 1)} | {"near", "tie"}
    downstream_ids = {pf_uuid(name) for name in downstream}

    def reversion(name: str) -> tuple[list[bytes], list[bytes]]:
        counting = _CountingKV(w.kv)
        w.kv = counting  # type: ignore[assignment]
        try:
            w.publish("STEEL", f"{name}-v2", "1", preceding=[name])
        finally:
            w.kv = counting.base
        return [k for k, _ in w.writes], counting.read

    coil_writes, coil_reads = reversion("coil")
    steel_writes, steel_reads = reversion("steel")
    index = w.index - 1
    # (1) The entry writes the deprecated record and the new version, exactly
    # as many keys as deprecating a footprint nobody uses, and reads none of
    # the footprints downstream nor the reverse component index.
    assert {k for k in steel_writes if k.startswith(b"f/")} == {f"f/{pf_uuid(v)}".encode() for v in ("steel", "steel-v2")}
    assert len(steel_writes) == len(coil_writes)
    assert not [k for k in steel_reads if k.startswith(b"fd/") or k.decode().split("/")[-1] in downstream_ids]
    assert len(steel_reads) == len(coil_reads)
    # (2) Yet every footprint downstream reads stale, with steel as the root,
    # this entry as the index, and the component it is reached through.
    for i in range(1, n + 1):
        via = "steel" if i == 1 else f"chain{i - 1}"
        assert get_footprint(w.kv, pf_uuid(f"chain{i}")).stale_marks == (StaleMark(pf_uuid(via), pf_uuid("steel"), index),)
        assert get_footprint(w.kv, pf_uuid(f"fan{i}")).stale_marks == (StaleMark(pf_uuid("steel"), pf_uuid("steel"), index),)
    assert get_footprint(w.kv, pf_uuid("near")).stale_marks == (StaleMark(pf_uuid("fan1"), pf_uuid("steel"), index),)
    assert get_footprint(w.kv, pf_uuid("tie")).stale_marks == (StaleMark(pf_uuid("fan2"), pf_uuid("steel"), index),)
    assert stale_marks(w.kv, pf_uuid("chain150")) == get_footprint(w.kv, pf_uuid("chain150")).stale_marks
    # (3) Nothing about staleness is stored: records have no such field.
    assert all("stale" not in _record(w, name) for name in downstream | {"steel", "steel-v2"})
    # Upstream is unaffected: the new version and the yardstick's are fresh.
    assert not get_footprint(w.kv, pf_uuid("steel-v2")).stale and not get_footprint(w.kv, pf_uuid("steel")).stale


def test_staleness_follows_every_deprecation_upstream_whenever_published() -> None:
    w = World()
    kg = {"quantity": "1", "unit": "kilogram"}

    def comps(*names: str) -> list[dict[str, str]]:
        return [{"pfId": pf_uuid(name), **kg} for name in names]

    def marks(name: str) -> list[tuple[str, str, int]]:
        return [(m.upstream, m.root, m.index) for m in get_footprint(w.kv, pf_uuid(name)).stale_marks]

    w.publish("STEEL", "steel", "1")
    w.publish("STEEL", "paint", "1")
    w.publish("PARTS", "door", "2", components=comps("steel"))
    w.publish("CARS", "car", "9", components=comps("door", "paint"))
    assert marks("car") == [] and not get_footprint(w.kv, pf_uuid("car")).stale
    # Two re-versions upstream of the car, steel's then the door's: two
    # marks, two roots, oldest first, both reached through the door.
    w.publish("STEEL", "steel-v2", "1", preceding=["steel"])
    i1 = w.index - 1
    w.publish("PARTS", "door-v2", "2", preceding=["door"], components=comps("steel-v2"))
    i2 = w.index - 1
    assert marks("car") == [(pf_uuid("door"), pf_uuid("steel"), i1), (pf_uuid("door"), pf_uuid("door"), i2)]
    assert marks("door") == [(pf_uuid("steel"), pf_uuid("steel"), i1)]
    # A plain pcf.deprecate of a direct component counts the same.
    w.ok("pcf.deprecate", "STEEL", {"pfId": pf_uuid("paint"), "reason": "recalculated"})
    i3 = w.index - 1
    assert marks("car")[-1] == (pf_uuid("paint"), pf_uuid("paint"), i3) and len(marks("car")) == 3
    # Published later on the stale (still Active) car: stale from the start,
    # with the car's roots, through the car.
    w.publish("CARS", "fleet", "20", components=comps("car"))
    assert marks("fleet") == [(pf_uuid("car"), r, i) for _, r, i in marks("car")]
    # Published after steel's deprecation on its Active new version, or on
    # the new door: not stale, until that version is deprecated in turn.
    w.publish("PARTS", "hinge", "2", components=comps("steel-v2"))
    w.publish("CARS", "car-v2", "9", preceding=["car"], components=comps("door-v2"))
    i_car = w.index - 1
    assert marks("hinge") == [] and marks("door-v2") == [] and marks("car-v2") == []
    w.publish("STEEL", "steel-v3", "1", preceding=["steel-v2"])
    i4 = w.index - 1
    assert marks("hinge") == [(pf_uuid("steel-v2"), pf_uuid("steel-v2"), i4)]
    assert marks("car-v2") == [(pf_uuid("door-v2"), pf_uuid("steel-v2"), i4)]
    # The deprecated car keeps its marks (being deprecated does not make a
    # footprint's upstream current), and the fleet gains the car's own.
    assert len(marks("car")) == 3
    assert marks("fleet") == [(pf_uuid("car"), r, i) for _, r, i in marks("car")] + [(pf_uuid("car"), pf_uuid("car"), i_car)]


def test_the_staleness_walk_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    # Bounded by construction for a re-version, whose upstream graph was
    # walked at publish under the same bound; a chain of first versions was
    # not walked, and its reader refuses rather than reads on.
    monkeypatch.setattr(footprints, "MAX_UPSTREAM_WALK", 3)
    w = World()
    kg = {"quantity": "1", "unit": "kilogram"}
    w.publish("STEEL", "a", "1")
    for up, name in (("a", "b"), ("b", "c"), ("c", "d"), ("d", "e")):
        w.publish("STEEL", name, "1", components=[{"pfId": pf_uuid(up), **kg}])
    d = get_footprint(w.kv, pf_uuid("d"))  # c, b, a: three, the most walked
    assert not d.stale and not d.stale_incomplete
    with pytest.raises(TooLarge, match="more than 3 footprints upstream"):
        stale_marks(w.kv, pf_uuid("e"))
    # The footprint itself is still answered, saying its staleness was not
    # fully checked; a deprecation within the bound still shows.
    e = get_footprint(w.kv, pf_uuid("e"))
    assert (e.stale, e.stale_incomplete, e.stale_marks) == (False, True, ())
    w.publish("PARTS", "part", "1")
    w.publish("PARTS", "part-v2", "1", preceding=["part"], components=[{"pfId": pf_uuid("c"), **kg}])
    w.reject(StateRuleError, "component_graph_too_large", "pcf.publish", "PARTS", {"footprint": pact_doc("part-v3", "1", preceding=["part-v2"]), "components": [{"pfId": pf_uuid("d"), **kg}]})
    w.ok("pcf.deprecate", "STEEL", {"pfId": pf_uuid("a"), "reason": "x"})
    assert [m.root for m in get_footprint(w.kv, pf_uuid("part-v2")).stale_marks] == [pf_uuid("a")]
    # e's walk reads d, c and b: a's deprecation lies beyond it, c's within.
    assert get_footprint(w.kv, pf_uuid("e")).stale_marks == ()
    w.ok("pcf.deprecate", "STEEL", {"pfId": pf_uuid("c"), "reason": "x"})
    e = get_footprint(w.kv, pf_uuid("e"))
    assert (e.stale, e.stale_incomplete, [m.root for m in e.stale_marks]) == (True, True, [pf_uuid("c")])


def test_versions_follow_merges_and_splits() -> None:
    # PACT lets a new version name several predecessors (a merge) and one
    # footprint be named by several new versions (a split). Each record
    # names one successor; the versions query finds them all, in order of
    # publication, from any of them.
    w = World()
    w.publish("STEEL", "coil-a", "1")
    w.publish("STEEL", "coil-b", "1")
    w.publish("STEEL", "coil", "1", preceding=["coil-a", "coil-b"])  # merge
    w.publish("STEEL", "coil-thin", "1", preceding=["coil"])  # split: the first deprecates coil
    w.publish("STEEL", "coil-thick", "1", preceding=["coil"])  # coil is already Deprecated
    w.publish("STEEL", "coil-thick-v2", "1", preceding=["coil-thick"])
    w.publish("STEEL", "other", "1")
    everything = tuple(pf_uuid(n) for n in ("coil-a", "coil-b", "coil", "coil-thin", "coil-thick", "coil-thick-v2"))
    for name in ("coil-a", "coil-b", "coil", "coil-thin", "coil-thick-v2"):
        assert footprint_versions(w.kv, pf_uuid(name)) == everything, name
    assert get_footprint(w.kv, pf_uuid("coil")).successor == pf_uuid("coil-thin")
    assert footprint_versions(w.kv, pf_uuid("other")) == (pf_uuid("other"),)


def test_the_versions_walk_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    w = World()
    w.publish("STEEL", "v1", "1")
    for n in range(2, 6):
        w.publish("STEEL", f"v{n}", "1", preceding=[f"v{n - 1}"])
    monkeypatch.setattr(footprints, "MAX_UPSTREAM_WALK", 5)
    assert len(footprint_versions(w.kv, pf_uuid("v3"))) == 5
    monkeypatch.setattr(footprints, "MAX_UPSTREAM_WALK", 4)
    with pytest.raises(TooLarge, match="more than 4 versions"):
        footprint_versions(w.kv, pf_uuid("v3"))
