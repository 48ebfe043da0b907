"""Operation payloads: the JSON inside every ledger envelope.

A payload is one JSON object::

    {"v": 1, "op": "gec.transfer", "org": "91310000MA1FL0001X", "time": 1735689600,
     "nonce": "optional", "body": {...}}

``op`` names the operation (see :data:`OP_TYPES`), ``org`` the acting
organization, ``time`` the signer's clock (unix seconds; the state machine
bounds it against the block time), ``nonce`` lets one org sign two otherwise
identical operations, and ``body`` is the operation's own model. Every model
forbids unknown fields and coercion; every string, list and number is bounded.
:func:`parse_operation` is the one entry point and raises only MalformedError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from ledger.errors import MalformedError
from ledger.keys import ALG_ED25519, Verifier
from ledger.records._base import (
    MAX_LIST,
    Id,
    LongText,
    Name,
    PositiveDecimal,
    PositiveInt,
    Serial,
    StrictModel,
    Text,
    UnixTime,
    Uuid,
    load_json,
    validate_model,
)
from ledger.records.pact import DeclaredUnit, FootprintSummary, ProductFootprint, check_product_footprint

__all__ = [
    "PAYLOAD_TYPE",
    "PAYLOAD_VERSION",
    "ROLES",
    "OP_TYPES",
    "Operation",
    "parse_operation",
    "OrgSpec",
    "GenesisBody",
    "OrgRegisterBody",
    "RotateKeyBody",
    "RevokeKeyBody",
    "SerialRange",
    "Component",
    "Claims",
    "PcfPublishBody",
    "PcfDeprecateBody",
    "PcfAttestBody",
    "GecProjectBody",
    "GecIssueBody",
    "TransferBody",
    "GecRetireBody",
    "CcerValidateBody",
    "CcerRegisterBody",
    "CcerReportBody",
    "CcerIssueBody",
    "CcerCancelBody",
]

#: DSSE payloadType of every operation envelope.
PAYLOAD_TYPE = "application/vnd.carbonledger.op+json"
#: Value of the payload's ``v`` field.
PAYLOAD_VERSION = 1

Role = Literal["authority", "gec_issuer", "ccer_registry", "verifier", "supplier", "exchange"]
#: The organization roles, in a fixed order.
ROLES = ("authority", "gec_issuer", "ccer_registry", "verifier", "supplier", "exchange")
VKey = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
Hex32 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class Header(StrictModel):
    v: Literal[1]
    op: Annotated[str, StringConstraints(max_length=64)]
    org: Id
    time: UnixTime
    nonce: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    body: dict[str, Any]


# --- organizations -----------------------------------------------------------


class OrgSpec(StrictModel):
    id: Id
    name: Name
    roles: Annotated[list[Role], Field(min_length=1, max_length=len(ROLES))]
    keys: Annotated[list[VKey], Field(min_length=1, max_length=8)]


class GenesisBody(StrictModel):
    authorities: Annotated[list[OrgSpec], Field(min_length=1, max_length=16)]


class OrgRegisterBody(OrgSpec):
    pass


class RotateKeyBody(StrictModel):
    orgId: Id
    oldKey: VKey
    newKey: VKey


class RevokeKeyBody(StrictModel):
    orgId: Id
    key: VKey
    reason: Text


# --- footprints ----------------------------------------------------------------


class SerialRange(StrictModel):
    """Units ``start`` (inclusive) to ``end`` (exclusive)."""

    start: Serial
    end: Serial


class Component(StrictModel):
    """An upstream footprint and how much of it one declared unit contains,
    in the upstream's own unit of measurement."""

    pfId: Uuid
    quantity: PositiveDecimal
    unit: DeclaredUnit


class Claims(StrictModel):
    gec: Annotated[list[SerialRange], Field(max_length=MAX_LIST)] = []
    ccer: Annotated[list[SerialRange], Field(max_length=MAX_LIST)] = []


class PcfPublishBody(StrictModel):
    footprint: ProductFootprint
    components: Annotated[list[Component], Field(max_length=MAX_LIST)] = []
    claims: Claims = Claims()


class PcfDeprecateBody(StrictModel):
    pfId: Uuid
    reason: Text


class PcfAttestBody(StrictModel):
    pfId: Uuid
    #: SHA-256 (hex) of the entry bytes that published the footprint, so the
    #: attestation binds to exactly what the verifier read.
    footprintDigest: Hex32
    coverage: Literal["PCF calculation model", "PCF program", "product level"]
    assurance: Literal["limited", "reasonable"]
    standardName: Name
    statement: LongText


# --- GEC -------------------------------------------------------------------------

Technology = Literal["wind", "solar", "hydro", "biomass", "geothermal", "ocean", "other"]


class GecProjectBody(StrictModel):
    projectId: Id
    name: Name
    technology: Technology
    capacityKw: PositiveInt
    location: Name
    owner: Id


class GecIssueBody(StrictModel):
    batchId: Id
    projectId: Id
    periodStart: UnixTime
    periodEnd: UnixTime
    quantity: Annotated[int, Field(ge=1, le=10**9)]
    validityEnd: UnixTime


class TransferBody(StrictModel):
    start: Serial
    end: Serial
    to: Id


class GecRetireBody(StrictModel):
    start: Serial
    end: Serial
    beneficiary: Name
    periodStart: UnixTime
    periodEnd: UnixTime


# --- CCER ------------------------------------------------------------------------


class CcerValidateBody(StrictModel):
    projectId: Id
    name: Name
    methodology: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    proponent: Id
    creditingStart: UnixTime
    creditingEnd: UnixTime
    gecProjectId: Id | None = None
    statement: LongText


class CcerRegisterBody(StrictModel):
    projectId: Id


class CcerReportBody(StrictModel):
    reportId: Id
    projectId: Id
    periodStart: UnixTime
    periodEnd: UnixTime
    reductions: Annotated[int, Field(ge=1, le=10**9)]
    statement: LongText


class CcerIssueBody(StrictModel):
    batchId: Id
    reportId: Id
    quantity: Annotated[int, Field(ge=1, le=10**9)]


class CcerCancelBody(StrictModel):
    start: Serial
    end: Serial
    beneficiary: Name
    purpose: Name
    periodStart: UnixTime
    periodEnd: UnixTime


#: Operation type -> body model. Anything else in ``op`` is rejected.
OP_TYPES: dict[str, type[BaseModel]] = {
    "genesis": GenesisBody,
    "org.register": OrgRegisterBody,
    "org.rotate_key": RotateKeyBody,
    "org.revoke_key": RevokeKeyBody,
    "pcf.publish": PcfPublishBody,
    "pcf.deprecate": PcfDeprecateBody,
    "pcf.attest": PcfAttestBody,
    "gec.register_project": GecProjectBody,
    "gec.issue": GecIssueBody,
    "gec.transfer": TransferBody,
    "gec.retire": GecRetireBody,
    "ccer.validate_project": CcerValidateBody,
    "ccer.register_project": CcerRegisterBody,
    "ccer.verify_report": CcerReportBody,
    "ccer.issue": CcerIssueBody,
    "ccer.transfer": TransferBody,
    "ccer.cancel": CcerCancelBody,
}


@dataclass(frozen=True, slots=True)
class Operation:
    """A parsed payload. ``footprint`` is set for ``pcf.publish`` only."""

    op: str
    org: str
    time: int
    nonce: str | None
    body: BaseModel
    footprint: FootprintSummary | None = None


def _check_vkey(text: str, what: str) -> None:
    try:
        verifier = Verifier.from_vkey(text)
    except MalformedError as exc:
        raise MalformedError(what, exc.reason) from None
    if verifier.alg != ALG_ED25519:
        raise MalformedError(what, "organization keys must be Ed25519 note keys (type 0x01)")
    # A signed-note name may hold DEL, an envelope keyid (this text) may not
    # (ledger/envelope.py): such a key could never sign for its org.
    if "\x7f" in verifier.name:
        raise MalformedError(what, "an organization key's name may not hold DEL (U+007F): it could never sign an envelope")


def _check_unique(values: list[str], what: str) -> None:
    if len(set(values)) != len(values):
        raise MalformedError(what, "must not contain duplicates")


def _check_range(start: int, end: int, what: str) -> None:
    if not start < end:
        raise MalformedError(f"{what}.end", "must be greater than start")


def _check_period(start: int, end: int, what: str, a: str, b: str) -> None:
    if not start < end:
        raise MalformedError(f"{what}.{b}", f"must be after {a}")


def _check_org_spec(spec: OrgSpec, what: str) -> None:
    _check_unique(list(spec.roles), f"{what}.roles")
    _check_unique(spec.keys, f"{what}.keys")
    for i, key in enumerate(spec.keys):
        _check_vkey(key, f"{what}.keys[{i}]")


def _post_check(op: str, body: Any) -> FootprintSummary | None:
    """Cross-field rules that need no state."""
    if op == "genesis":
        _check_unique([a.id for a in body.authorities], "body.authorities")
        for i, spec in enumerate(body.authorities):
            _check_org_spec(spec, f"body.authorities[{i}]")
            if "authority" not in spec.roles:
                raise MalformedError(f"body.authorities[{i}].roles", "must include authority")
    elif op == "org.register":
        _check_org_spec(body, "body")
    elif op == "org.rotate_key":
        _check_vkey(body.oldKey, "body.oldKey")
        _check_vkey(body.newKey, "body.newKey")
        if body.oldKey == body.newKey:
            raise MalformedError("body.newKey", "must differ from oldKey")
    elif op == "org.revoke_key":
        _check_vkey(body.key, "body.key")
    elif op == "pcf.publish":
        summary = check_product_footprint(body.footprint, where="body.footprint")
        _check_unique([c.pfId.lower() for c in body.components], "body.components")
        for name in ("gec", "ccer"):
            for i, r in enumerate(getattr(body.claims, name)):
                _check_range(r.start, r.end, f"body.claims.{name}[{i}]")
        return summary
    elif op in ("gec.transfer", "ccer.transfer", "gec.retire", "ccer.cancel"):
        _check_range(body.start, body.end, "body")
        if op in ("gec.retire", "ccer.cancel"):
            _check_period(body.periodStart, body.periodEnd, "body", "periodStart", "periodEnd")
    elif op == "gec.issue":
        _check_period(body.periodStart, body.periodEnd, "body", "periodStart", "periodEnd")
        if not body.validityEnd > body.periodEnd:
            raise MalformedError("body.validityEnd", "must be after periodEnd")
    elif op == "ccer.validate_project":
        _check_period(
            body.creditingStart, body.creditingEnd, "body", "creditingStart", "creditingEnd"
        )
    elif op == "ccer.verify_report":
        _check_period(body.periodStart, body.periodEnd, "body", "periodStart", "periodEnd")
    return None


def parse_operation(payload: bytes) -> Operation:
    """Parse and validate an operation payload, or raise MalformedError naming the field."""
    obj = load_json(payload)
    if not isinstance(obj, dict):
        raise MalformedError("payload", "must be a JSON object")
    op = obj.get("op")
    if not isinstance(op, str) or op not in OP_TYPES:
        raise MalformedError("op", f"unknown operation type {op!r}")
    header = validate_model(Header, obj)
    body = validate_model(OP_TYPES[op], header.body, where="body")
    summary = _post_check(op, body)
    return Operation(header.op, header.org, header.time, header.nonce, body, summary)
