"""``carbonledger label get|verify`` and ``carbonledger policy``: a buyer's
verbs. ``label verify`` needs no network: a label file and a C2SP tlog-policy
naming the log key (and, optionally, witnesses and a quorum) are enough.

Exit codes of ``label verify`` (and of ``label get --policy``): 0 the label
verified; 1 it did not, whether a proof or signature failed, a link between
entries is broken, or its content is malformed (a bad entry, a bad proof, not
a label at all); 2 the CLI was used wrongly: a label file that cannot be
read or is larger than any label may be, a bad policy file, a bad option.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path
from typing import Any

from client.commands._common import (
    UsageError,
    add_node_options,
    connect,
    emit,
    index_or_size,
    load_policy,
    load_vkey,
    read_bytes,
)
from ledger.errors import VerificationError

__all__ = ["MalformedLabel", "make_policy", "register"]


class MalformedLabel(VerificationError):
    """A label whose content does not parse: ``what`` names the field or
    entry, ``reason`` what is wrong with it.

    The verifier raises MalformedError for it, which the CLI otherwise
    reports as bad input (exit 2). But the file was read; what it holds is a
    label that fails verification, and a buyer's script must see the same
    exit 1 as for a label whose signature fails, whichever way it is bad."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"label does not verify: malformed {what}: {reason}")
        self.what = what
        self.reason = reason


def _report_dict(report: Any) -> Any:
    def plain(value: Any) -> Any:
        if isinstance(value, bytes):
            return value.hex()
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(report))


# A PACT v3 ProductFootprint id: a UUID written as PACT writes it (8-4-4-4-12).
_PF_ID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def pact_footprint_id(text: str) -> str:
    """An argparse type for ``--expect-pf-id``: a PACT footprint id (UUID),
    refused here so that a typo is bad input (2), not a failed label (1)."""
    if _PF_ID_RE.fullmatch(text) is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a PACT footprint id (a UUID, 8-4-4-4-12 hex digits)")
    return text.lower()


def _verify(args: argparse.Namespace, data: bytes, policy_path: str, expect_pf_id: str | None) -> int:
    from client.label import check_footprint_id, check_not_deprecated, verify_label
    from ledger.errors import MalformedError

    policy = load_policy(policy_path)
    try:
        report = verify_label(data, policy, require_attestation=args.require_attestation)
    except MalformedError as exc:
        raise MalformedLabel(exc.what, exc.reason) from None
    # After the label verified, so a broken label is reported as broken
    # first: these two are the buyer's requirements of a valid label.
    if expect_pf_id is not None:
        check_footprint_id(report, expect_pf_id)
    if args.refuse_stale:
        check_not_deprecated(report)
    emit(args, "LABEL OK\n" + report.summary().rstrip("\n"), {"ok": True, "report": _report_dict(report)})
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    with connect(args) as client:
        data = client.label(args.pf_id, args.size)
    out = Path(args.out or f"{args.pf_id}.label.json")
    out.write_bytes(data)
    if args.policy:
        if not args.json:
            print(f"label of {args.pf_id} written to {out} ({len(data)} bytes)")
        # The node answered for the id asked: check that it did.
        return _verify(args, data, args.policy, args.pf_id)
    emit(args, f"label of {args.pf_id} written to {out} ({len(data)} bytes)",
         {"footprint_id": args.pf_id, "file": str(out), "bytes": len(data)})
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from client.label import MAX_LABEL_SIZE

    return _verify(args, read_bytes(args.file, "label file", MAX_LABEL_SIZE), args.policy, args.expect_pf_id)


def make_policy(log_vkey: str, witnesses: list[tuple[str, str]], quorum: str | None) -> str:
    """The tlog-policy text trusting ``log_vkey`` with ``witnesses`` (name,
    vkey) and a quorum of ``all``, ``any``, a number, or ``none``."""
    from ledger.errors import MalformedError
    from ledger.keys import Verifier
    from ledger.policy import Policy, PolicyGroup, PolicyLog, PolicyWitness, format_policy

    try:
        log = PolicyLog(Verifier.from_vkey(log_vkey))
        wits = tuple(PolicyWitness(name, Verifier.from_vkey(vkey)) for name, vkey in witnesses)
        groups: tuple[PolicyGroup, ...] = ()
        q = quorum or ("all" if wits else "none")
        if q == "none" or not wits:
            if q not in ("none",):
                raise UsageError("--quorum needs at least one --witness")
            name = "none"
        else:
            k = len(wits) if q == "all" else 1 if q == "any" else int(q) if q.isascii() and q.isdigit() else -1
            if not 1 <= k <= len(wits):
                raise UsageError(f"bad --quorum {q!r}: all, any, none, or 1..{len(wits)}")
            groups = (PolicyGroup("witnesses", k, tuple(w.name for w in wits)),)
            name = "witnesses"
        return format_policy(Policy((log,), wits, groups, name))
    except MalformedError as exc:
        raise UsageError(f"policy: {exc.what}: {exc.reason}") from None


def cmd_policy(args: argparse.Namespace) -> int:
    witnesses = []
    for item in args.witness or []:
        name, sep, key = item.partition("=")
        if not sep or not name or not key:
            raise UsageError(f"bad --witness {item!r}: write NAME=VKEY or NAME=FILE")
        witnesses.append((name, load_vkey(key)))
    log_vkey = load_vkey(args.log_vkey)
    text = make_policy(log_vkey, witnesses, args.quorum)
    checked = None
    if args.check:
        from ledger.checkpoint import verify_checkpoint
        from ledger.keys import Verifier

        with connect(args) as client:
            note = client.checkpoint()
        cp = verify_checkpoint(note, Verifier.from_vkey(log_vkey))
        checked = {"origin": cp.origin, "tree_size": cp.size}
    if args.out:
        Path(args.out).write_text(text)
    human = text.rstrip("\n") if not args.out else f"tlog-policy written to {args.out}"
    if checked:
        human += f"\nthe node's checkpoint ({checked['origin']}, size {checked['tree_size']}) verifies with this log key"
    emit(args, human, {"policy": text, "file": args.out, "checked": checked})
    return 0


_REFUSE_STALE_HELP = (
    "fail (exit 1) if the label carries the deprecation of the footprint or of one upstream of it "
    "(the report says DEPRECATED or STALE). Passing does not prove the footprint current: a label "
    "holds only the entries the node put in it, and no label can show that a deprecation does not "
    "exist; check currency online with 'carbonledger footprint show PF_ID', which trusts the node"
)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    label = sub.add_parser("label", help="fetch a product's carbon label; verify one offline")
    verbs = label.add_subparsers(dest="verb", required=True)

    p = verbs.add_parser("get", help="fetch the label of a footprint (and verify it with --policy)")
    p.add_argument("pf_id")
    p.add_argument("--out", help="file to write (default PFID.label.json)")
    p.add_argument("--size", type=index_or_size, default=0, help="tree size to build it at (default: the latest)")
    p.add_argument("--policy", help="verify the fetched label against this tlog-policy file")
    p.add_argument("--require-attestation", action="store_true",
                   help="every footprint in the tree must be attested by a verification body")
    p.add_argument("--refuse-stale", action="store_true", help=_REFUSE_STALE_HELP)
    add_node_options(p)
    p.set_defaults(func=cmd_get)

    p = verbs.add_parser("verify", help="verify a label file offline; exit 0 only for a valid label")
    p.add_argument("file")
    p.add_argument("--policy", required=True, help="C2SP tlog-policy file (see carbonledger policy)")
    p.add_argument("--require-attestation", action="store_true",
                   help="every footprint in the tree must be attested by a verification body")
    p.add_argument("--expect-pf-id", type=pact_footprint_id, metavar="UUID",
                   help="fail (exit 1) unless the label is of this PACT footprint id: a valid label "
                        "of another product proves nothing about yours")
    p.add_argument("--refuse-stale", action="store_true", help=_REFUSE_STALE_HELP)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("policy", help="write the C2SP tlog-policy that trusts a node (and witnesses)")
    p.add_argument("--log-vkey", required=True, metavar="VKEY",
                   help="the node's log verifier key, or its file (DIR/node.vkey)")
    p.add_argument("--witness", action="append", metavar="NAME=VKEY",
                   help="a witness cosigning key (or its file); repeatable")
    p.add_argument("--quorum", help="all (default with witnesses), any, K, or none")
    p.add_argument("--out", help="write the policy to this file")
    p.add_argument("--check", action="store_true", help="check the node's checkpoint verifies with the log key")
    add_node_options(p)
    p.set_defaults(func=cmd_policy)
