"""Genesis, organizations, keys and roles: each rule accepted and broken."""

from __future__ import annotations

from ledger.errors import PermissionDenied, StateRuleError
from ledger.records.build import org_spec
from ledger.state.queries import MAX_LISTED_PAST_KEYS, get_org
from tests.test_state_world import World, pact_doc

P_BODY = {"projectId": "P1", "name": "x", "technology": "solar", "capacityKw": 1, "location": "x", "owner": "GEN"}


def test_genesis_only_once_and_first() -> None:
    w = World(genesis=False)
    auth = w.key("AUTH")
    other = w.key("OTHER")
    body = {"authorities": [org_spec("AUTH", "Authority", ["authority"], [auth])]}
    # Non-genesis before genesis.
    w.signers["AUTH"] = auth
    w.reject(StateRuleError, "no_genesis", "org.register", "AUTH", org_spec("X", "X", ["supplier"], [other]))
    w.reject(PermissionDenied, "not_an_authority", "genesis", "NOBODY", body, signers=[auth])
    w.reject(PermissionDenied, "not_signed_by_org", "genesis", "AUTH", body, signers=[other])
    w.index = 1
    w.reject(StateRuleError, "genesis_not_first", "genesis", "AUTH", body)
    w.index = 0
    w.ok("genesis", "AUTH", body)
    w.reject(StateRuleError, "genesis_exists", "genesis", "AUTH", body)


def test_register_org_rules() -> None:
    w = World()
    k = w.key("NEW")
    w.reject(PermissionDenied, "missing_role", "org.register", "GEN", org_spec("NEW", "New", ["supplier"], [k]))
    w.reject(StateRuleError, "org_exists", "org.register", "AUTH", org_spec("GEN", "Again", ["supplier"], [k]))
    w.reject(StateRuleError, "key_in_use", "org.register", "AUTH", org_spec("NEW", "New", ["supplier"], [w.signers["GEN"]]))
    w.reject(PermissionDenied, "unknown_org", "gec.register_project", "NOPE", P_BODY, signers=[k])
    w.ok("org.register", "AUTH", org_spec("NEW", "New", ["supplier", "exchange"], [k]))
    info = get_org(w.kv, "NEW")
    assert info.roles == ("supplier", "exchange") and info.keys[0].status == "current"
    assert info.registered == w.index - 1 and info.registered_by == "AUTH"


def test_signature_must_be_a_current_key_of_the_acting_org() -> None:
    w = World()
    # GEN's key signing for GECI.
    w.reject(PermissionDenied, "not_signed_by_org", "gec.register_project", "GECI", P_BODY, signers=[w.signers["GEN"]])
    # Right org, wrong role.
    w.reject(PermissionDenied, "missing_role", "gec.register_project", "GEN", P_BODY)
    # Co-signature by another org's key alongside the right one is fine.
    w.ok("gec.register_project", "GECI", P_BODY, signers=[w.signers["GECI"], w.signers["VER"]])


def test_rotate_and_revoke() -> None:
    w = World()
    old, new, third = w.signers["GEN"], w.key("GEN", 1), w.key("GEN", 2)
    rotate = {"orgId": "GEN", "oldKey": old.vkey, "newKey": new.vkey}
    w.reject(PermissionDenied, "missing_role", "org.rotate_key", "STEEL", rotate)
    w.reject(StateRuleError, "key_not_current", "org.rotate_key", "GEN", {**rotate, "oldKey": third.vkey})
    w.reject(StateRuleError, "key_in_use", "org.rotate_key", "GEN", {**rotate, "newKey": w.signers["STEEL"].vkey})
    w.reject(StateRuleError, "org_not_found", "org.rotate_key", "AUTH", {**rotate, "orgId": "NOPE"})
    w.ok("org.rotate_key", "GEN", rotate)
    # The rotated-out key no longer acts for GEN; the new one does.
    w.reject(PermissionDenied, "not_signed_by_org", "org.rotate_key", "GEN", {"orgId": "GEN", "oldKey": new.vkey, "newKey": third.vkey}, signers=[old])
    w.reject(StateRuleError, "last_key", "org.revoke_key", "GEN", {"orgId": "GEN", "key": new.vkey, "reason": "lost"}, signers=[new])
    # An authority may rotate too; then revoke one of two keys.
    w.ok("org.rotate_key", "AUTH", {"orgId": "GEN", "oldKey": new.vkey, "newKey": third.vkey})
    w.ok("org.register", "AUTH", org_spec("TWO", "Two", ["supplier"], [w.key("TWO"), w.key("TWO", 1)]))
    w.ok("org.revoke_key", "AUTH", {"orgId": "TWO", "key": w.key("TWO").vkey, "reason": "compromised"})
    w.reject(StateRuleError, "key_not_current", "org.revoke_key", "AUTH", {"orgId": "TWO", "key": w.key("TWO").vkey, "reason": "again"})
    # A revoked key can never be registered again, to anyone.
    w.reject(StateRuleError, "key_in_use", "org.register", "AUTH", org_spec("THREE", "T", ["supplier"], [w.key("TWO")]))
    info = get_org(w.kv, "GEN")
    assert [k.status for k in info.keys] == ["current", "rotated", "rotated"]
    assert get_org(w.kv, "TWO").keys[-1].status == "revoked"


def test_no_number_of_rotations_stops_a_revocation() -> None:
    # Whoever holds one of an org's keys may rotate its keys, as often as
    # they like. However many keys the org has used, its other key and an
    # authority can still act: revoke the stolen key, rotate the rest.
    w = World()
    first, stolen = w.key("TWO"), w.key("TWO", 1)
    w.ok("org.register", "AUTH", org_spec("TWO", "Two", ["supplier"], [first, stolen]))
    rotations = MAX_LISTED_PAST_KEYS + 300
    current = stolen
    for n in range(2, rotations + 2):
        nxt = w.key("TWO", n)
        w.ok("org.rotate_key", "TWO", {"orgId": "TWO", "oldKey": current.vkey, "newKey": nxt.vkey}, signers=[current])
        current = nxt
    # The org record, read on every entry the org signs, did not grow.
    assert len(w.kv.get(b"o/TWO") or b"") < 1024
    w.ok("org.revoke_key", "AUTH", {"orgId": "TWO", "key": current.vkey, "reason": "stolen"})
    w.reject(PermissionDenied, "not_signed_by_org", "pcf.publish", "TWO", {"footprint": pact_doc("by-thief", "1")}, signers=[current])
    w.ok("pcf.publish", "TWO", {"footprint": pact_doc("by-first", "1")}, signers=[first])
    # The query lists the current key, then the most recently removed ones,
    # oldest of them first, and counts them all.
    info = get_org(w.kv, "TWO")
    assert info.past_keys == rotations + 1
    assert [k.vkey for k in info.keys[:1]] == [first.vkey]
    past = info.keys[1:]
    assert len(past) == MAX_LISTED_PAST_KEYS
    assert past[-1].vkey == current.vkey and past[-1].status == "revoked" and past[-1].removed == w.index - 2
    assert past[-2].vkey == w.key("TWO", rotations).vkey and past[-2].status == "rotated"
    assert [k.removed for k in past] == sorted(k.removed or 0 for k in past)
    # A key once used is never registered again, however far back.
    w.reject(StateRuleError, "key_in_use", "org.rotate_key", "TWO", {"orgId": "TWO", "oldKey": first.vkey, "newKey": stolen.vkey}, signers=[first])
