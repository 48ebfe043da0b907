"""``carbonledger reconcile``: an exchange's books against the ledger.

The books are a CSV file (header row) or a JSON file (a list of objects, or
``{"rows": [...]}``) with, per row: ``account``, ``asset`` (``gec`` or
``ccer``; ``kind`` also accepted), optionally ``batch``, and either a serial
range (``range``/``serials`` as ``START-END``, or ``start`` and ``end``; END
exclusive) or an ``amount``. Every mismatch is printed with the entries that
prove the ledger's side, against one signed checkpoint; ``--proofs DIR``
writes a tlog-proof of each of those entries there.

With ``--policy FILE`` (a C2SP tlog-policy, as ``label verify`` takes) the
answer is checked before anything of it is printed (see
``client/reconcile_evidence.py``): the checkpoint meets the policy (log
signature and witness quorum) and is of the size answered; every proving
entry is in that tree (its bytes hashed as the leaf, the node's inclusion
proof up to the checkpoint's root) and is an operation on the mismatch's
units. The tlog-proofs written then carry that checkpoint, so each verifies
offline under the policy. The output says ``verified`` either way (JSON
``verified: true|false``) and always carries the checkpoint, the signed
evidence of what tree a clean run was answered against. What no check here
can show is that the node compared the books correctly and completely.

Exit codes (shared with every verb, see ``_common.py``): 0 the books match
the ledger; 1 mismatches found; 2 bad input (books, policy file, options, or
a request the node refused as malformed); 3 the node could not be reached or
failed; 4 with ``--policy``, the node's answer did not verify (the message
names the check and the entry index), and no verdict on the books is given.
"""

from __future__ import annotations

import argparse
import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from client.commands._common import (
    UsageError,
    add_node_options,
    check_serial,
    connect,
    emit,
    index_or_size,
    load_policy,
    parse_json,
    parse_range,
    progress,
    read_text,
)

__all__ = ["read_books", "register"]


def _row(raw: dict[str, Any], where: str) -> Any:
    from client.sdk import BookRow

    def get(*names: str) -> str:
        for n in names:
            v = raw.get(n)
            if v not in (None, ""):
                return str(v).strip()
        return ""

    account, kind, batch = get("account"), get("asset", "kind").lower(), get("batch")
    if not account:
        raise UsageError(f"{where}: account is missing")
    if kind not in ("gec", "ccer"):
        raise UsageError(f"{where}: asset must be gec or ccer, not {kind!r}")
    serials, start, end, amount = get("range", "serials", "serial_range"), get("start"), get("end"), get("amount")
    try:
        if serials:
            s, e = parse_range(serials)
        elif start or end:
            s, e = int(start), int(end)
            if not 0 <= s < e:
                raise UsageError(f"bad range {start}-{end}: END must be greater than START")
            check_serial(e, "end")
        else:
            s = e = 0
        n = int(amount) if amount else 0
        check_serial(n, "amount")
    except ValueError:
        raise UsageError(f"{where}: start, end and amount must be whole numbers") from None
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}") from None
    if (e > s) == (n > 0):
        raise UsageError(f"{where}: give either a serial range or a positive amount")
    return BookRow(account=account, kind=kind, batch=batch, start=s, end=e, amount=n)


def read_books(path: str, args: argparse.Namespace | None = None) -> list[Any]:
    """The book rows of a CSV or JSON file (see the module doc)."""
    # Excel's "CSV UTF-8" starts with a byte order mark, which would become
    # part of the first header name ("\ufeffaccount").
    text = read_text(path, "books file").removeprefix("\ufeff")
    is_json = path.lower().endswith(".json") or text.lstrip()[:1] in ("[", "{")
    if is_json:
        obj = parse_json(text, f"books file {path}")
        raws = obj.get("rows") if isinstance(obj, dict) else obj
        if not isinstance(raws, list) or not all(isinstance(r, dict) for r in raws):
            raise UsageError(f"books file {path}: want a list of row objects (or {{\"rows\": [...]}})")
        numbered = list(enumerate(raws))
        where = "row {}"
    else:
        reader = csv.DictReader(io.StringIO(text))
        try:
            if not reader.fieldnames or "account" not in [f.strip() for f in reader.fieldnames]:
                raise UsageError(f"books file {path}: CSV needs a header row with account, asset, ...")
            # The reader's line number, not a count of rows: blank lines and
            # quoted line breaks would otherwise shift every later message.
            numbered = [(reader.line_num, {(k or "").strip(): v for k, v in r.items()}) for r in reader]
        except csv.Error as exc:  # a field over the csv module's 128 KiB limit, say
            raise UsageError(f"books file {path}: line {reader.line_num + 1}: not CSV: {exc}") from None
        where = "line {}"
    rows = []
    ns = args or argparse.Namespace(json=True)
    with progress(ns, total=len(numbered), unit="row", desc="books") as bar:
        for i, raw in numbered:
            rows.append(_row(raw, f"books file {path}: " + where.format(i)))
            bar.update(1)
    if not rows:
        raise UsageError(f"books file {path}: no rows")
    return rows


def _proving(mismatches: Sequence[Any]) -> dict[int, list[Any]]:
    """Each proving entry's index, with the mismatches that name it."""
    out: dict[int, list[Any]] = {}
    for m in mismatches:
        for index in m.proving_indexes:
            out.setdefault(index, []).append(m)
    return dict(sorted(out.items()))


def _verified_proofs(args: argparse.Namespace, client: Any, result: Any, policy: Any) -> dict[int, str]:
    """Check the answer against ``policy`` (steps (1) to (3) of
    ``client/reconcile_evidence.py``) and return each proving entry's
    tlog-proof against the answer's checkpoint. Raises AnswerNotVerified."""
    from client.reconcile_evidence import (
        CHECK_INCLUSION,
        AnswerNotVerified,
        check_entry_touches,
        check_index,
        verify_answer_checkpoint,
        verify_proving_entry,
    )
    from ledger.errors import MalformedError, NotFound

    # (1) The checkpoint, before any entry is fetched against it.
    cp = verify_answer_checkpoint(result.checkpoint, result.tree_size, policy, asked_size=args.size)
    proving = _proving(result.mismatches)
    proofs: dict[int, str] = {}
    with progress(args, total=len(proving), unit="entry", desc="verify") as bar:
        for index, mismatches in proving.items():
            check_index(index, cp)
            try:
                entry = client.entry(index)
                hashes = list(client.inclusion_proof(index, cp.size).hashes)
            except (NotFound, MalformedError) as exc:
                # The node named an entry it will not serve: its answer is
                # unproven, not a verdict of "not found" on the books.
                raise AnswerNotVerified(
                    CHECK_INCLUSION, f"the node serves no entry or proof of it at tree size {cp.size}: {exc}", index
                ) from None
            # (2) In the tree, by the bytes received; (3) on the mismatch's units.
            proofs[index] = verify_proving_entry(index, entry, hashes, cp, result.checkpoint)
            for m in mismatches:
                check_entry_touches(index, entry, asset=m.asset, batch=m.batch, start=m.start, end=m.end)
            bar.update(1)
    return proofs


def cmd_reconcile(args: argparse.Namespace) -> int:
    from carbonledger.v1 import reconcile_pb2

    # The policy first: a bad policy file is bad input, before any call.
    policy = load_policy(args.policy) if args.policy else None
    rows = read_books(args.books, args)
    out = Path(args.proofs) if args.proofs else None
    with connect(args) as client, progress(args, total=None, unit="call", desc="reconcile") as bar:
        result = client.reconcile(rows, args.size)
        bar.update(1)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
        proofs: dict[int, str] = {}
        if policy is not None:
            proofs = _verified_proofs(args, client, result, policy)
        elif out is not None:
            wanted = _proving(result.mismatches)
            with progress(args, total=len(wanted), unit="proof", desc="proofs") as pbar:
                for index in wanted:
                    proofs[index] = client.tlog_proof(index, result.tree_size)
                    pbar.update(1)
    # Written only once every proof is in hand (and, with --policy, checked):
    # a directory of proofs is never the evidence of an answer that failed.
    if out is not None:
        for index, text in proofs.items():
            (out / f"entry-{index}.tlog-proof").write_text(text)
    mismatches = []
    for m in result.mismatches:
        mismatches.append({
            "kind": reconcile_pb2.Mismatch.Kind.Name(m.kind), "row": m.row, "account": m.account,
            "asset": m.asset, "batch": m.batch, "start": m.start, "end": m.end,
            "books_amount": m.books_amount, "ledger_amount": m.ledger_amount, "detail": m.detail,
            "proving_indexes": list(m.proving_indexes),
        })  # fmt: skip
    lines = []
    for m in mismatches:
        where = f"row {m['row'] + 1}" if m["row"] >= 0 else "ledger"
        units = f"{m['asset']}:{m['start']}-{m['end']}" if m["end"] > m["start"] else f"{m['asset']} total"
        batch = f" batch {m['batch']}" if m["batch"] else ""
        proof = ", ".join(str(i) for i in m["proving_indexes"]) or "none (never issued)"
        lines.append(f"{where:8} {m['kind']:19} {m['account']} {units}{batch}: books {m['books_amount']}, "
                     f"ledger {m['ledger_amount']} ({m['detail']}); proving entries: {proof}")
    lines.append(f"{len(mismatches)} mismatch(es) in {len(rows)} rows against checkpoint size {result.tree_size}:")
    lines.append(result.checkpoint.rstrip("\n"))
    if policy is not None:
        lines.append(f"verified with policy {args.policy}: the checkpoint meets it; proving entries checked: "
                     f"{len(proofs)}, each in its tree and acting on its mismatch's units "
                     "(the comparison itself is the node's)")
    else:
        lines.append("NOT VERIFIED: the checkpoint and proving entries above are the node's word; "
                     "run with --policy FILE to check them")
    if out is not None:
        lines.append(f"{len(proofs)} tlog-proofs written to {args.proofs}")
    emit(args, "\n".join(lines), {
        "ok": not mismatches, "rows": len(rows), "tree_size": result.tree_size, "checkpoint": result.checkpoint,
        "verified": policy is not None, "mismatches": mismatches,
    })  # fmt: skip
    return 1 if mismatches else 0


_EXIT_CODES = """\
exit codes: 0 the books match the ledger; 1 mismatches found; 2 bad input (books, policy
file, options); 3 the node could not be reached or failed; 4 with --policy, the node's
answer did not verify (the message names the check and the entry), no verdict given"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("reconcile", help="compare an exchange's books (CSV or JSON) with the ledger",
                       epilog=_EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("books", help="CSV or JSON: account, asset, batch, range START-END (or start,end) or amount")
    p.add_argument("--size", type=index_or_size, default=0, help="checkpoint (tree size) to reconcile against; default latest")
    p.add_argument("--policy", metavar="FILE",
                   help="C2SP tlog-policy (see carbonledger policy): verify the checkpoint against it, and that "
                        "every proving entry is in that tree and acts on its mismatch's units (exit 4 if not)")
    p.add_argument("--proofs", metavar="DIR", help="write a tlog-proof of every proving entry into DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--progress", action="store_true", help="progress bars even when stderr is not a terminal")
    add_node_options(p)
    p.set_defaults(func=cmd_reconcile)
