"""Carbon labels: a real steel -> auto part -> car chain on a real ledger, labels
built by the node's builder, verified offline, and every tampered part
rejected with the reason naming the first broken link."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from client.label import (
    LABEL_MEDIA_TYPE,
    MAX_LABEL_SIZE,
    BrokenLink,
    LabelEntry,
    LabelNode,
    MissingAttestation,
    NotCurrent,
    ProofExtra,
    UnexpectedFootprint,
    check_footprint_id,
    check_not_deprecated,
    format_label,
    parse_label,
    verify_label,
)
from ledger.checkpoint import cosign_checkpoint
from ledger.envelope import Envelope, EnvelopeSignature, encode_envelope, sign_envelope
from ledger.errors import (
    InvalidSignature,
    MalformedError,
    NotFound,
    QuorumNotMet,
    RootMismatch,
    TooLarge,
    VerificationError,
)
from ledger.keys import Signer
from ledger.log import Ledger
from ledger.policy import Policy, parse_policy
from ledger.records.build import op_payload, org_spec, signed_op
from ledger.records.ops import PAYLOAD_TYPE
from ledger.state import StateMachine
from ledger.tlog_proof import format_tlog_proof, parse_tlog_proof
from node.label_builder import build_label, label_builder
from tests.test_state_world import Y2024, pact_doc, pf_uuid

ROOT = Path(__file__).resolve().parents[1]
ROLES = {
    "AUTH": ["authority"],
    "GECI": ["gec_issuer"],
    "REG": ["ccer_registry"],
    "VER": ["verifier"],
    "VER2": ["verifier"],
    "GEN": ["supplier"],
    "STEEL": ["supplier"],
    "PARTS": ["supplier"],
    "CARS": ["supplier"],
}
STEEL, DOOR, CAR, PLATE = pf_uuid("steel"), pf_uuid("door"), pf_uuid("car"), pf_uuid("plate")
WITNESS = Signer.from_seed("witness.example", bytes([7]) * 32, cosigner=True)


def key(name: str) -> Signer:
    return Signer.from_seed(name.lower(), hashlib.sha256(f"{name}/0".encode()).digest())


class Chain:
    """The signed operations of a 3-level supply chain, in log order.

    GEC batch B1 is serials [0, 30000) and CCER batch CB1 is [0, 500): each
    kind's serials start at 0. Every maker buys 1000 MWh of GEC, retires it for
    2024 and claims it; the car maker retires its 1000 in two entries, claims
    both with one range, and offsets 40 tCO2e of CCER. VER attests all three,
    VER2 the car too. PARTS also makes a steel plate (another footprint for
    swapping), and STEEL has a retirement of its own that no label needs.
    """

    def __init__(self) -> None:
        self.now = int(time.time())
        self.keys = {org: key(org) for org in ROLES}
        self.ops: list[bytes] = []
        self.publish_entry: dict[str, bytes] = {}

    def op(self, op: str, org: str, body: dict[str, Any]) -> bytes:
        entry = signed_op(op, org, self.now, body, [self.keys[org]])
        self.ops.append(entry)
        return entry

    def retire(self, org: str, start: int, end: int, kind: str = "gec") -> None:
        body: dict[str, Any] = {
            "start": start,
            "end": end,
            "beneficiary": f"{org} plant",
            "periodStart": Y2024[0],
            "periodEnd": Y2024[1],
        }
        if kind == "ccer":
            body["purpose"] = "product offset"
        self.op("gec.retire" if kind == "gec" else "ccer.cancel", org, body)

    def publish(
        self,
        org: str,
        name: str,
        pcf: str,
        *,
        components: list[tuple[str, str]] = (),
        gec: list[tuple[int, int]] = (),
        ccer: list[tuple[int, int]] = (),
        preceding: list[str] | None = None,
    ) -> None:  # type: ignore[assignment]
        body = {
            "footprint": pact_doc(name, pcf, preceding=preceding),
            "components": [
                {"pfId": pf_uuid(n), "quantity": q, "unit": "kilogram"} for n, q in components
            ],
            "claims": {
                "gec": [{"start": s, "end": e} for s, e in gec],
                "ccer": [{"start": s, "end": e} for s, e in ccer],
            },
        }
        self.publish_entry[name] = self.op("pcf.publish", org, body)

    def attest(self, verifier: str, name: str) -> None:
        digest = hashlib.sha256(self.publish_entry[name]).hexdigest()
        self.op("pcf.attest", verifier, {
            "pfId": pf_uuid(name), "footprintDigest": digest, "coverage": "product level",
            "assurance": "reasonable", "standardName": "ISO 14067", "statement": "verified",
        })  # fmt: skip

    def build(self) -> Chain:
        self.op(
            "genesis",
            "AUTH",
            {"authorities": [org_spec("AUTH", "Authority", ["authority"], [self.keys["AUTH"]])]},
        )
        for org, roles in ROLES.items():
            if org != "AUTH":
                self.op(
                    "org.register",
                    "AUTH",
                    org_spec(org, f"{org} Co., Ltd.", roles, [self.keys[org]]),
                )
        self.op(
            "gec.register_project",
            "GECI",
            {
                "projectId": "P1",
                "name": "Wind farm",
                "technology": "wind",
                "capacityKw": 100_000,
                "location": "Inner Mongolia",
                "owner": "GEN",
            },
        )
        self.op(
            "gec.issue",
            "GECI",
            {
                "batchId": "B1",
                "projectId": "P1",
                "periodStart": Y2024[0],
                "periodEnd": Y2024[1],
                "quantity": 30_000,
                "validityEnd": self.now + 2 * 365 * 86400,
            },
        )
        self.op("ccer.validate_project", "VER", {
            "projectId": "C1", "name": "Forest CCER", "methodology": "CCER-14-001-V01", "proponent": "GEN",
            "creditingStart": Y2024[0], "creditingEnd": Y2024[0] + 10 * 365 * 86400, "statement": "validated",
        })  # fmt: skip
        self.op("ccer.register_project", "REG", {"projectId": "C1"})
        self.op(
            "ccer.verify_report",
            "VER",
            {
                "reportId": "R1",
                "projectId": "C1",
                "periodStart": Y2024[0],
                "periodEnd": Y2024[1],
                "reductions": 500,
                "statement": "verified",
            },
        )
        self.op("ccer.issue", "REG", {"batchId": "CB1", "reportId": "R1", "quantity": 500})
        for org, start in (("STEEL", 0), ("PARTS", 1000), ("CARS", 2000)):
            self.op("gec.transfer", "GEN", {"start": start, "end": start + 1000, "to": org})
        self.op("gec.transfer", "GEN", {"start": 5000, "end": 5100, "to": "STEEL"})
        self.op("ccer.transfer", "GEN", {"start": 0, "end": 100, "to": "CARS"})
        self.retire("STEEL", 0, 1000)
        self.retire("STEEL", 5000, 5100)  # retired, never claimed
        self.publish("STEEL", "steel", "2.0", gec=[(0, 1000)])
        self.attest("VER", "steel")
        self.retire("PARTS", 1000, 1000 + 1000)
        self.publish("PARTS", "door", "25", components=[("steel", "10")], gec=[(1000, 1600)])
        self.attest("VER", "door")
        self.publish("PARTS", "plate", "30", components=[("steel", "12")], gec=[(1600, 2000)])
        self.retire("CARS", 2000, 2600)
        self.retire("CARS", 2600, 3000)
        self.retire("CARS", 0, 40, kind="ccer")
        self.publish(
            "CARS", "car", "3000", components=[("door", "4")], gec=[(2000, 3000)], ccer=[(0, 40)]
        )
        self.attest("VER", "car")
        self.attest("VER2", "car")
        return self


def open_chain_ledger(path: Path | None = None) -> Ledger:
    signer = key("LOG")
    if path is None:
        return Ledger.memory(signer=signer, machine=StateMachine())
    return Ledger.open(path, signer=signer, machine=StateMachine())


@pytest.fixture(scope="module")
def chain() -> Chain:
    return Chain().build()


@pytest.fixture(scope="module")
def ledger(chain: Chain) -> Iterator[Ledger]:
    led = open_chain_ledger()
    for entry in chain.ops:
        led.append([entry])
    yield led
    led.close()


@pytest.fixture(scope="module")
def policy(ledger: Ledger) -> Policy:
    return parse_policy(f"log {ledger.vkey}\nquorum none\n")


@pytest.fixture(scope="module")
def car_label(ledger: Ledger) -> bytes:
    return build_label(ledger, CAR)


# --- helpers that tamper with a label --------------------------------------------------


def edit(label: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    doc = json.loads(label)
    change(doc)
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def flip_entry_byte(item: dict[str, str], at: int = 40) -> None:
    raw = bytearray(base64.b64decode(item["entry"]))
    raw[at] ^= 0x01
    item["entry"] = base64.b64encode(bytes(raw)).decode()


def map_proofs(doc: dict[str, Any], change: Callable[[str], str]) -> None:
    for name in ("attestations", "retirements", "deprecations"):
        for item in doc[name]:
            item["proof"] = change(item["proof"])
    doc["footprint"]["proof"] = change(doc["footprint"]["proof"])
    for c in doc["components"]:
        map_proofs(c, change)


def rejects(
    label: bytes, policy: Policy, exc: type[Exception], *fragments: str, **kw: Any
) -> Exception:
    with pytest.raises(exc) as err:
        verify_label(label, policy, **kw)
    for f in fragments:
        assert f in str(err.value), f"{f!r} not in {str(err.value)!r}"
    return err.value


# --- what a real label proves ----------------------------------------------------------


def test_a_real_label_verifies_and_reports_the_figures(
    ledger: Ledger, policy: Policy, car_label: bytes
) -> None:
    report = verify_label(car_label, policy, require_attestation=True)
    assert (report.footprint_id, report.product_name, report.owner) == (CAR, "car", "CARS")
    assert (report.pcf, report.declared_unit, report.declared_unit_amount) == (
        "3000",
        "kilogram",
        "1",
    )
    assert [a.org for a in report.verified_by] == ["VER", "VER2"]
    assert (
        report.verified_by[0].assurance == "reasonable"
        and report.verified_by[0].standard_name == "ISO 14067"
    )
    assert (report.renewable_mwh, report.offsets_tco2e) == (1000, 40)
    assert report.gec_claims == ((2000, 3000),) and report.ccer_claims == ((0, 40),)
    assert [(r.kind, r.start, r.end, r.by) for r in report.retirements] == [
        ("gec", 2000, 2600, "CARS"),
        ("gec", 2600, 3000, "CARS"),
        ("ccer", 0, 40, "CARS"),
    ]
    assert report.owner_keys == (key("CARS").vkey,)
    assert report.entry_digest == hashlib.sha256(ledger.entry(report.entry_index)).hexdigest()
    assert (report.checkpoint.origin, report.checkpoint.size, report.checkpoint.root_hash) == (
        ledger.origin,
        ledger.size,
        ledger.root(),
    )
    assert report.checkpoint.witnesses == ()
    assert not report.stale and not report.deprecated
    (door,) = report.components
    assert (door.footprint_id, door.quantity, door.unit) == (DOOR, "4", "kilogram")
    assert (door.label.pcf, door.label.renewable_mwh, [a.org for a in door.label.verified_by]) == (
        "25",
        600,
        ["VER"],
    )
    (steel,) = door.label.components
    assert (
        steel.footprint_id,
        steel.quantity,
        steel.label.renewable_mwh,
        steel.label.components,
    ) == (STEEL, "10", 1000, ())


def test_summary_is_readable(policy: Policy, car_label: bytes) -> None:
    text = verify_label(car_label, policy).summary()
    for expected in (
        "car",
        "3000 kgCO2e per 1 kilogram",
        "VER (reasonable assurance",
        "VER2",
        "1000 MWh",
        "40 tCO2e",
        "door: 25 kgCO2e",
        "steel: 2.0 kgCO2e",
        "tree size",
    ):
        assert expected in text, expected
    assert text.index("car:") < text.index("door:") < text.index("steel:")


def test_label_format_is_canonical_and_round_trips(car_label: bytes) -> None:
    doc = json.loads(car_label)
    assert doc["mediaType"] == LABEL_MEDIA_TYPE and doc["version"] == 1
    assert format_label(parse_label(car_label)) == car_label
    # One tree for every proof in the file.
    notes: set[str] = set()
    map_proofs(doc, lambda p: notes.add(parse_tlog_proof(p).checkpoint_note) or p)  # type: ignore[func-returns-value]
    assert len(notes) == 1


def test_the_label_size_of_the_three_level_example(car_label: bytes) -> None:
    # Three footprints, four attestations, four retirements: a few tens of KiB.
    print(f"3-level car label: {len(car_label)} bytes")
    assert len(car_label) < 64 * 1024


def test_the_builder_refuses_unknown_footprints_and_sizes(ledger: Ledger) -> None:
    with pytest.raises(NotFound):
        build_label(ledger, pf_uuid("nothing"))
    with pytest.raises(NotFound):
        build_label(ledger, CAR, ledger.size + 1)
    data, media_type = label_builder(ledger, CAR.upper(), ledger.size)
    assert media_type == LABEL_MEDIA_TYPE and data == build_label(ledger, CAR)


def test_a_label_at_an_older_size_leaves_out_later_facts(
    ledger: Ledger, chain: Chain, policy: Policy
) -> None:
    # Just before VER2's attestation of the car, which is the last entry.
    before = ledger.size - 1
    report = verify_label(build_label(ledger, CAR, before), policy)
    assert [a.org for a in report.verified_by] == ["VER"] and report.checkpoint.size == before
    with pytest.raises(NotFound):
        build_label(ledger, CAR, ledger.size - 4)  # before the car was published


def test_no_label_proves_currency(policy: Policy, car_label: bytes) -> None:
    """A label without deprecations is not evidence of currency: the report
    says what is included and never "current"."""
    report = verify_label(car_label, policy)
    assert not report.deprecated and not report.stale
    text = report.summary()
    assert "current as of" not in text
    assert "no deprecation or newer version is included in this label" in text
    assert "cannot" in text and "check the ledger for currency" in text
    check_not_deprecated(report)  # nothing in the label says otherwise; that is all it shows


def test_the_expected_footprint_id_is_checked(policy: Policy, car_label: bytes) -> None:
    report = verify_label(car_label, policy)
    check_footprint_id(report, CAR)
    check_footprint_id(report, CAR.upper())  # PACT ids are UUIDs: case does not matter
    with pytest.raises(UnexpectedFootprint) as err:
        check_footprint_id(report, DOOR)
    assert (err.value.expected, err.value.found) == (DOOR, CAR)
    assert str(err.value) == f"label is of footprint {CAR} (car), not of the expected {DOOR}"


def _with_extra(proof_text: str, extra: bytes) -> str:
    p = parse_tlog_proof(proof_text)
    return format_tlog_proof(type(p)(p.index, p.proof, p.checkpoint_note, extra))


def test_tlog_proof_extra_data_is_reported_and_not_used(policy: Policy, car_label: bytes) -> None:
    """C2SP tlog-proof: extra data is not authenticated and must not be
    trusted. The verifier does not use it, and reports every proof that
    carries some instead of passing it on unnoticed."""

    def add_extras(doc: dict[str, Any]) -> None:
        doc["footprint"]["proof"] = _with_extra(doc["footprint"]["proof"], b"from the car maker")
        att = doc["components"][0]["attestations"][0]
        att["proof"] = _with_extra(att["proof"], bytes(range(48)))

    plain = verify_label(car_label, policy)
    report = verify_label(edit(car_label, add_extras), policy)
    door_attestation = plain.components[0].label.verified_by[0].index
    assert report.proof_extras == (ProofExtra("footprint entry", plain.entry_index, b"from the car maker"),)
    assert report.components[0].label.proof_extras == (
        ProofExtra(f"component 1 ({DOOR}): attestation 1", door_attestation, bytes(range(48))),
    )
    # Nothing proven changes with it.
    assert (report.pcf, report.verified_by, report.renewable_mwh, report.checkpoint) == (
        plain.pcf, plain.verified_by, plain.renewable_mwh, plain.checkpoint,
    )  # fmt: skip
    text = report.summary()
    assert "2 proof(s) carry tlog-proof extra data; no signature covers it" in text
    assert f"footprint entry (entry {plain.entry_index}): 18 bytes, ZnJvbSB0aGUgY2FyIG1ha2Vy" in text
    assert f"component 1 ({DOOR}): attestation 1 (entry {door_attestation}): 48 bytes, AAECAw" in text
    assert plain.proof_extras == () and "extra data" not in plain.summary()
    # Every proof with extra data: all in the report, the first ten in the summary.
    everywhere = verify_label(edit(car_label, lambda d: map_proofs(d, lambda p: _with_extra(p, b"x"))), policy)
    text = everywhere.summary()
    # car: footprint, 2 attestations, 3 retirements; door and steel: 3 each.
    assert "12 proof(s) carry tlog-proof extra data" in text and "and 2 more" in text
    assert len(everywhere.proof_extras) == 6


# --- tampering: every part rejected, with the first broken link named ------------------


def test_flipped_entry_bytes_fail_inclusion(policy: Policy, car_label: bytes) -> None:
    rejects(
        edit(car_label, lambda d: flip_entry_byte(d["footprint"])),
        policy,
        RootMismatch,
        "footprint entry inclusion",
    )
    rejects(
        edit(car_label, lambda d: flip_entry_byte(d["attestations"][1])),
        policy,
        RootMismatch,
        "attestation 2 inclusion",
    )
    rejects(
        edit(car_label, lambda d: flip_entry_byte(d["components"][0]["components"][0]["retirements"][0])),
        policy, RootMismatch, f"component 1 ({DOOR}) > component 1 ({STEEL}): retirement 1 inclusion",
    )  # fmt: skip


def test_altered_proof_lines_fail(policy: Policy, car_label: bytes) -> None:
    def alter_hash(doc: dict[str, Any]) -> None:
        p = parse_tlog_proof(doc["footprint"]["proof"])
        hashes = list(p.proof)
        hashes[0] = bytes(32)
        doc["footprint"]["proof"] = format_tlog_proof(
            type(p)(p.index, tuple(hashes), p.checkpoint_note)
        )

    rejects(edit(car_label, alter_hash), policy, RootMismatch, "footprint entry inclusion")

    def alter_index(doc: dict[str, Any]) -> None:
        p = parse_tlog_proof(doc["retirements"][0]["proof"])
        doc["retirements"][0]["proof"] = format_tlog_proof(
            type(p)(p.index + 1, p.proof, p.checkpoint_note)
        )

    rejects(edit(car_label, alter_index), policy, VerificationError, "retirement 1 inclusion")


def test_altered_checkpoint_signature_fails(policy: Policy, car_label: bytes) -> None:
    def alter_signature(doc: dict[str, Any]) -> None:
        proof = doc["attestations"][0]["proof"]
        head, sig = proof.rsplit(" ", 1)
        raw = bytearray(base64.b64decode(sig))
        raw[10] ^= 0x01
        doc["attestations"][0]["proof"] = f"{head} {base64.b64encode(bytes(raw)).decode()}\n"

    rejects(edit(car_label, alter_signature), policy, InvalidSignature, "attestation 1 checkpoint")


def test_a_missing_attestation_fails_when_required(policy: Policy, car_label: bytes) -> None:
    bare = edit(car_label, lambda d: d["attestations"].clear())
    assert verify_label(bare, policy).verified_by == ()
    rejects(
        bare,
        policy,
        MissingAttestation,
        CAR,
        "no verification-body attestation",
        require_attestation=True,
    )
    upstream_bare = edit(
        car_label, lambda d: d["components"][0]["components"][0]["attestations"].clear()
    )
    rejects(
        upstream_bare,
        policy,
        MissingAttestation,
        f"component 1 ({DOOR}) > component 1 ({STEEL})",
        require_attestation=True,
    )


def test_an_attestation_of_another_footprint_fails(
    ledger: Ledger, policy: Policy, car_label: bytes
) -> None:
    door_attestation = json.loads(build_label(ledger, DOOR))["attestations"][0]
    swapped = edit(car_label, lambda d: d["attestations"].__setitem__(0, door_attestation))
    rejects(swapped, policy, BrokenLink, "attestation 1", f"attests footprint {DOOR}, not {CAR}")


def test_a_component_swapped_for_another_footprint_fails(
    ledger: Ledger, policy: Policy, car_label: bytes
) -> None:
    plate = json.loads(build_label(ledger, PLATE))
    del plate["mediaType"], plate["version"]
    swapped = edit(car_label, lambda d: d["components"].__setitem__(0, plate))
    err = rejects(
        swapped,
        policy,
        BrokenLink,
        f"component 1 ({DOOR}): footprint id differs from the one referenced",
        PLATE,
    )
    assert err.where == f"component 1 ({DOOR})"  # type: ignore[attr-defined]
    rejects(
        edit(car_label, lambda d: d["components"].clear()),
        policy,
        BrokenLink,
        "references 1 components, the label holds 0",
    )


def test_a_removed_or_swapped_retirement_fails(
    ledger: Ledger, policy: Policy, car_label: bytes
) -> None:
    rejects(
        edit(car_label, lambda d: d["retirements"].pop(1)),
        policy,
        BrokenLink,
        "claim gec[0] [2000, 3000)",
        "units [2600, 3000) are not covered",
    )
    rejects(
        edit(car_label, lambda d: d["retirements"].pop(2)),
        policy,
        BrokenLink,
        "claim ccer[0] [0, 40)",
        "units [0, 40) are not covered",
    )
    steel_retirement = json.loads(build_label(ledger, STEEL))["retirements"][0]
    rejects(
        edit(car_label, lambda d: d["retirements"].__setitem__(0, steel_retirement)),
        policy,
        BrokenLink,
        "retirement 1",
        "retired by STEEL, not by the footprint's owner CARS",
    )
    # An entry of the wrong kind in the retirements list; the same entry twice.
    door_attestation = json.loads(build_label(ledger, DOOR))["attestations"][0]
    rejects(
        edit(car_label, lambda d: d["retirements"].__setitem__(0, door_attestation)),
        policy,
        BrokenLink,
        "retirement 1",
        "is a pcf.attest entry",
    )
    rejects(
        edit(car_label, lambda d: d["retirements"].__setitem__(0, d["attestations"][0])),
        policy,
        BrokenLink,
        "retirement 1",
        "repeats entry",
    )


def test_proofs_against_different_trees_are_refused(
    ledger: Ledger, policy: Policy, car_label: bytes
) -> None:
    older = json.loads(build_label(ledger, DOOR, ledger.size - 1))
    del older["mediaType"], older["version"]
    err = rejects(
        edit(car_label, lambda d: d["components"].__setitem__(0, older)),
        policy,
        BrokenLink,
        "proof is against",
    )
    assert f"component 1 ({DOOR})" in str(err)


def test_witness_quorum(ledger: Ledger, car_label: bytes) -> None:
    witnessed_policy = parse_policy(f"log {ledger.vkey}\nwitness W {WITNESS.vkey}\nquorum W\n")
    rejects(
        car_label,
        witnessed_policy,
        QuorumNotMet,
        "footprint entry checkpoint",
        "quorum 'W' not met",
    )
    cosigned = edit(car_label, lambda d: map_proofs(d, lambda p: _cosign(p)))
    report = verify_label(cosigned, witnessed_policy)
    assert report.checkpoint.witnesses == ("W",) and report.components[
        0
    ].label.checkpoint.witnesses == ("W",)
    assert "cosigned by W" in report.summary()


def test_witnessed_builder_labels_verify_under_the_witness_policy(ledger: Ledger) -> None:
    """The cluster's label builder puts a cosigned checkpoint in the label."""
    from node.label_builder import witnessed_label_builder

    witnessed_policy = parse_policy(f"log {ledger.vkey}\nwitness W {WITNESS.vkey}\nquorum W\n")
    # A witness has cosigned an older size only: labels are built there.
    old_size = ledger.size - 1
    note = cosign_checkpoint(ledger.checkpoint(old_size), WITNESS, 1_700_000_000)
    asked: list[int] = []

    def cosigned(size: int) -> tuple[int, str] | None:
        asked.append(size)
        return (old_size, note) if size >= old_size else None

    build = witnessed_label_builder(cosigned)
    data, _ = build(ledger, CAR, ledger.size)
    report = verify_label(data, witnessed_policy)
    assert asked == [ledger.size]
    assert (report.checkpoint.size, report.checkpoint.witnesses) == (old_size, ("W",))
    # Nothing witnessed yet: the label has the log's signature only.
    plain, _ = witnessed_label_builder(lambda size: None)(ledger, CAR, ledger.size)
    with pytest.raises(QuorumNotMet):
        verify_label(plain, witnessed_policy)


def _cosign(proof_text: str, *witnesses: Signer) -> str:
    p = parse_tlog_proof(proof_text)
    note = p.checkpoint_note
    for w in witnesses or (WITNESS,):
        note = cosign_checkpoint(note, w, 1_700_000_000)
    return format_tlog_proof(type(p)(p.index, p.proof, note))


WITNESS2 = Signer.from_seed("witness2.example", bytes([8]) * 32, cosigner=True)


def test_witnesses_are_reported_over_every_proof_not_the_first(ledger: Ledger, car_label: bytes) -> None:
    """Proofs of one tree may carry differently cosigned copies of its
    checkpoint, each meeting the quorum on its own: the report says which
    witnesses cosigned every proof, and which only some."""
    either = parse_policy(
        f"log {ledger.vkey}\nwitness W {WITNESS.vkey}\nwitness W2 {WITNESS2.vkey}\n"
        "group either 1 W W2\nquorum either\n"
    )

    def mixed(top: tuple[Signer, ...], rest: tuple[Signer, ...]) -> bytes:
        def change(doc: dict[str, Any]) -> None:
            map_proofs(doc, lambda p: _cosign(p, *rest))
            doc["footprint"]["proof"] = _cosign(json.loads(car_label)["footprint"]["proof"], *top)

        return edit(car_label, change)

    # The first proof (the car's footprint) cosigned by both, the other 11 by W only.
    report = verify_label(mixed((WITNESS, WITNESS2), (WITNESS,)), either)
    cp = report.checkpoint
    assert (cp.witnesses, cp.proofs, cp.witness_proofs) == (("W",), 12, (("W", 12), ("W2", 1)))
    assert report.components[0].label.checkpoint == cp  # one tree, one account of it
    assert "cosigned by W on every proof; W2 on 1 of 12 proofs" in report.summary()
    # No witness on every proof: none is listed as if it were.
    report = verify_label(mixed((WITNESS2,), (WITNESS,)), either)
    assert (report.checkpoint.witnesses, report.checkpoint.witness_proofs) == ((), (("W", 11), ("W2", 1)))
    assert "cosigned by W on 11 of 12 proofs, W2 on 1 of 12 proofs" in report.summary()
    # The same cosignatures on every proof read as before.
    report = verify_label(mixed((WITNESS, WITNESS2), (WITNESS, WITNESS2)), either)
    assert report.checkpoint.witnesses == ("W", "W2") and report.checkpoint.witness_proofs == (("W", 12), ("W2", 12))
    assert "cosigned by W, W2\n" in report.summary()


def test_an_untrusted_log_is_refused(car_label: bytes) -> None:
    stranger = Signer.from_seed("log", bytes([9]) * 32)
    rejects(
        car_label,
        parse_policy(f"log {stranger.vkey}\nquorum none\n"),
        InvalidSignature,
        "footprint entry checkpoint",
    )


def test_staleness_and_deprecation_are_proven_when_carried(tmp_path: Path, chain: Chain) -> None:
    led = open_chain_ledger(tmp_path / "ledger")
    try:
        led.append(chain.ops)
        extra = Chain()
        extra.keys, extra.now = chain.keys, chain.now
        extra.publish("STEEL", "steel-v2", "1.8", preceding=["steel"])
        extra.publish("CARS", "bike", "150")
        led.append(extra.ops)
        policy = parse_policy(f"log {led.vkey}\nquorum none\n")
        car = verify_label(build_label(led, CAR), policy)
        door = car.components[0].label
        steel = door.components[0].label
        assert (car.stale, car.deprecated, door.stale, steel.deprecated, steel.stale) == (
            True,
            False,
            True,
            True,
            False,
        )
        assert "STALE" in car.summary() and "[deprecated]" in car.summary()
        # Currency required: the deprecation carried is named.
        with pytest.raises(NotCurrent, match=f"footprint {STEEL} is not current: the label carries its deprecation"):
            check_not_deprecated(steel)
        with pytest.raises(NotCurrent, match=f"footprint {CAR} is not current: .*upstream footprint \\({STEEL}\\)"):
            check_not_deprecated(car)
        # Deprecation evidence about a footprint outside the label is refused.
        steel_deprecation = json.loads(build_label(led, STEEL))["deprecations"][0]
        door_label = build_label(led, DOOR)
        unrelated = edit(
            build_label(led, pf_uuid("bike")), lambda d: d.update(deprecations=[steel_deprecation])
        )
        assert json.loads(door_label)["deprecations"] == [steel_deprecation]
        rejects(
            unrelated, policy, BrokenLink,
            "deprecation 1", "deprecates no footprint of this label",
        )  # fmt: skip
    finally:
        led.close()


# --- strict parsing -------------------------------------------------------------------


def test_parsing_is_strict_and_names_the_field(policy: Policy, car_label: bytes) -> None:
    cases: list[tuple[bytes, str]] = [
        (json.dumps(json.loads(car_label), indent=1).encode(), "label"),
        (edit(car_label, lambda d: d.update(extra=1)), "label"),
        (edit(car_label, lambda d: d.update(version=2)), "label.version"),
        (edit(car_label, lambda d: d.update(mediaType="application/json")), "label.mediaType"),
        (edit(car_label, lambda d: d["footprint"].update(entry="not base64!")), "footprint.entry"),
        (
            edit(car_label, lambda d: d["components"][0]["attestations"][0].update(proof="nope")),
            "components[0].attestations[0].proof",
        ),
        (edit(car_label, lambda d: d["components"][0].pop("deprecations")), "components[0]"),
        (edit(car_label, lambda d: d.update(retirements={})), "retirements"),
        (b"\xff", "label"),
        (b'{"a":1,"a":2}', "label"),
        (b"[" * 100_000, "label"),
        (b" " * (MAX_LABEL_SIZE + 1), "label"),
    ]
    for data, what in cases:
        with pytest.raises(MalformedError) as err:
            verify_label(data, policy)
        assert err.value.what == what, (what, str(err.value))


def test_a_corrupt_envelope_inside_a_valid_proof_is_malformed_not_a_crash(policy: Policy) -> None:
    # A ledger without a state machine takes any bytes: prove a non-envelope.
    raw = Ledger.memory(signer=key("LOG"))
    raw.append([b"not an envelope"])
    node = LabelNode(LabelEntry(b"not an envelope", parse_tlog_proof(raw.tlog_proof(0))))
    with pytest.raises(MalformedError) as err:
        verify_label(format_label(node), parse_policy(f"log {raw.vkey}\nquorum none\n"))
    assert err.value.what.startswith("footprint entry: envelope")


def test_offline_verification_needs_no_node_grpc_or_lmdb() -> None:
    code = (
        "import sys; sys.modules['lmdb'] = None; sys.modules['grpc'] = None\n"
        "import client.label\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('node', 'grpc', 'lmdb', 'carbonledger') and sys.modules[m] is not None]\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


# --- through a node ---------------------------------------------------------------------


def test_get_label_round_trip_through_a_node(tmp_path: Path, chain: Chain) -> None:
    from client.sdk import LedgerClient
    from tests.test_node_support import RunningNode

    led = open_chain_ledger(tmp_path / "node")
    # The builder is passed explicitly until create_server's default is switched to it
    # (that switch retires test_node_rpc's test of the UNIMPLEMENTED placeholder).
    running = RunningNode(led, label_builder=label_builder)
    try:
        with LedgerClient(running.target, timeout=10) as client:
            for entry in chain.ops:
                client.submit(entry)
            label = client.label(CAR)
            policy = parse_policy(f"log {led.vkey}\nquorum none\n")
            report = verify_label(label, policy, require_attestation=True)
            assert (report.product_name, report.renewable_mwh, report.offsets_tco2e) == (
                "car",
                1000,
                40,
            )
            assert report.checkpoint.size == led.size
            older = verify_label(client.label(CAR, led.size - 1), policy)
            assert older.checkpoint.size == led.size - 1
            with pytest.raises(NotFound):
                client.label(pf_uuid("nothing"))
    finally:
        running.stop()
        led.close()


def test_a_signature_that_does_not_verify_beside_a_good_one_is_ignored(tmp_path: Path, chain: Chain) -> None:
    # The ledger accepts an entry on the signatures that verify. A junk one
    # beside them (a broken co-signature) must not make the entry, and every
    # label that includes it, fail verification: the verifier reports only
    # the keys that signed.
    led = open_chain_ledger()
    led.append(chain.ops)
    digest = hashlib.sha256(chain.publish_entry["door"]).hexdigest()
    body = {"pfId": DOOR, "footprintDigest": digest, "coverage": "product level", "assurance": "reasonable", "standardName": "ISO 14067", "statement": "verified"}
    signed = sign_envelope(PAYLOAD_TYPE, op_payload("pcf.attest", "VER2", chain.now, body), [chain.keys["VER2"]])
    junk = EnvelopeSignature(key("JUNK").vkey, bytes(64))
    led.append([encode_envelope(Envelope(signed.payload_type, signed.payload, (*signed.signatures, junk)))])
    policy = parse_policy(f"log {led.vkey}\nquorum none\n")
    door = verify_label(build_label(led, DOOR), policy)
    ver2 = [a for a in door.verified_by if a.org == "VER2"]
    assert ver2 and ver2[0].keys == (chain.keys["VER2"].vkey,)
    assert verify_label(build_label(led, CAR), policy).components[0].label.verified_by == door.verified_by
    led.close()


def test_an_entry_no_signature_of_which_verifies_is_refused() -> None:
    # Only a log without a state machine takes such an entry; the label
    # verifier still refuses it, naming the key.
    raw = Ledger.memory(signer=key("LOG"))
    signed = sign_envelope(PAYLOAD_TYPE, op_payload("pcf.publish", "STEEL", 1_700_000_000, {"footprint": pact_doc("steel", "2")}), [key("STEEL")])
    forged = Envelope(signed.payload_type, signed.payload, (EnvelopeSignature(key("STEEL").vkey, bytes(64)),))
    raw.append([encode_envelope(forged)])
    node = LabelNode(LabelEntry(encode_envelope(forged), parse_tlog_proof(raw.tlog_proof(0))))
    with pytest.raises(InvalidSignature, match="footprint entry: invalid or missing signature by steel .*no signature of the envelope verifies"):
        verify_label(format_label(node), parse_policy(f"log {raw.vkey}\nquorum none\n"))


def test_a_label_past_the_verifiers_limits_is_refused_before_it_is_built(chain: Chain) -> None:
    # Two footprints per level, each made of both footprints of the level
    # below: 26 footprints, but a label writes a shared component out at each
    # place it is used, so the tree would hold 2^13 - 2 footprint entries.
    led = open_chain_ledger()
    led.append(chain.ops)
    levels = 12
    ops: list[bytes] = []
    for level in range(levels, 0, -1):
        below = [] if level == levels else [{"pfId": pf_uuid(f"dag-{level + 1}-{i}"), "quantity": "0.5", "unit": "kilogram"} for i in (0, 1)]
        for i in (0, 1):
            body = {"footprint": pact_doc(f"dag-{level}-{i}", "1"), "components": below}
            ops.append(signed_op("pcf.publish", "STEEL", chain.now, body, [chain.keys["STEEL"]]))
    led.append(ops)
    with pytest.raises(TooLarge, match="label too large: its component tree (holds more than 4096 entries|takes more than 4194304 bytes)"):
        build_label(led, pf_uuid("dag-1-0"))
    # A few levels down the same graph fits, and verifies.
    report = verify_label(build_label(led, pf_uuid("dag-8-0")), parse_policy(f"log {led.vkey}\nquorum none\n"))
    assert len(report.components) == 2
    led.close()
