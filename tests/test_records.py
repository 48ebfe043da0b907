"""Payload parsing: PACT v3 documents accepted unchanged, every malformed
input rejected with MalformedError naming the field, nothing else escaping."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import MalformedError
from ledger.keys import Signer
from ledger.records import DECLARED_UNITS, parse_operation, parse_product_footprint
from ledger.records.build import op_payload, org_spec

# Modeled on wbcsd/data-exchange-protocol spec/v3/examples/example-1.json, with
# the optional properties a supplier's system emits filled in as well.
PACT_V3_EXAMPLE: dict[str, Any] = {
    "id": "3893bb5d-da16-4dc1-9185-11d97476c254",
    "specVersion": "3.0.0",
    "precedingPfIds": ["12345678-9abc-def0-1234-567812345678"],
    "created": "2025-04-30T00:00:00Z",
    "status": "Active",
    "validityPeriodStart": "2024-12-31T00:00:00Z",
    "validityPeriodEnd": "2027-12-31T00:00:00Z",
    "companyName": "Company 1",
    "companyIds": ["urn:company:example:company1", "urn:uscc:91310000MA1FL0001X"],
    "productDescription": "Bioethanol 98%, sugar beet feedstock, bulk - no packaging",
    "productIds": ["urn:gtin:5695872369587"],
    "productClassifications": ["urn:pact:productclassification:cas:1456"],
    "productNameCompany": "Product 1",
    "comment": "As using TfS, PDS and DQR calculations are slightly different\n",
    "pcf": {
        "declaredUnitOfMeasurement": "kilogram",
        "declaredUnitAmount": "1",
        "productMassPerDeclaredUnit": "1",
        "referencePeriodStart": "2024-01-01T00:00:00Z",
        "referencePeriodEnd": "2024-12-31T00:00:00Z",
        "geographyRegionOrSubregion": "Northern America",
        "geographyCountry": "US",
        "geographyCountrySubdivision": "US-TX",
        "boundaryProcessesDescription": "1) Material acquisition\n2) Production\n",
        "pcfExcludingBiogenicUptake": "0.384",
        "pcfIncludingBiogenicUptake": "-1.23",
        "fossilCarbonContent": "0",
        "biogenicCarbonContent": "0.44",
        "recycledCarbonContent": "0",
        "fossilGhgEmissions": "0.35",
        "landUseChangeGhgEmissions": "0",
        "landCarbonLeakage": "0",
        "landManagementFossilGhgEmissions": "0.03",
        "landManagementBiogenicCO2Emissions": "0.004",
        "landManagementBiogenicCO2Removals": "0",
        "biogenicCO2Uptake": "-1.61",
        "biogenicNonCO2Emissions": "0.002",
        "landAreaOccupation": "0.41",
        "aircraftGhgEmissions": "0",
        "packagingEmissionsIncluded": True,
        "packagingGhgEmissions": "0.01",
        "outboundLogisticsGhgEmissions": "0.02",
        "ccsTechnologicalCO2CaptureIncluded": False,
        "ipccCharacterizationFactors": ["AR6"],
        "crossSectoralStandards": ["GHGP-Product", "PACT-3.0"],
        "productOrSectorSpecificRules": [
            {
                "operator": "Other",
                "ruleNames": ["The Product Carbon Footprint Guideline for the Chemical Industry, v.3"],
            }
        ],
        "otherOperatorName": "TfS",
        "exemptedEmissionsPercent": "0",
        "exemptedEmissionsDescription": "",
        "allocationRulesDescription": "Mass allocation",
        "secondaryEmissionFactorSources": [{"name": "Ecoinvent", "version": "3.1"}],
        "primaryDataShare": "12.9",
        "dqi": {"technologicalDQR": "1.5", "geographicalDQR": "3.2", "temporalDQR": "2.4"},
        "verification": {
            "coverage": "product level",
            "providerName": "My Auditor",
            "completedAt": "2025-04-08T14:47:32Z",
            "standardName": "ISO 14044",
        },
    },
    "extensions": [
        {
            "specVersion": "2.0.0",
            "dataSchema": "https://reg.carbon-transparency.org/shipment/1.0.0/data-model.json",
            "data": {"shipmentId": "S1234567890", "weight": 10},
        }
    ],
}

ORG = "91310000MA1FL0001X"


def publish_payload(doc: dict[str, Any], **body: Any) -> bytes:
    return op_payload("pcf.publish", ORG, 1_735_689_600, {"footprint": doc, **body})


def test_full_pact_v3_document_is_accepted_unchanged() -> None:
    payload = publish_payload(PACT_V3_EXAMPLE)
    op = parse_operation(payload)
    assert op.op == "pcf.publish" and op.org == ORG
    assert op.footprint is not None
    assert op.footprint.id == "3893bb5d-da16-4dc1-9185-11d97476c254"
    assert op.footprint.pcf == "0.384" and op.footprint.unit == "kilogram"
    assert op.footprint.ref_start == 1704067200 and op.footprint.ref_end == 1735603200
    # Nothing was dropped or rewritten: the model dumps back to the document.
    assert op.body.footprint.model_dump(exclude_none=True) == PACT_V3_EXAMPLE  # type: ignore[attr-defined]


def test_minimal_spec_example_is_accepted() -> None:
    doc = copy.deepcopy(PACT_V3_EXAMPLE)
    del doc["extensions"], doc["precedingPfIds"], doc["pcf"]["verification"]
    doc["pcf"] = {k: v for k, v in doc["pcf"].items() if k in {
        "declaredUnitOfMeasurement", "declaredUnitAmount", "productMassPerDeclaredUnit",
        "referencePeriodStart", "referencePeriodEnd", "pcfExcludingBiogenicUptake",
        "pcfIncludingBiogenicUptake", "fossilGhgEmissions", "fossilCarbonContent",
        "ipccCharacterizationFactors", "crossSectoralStandards", "exemptedEmissionsPercent"}}  # fmt: skip
    parse_product_footprint(doc)


@pytest.mark.parametrize("unit", DECLARED_UNITS)
def test_every_declared_unit_is_accepted(unit: str) -> None:
    doc = copy.deepcopy(PACT_V3_EXAMPLE)
    doc["pcf"]["declaredUnitOfMeasurement"] = unit
    assert parse_product_footprint(doc)[1].unit == unit


def _mutate(path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(PACT_V3_EXAMPLE)
    *parents, last = path.split(".")
    target = doc
    for p in parents:
        target = target[p]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value
    return doc


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("pcf.declaredUnitOfMeasurement", "tonne", "footprint.pcf.declaredUnitOfMeasurement"),
        ("pcf.declaredUnitAmount", "0", "footprint.pcf.declaredUnitAmount"),
        ("pcf.declaredUnitAmount", 1, "footprint.pcf.declaredUnitAmount"),
        ("pcf.pcfExcludingBiogenicUptake", "1,5", "footprint.pcf.pcfExcludingBiogenicUptake"),
        ("pcf.pcfExcludingBiogenicUptake", "-0.5", "footprint.pcf.pcfExcludingBiogenicUptake"),
        ("pcf.fossilGhgEmissions", "-1", "footprint.pcf.fossilGhgEmissions"),
        ("pcf.biogenicCO2Uptake", "1.61", "footprint.pcf.biogenicCO2Uptake"),
        ("pcf.referencePeriodEnd", "2024-01-01T00:00:00Z", "footprint.pcf.referencePeriodEnd"),
        ("pcf.referencePeriodStart", "2024-01-01", "footprint.pcf.referencePeriodStart"),
        ("pcf.referencePeriodStart", "2024-13-01T00:00:00Z", "footprint.pcf.referencePeriodStart"),
        # Valid date-times whose UTC instant is before year 1 or after 9999.
        ("pcf.referencePeriodStart", "0001-01-01T00:00:00+01:00", "footprint.pcf.referencePeriodStart"),
        ("pcf.referencePeriodEnd", "9999-12-31T23:00:00-05:00", "footprint.pcf.referencePeriodEnd"),
        ("pcf.ipccCharacterizationFactors", ["SAR"], "footprint.pcf.ipccCharacterizationFactors[0]"),
        ("pcf.crossSectoralStandards", [], "footprint.pcf.crossSectoralStandards"),
        ("pcf.dqi.temporalDQR", "6", "footprint.pcf.dqi.temporalDQR"),
        ("pcf.packagingEmissionsIncluded", False, "footprint.pcf.packagingGhgEmissions"),
        ("pcf.carbonCredits", "1", "footprint.pcf.carbonCredits"),
        ("pcf.pcfIncludingBiogenicUptake", _DELETE, "footprint.pcf.pcfIncludingBiogenicUptake"),
        ("id", "not-a-uuid", "footprint.id"),
        ("specVersion", "2.3.0", "footprint.specVersion"),
        ("status", "Retired", "footprint.status"),
        ("companyIds", ["company1"], "footprint.companyIds[0]"),
        ("companyIds", [], "footprint.companyIds"),
        ("productIds", ["urn:gtin:1", "urn:gtin:1"], "footprint.productIds"),
        ("precedingPfIds", ["3893bb5d-da16-4dc1-9185-11d97476c254"], "footprint.precedingPfIds"),
        ("validityPeriodStart", "2024-06-01T00:00:00Z", "footprint.validityPeriodStart"),
        ("validityPeriodEnd", "2028-06-01T00:00:00Z", "footprint.validityPeriodEnd"),
        ("productNameCompany", "", "footprint.productNameCompany"),
        ("ledgerComponents", [], "footprint.ledgerComponents"),
    ],
)
def test_footprint_field_rules(path: str, value: Any, field: str) -> None:
    with pytest.raises(MalformedError) as err:
        parse_product_footprint(_mutate(path, value))
    assert err.value.what == field


def test_dates_near_year_9999_are_compared_without_overflow() -> None:
    doc = _mutate("pcf.referencePeriodStart", "9998-01-01T00:00:00Z")
    doc["pcf"]["referencePeriodEnd"] = "9998-06-01T00:00:00Z"
    doc["validityPeriodStart"], doc["validityPeriodEnd"] = "9998-07-01T00:00:00Z", "9999-12-31T23:59:59Z"
    _, summary = parse_product_footprint(doc)
    assert summary.ref_end == 253_352_275_200  # 9998-06-01T00:00:00Z


def test_ledger_extensions_travel_beside_the_document() -> None:
    body = {
        "components": [{"pfId": "12345678-9abc-def0-1234-567812345678", "quantity": "0.5", "unit": "kilogram"}],
        "claims": {"gec": [{"start": 0, "end": 10}], "ccer": []},
    }
    op = parse_operation(publish_payload(PACT_V3_EXAMPLE, **body))
    assert op.body.components[0].quantity == "0.5"  # type: ignore[attr-defined]
    with pytest.raises(MalformedError) as err:
        parse_operation(publish_payload(PACT_V3_EXAMPLE, claims={"gec": [{"start": 5, "end": 5}]}))
    assert err.value.what == "body.claims.gec[0].end"
    with pytest.raises(MalformedError) as err:
        parse_operation(publish_payload(PACT_V3_EXAMPLE, components=[body["components"][0]] * 2))
    assert err.value.what == "body.components"


def _payload(**over: Any) -> bytes:
    obj: dict[str, Any] = {"v": 1, "op": "gec.transfer", "org": ORG, "time": 1, "body": {"start": 0, "end": 5, "to": "B"}}
    obj.update(over)
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (_payload(op="gec.mint"), "op"),
        (_payload(op=None), "op"),
        (_payload(extra=1), "extra"),
        (_payload(v=2), "v"),
        (_payload(org="has space"), "org"),
        (_payload(org="a/b"), "org"),
        (_payload(time=-1), "time"),
        (_payload(time="1"), "time"),
        (_payload(time=True), "time"),
        (_payload(body={"start": 0, "end": 5}), "body.to"),
        (_payload(body={"start": 0, "end": 5, "to": "B", "memo": "x"}), "body.memo"),
        (_payload(body={"start": 5, "end": 0, "to": "B"}), "body.end"),
        (_payload(body={"start": 0, "end": 2**53, "to": "B"}), "body.end"),
        (_payload(body={"start": 0.0, "end": 5, "to": "B"}), "payload"),
        (b'{"v":1,"v":1,"op":"gec.transfer"}', "v"),
        (b"[1, 2]", "payload"),
        (b"\xff\xfe", "payload"),
        (b'{"v": NaN}', "payload"),
        (b"{" * 100_000, "payload"),
        (b" " * (300 * 1024), "payload"),
    ],
)
def test_operation_header_rules(data: bytes, field: str) -> None:
    with pytest.raises(MalformedError) as err:
        parse_operation(data)
    assert err.value.what == field


_K1, _K2 = Signer.from_seed("k1", bytes(32)), Signer.from_seed("k2", b"\x01" * 32)
_ISSUE = {"batchId": "B1", "projectId": "P1", "periodStart": 100, "periodEnd": 200, "quantity": 5, "validityEnd": 300}
_RETIRE = {"start": 0, "end": 5, "beneficiary": "x", "periodStart": 100, "periodEnd": 200}
_VALIDATE = {"projectId": "C1", "name": "n", "methodology": "m", "proponent": "GEN", "creditingStart": 100, "creditingEnd": 200, "statement": "s"}
_REPORT = {"reportId": "R1", "projectId": "C1", "periodStart": 100, "periodEnd": 200, "reductions": 5, "statement": "s"}
_AUTHORITY = org_spec("AUTH", "Authority", ["authority"], [_K1])


@pytest.mark.parametrize(
    ("op", "good", "bad", "field"),
    [
        ("gec.issue", _ISSUE, {**_ISSUE, "validityEnd": 200}, "body.validityEnd"),
        ("gec.issue", _ISSUE, {**_ISSUE, "periodEnd": 100}, "body.periodEnd"),
        ("gec.retire", _RETIRE, {**_RETIRE, "periodEnd": 100}, "body.periodEnd"),
        ("ccer.cancel", {**_RETIRE, "purpose": "p"}, {**_RETIRE, "purpose": "p", "periodStart": 300}, "body.periodEnd"),
        ("ccer.validate_project", _VALIDATE, {**_VALIDATE, "creditingEnd": 100}, "body.creditingEnd"),
        ("ccer.verify_report", _REPORT, {**_REPORT, "periodEnd": 99}, "body.periodEnd"),
        ("org.rotate_key", {"orgId": "A", "oldKey": _K1.vkey, "newKey": _K2.vkey}, {"orgId": "A", "oldKey": _K1.vkey, "newKey": _K1.vkey}, "body.newKey"),
        ("genesis", {"authorities": [_AUTHORITY]}, {"authorities": [{**_AUTHORITY, "roles": ["supplier"]}]}, "body.authorities[0].roles"),
        ("genesis", {"authorities": [_AUTHORITY]}, {"authorities": [_AUTHORITY, _AUTHORITY]}, "body.authorities"),
    ],
)  # fmt: skip
def test_cross_field_rules(op: str, good: dict[str, Any], bad: dict[str, Any], field: str) -> None:
    """Rules between fields of one body: the good body passes, the bad one
    is refused naming the field."""
    parse_operation(op_payload(op, "AUTH", 1, good))
    with pytest.raises(MalformedError) as err:
        parse_operation(op_payload(op, "AUTH", 1, bad))
    assert err.value.what == field


def test_org_keys_are_checked() -> None:
    good = Signer.from_seed("acme", bytes(32))
    spec = org_spec("ACME", "Acme", ["supplier"], [good])
    parse_operation(op_payload("org.register", "AUTH", 1, spec))
    for keys, field in ((["nonsense"], "body.keys[0]"), ([good.vkey, good.vkey], "body.keys")):
        with pytest.raises(MalformedError) as err:
            parse_operation(op_payload("org.register", "AUTH", 1, {**spec, "keys": keys}))
        assert err.value.what == field
    cos = Signer.from_seed("w", bytes(32), cosigner=True)
    with pytest.raises(MalformedError) as err:
        parse_operation(op_payload("org.register", "AUTH", 1, {**spec, "keys": [cos.vkey]}))
    assert err.value.what == "body.keys[0]"
    with pytest.raises(MalformedError) as err:
        parse_operation(op_payload("org.register", "AUTH", 1, {**spec, "roles": ["admin"]}))
    assert err.value.what == "body.roles[0]"


def test_an_org_key_must_be_able_to_sign_an_envelope() -> None:
    # Signed-note key names may hold DEL, but a DSSE envelope's keyid (the
    # key's text) may not: an org key so named could never sign an entry,
    # so registering, or rotating to, one would leave an org with a key
    # that cannot act (its last key: an org that can never act again).
    good = Signer.from_seed("acme", bytes(32))
    odd = Signer.from_seed("acme\x7fkey", bytes(32))
    spec = org_spec("ACME", "Acme", ["supplier"], [good])
    cases = [
        ("org.register", {**spec, "keys": [odd.vkey]}, "body.keys[0]"),
        ("genesis", {"authorities": [{**spec, "keys": [odd.vkey]}]}, "body.authorities[0].keys[0]"),
        ("org.rotate_key", {"orgId": "ACME", "oldKey": good.vkey, "newKey": odd.vkey}, "body.newKey"),
    ]
    for op, body, field in cases:
        with pytest.raises(MalformedError) as err:
            parse_operation(op_payload(op, "AUTH", 1, body))
        assert err.value.what == field


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_only_malformed_error_escapes_on_bytes(data: bytes) -> None:
    try:
        parse_operation(data)
    except MalformedError:
        pass


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(["genesis", "org.register", "pcf.publish", "gec.issue", "ccer.cancel", "pcf.attest"])), _json)
def test_only_malformed_error_escapes_on_json(op: str, body: Any) -> None:
    try:
        parse_operation(json.dumps({"v": 1, "op": op, "org": ORG, "time": 1, "body": body}).encode())
    except MalformedError:
        pass
