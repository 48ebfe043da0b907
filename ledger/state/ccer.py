"""CCER (国家核证自愿减排量): validation, registration, verification, issuance,
transfer and cancellation, in tCO2e.

The independence rules: the verifier that validates a project (审定) or
verifies its report (核查) is never its proponent. A project may name the GEC
project that generates the same electricity (``gecProjectId``, owned by the
same proponent). Registering it closes that double count: the GEC project's
untraded units (still held by the project owner, not retired) for generation
periods inside the crediting period are frozen, and no more GEC is issued for
those periods.
"""

from __future__ import annotations

from ledger.errors import StateRuleError
from ledger.records.ops import CcerCancelBody, CcerIssueBody, CcerRegisterBody, CcerReportBody, CcerValidateBody, TransferBody
from ledger.state._codec import dec, key, n16
from ledger.state._tx import Tx
from ledger.state.gec import overlapping_period
from ledger.state.ranges import FROZEN, HELD, Segment, covering
from ledger.state.units import first_free_serial, freeze_segment, issue_units, retire_units, transfer_units

__all__ = ["HANDLERS"]

KIND = "ccer"


def _validate(tx: Tx) -> None:
    body = tx.op.body
    assert isinstance(body, CcerValidateBody)
    tx.require_role("verifier")
    if tx.get("cp", body.projectId) is not None:
        raise StateRuleError("project_exists", "CCER project already validated", "body.projectId")
    tx.require_org(body.proponent, "body.proponent")
    if body.proponent == tx.op.org:
        raise StateRuleError("not_independent", "a verifier may not validate its own project", "body.proponent")
    if body.gecProjectId is not None:
        _check_gec_link(tx, body.gecProjectId, body.proponent)
    tx.put(
        {
            "status": "validated",
            "name": body.name,
            "methodology": body.methodology,
            "proponent": body.proponent,
            "creditingStart": body.creditingStart,
            "creditingEnd": body.creditingEnd,
            "gec": body.gecProjectId,
            "validator": tx.op.org,
            "validated": tx.ctx.index,
            "registry": None,
            "registered": None,
        },
        "cp",
        body.projectId,
    )
    tx.emit("ccer.project_validated", body.projectId, body.proponent)


def _check_gec_link(tx: Tx, gec_id: str, proponent: str) -> dict[str, object]:
    gp = tx.get("gp", gec_id)
    if gp is None:
        raise StateRuleError("gec_project_not_found", "no such GEC project", "body.gecProjectId")
    if gp["owner"] != proponent:
        raise StateRuleError(
            "gec_project_owner_mismatch", "GEC project belongs to another org", "body.gecProjectId"
        )
    if gp["ccer"] is not None:
        raise StateRuleError(
            "gec_project_already_linked", f"linked to CCER project {gp['ccer']}", "body.gecProjectId"
        )
    return dict(gp)


def _untraded(tx: Tx, gec_id: str, owner: str, start: int, end: int) -> list[Segment]:
    """Held, unretired segments of ``owner`` in the GEC project's batches whose
    generation period overlaps ``[start, end)``."""
    out: list[Segment] = []
    bprefix = key("gpb", gec_id) + b"/"
    for _k, raw in tx.kv.scan(bprefix):
        batch_id = dec(raw)
        batch = tx.get("ab", "gec", batch_id)
        if batch is None or not (batch["periodStart"] < end and start < batch["periodEnd"]):
            continue
        oprefix = key("ao", owner, "gec") + b"/"
        for k, sraw in tx.kv.scan(oprefix, oprefix + n16(batch["start"] + 1).encode()):
            value = dec(sraw)
            if value["s"] >= batch["end"]:
                break
            if value["b"] == batch_id and value["st"] == HELD:
                seg_start = value.pop("s")
                out.append(Segment(seg_start, int(k[len(oprefix) :], 16), value))
    return out


def _sold_as_gec(tx: Tx, gec_id: str, start: int, end: int) -> str | None:
    """The first batch of the GEC project for generation overlapping
    ``[start, end)`` with a unit that registration did not freeze (it had
    been traded or retired by then): those MWh already count as GEC."""
    for _k, raw in tx.kv.scan(key("gpb", gec_id) + b"/"):
        batch_id = dec(raw)
        batch = tx.read("ab", "gec", batch_id)
        if batch is None or not (batch["periodStart"] < end and start < batch["periodEnd"]):
            continue
        if any(seg.status != FROZEN for seg in covering(tx.kv, "gec", batch["start"], batch["end"])):
            return str(batch_id)
    return None


def _register(tx: Tx) -> None:
    body = tx.op.body
    assert isinstance(body, CcerRegisterBody)
    tx.require_role("ccer_registry")
    project = tx.get("cp", body.projectId)
    if project is None:
        raise StateRuleError("project_not_found", "no validated CCER project", "body.projectId")
    if project["status"] != "validated":
        raise StateRuleError("project_already_registered", "project is already registered", "body.projectId")
    frozen: list[Segment] = []
    if project["gec"] is not None:
        gp = _check_gec_link(tx, project["gec"], project["proponent"])
        frozen = _untraded(tx, project["gec"], project["proponent"], project["creditingStart"], project["creditingEnd"])
        gp["ccer"] = body.projectId
        gp["frozenFrom"] = project["creditingStart"]
        gp["frozenTo"] = project["creditingEnd"]
        tx.put(gp, "gp", project["gec"])
    project.update(status="registered", registry=tx.op.org, registered=tx.ctx.index)
    tx.put(project, "cp", body.projectId)
    for seg in frozen:
        freeze_segment(tx, "gec", seg, f"ccer:{body.projectId}")
    tx.emit("ccer.project_registered", body.projectId, project["proponent"])


def _verify_report(tx: Tx) -> None:
    body = tx.op.body
    assert isinstance(body, CcerReportBody)
    tx.require_role("verifier")
    if tx.get("cr", body.reportId) is not None:
        raise StateRuleError("report_exists", "report id already used", "body.reportId")
    project = tx.get("cp", body.projectId)
    if project is None or project["status"] != "registered":
        raise StateRuleError("project_not_registered", "CCER project is not registered", "body.projectId")
    if project["proponent"] == tx.op.org:
        raise StateRuleError("not_independent", "a verifier may not verify its own project", "org")
    if not (project["creditingStart"] <= body.periodStart and body.periodEnd <= project["creditingEnd"]):
        raise StateRuleError("period_outside_crediting", "monitoring period outside crediting period", "body.periodStart")
    if body.periodEnd > tx.ctx.time:
        raise StateRuleError("period_not_ended", "monitoring period has not ended", "body.periodEnd")
    if overlapping_period(tx, "cpp", body.projectId, body.periodStart, body.periodEnd) is not None:
        raise StateRuleError("period_already_reported", "another report covers part of this period", "body.periodStart")
    if project["gec"] is not None:
        counted = _sold_as_gec(tx, project["gec"], body.periodStart, body.periodEnd)
        if counted is not None:
            raise StateRuleError(
                "generation_counted_as_gec",
                f"GEC batch {counted} of project {project['gec']} certifies part of this generation, and not all"
                " of it was frozen: some was traded or retired as GEC",
                "body.periodStart",
            )
    tx.put({"start": body.periodStart, "report": body.reportId}, "cpp", body.projectId, n16(body.periodEnd))
    tx.put(
        {
            "project": body.projectId,
            "periodStart": body.periodStart,
            "periodEnd": body.periodEnd,
            "reductions": body.reductions,
            "verifier": tx.op.org,
            "verified": tx.ctx.index,
            "batch": None,
        },
        "cr",
        body.reportId,
    )
    tx.emit("ccer.report_verified", body.reportId, body.projectId)


def _issue(tx: Tx) -> None:
    body = tx.op.body
    assert isinstance(body, CcerIssueBody)
    tx.require_role("ccer_registry")
    report = tx.get("cr", body.reportId)
    if report is None:
        raise StateRuleError("report_not_found", "no verified report", "body.reportId")
    if report["batch"] is not None:
        raise StateRuleError("report_already_issued", f"issued as batch {report['batch']}", "body.reportId")
    if body.quantity > report["reductions"]:
        raise StateRuleError("exceeds_verified_reductions", "more than the verified reductions", "body.quantity")
    if tx.get("ab", KIND, body.batchId) is not None:
        raise StateRuleError("batch_exists", "batch id already used", "body.batchId")
    project = tx.get("cp", report["project"])
    assert project is not None
    start = first_free_serial(tx, KIND, body.quantity)
    report["batch"] = body.batchId
    tx.put(report, "cr", body.reportId)
    record = {
        "project": report["project"],
        "report": body.reportId,
        "issuer": tx.op.org,
        "periodStart": report["periodStart"],
        "periodEnd": report["periodEnd"],
        "validityEnd": None,
    }
    issue_units(tx, KIND, body.batchId, record, start, body.quantity, project["proponent"])


def _transfer(tx: Tx) -> None:
    body = tx.op.body
    assert isinstance(body, TransferBody)
    transfer_units(tx, KIND, body.start, body.end, body.to)


def _cancel(tx: Tx) -> None:
    body = tx.op.body
    assert isinstance(body, CcerCancelBody)
    record = {
        "beneficiary": body.beneficiary,
        "purpose": body.purpose,
        "periodStart": body.periodStart,
        "periodEnd": body.periodEnd,
    }
    retire_units(tx, KIND, body.start, body.end, record)


HANDLERS = {
    "ccer.validate_project": _validate,
    "ccer.register_project": _register,
    "ccer.verify_report": _verify_report,
    "ccer.issue": _issue,
    "ccer.transfer": _transfer,
    "ccer.cancel": _cancel,
}
