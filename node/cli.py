"""``carbonledger init`` and ``carbonledger serve``: the verbs that need the node.

A node directory holds::

    node.key      the log's signer key (checkpoints are signed with it; 0600)
    node.vkey     its verifier key, to give to clients and witnesses
    authority.key an authority key, if init generated one (0600)
    genesis.dsse  the genesis envelope, entry 0 of the log
    ledger/       the LMDB ledger
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from ledger.errors import LedgerError, MalformedError
from ledger.keys import Signer, Verifier

__all__ = ["build_parser", "cmd_init", "cmd_serve", "main"]

_log = logging.getLogger("carbonledger.node")


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")


def _read_key(path: Path) -> Signer | Verifier:
    text = path.read_text().strip()
    try:
        return Signer.from_key(text) if text.startswith("PRIVATE+KEY+") else Verifier.from_vkey(text)
    except MalformedError as exc:
        raise LedgerError(f"{path}: {exc}") from None


def _open_ledger(directory: Path):  # type: ignore[no-untyped-def]
    from ledger.log import Ledger
    from ledger.state import StateMachine

    key_file = directory / "node.key"
    if not key_file.is_file():
        raise LedgerError(f"{directory} is not a node directory (no node.key); run carbonledger init")
    signer = Signer.from_key(key_file.read_text().strip())
    return Ledger.open(directory / "ledger", signer=signer, machine=StateMachine())


def cmd_init(args: argparse.Namespace) -> int:
    """Create a node directory: the log key, a genesis naming the authority
    keys (signed by the first private one, or by a key generated here), and
    a ledger whose entry 0 is that genesis."""
    import time

    from ledger.records.build import org_spec, signed_op

    directory = Path(args.dir)
    if (directory / "node.key").exists() or (directory / "ledger").exists():
        raise LedgerError(f"{directory} already holds a node; refusing to overwrite it")
    keys = [_read_key(Path(f)) for f in args.authority_key or []]
    signers = [k for k in keys if isinstance(k, Signer)]
    directory.mkdir(parents=True, exist_ok=True)
    if not signers:
        generated = Signer.generate(args.authority_id.lower())
        _write_private(directory / "authority.key", generated.skey)
        (directory / "authority.vkey").write_text(generated.vkey + "\n")
        keys.append(generated)
        signers.append(generated)
    vkeys = list(dict.fromkeys(k.vkey for k in keys))
    genesis = signed_op(
        "genesis", args.authority_id, int(time.time()),
        {"authorities": [org_spec(args.authority_id, args.authority_name, ["authority"], vkeys)]},
        [signers[0]],
    )  # fmt: skip
    node_signer = Signer.generate(args.origin)
    _write_private(directory / "node.key", node_signer.skey)
    (directory / "node.vkey").write_text(node_signer.vkey + "\n")
    (directory / "genesis.dsse").write_bytes(genesis)
    with _open_ledger(directory) as led:
        led.append([genesis])
        checkpoint = led.checkpoint()
    summary = {
        "dir": str(directory),
        "origin": args.origin,
        "vkey": node_signer.vkey,
        "authority": args.authority_id,
        "authority_keys": vkeys,
    }
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True))
    else:
        print(f"initialised {directory}: log {args.origin}\nverifier key: {node_signer.vkey}")
        print(f"genesis: authority {args.authority_id} with {len(vkeys)} key(s)\n{checkpoint}")
        print(f"serve it with:\n  carbonledger serve {directory} --listen 127.0.0.1:7400")
    return 0


async def _serve(args: argparse.Namespace) -> None:
    from node.server import TlsConfig, create_server

    tls = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            raise LedgerError("--tls-cert and --tls-key go together")
        tls = TlsConfig(Path(args.tls_cert), Path(args.tls_key), Path(args.tls_client_ca) if args.tls_client_ca else None)
    elif args.tls_client_ca:
        raise LedgerError("--tls-client-ca needs --tls-cert and --tls-key")
    led = _open_ledger(Path(args.dir))
    try:
        server, port = create_server(
            args.listen, led, tls=tls, metrics_port=args.metrics_port,
            max_pending=args.max_pending, max_batch=args.max_batch,
        )  # fmt: skip
        await server.start()
        host = args.listen.rsplit(":", 1)[0]
        _log.info("listening", extra={"event": "listening", "address": f"{host}:{port}", "tls": tls is not None})
        print(f"carbonledger node {led.origin} listening on {host}:{port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        _log.info("shutting down", extra={"event": "shutdown", "grace": args.grace})
        await server.stop(args.grace)
    finally:
        led.close()


def cmd_serve(args: argparse.Namespace) -> int:
    from node.logs import configure_logging

    configure_logging(args.log_level)
    asyncio.run(_serve(args))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("init", help="create a node directory: log key, genesis, ledger")
    p.add_argument("dir")
    p.add_argument("--origin", required=True, help="the log's name, e.g. ledger.example.org/carbon")
    p.add_argument("--authority-key", action="append", metavar="FILE",
                   help="a registry authority's key file (.key or .vkey); repeatable. "
                        "The first private key signs the genesis; with none, one is generated.")
    p.add_argument("--authority-id", default="AUTHORITY", help="the authority organization's id")
    p.add_argument("--authority-name", default="Registry Authority")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("serve", help="run a node over gRPC")
    p.add_argument("dir")
    p.add_argument("--listen", default="127.0.0.1:7400", help="HOST:PORT (port 0 picks one)")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port")
    p.add_argument("--tls-cert", help="PEM certificate chain of the server")
    p.add_argument("--tls-key", help="PEM private key of the server")
    p.add_argument("--tls-client-ca", help="PEM CA certificates; clients must present a cert they signed (mTLS)")
    p.add_argument("--grace", type=float, default=10.0, help="seconds in-flight calls get at shutdown")
    p.add_argument("--max-pending", type=int, default=10_000, help="submissions queued before pushback")
    p.add_argument("--max-batch", type=int, default=2_000, help="most entries per group commit")
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=cmd_serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carbonledger", description="Node commands of the carbon ledger.")
    add_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except LedgerError as exc:
        print(f"carbonledger: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
