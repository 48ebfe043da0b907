"""``carbonledger tiles verify|checkpoint``: a buyer's or monitor's verbs
over c2sp.org/tlog-tiles, against a node's ``--tiles-http`` endpoint or any
static mirror or HTTP cache of it. No gRPC: the checkpoint is checked
against a C2SP tlog-policy, and everything else against the checkpoint (see
client/tiles.py).

Exit codes: 0 proven; 1 not proven (a signature, quorum, proof or
consistency check failed, something the server sent does not parse, or the
entry or a resource is not there: HTTP 404); 2 bad input (a bad URL,
policy, or file given); 3 the server did not answer with the resource (no
connection, a timeout, another HTTP status, an answer over its cap).
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import Any

from client.commands._common import (
    UsageError,
    emit,
    index_or_size,
    load_policy,
    read_bytes,
    read_text,
    seconds,
)
from ledger.errors import MalformedError, VerificationError

__all__ = ["SinceNotVerified", "register"]


class SinceNotVerified(VerificationError):
    """The ``--since`` checkpoint does not meet the policy: the old view a
    consistency check would start from is not one the policy trusts."""


def _signers(origin: str, witnesses: tuple[str, ...]) -> str:
    cosigned = f"cosigned by {', '.join(witnesses)}" if witnesses else "no witness cosignatures"
    return f"signed by log {origin}; {cosigned}"


def cmd_verify(args: argparse.Namespace) -> int:
    from client.tiles import TilesReader

    policy = load_policy(args.policy)
    entry = read_bytes(args.entry, "entry file") if args.entry else None
    proven = TilesReader(args.url, timeout=args.timeout).prove_entry(args.index, policy, entry)
    cp = proven.checkpoint
    digest = hashlib.sha256(proven.entry).hexdigest()
    if args.out:
        Path(args.out).write_bytes(proven.entry)
    lines = [
        f"ENTRY OK: entry {proven.index} is in {cp.origin} at tree size {cp.size}",
        f"  root     {cp.root_hash.hex()}",
        f"  entry    {len(proven.entry):,} bytes, sha256 {digest}",
        f"  {_signers(cp.origin, proven.witnesses)}",
    ]
    if args.out:
        lines.append(f"  entry written to {args.out}")
    emit(args, "\n".join(lines), {
        "ok": True, "index": proven.index, "origin": cp.origin, "tree_size": cp.size,
        "root_hash": cp.root_hash.hex(), "entry_bytes": len(proven.entry), "entry_sha256": digest,
        "log": cp.origin, "witnesses": list(proven.witnesses), "note": proven.note, "out": args.out,
    })  # fmt: skip
    return 0


def cmd_checkpoint(args: argparse.Namespace) -> int:
    from client.tiles import TilesReader, witnesses_on
    from ledger.policy import verify_checkpoint_policy

    policy = load_policy(args.policy)
    reader = TilesReader(args.url, timeout=args.timeout)
    since: dict[str, Any] | None = None
    if args.since:
        old_note = read_text(args.since, "--since checkpoint file")
        # Checked here first, so that a failure names the file it is about.
        try:
            old = verify_checkpoint_policy(old_note, policy)
        except MalformedError as exc:
            raise UsageError(f"--since {args.since}: {exc.what}: {exc.reason}") from None
        except VerificationError as exc:
            raise SinceNotVerified(f"--since {args.since}: {exc}") from None
        cp, note = reader.prove_consistency(old_note, policy)
        since = {"file": args.since, "tree_size": old.size, "root_hash": old.root_hash.hex()}
    else:
        cp, note = reader.checkpoint(policy)
    witnesses = witnesses_on(note, policy)
    if args.out:
        Path(args.out).write_text(note)
    lines = [
        f"CHECKPOINT OK: {cp.origin} at tree size {cp.size}",
        f"  root     {cp.root_hash.hex()}",
        f"  {_signers(cp.origin, witnesses)}",
    ]
    if since is not None:
        grew = cp.size - since["tree_size"]
        lines.append(f"  consistent with {args.since} (tree size {since['tree_size']}, "
                     f"root {since['root_hash']}): {grew:,} entries appended since")  # fmt: skip
    if args.out:
        lines.append(f"  note written to {args.out}")
    emit(args, "\n".join(lines) + "\n\n" + note.rstrip("\n"), {
        "ok": True, "origin": cp.origin, "tree_size": cp.size, "root_hash": cp.root_hash.hex(),
        "log": cp.origin, "witnesses": list(witnesses), "note": note, "since": since, "out": args.out,
    })  # fmt: skip
    return 0


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("url", metavar="URL",
                   help="the log's tlog-tiles prefix: a node's --tiles-http address (http://HOST:PORT/) "
                        "or a mirror's; <URL>/checkpoint is its checkpoint")  # fmt: skip
    p.add_argument("--policy", required=True, help="C2SP tlog-policy file (see carbonledger policy)")
    p.add_argument("--timeout", type=seconds, default=10.0,
                   help="seconds for each HTTP request, the whole answer included (default 10)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="machine-readable output")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    tiles = sub.add_parser(
        "tiles", help="verify entries and checkpoints from a c2sp.org/tlog-tiles endpoint or mirror"
    )
    verbs = tiles.add_subparsers(dest="verb", required=True)

    p = verbs.add_parser(
        "verify", help="prove an entry from tiles against the policy's checkpoint; exit 0 only if proven"
    )
    _add_common(p)
    p.add_argument("index", type=index_or_size, metavar="INDEX", help="the entry's index in the log")
    p.add_argument("--entry", metavar="FILE",
                   help="prove these bytes are entry INDEX, instead of taking them from the entry bundle "
                        "(needed for an entry over 65,535 bytes, which no bundle carries)")  # fmt: skip
    p.add_argument("--out", metavar="FILE", help="write the proven entry's bytes to this file")
    p.set_defaults(func=cmd_verify)

    p = verbs.add_parser("checkpoint", help="the endpoint's checkpoint, verified against the policy "
                                            "(and proven consistent with an older one)")  # fmt: skip
    _add_common(p)
    p.add_argument("--since", metavar="FILE",
                   help="a checkpoint note seen before (e.g. from --out): fail unless the log "
                        "served now extends it, as a monitor checks that the log was not forked or "
                        "rewritten")  # fmt: skip
    p.add_argument("--out", metavar="FILE",
                   help="write the verified note to this file (for the next --since)")  # fmt: skip
    p.set_defaults(func=cmd_checkpoint)
