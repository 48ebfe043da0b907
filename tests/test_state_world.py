"""A small world of organizations for the state tests, and tests of the
machinery itself (verification paths, rejection leaves state untouched)."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from ledger.envelope import pae, parse_envelope, verified_keys
from ledger.errors import (
    LedgerError,
    MalformedError,
    PermissionDenied,
    StateRuleError,
    StorageError,
)
from ledger.keys import Signer
from ledger.kv import EMPTY_STATE_DIGEST, Journal, MemoryKV, fold_state_digest
from ledger.log import Ledger
from ledger.records.build import org_spec, signed_op
from ledger.state import MACHINE_ID, Applied, Prepared, StateMachine
from ledger.state.machine import _FORGET_EVERY, MAX_OP_AGE
from ledger.state.queries import get_holdings
from ledger.state_machines import machine_for
from tests.test_records import PACT_V3_EXAMPLE

T0 = 1_735_689_600  # 2025-01-01T00:00:00Z
Y2024 = (1_704_067_200, 1_735_689_600)  # calendar 2024
H = 3600

ORGS = {
    "AUTH": ["authority"],
    "GECI": ["gec_issuer"],
    "REG": ["ccer_registry"],
    "VER": ["verifier"],
    "VER2": ["verifier"],
    "GEN": ["supplier"],
    "STEEL": ["supplier"],
    "PARTS": ["supplier"],
    "CARS": ["supplier"],
    "EXCH": ["exchange"],
}


def pf_uuid(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def pact_doc(
    name: str, pcf: str, *, unit: str = "kilogram", amount: str = "1",
    preceding: list[str] | None = None, ref: tuple[int, int] = Y2024,
) -> dict[str, Any]:  # fmt: skip
    import datetime as dt

    def iso(t: int) -> str:
        return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    doc = copy.deepcopy(PACT_V3_EXAMPLE)
    doc["id"] = pf_uuid(name)
    doc.pop("precedingPfIds")
    if preceding:
        doc["precedingPfIds"] = [pf_uuid(p) for p in preceding]
    doc.pop("validityPeriodStart"), doc.pop("validityPeriodEnd")
    doc["productNameCompany"] = name
    doc["pcf"].update(
        declaredUnitOfMeasurement=unit, declaredUnitAmount=amount, pcfExcludingBiogenicUptake=pcf,
        referencePeriodStart=iso(ref[0]), referencePeriodEnd=iso(ref[1]),
    )  # fmt: skip
    return doc


class World:
    """A MemoryKV state driven the way the log drives it: writes go through a
    Journal, rolled back to the entry's savepoint on rejection."""

    def __init__(self, *, genesis: bool = True, orgs: dict[str, list[str]] | None = None) -> None:
        self.kv = MemoryKV()
        self.machine = StateMachine()
        self.index = 0
        self.time = T0
        self.digest = EMPTY_STATE_DIGEST
        self.entries: list[tuple[bytes, int, int]] = []
        self.writes: list[tuple[bytes, bytes | None]] = []  # the last accepted entry's
        self.signers: dict[str, Signer] = {}
        self.signed = 0  # entries signed so far: their nonces
        if genesis:
            self.signers["AUTH"] = self.key("AUTH")
            self.ok("genesis", "AUTH", {"authorities": [org_spec("AUTH", "Registry Authority", ["authority"], [self.signers["AUTH"]])]})
            for org, roles in (orgs or ORGS).items():
                if org != "AUTH":
                    self.add_org(org, roles)

    def key(self, name: str, n: int = 0) -> Signer:
        return Signer.from_seed(name.lower(), hashlib.sha256(f"{name}/{n}".encode()).digest())

    def add_org(self, org: str, roles: list[str]) -> None:
        self.signers[org] = self.key(org)
        self.ok("org.register", "AUTH", org_spec(org, f"{org} Co., Ltd.", roles, [self.signers[org]]))

    def entry(self, op: str, org: str, body: dict[str, Any], signers: list[Signer] | None = None, time: int | None = None, nonce: str | None = None) -> bytes:
        """A signed entry. Each gets its own nonce unless one is given, so
        that a rule's test may send the same operation again and meet that
        rule, not the replay guard."""
        if nonce is None:
            self.signed += 1
            nonce = f"n{self.signed}"
        return signed_op(op, org, self.time if time is None else time, body, signers or [self.signers[org]], nonce=nonce)

    def apply(self, entry: bytes, *, verify_here: bool = False) -> Applied:
        verified = None if verify_here else verified_keys(parse_envelope(entry))
        return self._apply(entry, entry, verified)

    def apply_prepared(self, entry: bytes, *, verify: bool = False) -> Applied:
        """Apply what ``machine.prepare`` makes of ``entry`` (the node's path);
        the signatures are checked by prepare if ``verify``, else by apply."""
        return self._apply(self.machine.prepare(entry, verify=verify), entry, None)

    def _apply(self, item: bytes | Prepared, entry: bytes, verified: frozenset[str] | None) -> Applied:
        before = self.kv.items()
        journal = Journal(self.kv)
        try:
            applied = self.machine.apply(journal, item, self.machine.context(index=self.index, time=self.time), verified)
        except LedgerError:
            journal.rollback(0)
            assert self.kv.items() == before
            raise
        self.digest = fold_state_digest(self.digest, journal.writes)
        self.writes = journal.writes
        self.entries.append((entry, self.index, self.time))
        self.index += 1
        return applied

    def ok(self, op: str, org: str, body: dict[str, Any], **kw: Any) -> Applied:
        verify_here = kw.pop("verify_here", False)
        return self.apply(self.entry(op, org, body, **kw), verify_here=verify_here)

    def reject(self, exc_type: type[LedgerError], rule: str, op: str, org: str, body: dict[str, Any], **kw: Any) -> LedgerError:
        with pytest.raises(exc_type) as err:
            self.ok(op, org, body, **kw)
        got = getattr(err.value, "rule", None) or getattr(err.value, "what", None)
        assert got == rule, f"expected {rule}, got {err.value!r}"
        return err.value

    # --- common scenarios -------------------------------------------------------

    def gec_project(self, pid: str = "P1", owner: str = "GEN", capacity_kw: int = 50_000) -> None:
        self.ok("gec.register_project", "GECI", {"projectId": pid, "name": "Wind farm", "technology": "wind", "capacityKw": capacity_kw, "location": "Inner Mongolia", "owner": owner})

    def gec_issue(self, batch: str, quantity: int, pid: str = "P1", period: tuple[int, int] = Y2024, validity: int | None = None) -> tuple[int, int]:
        applied = self.ok("gec.issue", "GECI", {"batchId": batch, "projectId": pid, "periodStart": period[0], "periodEnd": period[1], "quantity": quantity, "validityEnd": validity or T0 + 2 * 365 * 86400})
        label = applied.events[0].subject  # gec:start-end
        s, e = label.split(":")[1].split("-")
        return int(s), int(e)

    def publish(self, org: str, name: str, pcf: str, **kw: Any) -> Applied:
        body: dict[str, Any] = {"footprint": pact_doc(name, pcf, **{k: v for k, v in kw.items() if k in ("unit", "amount", "preceding", "ref")})}
        if "components" in kw:
            body["components"] = kw["components"]
        if "claims" in kw:
            body["claims"] = kw["claims"]
        return self.ok("pcf.publish", org, body)


def test_genesis_then_orgs() -> None:
    w = World()
    assert w.index == len(ORGS)


def test_signatures_verified_in_the_machine_when_not_given() -> None:
    w = World()
    w.ok("gec.register_project", "GECI", {"projectId": "P9", "name": "x", "technology": "solar", "capacityKw": 1, "location": "x", "owner": "GEN"}, verify_here=True)
    entry = bytearray(w.entry("gec.register_project", "GECI", {"projectId": "P8", "name": "x", "technology": "solar", "capacityKw": 1, "location": "x", "owner": "GEN"}))
    # Flip one signature character: the machine must find no valid signature.
    at = entry.index(b'"sig":"') + 10
    entry[at] = ord("A") if entry[at] != ord("A") else ord("B")
    with pytest.raises(PermissionDenied) as err:
        w.apply(bytes(entry), verify_here=True)
    assert err.value.rule == "no_valid_signature"


def test_envelope_rules() -> None:
    w = World()
    with pytest.raises(MalformedError):
        w.apply(b"not an envelope")
    from ledger.envelope import encode_envelope, sign_envelope
    from ledger.records.build import op_payload

    wrong_type = encode_envelope(sign_envelope("application/json", op_payload("gec.transfer", "GEN", T0, {"start": 0, "end": 1, "to": "EXCH"}), [w.signers["GEN"]]))
    with pytest.raises(MalformedError) as err:
        w.apply(wrong_type)
    assert err.value.what == "payloadType"


def test_time_window() -> None:
    w = World()
    body = {"projectId": "P1", "name": "x", "technology": "solar", "capacityKw": 1, "location": "x", "owner": "GEN"}
    w.reject(StateRuleError, "time_in_future", "gec.register_project", "GECI", body, time=T0 + 301)
    w.reject(StateRuleError, "time_too_old", "gec.register_project", "GECI", body, time=T0 - 8 * 86400)
    w.ok("gec.register_project", "GECI", body, time=T0 + 300)


def _reencoded(entry: bytes, extra_signer: Signer | None = None) -> bytes:
    """The same signed payload in another envelope: keys in another order,
    indented, and with one more signature if ``extra_signer`` is given."""
    env = json.loads(entry)
    if extra_signer is not None:
        payload = base64.b64decode(env["payload"])
        sig = extra_signer.sign(pae(env["payloadType"], payload))
        env["signatures"].append({"keyid": extra_signer.vkey, "sig": base64.b64encode(sig).decode()})
    return json.dumps({"signatures": env["signatures"], "payloadType": env["payloadType"], "payload": env["payload"]}, indent=2).encode()


def test_a_signed_operation_is_applied_once_whatever_its_envelope() -> None:
    w = World()
    w.gec_project()
    s, _ = w.gec_issue("B1", 100)
    sale = w.entry("gec.transfer", "GEN", {"start": s, "end": s + 10, "to": "STEEL"})
    at = w.index
    w.apply(sale)
    w.ok("gec.transfer", "STEEL", {"start": s, "end": s + 10, "to": "GEN"})  # sold back
    # GEN's old transfer, sent again as other bytes by anyone, moves nothing.
    for copy_ in (_reencoded(sale), _reencoded(sale, w.signers["STEEL"])):
        assert copy_ != sale
        with pytest.raises(StateRuleError) as err:
            w.apply(copy_)
        assert err.value.rule == "operation_replayed" and err.value.field == "payload"
        assert f"applied at entry {at}" in str(err.value)
    assert [(h.start, h.end) for h in get_holdings(w.kv, "GEN", time=w.time).holdings] == [(s, s + 100)]
    # The same move signed again with another nonce is a new operation.
    w.ok("gec.transfer", "GEN", {"start": s, "end": s + 10, "to": "STEEL"}, nonce="second sale")
    # A record lives as long as its operation may be sequenced: then the
    # time check refuses the operation, and the next entry whose index is a
    # multiple of _FORGET_EVERY drops the record.
    w.time += MAX_OP_AGE + 1
    with pytest.raises(StateRuleError) as err:
        w.apply(_reencoded(sale))
    assert err.value.rule == "time_too_old"
    holder, other = "STEEL", "GEN"
    while True:
        at = w.index
        w.ok("gec.transfer", holder, {"start": s, "end": s + 10, "to": other})
        holder, other = other, holder
        if at % _FORGET_EVERY == 0:
            break
    kept = [int(k.split(b"/")[1], 16) for k, _ in w.kv.scan(b"rp/")]
    assert kept and min(kept) >= w.time - MAX_OP_AGE


def test_replay_gives_the_same_state_and_digest() -> None:
    w = World()
    w.gec_project()
    s, e = w.gec_issue("B1", 1000)
    w.ok("gec.transfer", "GEN", {"start": s + 10, "end": s + 20, "to": "STEEL"})
    replay = World(genesis=False)
    for entry, index, time in w.entries:
        replay.index, replay.time = index, time
        replay.apply(entry)
    assert replay.kv.items() == w.kv.items()
    assert replay.digest == w.digest


def test_prepare_is_stateless_and_apply_takes_its_result() -> None:
    w = World()
    w.gec_project()
    s, _ = w.gec_issue("B1", 1000)
    entry = w.entry("gec.transfer", "GEN", {"start": s, "end": s + 10, "to": "STEEL"})
    prepared = w.machine.prepare(entry)
    assert prepared.verified is None
    assert prepared.entry_digest == hashlib.sha256(entry).hexdigest()
    assert prepared.op.op == "gec.transfer" and prepared.op.org == "GEN"
    # prepare(verify=True) finds exactly the keys verified_keys finds.
    assert w.machine.prepare(entry, verify=True).verified == verified_keys(parse_envelope(entry))
    # Same writes, hence same digest, as applying the bytes.
    twin = World()
    twin.gec_project()
    twin.gec_issue("B1", 1000)
    twin.apply(entry)
    w.apply_prepared(entry)
    assert w.kv.items() == twin.kv.items() and w.digest == twin.digest


def test_prepare_rejects_what_apply_rejects() -> None:
    w = World()
    with pytest.raises(MalformedError):
        w.machine.prepare(b"not an envelope")
    # A Prepared whose signatures were not checked is checked by apply.
    entry = bytearray(w.entry("gec.register_project", "GECI", {"projectId": "P8", "name": "x", "technology": "solar", "capacityKw": 1, "location": "x", "owner": "GEN"}))
    at = entry.index(b'"sig":"') + 10
    entry[at] = ord("A") if entry[at] != ord("A") else ord("B")
    with pytest.raises(PermissionDenied) as err:
        w.apply_prepared(bytes(entry))
    assert err.value.rule == "no_valid_signature"
    assert w.machine.prepare(bytes(entry), verify=True).verified == frozenset()
    with pytest.raises(PermissionDenied):
        w.apply_prepared(bytes(entry), verify=True)


class _OlderRules(StateMachine):
    """A stand-in for an older build: only the id it records differs."""

    def __init__(self, machine_id: str) -> None:
        self.machine_id = machine_id


@pytest.mark.parametrize("older", ["carbonledger/v1", "carbonledger/v2", "carbonledger/v3", "carbonledger/v4"])
def test_ledgers_of_older_state_machines_are_refused_by_name(tmp_path: Path, older: str) -> None:
    # v5 stores no stale marks in footprint records, so the state digests of
    # a v4 ledger (like those of each earlier version) cannot be replayed.
    assert MACHINE_ID == "carbonledger/v5"
    with pytest.raises(StorageError, match=f"unknown state machine '{older}'; this build runs 'carbonledger/v5'"):
        machine_for(older)
    signer = Signer.from_seed("example.org/carbon", bytes(32))
    Ledger.open(tmp_path / "l", signer=signer, machine=_OlderRules(older)).close()
    with pytest.raises(StorageError, match=f"ledger machine is '{older}', but was opened with 'carbonledger/v5'"):
        Ledger.open(tmp_path / "l", signer=signer, machine=StateMachine())
    assert machine_for(MACHINE_ID) is not None
