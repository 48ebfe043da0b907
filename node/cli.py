"""``carbonledger init`` and ``carbonledger serve``: the verbs that need the node.

A node directory holds::

    node.key      the log's signer key (checkpoints are signed with it; 0600)
    node.vkey     its verifier key, to give to clients and witnesses
    authority.key an authority key, if init generated one (0600)
    genesis.dsse  the genesis envelope, entry 0 of the log
    ledger/       the LMDB ledger
    witness/      the witness's state and its evidence/ of forks (with --witness-key)
    evidence/     evidence of block conflicts met while catching up from peers
                  (node/replication/conflicts.py)
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
from typing import Any

from ledger.errors import LedgerError, MalformedError
from ledger.keys import Signer, Verifier
from node import event_loop

__all__ = ["build_parser", "cmd_init", "cmd_serve", "main"]

_log = logging.getLogger("carbonledger.node")


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")


def _read_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        from node.errors import os_reason  # grpc with it: only on this path for init

        raise LedgerError(f"cannot read {what} {path}: {os_reason(exc)}") from None


def _read_key(path: Path) -> Signer | Verifier:
    text = _read_file(path, "key file").decode(errors="replace").strip()
    try:
        return Signer.from_key(text) if text.startswith("PRIVATE+KEY+") else Verifier.from_vkey(text)
    except MalformedError as exc:
        raise LedgerError(f"{path}: {exc}") from None


def _open_ledger(directory: Path, created_time: int | None = None):  # type: ignore[no-untyped-def]
    from ledger.log import Ledger
    from ledger.state import StateMachine
    from node.memory import NODE_MAPPED_BUDGET

    key_file = directory / "node.key"
    if not key_file.is_file():
        raise LedgerError(f"{directory} is not a node directory (no node.key); run carbonledger init")
    signer = _read_key(key_file)
    if not isinstance(signer, Signer):
        raise LedgerError(f"{key_file}: not a private key")
    return Ledger.open(
        directory / "ledger",
        signer=signer,
        machine=StateMachine(),
        created_time=created_time,
        mapped_budget=NODE_MAPPED_BUDGET,
    )


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
    if args.witness_name:
        witness = Signer.generate(args.witness_name, cosigner=True)
        _write_private(directory / "witness.key", witness.skey)
        (directory / "witness.vkey").write_text(witness.vkey + "\n")
    # A cluster replica starts empty, with the block 0 every replica shares;
    # the genesis reaches it through the ordering service (the first node to
    # start puts its genesis.dsse; see node/replication).
    with _open_ledger(directory, 0 if args.cluster else None) as led:
        if not args.cluster:
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


def _address(text: str) -> str:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) with a port from 0 to 65535,
    as given: grpc treats a port it cannot use as ``0`` and listens on a
    random one instead of refusing."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT with a port from 0 to 65535")
    return text


def _port(text: str) -> int:
    value = _non_negative(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port (0 to 65535)")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def _cluster_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The ClusterConfig of the serve flags, or None for a lone node."""
    if not (args.etcd or args.peer or args.witness_key or args.policy):
        return None
    # Imported only for a cluster: node.cluster brings aiohttp (the witness
    # HTTP endpoint), a sixth of a lone node's start-up time.
    from ledger.policy import parse_policy
    from node.cluster import ClusterConfig

    witness_key = _read_key(Path(args.witness_key)) if args.witness_key else None
    if witness_key is not None and not (isinstance(witness_key, Signer) and witness_key.cosigner):
        raise LedgerError(f"{args.witness_key}: not a private cosigner (type 0x04) key")
    if args.etcd and not args.node_id:
        raise LedgerError("--etcd needs --node-id")
    return ClusterConfig(
        node_dir=Path(args.dir),
        node_id=args.node_id or "",
        peers=list(args.peer or []),
        policy=parse_policy(_read_file(Path(args.policy), "--policy")) if args.policy else None,
        witness_key=witness_key,  # type: ignore[arg-type]
        witness_http=args.witness_http,
        etcd=[e for e in (args.etcd or "").split(",") if e],
        etcd_prefix=args.etcd_prefix or "",
        lease_ttl=args.etcd_lease_ttl,
        compact_interval=args.compact_interval,
    )


async def _serve(args: argparse.Namespace) -> None:
    from node.server import TlsConfig, create_server

    tls = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            raise LedgerError("--tls-cert and --tls-key go together")
        tls = TlsConfig(Path(args.tls_cert), Path(args.tls_key), Path(args.tls_client_ca) if args.tls_client_ca else None)
    elif args.tls_client_ca:
        raise LedgerError("--tls-client-ca needs --tls-cert and --tls-key")
    config = _cluster_config(args)
    led = _open_ledger(Path(args.dir))
    try:
        cluster = None
        hooks: dict[str, Any] = {}
        if config is not None:
            from node.cluster import ClusterNode

            cluster = ClusterNode(led, config)
            hooks = {
                "committer_factory": cluster.committer_factory,
                "register": cluster.register,
                "label_builder": cluster.label_builder,
                "reconcile_checkpoint": cluster.reconcile_checkpoint,
            }
        # Bounds not given on the command line are the defaults of create_server.
        bounds = {
            k: getattr(args, k)
            for k in ("max_pending", "max_pending_bytes", "event_cache_refs")
            if getattr(args, k) is not None
        }
        server, port = create_server(
            args.listen, led, tls=tls, metrics_port=args.metrics_port,
            max_batch=args.max_batch, verify_processes=args.verify_processes, **bounds, **hooks,
        )  # fmt: skip
        await server.start()
        tiles = None
        try:
            if args.tiles_http:
                # Imported only when asked for: aiohttp is a sixth of a lone node's start-up.
                from node.tiles_http import TilesHttpServer

                tiles_host, tiles_port = args.tiles_http.rsplit(":", 1)
                published = cluster.published_checkpoint if cluster is not None else None
                starting = TilesHttpServer(led, tiles_host, int(tiles_port), published)
                await starting.start()  # cleans up after itself if it cannot listen
                tiles = starting
            if cluster is not None:
                await cluster.start()
                if cluster.http is not None:
                    print(f"witness add-checkpoint on http://{config.witness_http.rsplit(':', 1)[0]}:{cluster.http.port}", flush=True)
            host = args.listen.rsplit(":", 1)[0]
            _log.info("listening", extra={"event": "listening", "address": f"{host}:{port}", "tls": tls is not None})
            print(f"carbonledger node {led.origin} listening on {host}:{port}", flush=True)
            if server.metrics.port is not None:
                print(f"metrics on http://127.0.0.1:{server.metrics.port}/metrics", flush=True)
            if tiles is not None:
                print(f"tlog-tiles on http://{args.tiles_http.rsplit(':', 1)[0]}:{tiles.port}/checkpoint", flush=True)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
            _log.info("shutting down", extra={"event": "shutdown", "grace": args.grace})
            if cluster is not None:
                await cluster.stop()
        finally:
            if tiles is not None:
                await tiles.stop()
            # Also when the cluster's services fail to start (a witness port
            # that is taken): the server, its committer and workers stop
            # before the ledger closes.
            await server.stop(args.grace)
    finally:
        led.close()


def cmd_serve(args: argparse.Namespace) -> int:
    from node.logs import configure_logging
    from node.memory import tune_allocator

    configure_logging(args.log_level)
    # Under a file-size limit (ulimit -f), a write past it then fails with
    # EFBIG, which the node reports as a failed commit (nothing written,
    # UNAVAILABLE to clients), instead of the kernel killing the node.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    # Before the ledger and the server allocate anything large.
    tune_allocator()
    event_loop.run(_serve(args), args.event_loop)
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
    p.add_argument("--cluster", action="store_true",
                   help="a replica of a cluster's log: start empty; the genesis comes through etcd")
    p.add_argument("--witness-name", help="also make a cosigner key (witness.key, type 0x04) with this name")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("serve", help="run a node over gRPC")
    p.add_argument("dir")
    p.add_argument("--listen", type=_address, default="127.0.0.1:7400", help="HOST:PORT (port 0 picks one)")
    p.add_argument("--metrics-port", type=_port, help="serve Prometheus /metrics on this port")
    p.add_argument("--tls-cert", help="PEM certificate chain of the server")
    p.add_argument("--tls-key", help="PEM private key of the server")
    p.add_argument("--tls-client-ca", help="PEM CA certificates; clients must present a cert they signed (mTLS)")
    p.add_argument("--grace", type=float, default=10.0, help="seconds in-flight calls get at shutdown")
    p.add_argument("--max-pending", type=int, help="submissions held before pushback (default 2000)")
    p.add_argument("--max-pending-bytes", type=int,
                   help="envelope bytes held before pushback (default 8388608, the largest request)")
    p.add_argument("--max-batch", type=int, default=2_000, help="most entries per group commit")
    p.add_argument("--verify-processes", type=_non_negative, metavar="N",
                   help="worker processes checking signatures (default: one per CPU; 0: in the node's threads)")
    p.add_argument("--event-cache-refs", type=_non_negative, metavar="N",
                   help="refs (about 100 bytes each) of deprecation events kept for subscribers (default 1000000)")
    p.add_argument("--tiles-http", type=_address, metavar="HOST:PORT",
                   help="serve the log read-only as c2sp.org/tlog-tiles here (checkpoint, tiles, entry bundles)")
    p.add_argument("--log-level", default="info")
    p.add_argument("--event-loop", choices=event_loop.available(), default=event_loop.DEFAULT,
                   help="the asyncio event loop to run on (default: %(default)s)")
    g = p.add_argument_group("several nodes (see README, Several nodes)")
    g.add_argument("--etcd", metavar="HOST:PORT[,HOST:PORT...]", help="etcd endpoints: replicate through etcd")
    g.add_argument("--etcd-prefix", help="etcd key prefix (default /carbonledger/<origin>/)")
    g.add_argument("--etcd-lease-ttl", type=int, default=30,
                   help="seconds a silent node keeps etcd from compacting the history it needs")
    g.add_argument("--compact-interval", type=float, default=5.0, help="seconds between etcd compactions")
    g.add_argument("--node-id", help="this node's name in the cluster")
    g.add_argument("--peer", action="append", metavar="HOST:PORT",
                   help="a peer node's gRPC address (catch-up, cosigning); repeatable")
    g.add_argument("--policy", metavar="FILE", help="tlog-policy: trusted log keys and witness keys")
    g.add_argument("--witness-key", metavar="FILE", help="this node's cosigner key (type 0x04): witness peers")
    g.add_argument("--witness-http", type=_address, metavar="HOST:PORT",
                   help="serve c2sp.org/tlog-witness POST /add-checkpoint here")
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
