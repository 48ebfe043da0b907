"""Green electricity certificates (绿证): projects, issuance, transfer, retirement.

1 unit = 1 MWh. An issuer registers a project (建档立卡) and issues batches
for generation periods that have ended; a project's periods never overlap, so
no MWh is issued twice, and no batch may exceed what the project's capacity
could generate in its period. Periods that a registered CCER project covers
are closed to GEC issuance: those MWh already count as emission reductions.
"""

from __future__ import annotations

from ledger.errors import PermissionDenied, StateRuleError
from ledger.records.ops import GecIssueBody, GecProjectBody, GecRetireBody, TransferBody
from ledger.state._codec import dec, n16
from ledger.state._tx import Tx
from ledger.state.units import first_free_serial, issue_units, retire_units, transfer_units

__all__ = ["HANDLERS", "overlapping_period"]

KIND = "gec"


def overlapping_period(tx: Tx, family: str, owner_id: str, start: int, end: int) -> dict[str, int] | None:
    """The first period recorded under ``{family}/{owner_id}/{end}`` that overlaps
    ``[start, end)``, if any: one seek, since periods there never overlap."""
    prefix = f"{family}/{owner_id}/".encode()
    for _k, raw in tx.kv.scan(prefix, prefix + n16(start + 1).encode()):
        period = dec(raw)
        return period if period["start"] < end else None
    return None


def _register_project(tx: Tx) -> None:
    body = tx.op.body
    assert isinstance(body, GecProjectBody)
    tx.require_role("gec_issuer")
    if tx.exists("gp", body.projectId):
        raise StateRuleError("project_exists", "GEC project already registered", "body.projectId")
    tx.require_org(body.owner, "body.owner")
    tx.put(
        {
            "issuer": tx.op.org,
            "owner": body.owner,
            "name": body.name,
            "technology": body.technology,
            "capacityKw": body.capacityKw,
            "location": body.location,
            "registered": tx.ctx.index,
            "ccer": None,
        },
        "gp",
        body.projectId,
    )
    tx.emit("gec.project_registered", body.projectId, body.owner)


def _issue(tx: Tx) -> None:
    body = tx.op.body
    assert isinstance(body, GecIssueBody)
    tx.require_role("gec_issuer")
    project = tx.read("gp", body.projectId)
    if project is None:
        raise StateRuleError("project_not_found", "no such GEC project", "body.projectId")
    if project["issuer"] != tx.op.org:
        raise PermissionDenied("not_project_issuer", "only the project's issuer may issue", "org")
    if tx.exists("ab", KIND, body.batchId):
        raise StateRuleError("batch_exists", "batch id already used", "body.batchId")
    if body.periodEnd > tx.ctx.time:
        raise StateRuleError("period_not_ended", "generation period has not ended", "body.periodEnd")
    if body.validityEnd <= tx.ctx.time:
        raise StateRuleError("already_expired", "validity end is not in the future", "body.validityEnd")
    # quantity MWh <= capacity kW * hours / 1000, kept in integers.
    if body.quantity * 1000 * 3600 > project["capacityKw"] * (body.periodEnd - body.periodStart):
        raise StateRuleError(
            "exceeds_capacity", "more MWh than the capacity can generate in the period", "body.quantity"
        )
    if overlapping_period(tx, "gpp", body.projectId, body.periodStart, body.periodEnd) is not None:
        raise StateRuleError(
            "period_already_issued", "GEC already issued for part of this period", "body.periodStart"
        )
    if project["ccer"] is not None and (
        body.periodStart < project["frozenTo"] and project["frozenFrom"] < body.periodEnd
    ):
        raise StateRuleError(
            "period_under_ccer", f"period is credited by CCER project {project['ccer']}", "body.periodStart"
        )
    start = first_free_serial(tx, KIND, body.quantity)
    tx.put({"start": body.periodStart, "batch": body.batchId}, "gpp", body.projectId, n16(body.periodEnd))
    tx.put(body.batchId, "gpb", body.projectId, body.batchId)
    record = {
        "project": body.projectId,
        "issuer": tx.op.org,
        "periodStart": body.periodStart,
        "periodEnd": body.periodEnd,
        "validityEnd": body.validityEnd,
    }
    issue_units(tx, KIND, body.batchId, record, start, body.quantity, project["owner"])


def _transfer(tx: Tx) -> None:
    body = tx.op.body
    assert isinstance(body, TransferBody)
    transfer_units(tx, KIND, body.start, body.end, body.to)


def _retire(tx: Tx) -> None:
    body = tx.op.body
    assert isinstance(body, GecRetireBody)
    record = {"beneficiary": body.beneficiary, "periodStart": body.periodStart, "periodEnd": body.periodEnd}
    retire_units(tx, KIND, body.start, body.end, record)


HANDLERS = {
    "gec.register_project": _register_project,
    "gec.issue": _issue,
    "gec.transfer": _transfer,
    "gec.retire": _retire,
}
