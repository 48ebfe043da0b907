"""``carbonledger demo-seed``: seed the demo network on a running node and
print the commands that fetch and verify a carbon label (``make run``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from client.commands._common import add_node_options, connect, emit, load_signer, read_text

__all__ = ["register"]


def cmd_demo_seed(args: argparse.Namespace) -> int:
    from client.demo import seed_demo, wait_for_node

    directory = Path(args.dir)
    authority = load_signer(args.authority_key or str(directory / "authority.key"))
    node_vkey = read_text(args.log_vkey or str(directory / "node.vkey"), "log verifier key file").strip()
    keys = Path(args.keys) if args.keys else directory / "keys"
    out = Path(args.out) if args.out else directory / "demo"

    def log(line: str) -> None:
        if not args.json:
            print(line, file=sys.stderr if args.quiet else sys.stdout, flush=True)

    with connect(args) as client:
        wait_for_node(client, args.wait)
        result = seed_demo(client, authority=authority, node_vkey=node_vkey, keys_dir=keys, out_dir=out, log=log)
        label_ok: str | None = None
        if args.check_label:
            label_ok = _check_label(client, result.footprints["door-v2"], result.policy_file)
    cli, node = args.cli, args.node
    door, steel = result.footprints["door-v2"], result.footprints["steel-v2"]
    label_file = out / "door.label.json"
    lines = [
        ("seeded" if result.seeded else "already seeded") + f": demo network on {node}, tree size {result.tree_size}",
        "",
        "organizations (keys in " + str(keys) + "/):",
        *(f"  {slug:14} {org_id}" for slug, org_id in result.orgs.items()),
        "",
        "footprints (PACT v3 documents in " + str(out) + "/):",
        f"  door-v2   {door}  front door assembly, built from steel-v2, GEC + CCER claims",
        f"  steel-v2  {steel}  hot-rolled coil, re-versioned with a GEC claim",
        f"  door-v1   {result.footprints['door-v1']}  stale (its steel was re-versioned), deprecated by door-v2",
        "",
        "fetch and verify the carbon label of the front door assembly:",
        f"  {cli} label get {door} --node {node} --out {label_file}",
        f"  {cli} label verify {label_file} --policy {result.policy_file}",
        "",
        "more:",
        f"  {cli} footprint show {door} --node {node}",
        f"  {cli} holdings {result.orgs['parts']} --node {node}",
        f"  {cli} reconcile {result.books_file} --policy {result.policy_file} --node {node}    # one deliberate mismatch: exit 1",
        f"  {cli} watch --from 0 --count 10 --node {node}",
    ]
    if label_ok is not None:
        lines.insert(1, f"label check: {label_ok}")
    emit(args, "\n".join(lines), {
        "seeded": result.seeded, "node": node, "tree_size": result.tree_size, "orgs": result.orgs,
        "footprints": result.footprints, "policy_file": result.policy_file, "books_file": result.books_file,
        "gec": result.gec, "ccer": result.ccer, "keys_dir": str(keys), "label_check": label_ok,
    })  # fmt: skip
    return 0


def _check_label(client: object, pf_id: str, policy_file: str) -> str:
    """A self-check of the label path; never fails the seed."""
    from client.errors import Unimplemented
    from ledger.errors import LedgerError

    try:
        from client.label import verify_label
        from ledger.policy import parse_policy

        data = client.label(pf_id)  # type: ignore[attr-defined]
        report = verify_label(data, parse_policy(read_text(policy_file)))
        return f"ok ({report.product_name}, {report.pcf} kgCO2e per {report.declared_unit})"
    except Unimplemented:
        return "this node does not build labels yet (GetLabel is UNIMPLEMENTED)"
    except (LedgerError, ImportError) as exc:
        return f"FAILED: {exc}"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("demo-seed", help="seed the demo network on a running node (idempotent; make run uses it)")
    p.add_argument("--dir", default="var", help="the node directory (authority.key, node.vkey); default var")
    p.add_argument("--authority-key", help="the genesis authority's key (default DIR/authority.key)")
    p.add_argument("--log-vkey", help="the node's log verifier key file (default DIR/node.vkey)")
    p.add_argument("--keys", help="where the demo orgs' keys live (default DIR/keys)")
    p.add_argument("--out", help="where PACT documents, the policy and books go (default DIR/demo)")
    p.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the node to answer")
    p.add_argument("--cli", default="carbonledger", help="how to spell the command in the printed hints")
    p.add_argument("--check-label", action="store_true", help="fetch and verify a label as a self-check")
    p.add_argument("--quiet", action="store_true", help="seeding steps on stderr")
    add_node_options(p)
    p.set_defaults(func=cmd_demo_seed)

