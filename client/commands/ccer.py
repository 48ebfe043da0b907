"""``carbonledger ccer validate|register|verify|issue|transfer|cancel``: CCER
credits (国家核证自愿减排量) in tCO2e, from project validation (审定) and
report verification (核查) to cancellation (注销)."""

from __future__ import annotations

import argparse
from typing import Any

from client.commands._common import (
    add_node_options,
    add_signer_options,
    parse_range,
    parse_time,
    read_text,
    submit,
)

__all__ = ["register"]


def _statement(text: str) -> str:
    return read_text(text[1:], "statement file") if text.startswith("@") else text


def cmd_validate(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "projectId": args.project_id, "name": args.name, "methodology": args.methodology,
        "proponent": args.proponent, "creditingStart": parse_time(args.crediting[0]),
        "creditingEnd": parse_time(args.crediting[1]), "statement": _statement(args.statement),
    }  # fmt: skip
    if args.gec_project:
        body["gecProjectId"] = args.gec_project
    submit(args, "ccer.validate_project", body, what=f"CCER project {args.project_id} validated (审定)")
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    submit(args, "ccer.register_project", {"projectId": args.project_id}, what=f"CCER project {args.project_id} registered")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    body = {
        "reportId": args.report_id, "projectId": args.project, "periodStart": parse_time(args.period[0]),
        "periodEnd": parse_time(args.period[1]), "reductions": args.reductions, "statement": _statement(args.statement),
    }  # fmt: skip
    submit(args, "ccer.verify_report", body, what=f"report {args.report_id} verified (核查): {args.reductions} tCO2e")
    return 0


def cmd_issue(args: argparse.Namespace) -> int:
    body = {"batchId": args.batch_id, "reportId": args.report, "quantity": args.quantity}
    submit(args, "ccer.issue", body, what=f"batch {args.batch_id}: {args.quantity} tCO2e")
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    start, end = parse_range(args.range)
    submit(args, "ccer.transfer", {"start": start, "end": end, "to": args.to},
           what=f"ccer:{start}-{end} ({end - start} tCO2e) to {args.to}")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    start, end = parse_range(args.range)
    body = {
        "start": start, "end": end, "beneficiary": args.beneficiary, "purpose": args.purpose,
        "periodStart": parse_time(args.period[0]), "periodEnd": parse_time(args.period[1]),
    }  # fmt: skip
    submit(args, "ccer.cancel", body, what=f"cancelled (注销) ccer:{start}-{end} ({end - start} tCO2e)")
    return 0


def _signed(p: argparse.ArgumentParser, func: Any) -> None:
    add_signer_options(p)
    add_node_options(p)
    p.set_defaults(func=func)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ccer = sub.add_parser("ccer", help="CCER credits: validation, registration, verification, issuance, cancellation")
    verbs = ccer.add_subparsers(dest="verb", required=True)

    p = verbs.add_parser("validate", help="validate a project (审定; verification body)")
    p.add_argument("project_id")
    p.add_argument("--name", required=True)
    p.add_argument("--methodology", required=True, help="e.g. CCER-01-002-V01")
    p.add_argument("--proponent", required=True, help="org id of the project owner")
    p.add_argument("--crediting", nargs=2, metavar=("START", "END"), required=True, help="crediting period")
    p.add_argument("--gec-project", help="the GEC project of the same plant (its untraded GEC get frozen)")
    p.add_argument("--statement", required=True, help="validation statement, or @FILE")
    _signed(p, cmd_validate)

    p = verbs.add_parser("register", help="register a validated project (registry)")
    p.add_argument("project_id")
    _signed(p, cmd_register)

    p = verbs.add_parser("verify", help="verify an emission-reduction report (核查; verification body)")
    p.add_argument("report_id")
    p.add_argument("--project", required=True)
    p.add_argument("--period", nargs=2, metavar=("START", "END"), required=True, help="monitoring period")
    p.add_argument("--reductions", type=int, required=True, help="tCO2e")
    p.add_argument("--statement", required=True, help="verification statement, or @FILE")
    _signed(p, cmd_verify)

    p = verbs.add_parser("issue", help="issue a vintage for a verified report (registry)")
    p.add_argument("batch_id")
    p.add_argument("--report", required=True)
    p.add_argument("--quantity", type=int, required=True, help="tCO2e")
    _signed(p, cmd_issue)

    p = verbs.add_parser("transfer", help="transfer a range you hold")
    p.add_argument("range", metavar="START-END")
    p.add_argument("--to", required=True)
    _signed(p, cmd_transfer)

    p = verbs.add_parser("cancel", help="cancel (注销) a range you hold for a beneficiary and purpose")
    p.add_argument("range", metavar="START-END")
    p.add_argument("--beneficiary", required=True)
    p.add_argument("--purpose", required=True)
    p.add_argument("--period", nargs=2, metavar=("START", "END"), required=True, help="period the offset covers")
    _signed(p, cmd_cancel)
