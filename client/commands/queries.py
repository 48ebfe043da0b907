"""Read-only verbs: ``holdings``, ``history``, ``checkpoint``, ``proof`` and
``watch`` (the event subscription)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from client.commands._common import (
    add_node_options,
    connect,
    count,
    emit,
    index_or_size,
    parse_range,
    progress,
    seconds,
)

__all__ = ["register"]


def cmd_holdings(args: argparse.Namespace) -> int:
    with connect(args) as client:
        rows = [
            {
                "account": h.account, "kind": h.kind, "batch": h.batch, "start": h.start, "end": h.end,
                "units": h.end - h.start, "status": h.status,
                "retired_by_entry": h.retired_by_entry if h.HasField("retired_by_entry") else None,
                "claimed_by": h.claimed_by if h.HasField("claimed_by") else None,
            }
            for h in client.holdings(args.account)
            if not args.kind or h.kind == args.kind
        ]  # fmt: skip
    lines = []
    for r in rows:
        unit = "MWh" if r["kind"] == "gec" else "tCO2e"
        extra = f" (entry {r['retired_by_entry']})" if r["retired_by_entry"] is not None else ""
        extra += f", backs footprint {r['claimed_by']}" if r["claimed_by"] else ""
        lines.append(f"{r['kind']}:{r['start']}-{r['end']}  {r['units']:>8} {unit:5}  batch {r['batch']:12} "
                     f"{r['status']}{extra}")
    totals: dict[tuple[str, str], int] = {}
    for r in rows:
        if r["status"] in ("held", "expired"):
            totals[(r["status"], r["kind"])] = totals.get((r["status"], r["kind"]), 0) + r["units"]
    summary = ", ".join(f"{k} {v} held" for (st, k), v in sorted(totals.items()) if st == "held") or "nothing held"
    # Expired units are still the account's but can no longer be transferred
    # or retired: a holder must not read them into what it can sell or use.
    expired = ", ".join(f"{k} {v} expired" for (st, k), v in sorted(totals.items()) if st == "expired")
    if expired:
        summary += f"; {expired} (past validity end: cannot be transferred or retired)"
    human = "\n".join(lines + [f"{args.account}: {summary}"]) if rows else f"{args.account}: no units"
    emit(args, human, rows)
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    start, end = parse_range(args.range)
    with connect(args) as client:
        events = [
            {"index": e.index, "op": e.op, "kind": e.kind, "batch": e.batch, "start": e.start, "end": e.end,
             "detail": dict(e.detail)}
            for e in client.unit_history(args.kind, start, end)
        ]  # fmt: skip
    human = "\n".join(
        f"entry {e['index']:>6}  {e['op']:8} {e['kind']}:{e['start']}-{e['end']}  batch {e['batch']}  "
        + " ".join(f"{k}={v}" for k, v in sorted(e["detail"].items()))
        for e in events
    ) or f"no history for {args.kind}:{start}-{end}"
    emit(args, human, events)
    return 0


def cmd_checkpoint(args: argparse.Namespace) -> int:
    from ledger.checkpoint import parse_checkpoint
    from ledger.note import parse_note

    with connect(args) as client:
        note = client.checkpoint(args.size)
    cp = parse_checkpoint(parse_note(note).text)
    if args.out:
        Path(args.out).write_text(note)
    emit(args, note.rstrip("\n"), {
        "origin": cp.origin, "tree_size": cp.size, "root_hash": cp.root_hash.hex(), "note": note,
    })  # fmt: skip
    return 0


def cmd_proof(args: argparse.Namespace) -> int:
    import hashlib

    with connect(args) as client:
        proof = client.tlog_proof(args.index, args.size)
        entry = client.entry(args.index) if args.entry_out or args.json else None
    if args.out:
        Path(args.out).write_text(proof)
    if args.entry_out and entry is not None:
        Path(args.entry_out).write_bytes(entry)
    data: dict[str, Any] = {"index": args.index, "proof": proof}
    if entry is not None:
        data["entry_sha256"] = hashlib.sha256(entry).hexdigest()
    emit(args, proof.rstrip("\n") if not args.out else f"tlog-proof of entry {args.index} written to {args.out}", data)
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    from client.errors import DeadlineExceeded

    seen = 0
    with connect(args) as client, progress(args, total=args.count, unit="event", desc="watch") as bar:
        stream = client.subscribe(
            args.from_index, kinds=args.kind or (), op_types=args.op or (), accounts=args.account or (),
            timeout=args.duration,
        )  # fmt: skip
        try:
            for e in stream:
                if args.json:
                    print(json.dumps({"index": e.index, "kind": e.kind, "op": e.op, "org": e.org,
                                      "subject": e.subject, "refs": list(e.refs)}, ensure_ascii=False), flush=True)
                else:
                    refs = f" -> {', '.join(e.refs)}" if e.refs else ""
                    bar.write(f"#{e.index:<6} {e.kind:22} {e.op:22} {e.org:20} {e.subject}{refs}")
                seen += 1
                bar.update(1)
                if args.count and seen >= args.count:
                    break
        except DeadlineExceeded:
            pass  # --duration elapsed: a normal end of a bounded watch
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("holdings", help="the certificates and credits an account holds: held, expired, frozen or retired")
    p.add_argument("account")
    p.add_argument("--kind", choices=("gec", "ccer"))
    add_node_options(p)
    p.set_defaults(func=cmd_holdings)

    p = sub.add_parser("history", help="every issue, transfer, retirement, freeze and claim of a serial range")
    p.add_argument("kind", choices=("gec", "ccer"))
    p.add_argument("range", metavar="START-END")
    add_node_options(p)
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("checkpoint", help="the node's signed checkpoint (C2SP tlog-checkpoint)")
    p.add_argument("--size", type=index_or_size, default=0, help="tree size (default: the latest)")
    p.add_argument("--out", help="write the note to this file")
    add_node_options(p)
    p.set_defaults(func=cmd_checkpoint)

    p = sub.add_parser("proof", help="a C2SP tlog-proof of an entry, verifiable offline")
    p.add_argument("index", type=index_or_size)
    p.add_argument("--size", type=index_or_size, default=0, help="tree size to prove against (default: the latest)")
    p.add_argument("--out", help="write the proof to this file")
    p.add_argument("--entry-out", help="write the entry bytes to this file")
    add_node_options(p)
    p.set_defaults(func=cmd_proof)

    p = sub.add_parser("watch", help="stream events: history from --from, then live")
    p.add_argument("--from", dest="from_index", type=index_or_size, default=0, metavar="INDEX")
    p.add_argument("--count", type=count, default=0, help="stop after this many events (0: never)")
    p.add_argument("--duration", type=seconds, default=24 * 3600.0, help="stop after this many seconds")
    p.add_argument("--kind", action="append", help="event kind, e.g. footprint.stale; repeatable")
    p.add_argument("--op", action="append", help="operation type of entry events, e.g. pcf.publish; repeatable")
    p.add_argument("--account", action="append", help="only events naming this org; repeatable")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--progress", action="store_true", help="a progress bar even when stderr is not a terminal")
    add_node_options(p)
    p.set_defaults(func=cmd_watch)

