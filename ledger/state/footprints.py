"""Product footprints: publish, re-version, deprecate, attest.

A footprint's id is unique forever. A new version lists its predecessors in
PACT ``precedingPfIds`` (same owner) and deprecates those still Active. All
versions of one product share a *lineage* (the id of the first version), which
is what the acyclicity rule is about: a product may not contain, however far
upstream, another version of itself. Components must exist and be Active when
referenced, their unit must match the upstream's declared unit, and the
declared PCF may not be below the sum of upstream contributions.

Staleness is not written here. A footprint is stale when a footprint in its
upstream graph is deprecated, and since components never change after
publish, that is computed when asked, by walking the upstream graph
(``ledger.state.queries.stale_marks``). A deprecation therefore writes the
deprecated record and nothing downstream: its cost does not grow with the
number of footprints that use it, and an upstream owner who re-versions
often makes no work for anyone else's records.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache
from typing import Any

from ledger.errors import PermissionDenied, StateRuleError
from ledger.records.ops import PcfAttestBody, PcfDeprecateBody, PcfPublishBody
from ledger.state._codec import SHARED, dec_first, dec_shared, dec_tail, enc, encode_string
from ledger.state._tx import Tx
from ledger.state.units import apply_claims, check_claims

__all__ = ["HANDLERS", "MAX_UPSTREAM_WALK"]

#: Most footprints the cycle check visits upstream before refusing the publish.
MAX_UPSTREAM_WALK = 10_000


@lru_cache(maxsize=4096)
def _dec(text: str) -> Fraction:
    # PACT decimals are strings like "+0.384"; Fraction is exact and deterministic.
    # Parsing one costs ~5 us and the same few strings recur ("1", "0.3"):
    # Fractions are immutable, so sharing them is safe.
    return Fraction(text.lstrip("+"))


@lru_cache(maxsize=4096)
def _contribution(quantity: str, pcf: str, unit_amount: str) -> Fraction:
    # A component's share of the declared PCF: quantity (in the upstream's
    # unit of measurement) x the upstream's PCF per one of those units. In
    # PACT v3 the PCF is per declared unit, and the declared unit is
    # declaredUnitAmount of declaredUnitOfMeasurement (PACT ADR 0036: a 12 L
    # bottle declares 12 liter and the whole bottle's PCF), so per unit of
    # measurement it is pcf / declaredUnitAmount. Each Fraction operation
    # costs microseconds and the same triples recur, so they are computed once.
    return _dec(quantity) * _dec(pcf) / _dec(unit_amount)


def _footprint(tx: Tx, pf_id: str, field_name: str, rule: str = "footprint_not_found") -> dict[str, Any]:
    # A shallow copy of a shared value: callers set top-level fields only.
    rec = tx.read("f", pf_id)
    if rec is None:
        raise StateRuleError(rule, f"no footprint {pf_id}", field_name)
    return dict(rec)


def _footprint_fields(
    tx: Tx, pf_id: str, first: str, field_name: str, rule: str = "footprint_not_found"
) -> tuple[bytes, str, dict[str, Any]]:
    """The stored bytes of footprint ``pf_id``, as text, and its fields from
    ``first`` on (see :func:`dec_tail`), for a reader that needs only those:
    a footprint record is ~700 bytes, and decoding it whole costs several
    times decoding its last fields. The dict may hold more fields and may be
    shared: read it only."""
    raw = tx.kv.get(f"f/{pf_id}".encode())
    if raw is None:
        raise StateRuleError(rule, f"no footprint {pf_id}", field_name)
    text = raw.decode()
    rec = SHARED.get(raw)
    if rec is None:
        rec = dec_tail(text, first)
        if rec is None:  # pragma: no cover - every record enc writes has the field
            rec = dec_shared(raw)
    return raw, text, rec


def encode_published(rec: dict[str, Any]) -> bytes:
    """``enc(rec)`` for a footprint record as :func:`_publish` builds it.

    Formatted directly, keys in sorted order as enc writes them: the general
    encoder takes ~12 us on this ~700-byte record, a fifth of a publish. Any
    field of another type or shape goes to :func:`enc` (a property test
    checks the two agree).
    """
    s = encode_string
    try:
        claims = rec["claims"]
        comps = rec["components"]
        preceding = rec["preceding"]
        ints = (rec["published"], rec["refEnd"], rec["refStart"])
        strs = [rec[k] for k in ("digest", "lineage", "owner", "pcf", "product", "status", "unit", "unitAmount")]
        if (
            len(rec) != 17
            or rec["attestations"] != []
            or rec["deprecated"] is not None
            or rec["successor"] is not None
            or any(type(v) is not str for v in strs)
            or any(type(v) is not int for v in ints)
            or type(preceding) is not list
            or any(type(v) is not str for v in preceding)
            or type(claims) is not dict
            or sorted(claims) != ["ccer", "gec"]
            or type(comps) is not list
        ):
            return enc(rec)
        ranges = []
        for kind in ("ccer", "gec"):
            pairs = claims[kind]
            if type(pairs) is not list:
                return enc(rec)
            for pair in pairs:
                if type(pair) is not list or len(pair) != 2 or type(pair[0]) is not int or type(pair[1]) is not int:
                    return enc(rec)
            ranges.append(",".join([f"[{a},{b}]" for a, b in pairs]))
        parts = []
        for c in comps:
            if type(c) is not dict or len(c) != 3:
                return enc(rec)
            pf, quantity, unit = c["pf"], c["quantity"], c["unit"]
            if type(pf) is not str or type(quantity) is not str or type(unit) is not str:
                return enc(rec)
            parts.append(f'{{"pf":{s(pf)},"quantity":{s(quantity)},"unit":{s(unit)}}}')
    except KeyError:
        return enc(rec)
    digest, lineage, owner, pcf, product, status, unit, unit_amount = map(s, strs)
    published, ref_end, ref_start = ints
    return (
        f'{{"attestations":[],"claims":{{"ccer":[{ranges[0]}],"gec":[{ranges[1]}]}},'
        f'"components":[{",".join(parts)}],"deprecated":null,"digest":{digest},'
        f'"lineage":{lineage},"owner":{owner},"pcf":{pcf},'
        f'"preceding":[{",".join(map(s, preceding))}],"product":{product},'
        f'"published":{published},"refEnd":{ref_end},"refStart":{ref_start},'
        f'"status":{status},"successor":null,"unit":{unit},"unitAmount":{unit_amount}}}'
    ).encode()


def _lineages(tx: Tx, preds: list[dict[str, Any]]) -> set[str]:
    """Every product line the new version continues: the lineages of its
    predecessors and of all their earlier versions. A version records only
    its first predecessor's lineage, so one that merged several lines (more
    than one predecessor) hides the others from a walk of lineages alone."""
    lineages: set[str] = set()
    seen: set[str] = set()
    stack = list(preds)
    while stack:
        rec = stack.pop()
        lineages.add(rec["lineage"])
        for earlier in rec["preceding"]:
            if earlier in seen:
                continue
            seen.add(earlier)
            if len(seen) > MAX_UPSTREAM_WALK:
                raise StateRuleError(
                    "version_history_too_large", "too many earlier versions to check", "body.footprint.precedingPfIds"
                )
            found = tx.read("f", earlier)
            if found is not None:
                stack.append(found)
    return lineages


def _check_acyclic(tx: Tx, lineages: set[str], components: list[str]) -> None:
    seen: set[str] = set()
    stack = list(reversed(components))
    while stack:
        pf = stack.pop()
        if pf in seen:
            continue
        seen.add(pf)
        if len(seen) > MAX_UPSTREAM_WALK:
            raise StateRuleError("component_graph_too_large", "upstream graph too large to check", "body.components")
        rec = tx.read("f", pf)
        if rec is None:
            continue
        if rec["lineage"] in lineages:
            raise StateRuleError(
                "component_cycle", f"upstream {pf} is a version of this product", "body.components"
            )
        stack.extend(reversed([c["pf"] for c in rec["components"]]))


def _deprecate(tx: Tx, pf_id: str, rec: dict[str, Any], successor: str | None) -> None:
    rec.update(status="Deprecated", deprecated=tx.ctx.index, successor=successor)
    tx.put_shared(rec, "f", pf_id)
    tx.emit("footprint.deprecated", pf_id, *((successor,) if successor else ()))


def _publish(tx: Tx) -> None:
    body = tx.op.body
    summary = tx.op.footprint
    assert isinstance(body, PcfPublishBody) and summary is not None
    tx.require_role("supplier")
    owner = tx.op.org
    pf_id = summary.id
    if summary.status != "Active":
        raise StateRuleError("status_not_active", "a published footprint must be Active", "body.footprint.status")
    if tx.exists("f", pf_id):
        raise StateRuleError("footprint_exists", "footprint ids are unique forever", "body.footprint.id")
    # (1) Predecessors: same owner; the Active ones get deprecated below.
    # Several may be named (PACT's merge of footprints), and one may be
    # named by several (its split).
    preds: list[tuple[str, dict[str, Any]]] = []
    for i, pred_id in enumerate(summary.preceding):
        where = f"body.footprint.precedingPfIds[{i}]"
        rec = _footprint(tx, pred_id, where, "predecessor_not_found")
        if rec["owner"] != owner:
            raise PermissionDenied("not_owner", "predecessor belongs to another org", where)
        preds.append((pred_id, rec))
    lineage = preds[0][1]["lineage"] if preds else pf_id
    # (2) Components: exist, Active, same unit; sum their contributions.
    # The upstream sum as an unreduced fraction num/den of integers: adding
    # Fractions reduces by a gcd at every step, and the sum is only compared.
    num, den = 0, 1
    components: list[dict[str, str]] = []
    for i, comp in enumerate(body.components):
        where = f"body.components[{i}]"
        up_id = comp.pfId.lower()
        # Only the fields from "pcf" on are read (pcf, status, unit, unitAmount).
        _, _, up = _footprint_fields(tx, up_id, "pcf", where, "component_not_found")
        if up["status"] != "Active":
            raise StateRuleError("component_not_active", f"upstream {up_id} is {up['status']}", where)
        if up["unit"] != comp.unit:
            raise StateRuleError("component_unit_mismatch", f"upstream is declared per {up['unit']}", f"{where}.unit")
        part = _contribution(comp.quantity, up["pcf"], up["unitAmount"])
        if part.denominator == den:
            num += part.numerator
        else:
            num, den = num * part.denominator + part.numerator * den, den * part.denominator
        components.append({"pf": up_id, "quantity": comp.quantity, "unit": comp.unit})
    # (3) No product contains a version of itself. A first version starts a
    # new lineage that nothing existing can reference, so only re-versions
    # need the upstream walk.
    if preds:
        _check_acyclic(tx, _lineages(tx, [rec for _, rec in preds]), [c["pf"] for c in components])
    declared = _dec(summary.pcf)
    if declared.numerator * den < num * declared.denominator:  # declared < num / den
        raise StateRuleError(
            "pcf_below_components",
            f"declared PCF {summary.pcf} is below the upstream sum {float(Fraction(num, den)):.6g}",
            "body.footprint.pcf.pcfExcludingBiogenicUptake",
        )
    # (4) Claims: retired by this owner, inside the reference period, unclaimed.
    gec = check_claims(tx, "gec", [(r.start, r.end) for r in body.claims.gec], owner, summary.ref_start, summary.ref_end)
    ccer = check_claims(tx, "ccer", [(r.start, r.end) for r in body.claims.ccer], owner, summary.ref_start, summary.ref_end)
    # Everything checked: write. Attestations and downstream publishes read
    # the record soon: hand it over instead of making them decode it.
    record = {
        "owner": owner,
        "status": "Active",
        "unit": summary.unit,
        "unitAmount": summary.unit_amount,
        "pcf": summary.pcf,
        "refStart": summary.ref_start,
        "refEnd": summary.ref_end,
        "product": summary.product_name,
        "published": tx.ctx.index,
        "digest": tx.entry_digest,
        "preceding": list(summary.preceding),
        "successor": None,
        "deprecated": None,
        "lineage": lineage,
        "components": components,
        "claims": {"gec": [[s, e] for s, e, _ in gec], "ccer": [[s, e] for s, e, _ in ccer]},
        "attestations": [],
    }
    tx.put_shared(record, "f", pf_id, raw=encode_published(record))
    tx.put(tx.ctx.index, "fo", owner, pf_id)
    for ref in components:
        tx.put(tx.ctx.index, "fd", ref["pf"], pf_id)
    for pred_id, _ in preds:
        # Every later version of a predecessor, for the versions query: its
        # record names one successor, and a split has several.
        tx.put(tx.ctx.index, "fv", pred_id, pf_id)
    tx.emit("footprint.published", pf_id, owner)
    apply_claims(tx, "gec", gec, pf_id)
    apply_claims(tx, "ccer", ccer, pf_id)
    for pred_id, rec in preds:
        if rec["status"] == "Active":
            _deprecate(tx, pred_id, rec, pf_id)


def _deprecate_op(tx: Tx) -> None:
    body = tx.op.body
    assert isinstance(body, PcfDeprecateBody)
    tx.require_role("supplier")
    pf_id = body.pfId.lower()
    rec = _footprint(tx, pf_id, "body.pfId")
    if rec["owner"] != tx.op.org:
        raise PermissionDenied("not_owner", "only the owner may deprecate", "body.pfId")
    if rec["status"] != "Active":
        raise StateRuleError("footprint_not_active", "already deprecated", "body.pfId")
    rec["reason"] = body.reason
    _deprecate(tx, pf_id, rec, None)


def _attest(tx: Tx) -> None:
    body = tx.op.body
    assert isinstance(body, PcfAttestBody)
    tx.require_role("verifier")
    pf_id = body.pfId.lower()
    # The checks read the fields from "digest" on; the write changes only
    # "attestations", the record's first field: the new bytes are spliced
    # from the old ones (see dec_first), which are what enc makes of the
    # whole changed record, without decoding and encoding all of it.
    raw, text, rec = _footprint_fields(tx, pf_id, "digest", "body.pfId")
    first = dec_first(text, "attestations")
    if first is None:  # pragma: no cover - enc writes "attestations" first
        attestations, rest = rec["attestations"], None
    else:
        attestations, end = first
        rest = raw[len(text[:end].encode()) :]
    if rec["digest"] != body.footprintDigest:
        raise StateRuleError("digest_mismatch", "attestation is for other footprint bytes", "body.footprintDigest")
    if rec["owner"] == tx.op.org:
        raise StateRuleError("not_independent", "an org may not attest its own footprint", "org")
    if rec["status"] != "Active":
        raise StateRuleError("footprint_not_active", "footprint is deprecated", "body.pfId")
    if any(a["verifier"] == tx.op.org for a in attestations):
        raise StateRuleError("already_attested", "this verifier already attested", "body.pfId")
    attestations = [
        *attestations,
        {
            "verifier": tx.op.org,
            "index": tx.ctx.index,
            "assurance": body.assurance,
            "coverage": body.coverage,
            "standardName": body.standardName,
        },
    ]
    if rest is None:  # pragma: no cover
        tx.put_shared({**rec, "attestations": attestations}, "f", pf_id)
    else:
        tx.kv.put(f"f/{pf_id}".encode(), b'{"attestations":' + enc(attestations) + rest)
    tx.emit("footprint.attested", pf_id, tx.op.org)


HANDLERS = {
    "pcf.publish": _publish,
    "pcf.deprecate": _deprecate_op,
    "pcf.attest": _attest,
}
