"""Genesis and organizations: who may act, with which keys and roles.

Genesis names the registry authorities and must be the log's first entry. An
authority registers organizations; an authority or the organization itself
rotates or revokes a key. A key, once registered, belongs to its org forever
(``k/{vkey}``), so a revoked key can never be re-registered to sign again.

An org's record (read on every entry the org signs) holds its current keys
only, whose number the registration bounds. Keys it no longer uses are kept
apart, one record each (``kp/{org}/{n}``, the org's n-th removed key), so no
number of rotations ever stops the org or an authority from revoking a key:
a cap on them would let whoever stole one key rotate until the cap and keep
that key for good.
"""

from __future__ import annotations

from typing import Any

from ledger.errors import PermissionDenied, StateRuleError
from ledger.records.ops import ROLES, GenesisBody, OrgRegisterBody, OrgSpec, RevokeKeyBody, RotateKeyBody
from ledger.state._codec import n16
from ledger.state._tx import Tx

__all__ = ["apply_genesis", "HANDLERS"]


def _org_record(spec: OrgSpec, tx: Tx) -> dict[str, Any]:
    return {
        "name": spec.name,
        "roles": [r for r in ROLES if r in spec.roles],
        "keys": [{"key": k, "added": tx.ctx.index} for k in spec.keys],
        "pastKeys": 0,  # how many kp/{org}/{n} records there are
        "registered": tx.ctx.index,
        "by": tx.op.org,
    }


def _check_new_keys(tx: Tx, keys: list[str], field_name: str) -> None:
    for i, vkey in enumerate(keys):
        if tx.get("k", vkey) is not None:
            raise StateRuleError("key_in_use", "key already registered", f"{field_name}[{i}]")


def _write_org(tx: Tx, org_id: str, spec: OrgSpec) -> None:
    tx.put(_org_record(spec, tx), "o", org_id)
    for vkey in spec.keys:
        tx.put({"org": org_id, "added": tx.ctx.index}, "k", vkey)
    tx.emit("org.registered", org_id, *spec.roles)


def apply_genesis(tx: Tx, verified: frozenset[str]) -> None:
    """The first entry: register the authorities it names.

    It is self-certifying: the acting org must be one of the authorities in
    the body and must have signed with one of the keys the body gives it.
    """
    body = tx.op.body
    assert isinstance(body, GenesisBody)
    if tx.get("g", "genesis") is not None:
        raise StateRuleError("genesis_exists", "genesis was already applied", "op")
    if tx.ctx.index != 0:
        raise StateRuleError("genesis_not_first", "genesis must be entry 0", "op")
    acting = [a for a in body.authorities if a.id == tx.op.org]
    if not acting:
        raise PermissionDenied("not_an_authority", "acting org is not in the genesis", "org")
    if not verified.intersection(acting[0].keys):
        raise PermissionDenied("not_signed_by_org", "genesis not signed by the acting authority", "org")
    for i, spec in enumerate(body.authorities):
        _check_new_keys(tx, spec.keys, f"body.authorities[{i}].keys")
        seen = {k for a in body.authorities[:i] for k in a.keys}
        if seen.intersection(spec.keys):
            raise StateRuleError("key_in_use", "key given to two authorities", f"body.authorities[{i}].keys")
    tx.put({"index": tx.ctx.index, "time": tx.ctx.time}, "g", "genesis")
    for spec in body.authorities:
        _write_org(tx, spec.id, spec)


def _register(tx: Tx) -> None:
    body = tx.op.body
    assert isinstance(body, OrgRegisterBody)
    tx.require_role("authority")
    if tx.get("o", body.id) is not None:
        raise StateRuleError("org_exists", f"organization {body.id} already registered", "body.id")
    _check_new_keys(tx, body.keys, "body.keys")
    _write_org(tx, body.id, body)


def _authorize_key_change(tx: Tx, org_id: str) -> dict[str, Any]:
    assert tx.org is not None
    if org_id != tx.op.org and "authority" not in tx.org["roles"]:
        raise PermissionDenied("missing_role", "only the org itself or an authority may change its keys", "org")
    return tx.require_org(org_id, "body.orgId")


def _current(org: dict[str, Any], vkey: str, field_name: str) -> int:
    for i, entry in enumerate(org["keys"]):
        if entry["key"] == vkey:
            return i
    raise StateRuleError("key_not_current", "not a current key of the organization", field_name)


def _retire_key(tx: Tx, org_id: str, org: dict[str, Any], slot: int, past: dict[str, Any]) -> None:
    """Move the key in ``slot`` out of ``org``'s current keys into the org's
    next past-key record, with ``past`` (status, reason) added. ``org`` is
    the caller's copy, which the caller writes."""
    entry = org["keys"][slot]
    org["keys"] = [*org["keys"][:slot], *org["keys"][slot + 1 :]]
    n = org["pastKeys"]
    org["pastKeys"] = n + 1
    tx.put({**entry, **past, "removed": tx.ctx.index}, "kp", org_id, n16(n))


def _rotate(tx: Tx) -> None:
    body = tx.op.body
    assert isinstance(body, RotateKeyBody)
    org = _authorize_key_change(tx, body.orgId)
    slot = _current(org, body.oldKey, "body.oldKey")
    _check_new_keys(tx, [body.newKey], "body.newKey")
    _retire_key(tx, body.orgId, org, slot, {"status": "rotated"})
    org["keys"] = [*org["keys"], {"key": body.newKey, "added": tx.ctx.index}]
    tx.put(org, "o", body.orgId)
    tx.put({"org": body.orgId, "added": tx.ctx.index}, "k", body.newKey)
    tx.emit("org.key_rotated", body.orgId)


def _revoke(tx: Tx) -> None:
    body = tx.op.body
    assert isinstance(body, RevokeKeyBody)
    org = _authorize_key_change(tx, body.orgId)
    slot = _current(org, body.key, "body.key")
    if len(org["keys"]) == 1:
        raise StateRuleError("last_key", "cannot revoke an organization's last key; rotate it", "body.key")
    _retire_key(tx, body.orgId, org, slot, {"status": "revoked", "reason": body.reason})
    tx.put(org, "o", body.orgId)
    tx.emit("org.key_revoked", body.orgId)


HANDLERS = {
    "org.register": _register,
    "org.rotate_key": _rotate,
    "org.revoke_key": _revoke,
}
