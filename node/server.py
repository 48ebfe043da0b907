"""The node's gRPC server: ``create_server(address, ledger) -> (server, port)``.

One grpc.aio server carries the four carbonledger.v1 services, gRPC health
checking and reflection, the error interceptor, message size limits and
optional TLS or mTLS. The returned :class:`NodeServer` owns the group
committer, its signature-checking worker processes and the metrics; ``await
server.stop(grace)`` stops taking RPCs, lets those in flight (and the batch
being committed) finish, then stops the committer and the workers. The
ledger stays open: whoever opened it closes it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from carbonledger.v1 import (
    events_pb2,
    events_pb2_grpc,
    log_pb2,
    log_pb2_grpc,
    query_pb2,
    query_pb2_grpc,
    reconcile_pb2,
    reconcile_pb2_grpc,
)
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ledger.errors import LedgerError, MalformedError
from ledger.log import Ledger
from node.committer import MAX_PENDING, MAX_PENDING_BYTES, GroupCommitter
from node.errors import CannotListen, ErrorInterceptor, bind_failure, os_reason
from node.event_cache import DEFAULT_MAX_REFS, EventCache
from node.labels import LabelBuilder
from node.metrics import NodeMetrics
from node.servicers import (
    CommitSignal,
    EventsServicer,
    LogServicer,
    QueryServicer,
    ReconcileServicer,
)
from node.sigpool import SignaturePool

__all__ = ["MAX_MESSAGE_BYTES", "SERVICE_NAMES", "NodeServer", "TlsConfig", "create_server"]

#: Largest request or response message. A SubmitBatch of envelopes is the
#: biggest request; one envelope is capped at 1 MiB by the ledger.
MAX_MESSAGE_BYTES = 8 << 20

SERVICE_NAMES = tuple(
    m.DESCRIPTOR.services_by_name[name].full_name
    for m, name in (
        (log_pb2, "Log"),
        (query_pb2, "Query"),
        (events_pb2, "Events"),
        (reconcile_pb2, "Reconcile"),
    )
)

_log = logging.getLogger("carbonledger.node")


def build_labels(ledger: Ledger, footprint_id: str, tree_size: int) -> tuple[bytes, str]:
    """The default label builder, :func:`node.label_builder.label_builder`,
    imported on its first use rather than at start-up: it brings the label
    format and its parsers (client.label), which a node needs only once
    someone asks for a label."""
    from node.label_builder import label_builder

    return label_builder(ledger, footprint_id, tree_size)


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """PEM files: the server's certificate chain and key; with
    ``client_ca_file``, clients must present a certificate it signed (mTLS)."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None

    def credentials(self) -> grpc.ServerCredentials:
        """The server credentials, after checking the files: grpc takes any
        bytes here and fails later with no reason (or at the first
        handshake), so each file is parsed first and a bad one is named.

        Raises :class:`~ledger.errors.MalformedError` naming the file (or
        LedgerError if it cannot be read).
        """
        chain = _read_pem(self.cert_file, "--tls-cert")
        key = _read_pem(self.key_file, "--tls-key")
        try:
            certs = x509.load_pem_x509_certificates(chain)
        except ValueError as exc:
            raise MalformedError(f"--tls-cert {self.cert_file}", f"not PEM certificates ({exc})") from None
        try:
            private = serialization.load_pem_private_key(key, password=None)
        except (ValueError, TypeError) as exc:  # TypeError: an encrypted key
            raise MalformedError(f"--tls-key {self.key_file}", f"not an unencrypted PEM key ({exc})") from None
        if _spki(private.public_key()) != _spki(certs[0].public_key()):
            raise MalformedError(f"--tls-key {self.key_file}", f"not the key of {self.cert_file}'s first certificate")
        ca = None
        if self.client_ca_file is not None:
            ca = _read_pem(self.client_ca_file, "--tls-client-ca")
            try:
                x509.load_pem_x509_certificates(ca)
            except ValueError as exc:
                what = f"--tls-client-ca {self.client_ca_file}"
                raise MalformedError(what, f"not PEM certificates ({exc})") from None
        return grpc.ssl_server_credentials([(key, chain)], root_certificates=ca, require_client_auth=ca is not None)


def _read_pem(path: Path, option: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise LedgerError(f"cannot read {option} {path}: {os_reason(exc)}") from None


def _spki(public_key: Any) -> bytes:
    return bytes(public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


class NodeServer:
    """A started-or-not gRPC server plus what it owns; see the module doc."""

    def __init__(
        self, server: grpc.aio.Server, committer: GroupCommitter, health_servicer: health.aio.HealthServicer,
        metrics: NodeMetrics, ledger: Ledger, signatures: SignaturePool | None = None,
        event_cache: EventCache | None = None,
    ) -> None:  # fmt: skip
        self.grpc_server = server
        self.event_cache = event_cache
        self.committer = committer
        self.signatures = signatures
        self.metrics = metrics
        self._health = health_servicer
        self._ledger = ledger
        self._stopped = False
        self.service_names: tuple[str, ...] = SERVICE_NAMES

    async def start(self) -> None:
        await self.committer.start()
        await self.grpc_server.start()
        for name in ("", *self.service_names):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.metrics.tree_size.set(self._ledger.size)
        _log.info("node started", extra={"event": "started", "origin": self._ledger.origin, "size": self._ledger.size})

    async def stop(self, grace: float | None = 5.0) -> None:
        """Stop: health NOT_SERVING, no new RPCs, in-flight ones get ``grace``
        seconds, then the committer drains and stops."""
        if self._stopped:
            return
        self._stopped = True
        await self._health.enter_graceful_shutdown()
        await self.grpc_server.stop(grace)
        await self.committer.close()
        if self.signatures is not None:
            self.signatures.close()
        self.metrics.close()
        _log.info("node stopped", extra={"event": "stopped", "size": self._ledger.size})

    async def wait_for_termination(self, timeout: float | None = None) -> bool:
        return await self.grpc_server.wait_for_termination(timeout)


def create_server(
    address: str,
    ledger: Ledger,
    *,
    tls: TlsConfig | None = None,
    label_builder: LabelBuilder = build_labels,
    max_pending: int = MAX_PENDING,
    max_pending_bytes: int = MAX_PENDING_BYTES,
    max_batch: int = 2_000,
    prepare_threads: int = 2,
    verify_processes: int | None = None,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    metrics_port: int | None = None,
    committer_factory: Callable[..., GroupCommitter] = GroupCommitter,
    register: Callable[[grpc.aio.Server, GroupCommitter], Sequence[str]] | None = None,
    reconcile_checkpoint: Callable[[int], Awaitable[str]] | None = None,
    event_cache_refs: int = DEFAULT_MAX_REFS,
) -> tuple[NodeServer, int]:
    """Build a node serving ``ledger`` on ``address`` (``host:0`` picks a port).

    Returns the (not yet started) server and the bound port. Call from the
    event loop that will run it; ``await server.start()``.

    Signatures are checked in ``verify_processes`` worker processes (default:
    one per CPU this process may run on; 0 checks them in the
    ``prepare_threads``), see :mod:`node.sigpool`.

    Several nodes (issue 6): ``committer_factory`` builds the committer (with
    the same arguments as :class:`GroupCommitter`), so that replication can put
    its ordering service in front of the ledger; ``register(server,
    committer)`` adds more services and returns their full names;
    ``reconcile_checkpoint(size)`` gives the (cosigned) checkpoint a
    reconciliation at ``size`` answers with.

    ``event_cache_refs`` bounds the events of deprecations that subscribers
    share (see :mod:`node.event_cache`), in refs (about 100 bytes each).
    """
    metrics = NodeMetrics()
    if verify_processes is None:
        verify_processes = len(os.sched_getaffinity(0))
    signatures = SignaturePool(verify_processes) if verify_processes > 0 else None
    try:
        committer = committer_factory(
            ledger, max_pending=max_pending, max_pending_bytes=max_pending_bytes, max_batch=max_batch,
            prepare_threads=prepare_threads, signature_pool=signatures, metrics=metrics,
        )  # fmt: skip
        signal = CommitSignal()
        event_cache = EventCache(event_cache_refs)
        metrics.watch_event_cache(event_cache.stats, event_cache_refs)
        committer.add_listener(signal)
        committer.add_listener(lambda c: metrics.tree_size.set(c.tree_size))
        server = grpc.aio.server(
            interceptors=[ErrorInterceptor()],
            options=[
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.so_reuseport", 0),
            ],
        )
        log_pb2_grpc.add_LogServicer_to_server(LogServicer(ledger, committer, label_builder), server)
        query_pb2_grpc.add_QueryServicer_to_server(QueryServicer(ledger), server)
        events_pb2_grpc.add_EventsServicer_to_server(EventsServicer(ledger, signal, event_cache), server)
        reconcile_pb2_grpc.add_ReconcileServicer_to_server(ReconcileServicer(ledger, reconcile_checkpoint), server)
        extra: Sequence[str] = register(server, committer) if register is not None else ()
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        names = (*SERVICE_NAMES, *extra)
        reflection.enable_server_reflection((*names, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        try:
            # grpc raises RuntimeError (older releases returned 0) and names
            # no reason; bind_failure asks the OS for it.
            if tls is None:
                port = server.add_insecure_port(address)
            else:
                port = server.add_secure_port(address, tls.credentials())
        except RuntimeError:
            port = 0
        if port == 0:
            raise CannotListen("gRPC", address, bind_failure(address))
        if metrics_port is not None:
            try:
                metrics.serve(metrics_port)
            except OSError as exc:
                raise CannotListen("metrics", f"127.0.0.1:{metrics_port}", os_reason(exc)) from None
    except BaseException:
        if signatures is not None:
            signatures.close()
        raise
    node = NodeServer(server, committer, health_servicer, metrics, ledger, signatures, event_cache)
    node.service_names = names
    return node, port
