"""``carbonledger reconcile``: an exchange's books against the ledger.

The books are a CSV file (header row) or a JSON file (a list of objects, or
``{"rows": [...]}``) with, per row: ``account``, ``asset`` (``gec`` or
``ccer``; ``kind`` also accepted), optionally ``batch``, and either a serial
range (``range``/``serials`` as ``START-END``, or ``start`` and ``end``; END
exclusive) or an ``amount``. Every mismatch is printed with the entries that
prove the ledger's side, against one signed checkpoint; ``--proofs DIR``
writes a tlog-proof of each of those entries there. Exit 1 if any mismatch.
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path
from typing import Any

from client.commands._common import (
    UsageError,
    add_node_options,
    check_serial,
    connect,
    emit,
    index_or_size,
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


def cmd_reconcile(args: argparse.Namespace) -> int:
    from carbonledger.v1 import reconcile_pb2

    rows = read_books(args.books, args)
    with connect(args) as client, progress(args, total=None, unit="call", desc="reconcile") as bar:
        result = client.reconcile(rows, args.size)
        bar.update(1)
        proofs_written = 0
        if args.proofs:
            wanted = sorted({i for m in result.mismatches for i in m.proving_indexes})
            out = Path(args.proofs)
            out.mkdir(parents=True, exist_ok=True)
            with progress(args, total=len(wanted), unit="proof", desc="proofs") as pbar:
                for index in wanted:
                    (out / f"entry-{index}.tlog-proof").write_text(client.tlog_proof(index, result.tree_size))
                    pbar.update(1)
                    proofs_written += 1
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
    if args.proofs:
        lines.append(f"{proofs_written} tlog-proofs written to {args.proofs}")
    emit(args, "\n".join(lines), {
        "ok": not mismatches, "rows": len(rows), "tree_size": result.tree_size, "checkpoint": result.checkpoint,
        "mismatches": mismatches,
    })  # fmt: skip
    return 1 if mismatches else 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("reconcile", help="compare an exchange's books (CSV or JSON) with the ledger")
    p.add_argument("books", help="CSV or JSON: account, asset, batch, range START-END (or start,end) or amount")
    p.add_argument("--size", type=index_or_size, default=0, help="checkpoint (tree size) to reconcile against; default latest")
    p.add_argument("--proofs", metavar="DIR", help="write a tlog-proof of every proving entry into DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--progress", action="store_true", help="progress bars even when stderr is not a terminal")
    add_node_options(p)
    p.set_defaults(func=cmd_reconcile)
