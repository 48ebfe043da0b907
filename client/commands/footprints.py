"""``carbonledger footprint publish|attest|deprecate|show|list``: PACT v3
product footprints, their versions and verification-body attestations."""

from __future__ import annotations

import argparse
from typing import Any

from client.commands._common import (
    UsageError,
    add_node_options,
    add_signer_options,
    connect,
    emit,
    iso,
    parse_range,
    read_json,
    read_text,
    submit,
)

__all__ = ["footprint_dict", "footprint_lines", "register"]

COVERAGES = ("product level", "PCF calculation model", "PCF program")


def _document(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The PACT document in ``path`` and any ledger extensions beside it.

    Takes a bare ProductFootprint, a PACT API response (``{"data": ...}``)
    or a whole publish body (``{"footprint": ..., "components": ..., "claims": ...}``).
    """
    obj = read_json(path, "footprint file")
    if isinstance(obj, dict) and "data" in obj and "id" not in obj:
        data = obj["data"]
        obj = data[0] if isinstance(data, list) and len(data) == 1 else data
    extra: dict[str, Any] = {}
    if isinstance(obj, dict) and "footprint" in obj:
        extra = {k: v for k, v in obj.items() if k != "footprint"}
        obj = obj["footprint"]
    if not isinstance(obj, dict) or "pcf" not in obj:
        raise UsageError(f"footprint file {path}: not a PACT v3 ProductFootprint (no pcf)")
    return obj, extra


def _component(text: str, client: Any) -> dict[str, str]:
    parts = text.split(":", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise UsageError(f"bad --component {text!r}: write PFID:QUANTITY[:UNIT]")
    pf_id, quantity = parts[0], parts[1]
    unit = parts[2] if len(parts) == 3 else client.footprint(pf_id).unit
    return {"pfId": pf_id, "quantity": quantity, "unit": unit}


def cmd_publish(args: argparse.Namespace) -> int:
    doc, extra = _document(args.file)
    if args.extensions:
        ext = read_json(args.extensions, "extensions file")
        if not isinstance(ext, dict) or set(ext) - {"components", "claims"}:
            raise UsageError(f"extensions file {args.extensions}: want an object with components and/or claims")
        extra.update(ext)
    components = list(extra.get("components", []))
    claims: dict[str, list[dict[str, int]]] = {k: list(v) for k, v in dict(extra.get("claims", {})).items()}
    for text in args.claim or []:
        kind = text.split(":", 1)[0] if ":" in text else ""
        if kind not in ("gec", "ccer"):
            raise UsageError(f"bad --claim {text!r}: write gec:START-END or ccer:START-END")
        start, end = parse_range(text)
        claims.setdefault(kind, []).append({"start": start, "end": end})
    if args.component:
        with connect(args) as client:
            components += [_component(c, client) for c in args.component]
    body: dict[str, Any] = {"footprint": doc}
    if components:
        body["components"] = components
    if claims:
        body["claims"] = claims
    name = doc.get("productNameCompany", "?")
    submit(args, "pcf.publish", body, what=f"footprint {doc.get('id')} ({name})")
    return 0


def cmd_attest(args: argparse.Namespace) -> int:
    statement = read_text(args.statement[1:], "statement file") if args.statement.startswith("@") else args.statement
    digest = args.digest
    if digest is None:
        with connect(args) as client:
            digest = client.footprint(args.pf_id).entry_digest
    body = {
        "pfId": args.pf_id, "footprintDigest": digest, "coverage": args.coverage,
        "assurance": args.assurance, "standardName": args.standard, "statement": statement,
    }  # fmt: skip
    submit(args, "pcf.attest", body, what=f"attested {args.pf_id} ({args.assurance} assurance, {args.standard})")
    return 0


def cmd_deprecate(args: argparse.Namespace) -> int:
    submit(args, "pcf.deprecate", {"pfId": args.pf_id, "reason": args.reason}, what=f"deprecated {args.pf_id}")
    return 0


def footprint_dict(f: Any) -> dict[str, Any]:
    return {
        "id": f.id, "owner": f.owner, "status": f.status, "stale": f.stale, "stale_incomplete": f.stale_incomplete,
        "stale_marks": [{"upstream": m.upstream, "root": m.root, "index": m.index} for m in f.stale_marks],
        "product_name": f.product_name, "unit": f.unit, "unit_amount": f.unit_amount, "pcf": f.pcf,
        "reference_start": f.reference_start, "reference_end": f.reference_end,
        "published": f.published, "entry_digest": f.entry_digest, "preceding": list(f.preceding),
        "successor": f.successor if f.HasField("successor") else None,
        "deprecated": f.deprecated if f.HasField("deprecated") else None,
        "lineage": f.lineage, "versions": list(f.versions),
        "components": [{"footprint_id": c.footprint_id, "quantity": c.quantity, "unit": c.unit} for c in f.components],
        "gec_claims": [[r.start, r.end] for r in f.gec_claims],
        "ccer_claims": [[r.start, r.end] for r in f.ccer_claims],
        "attestations": [{"verifier": a.verifier, "index": a.index, "assurance": a.assurance,
                          "coverage": a.coverage, "standard_name": a.standard_name} for a in f.attestations],
    }  # fmt: skip


def footprint_lines(f: dict[str, Any]) -> str:
    status = f["status"] + (" (stale: an upstream footprint was deprecated)" if f["stale"] else "")
    if f["stale_incomplete"]:
        status += (" (staleness not fully checked: more footprints upstream than a query walks;"
                   " a deprecation beyond them would not show)")
    lines = [
        f"{f['product_name']}  [{f['id']}]",
        f"  owner:      {f['owner']}",
        f"  PCF:        {f['pcf']} kgCO2e per {f['unit_amount']} {f['unit']}",
        f"  reference:  {iso(f['reference_start'])} .. {iso(f['reference_end'])}",
        f"  status:     {status}",
        f"  published:  entry {f['published']} (sha256 {f['entry_digest']})",
    ]
    if f["preceding"]:
        lines.append(f"  replaces:   {', '.join(f['preceding'])}")
    if f["successor"]:
        lines.append(f"  replaced by {f['successor']} at entry {f['deprecated']}")
    if len(f["versions"]) > 1:
        shown = [v + (" (this)" if v == f["id"] else "") for v in f["versions"]]
        lines.append(f"  versions:   {', '.join(shown)}")
    for c in f["components"]:
        lines.append(f"  component:  {c['quantity']} {c['unit']} of {c['footprint_id']}")
    for kind in ("gec", "ccer"):
        for s, e in f[f"{kind}_claims"]:
            what = "MWh green electricity" if kind == "gec" else "tCO2e offsets"
            lines.append(f"  claim:      {kind}:{s}-{e} ({e - s} {what})")
    for a in f["attestations"]:
        lines.append(f"  verified:   by {a['verifier']}, {a['assurance']} assurance, {a['standard_name']} "
                     f"({a['coverage']}), entry {a['index']}")
    for m in f["stale_marks"]:
        lines.append(f"  stale via:  {m['upstream']} (root {m['root']} deprecated at entry {m['index']})")
    return "\n".join(lines)


def cmd_show(args: argparse.Namespace) -> int:
    with connect(args) as client:
        f = footprint_dict(client.footprint(args.pf_id))
    emit(args, footprint_lines(f), f)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    with connect(args) as client:
        fs = [footprint_dict(f) for f in client.footprints(args.owner)]
    human = "\n".join(
        f"{f['id']}  {f['status']:10}{' stale' if f['stale'] else '      '}  {f['pcf']:>10} kgCO2e/{f['unit']}  "
        f"{f['product_name']}" for f in fs
    ) or "no footprints"
    emit(args, human, fs)
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    fp = sub.add_parser("footprint", help="publish, attest, deprecate and show product footprints")
    verbs = fp.add_subparsers(dest="verb", required=True)

    p = verbs.add_parser("publish", help="publish a PACT v3 ProductFootprint (a new version names its predecessor "
                                         "in precedingPfIds)")
    p.add_argument("file", help="PACT v3 ProductFootprint JSON (or a PACT API response, or a whole publish body)")
    p.add_argument("--component", action="append", metavar="PFID:QUANTITY[:UNIT]",
                   help="an upstream footprint and how much of it one declared unit contains; repeatable")
    p.add_argument("--claim", action="append", metavar="KIND:START-END",
                   help="retired units backing the footprint, e.g. gec:1000-2000; repeatable")
    p.add_argument("--extensions", metavar="FILE", help='JSON {"components": [...], "claims": {"gec": [...]}}')
    add_signer_options(p)
    add_node_options(p)
    p.set_defaults(func=cmd_publish)

    p = verbs.add_parser("attest", help="co-sign a footprint as a verification body")
    p.add_argument("pf_id")
    p.add_argument("--assurance", choices=("limited", "reasonable"), required=True)
    p.add_argument("--coverage", choices=COVERAGES, default="product level")
    p.add_argument("--standard", default="ISO 14067:2018", help="the standard verified against")
    p.add_argument("--statement", required=True, help="the verification statement, or @FILE")
    p.add_argument("--digest", help="SHA-256 of the publishing entry you read (default: the node's)")
    add_signer_options(p)
    add_node_options(p)
    p.set_defaults(func=cmd_attest)

    p = verbs.add_parser("deprecate", help="deprecate a footprint without a successor")
    p.add_argument("pf_id")
    p.add_argument("--reason", required=True)
    add_signer_options(p)
    add_node_options(p)
    p.set_defaults(func=cmd_deprecate)

    p = verbs.add_parser("show", help="a footprint: PCF, versions, components, claims, attestations")
    p.add_argument("pf_id")
    add_node_options(p)
    p.set_defaults(func=cmd_show)

    p = verbs.add_parser("list", help="the footprints of one owner")
    p.add_argument("owner")
    add_node_options(p)
    p.set_defaults(func=cmd_list)
