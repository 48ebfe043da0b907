"""The ``carbonledger`` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ledger.errors import LedgerError

__all__ = ["main"]


def _emit(args: argparse.Namespace, human: str, data: dict[str, Any]) -> None:
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print(human)


def _write_private(path: Path, text: str) -> None:
    # Create with 0600 from the start so the key is never world-readable.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")


def cmd_keygen(args: argparse.Namespace) -> int:
    from ledger.keys import Signer

    signer = Signer.generate(args.name, cosigner=args.witness)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = args.name.replace("/", "_")
    key_path, vkey_path = out / f"{stem}.key", out / f"{stem}.vkey"
    for p in (key_path, vkey_path):
        if p.exists():
            raise LedgerError(f"{p} already exists; refusing to overwrite a key")
    _write_private(key_path, signer.skey)
    vkey_path.write_text(signer.vkey + "\n")
    _emit(
        args,
        f"signer key:   {key_path} (keep secret)\nverifier key: {vkey_path}\n{signer.vkey}",
        {"name": args.name, "key_file": str(key_path), "vkey_file": str(vkey_path), "vkey": signer.vkey},
    )
    return 0


class _ProgressBar:
    """A progress bar of entries on stderr (none with --json or --quiet),
    drawn from the first ``progress(done, total)`` call on, so a command
    that fails before its audit starts prints only its error."""

    def __init__(self, args: argparse.Namespace) -> None:
        self._quiet = bool(args.json or args.quiet)
        self._bar: Any = None

    def progress(self, done: int, total: int) -> None:
        if self._quiet:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="entry", file=sys.stderr)
        self._bar.total = total
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def cmd_audit(args: argparse.Namespace) -> int:
    from client.commands._common import load_vkey
    from ledger.audit import audit_store, stored_identity
    from ledger.errors import AuditDiscrepancy
    from ledger.keys import Verifier
    from ledger.state_machines import machine_for
    from ledger.storage import LmdbStore

    path = Path(args.dir)
    if not (path / "data.mdb").is_file():
        raise LedgerError(f"{path} holds no ledger (no data.mdb)")
    store = LmdbStore(path)
    try:
        _, stored_vkey, machine_id = stored_identity(store)
        vkey = load_vkey(args.vkey) if args.vkey else stored_vkey
        verifier = Verifier.from_vkey(vkey)
        bar = _ProgressBar(args)
        try:
            report = audit_store(store, verifier=verifier, machine=machine_for(machine_id), progress=bar.progress)
        except AuditDiscrepancy as exc:
            bar.close()
            _emit(args, f"AUDIT FAILED at {exc.location}: {exc.detail}",
                  {"ok": False, "location": exc.location, "detail": exc.detail})
            return 1
        bar.close()
    finally:
        store.close()
    _emit(
        args,
        f"audit ok: {report.origin}: {report.entries} entries in {report.blocks} blocks, "
        f"root {report.root.hex()}, state digest {report.state_digest.hex()}",
        {"ok": True, "origin": report.origin, "entries": report.entries, "blocks": report.blocks,
         "root": report.root.hex(), "state_digest": report.state_digest.hex()},
    )
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from client.commands._common import load_vkey
    from ledger.backup import backup_ledger
    from ledger.errors import AuditDiscrepancy

    bar = _ProgressBar(args)
    try:
        report = backup_ledger(args.dir, args.dest, vkey=load_vkey(args.vkey) if args.vkey else None, progress=bar.progress)
    except AuditDiscrepancy as exc:
        _emit(args, f"BACKUP FAILED: the copy does not audit, at {exc.location}: {exc.detail}; nothing kept",
              {"ok": False, "location": exc.location, "detail": exc.detail})
        return 1
    finally:
        bar.close()
    _emit(
        args,
        f"backup ok: {report.path}: {report.origin} at {report.entries} entries, root {report.root.hex()}, "
        f"state digest {report.state_digest.hex()}, {report.bytes:,} bytes; audited",
        {"ok": True, "path": str(report.path), "origin": report.origin, "entries": report.entries,
         "root": report.root.hex(), "state_digest": report.state_digest.hex(), "bytes": report.bytes},
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carbonledger", description="A verifiable carbon ledger.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("keygen", help="write a signed-note key pair (NAME.key, NAME.vkey)")
    p.add_argument("name", help="key name, e.g. example.org/carbon")
    p.add_argument("--out", default=".", help="directory to write the key files into")
    p.add_argument("--witness", action="store_true", help="a witness cosigning key (type 0x04)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("audit", help="re-verify a whole ledger directory")
    p.add_argument("dir")
    p.add_argument("--vkey", help="the log's verifier key, or a file with it (default: the one the ledger recorded)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("backup", help="copy a ledger directory, while its node runs, and audit the copy")
    p.add_argument("dir", help="the ledger directory (a node directory's ledger/)")
    p.add_argument("dest", help="where the copy goes: a new or empty directory")
    p.add_argument("--vkey", help="the log's verifier key, or a file with it (default: the one the ledger recorded)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_backup)

    from client.commands import register_all

    register_all(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from client.commands._common import UsageError, report_error

    try:
        return int(args.func(args))
    except LedgerError as exc:
        return report_error(exc, json_output=getattr(args, "json", False))
    except OSError as exc:
        # A file the command was told to write (--out, --proofs, keygen's
        # directory) that cannot be: the OS's reason, in one line.
        if exc.filename is None:
            raise
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        return report_error(UsageError(f"{exc.filename}: {reason}"), json_output=getattr(args, "json", False))


if __name__ == "__main__":
    sys.exit(main())
