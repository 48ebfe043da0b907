"""``carbonledger gec project|issue|transfer|retire``: green electricity
certificates (绿证), 1 unit = 1 MWh, as serial ranges ``START-END`` (END
exclusive, as the ledger prints them)."""

from __future__ import annotations

import argparse

from client.commands._common import (
    add_node_options,
    add_signer_options,
    parse_range,
    parse_time,
    submit,
)

__all__ = ["register"]

TECHNOLOGIES = ("wind", "solar", "hydro", "biomass", "geothermal", "ocean", "other")


def cmd_project(args: argparse.Namespace) -> int:
    body = {
        "projectId": args.project_id, "name": args.name, "technology": args.technology,
        "capacityKw": args.capacity_kw, "location": args.location, "owner": args.owner,
    }  # fmt: skip
    submit(args, "gec.register_project", body, what=f"GEC project {args.project_id} (建档立卡) owned by {args.owner}")
    return 0


def cmd_issue(args: argparse.Namespace) -> int:
    start, end = parse_time(args.period[0]), parse_time(args.period[1])
    body = {
        "batchId": args.batch_id, "projectId": args.project, "periodStart": start, "periodEnd": end,
        "quantity": args.quantity, "validityEnd": parse_time(args.validity_end),
    }  # fmt: skip
    submit(args, "gec.issue", body, what=f"batch {args.batch_id}: {args.quantity} MWh of {args.project}")
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    start, end = parse_range(args.range)
    submit(args, "gec.transfer", {"start": start, "end": end, "to": args.to},
           what=f"gec:{start}-{end} ({end - start} MWh) to {args.to}")
    return 0


def cmd_retire(args: argparse.Namespace) -> int:
    start, end = parse_range(args.range)
    body = {
        "start": start, "end": end, "beneficiary": args.beneficiary,
        "periodStart": parse_time(args.period[0]), "periodEnd": parse_time(args.period[1]),
    }  # fmt: skip
    submit(args, "gec.retire", body, what=f"retired (核销) gec:{start}-{end} ({end - start} MWh) for {args.beneficiary}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    gec = sub.add_parser("gec", help="green electricity certificates: projects, issuance, transfer, retirement")
    verbs = gec.add_subparsers(dest="verb", required=True)

    p = verbs.add_parser("project", help="register a generation project (issuer)")
    p.add_argument("project_id")
    p.add_argument("--name", required=True)
    p.add_argument("--technology", choices=TECHNOLOGIES, required=True)
    p.add_argument("--capacity-kw", type=int, required=True)
    p.add_argument("--location", required=True)
    p.add_argument("--owner", required=True, help="org id of the project owner, who receives issued units")
    add_signer_options(p)
    add_node_options(p)
    p.set_defaults(func=cmd_project)

    p = verbs.add_parser("issue", help="issue a batch for a generation period (issuer)")
    p.add_argument("batch_id")
    p.add_argument("--project", required=True)
    p.add_argument("--period", nargs=2, metavar=("START", "END"), required=True,
                   help="generation period: YYYY-MM-DD, RFC 3339 or unix seconds")
    p.add_argument("--quantity", type=int, required=True, help="MWh")
    p.add_argument("--validity-end", required=True, help="date after which the units cannot move")
    add_signer_options(p)
    add_node_options(p)
    p.set_defaults(func=cmd_issue)

    p = verbs.add_parser("transfer", help="transfer a range you hold")
    p.add_argument("range", metavar="START-END")
    p.add_argument("--to", required=True)
    add_signer_options(p)
    add_node_options(p)
    p.set_defaults(func=cmd_transfer)

    p = verbs.add_parser("retire", help="retire (核销) a range you hold for a consumption period")
    p.add_argument("range", metavar="START-END")
    p.add_argument("--beneficiary", required=True)
    p.add_argument("--period", nargs=2, metavar=("START", "END"), required=True, help="consumption period")
    add_signer_options(p)
    add_node_options(p)
    p.set_defaults(func=cmd_retire)
