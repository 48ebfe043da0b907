"""Wiring of a node that runs with others: witness, cosignature collection,
the Peer service, and (with etcd) replication.

``carbonledger serve`` builds a :class:`ClusterConfig` from its flags and
hands :meth:`ClusterNode.committer_factory` and :meth:`ClusterNode.register`
to :func:`node.server.create_server`; :meth:`ClusterNode.start` and
:meth:`ClusterNode.stop` run what lives beside the gRPC server.

Trust comes from a c2sp.org/tlog-policy file: its ``log`` lines are the keys
this node accepts checkpoints from (every replica of the cluster's log shares
the origin and has its own key; outside logs may be listed too, to be
witnessed over HTTP), and its ``witness`` lines are the cosigner keys whose
cosignatures the node collects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from carbonledger.v1 import cluster_pb2, cluster_pb2_grpc

from ledger.keys import Signer, Verifier
from ledger.log import Ledger
from ledger.policy import Policy
from node.committer import GroupCommitter
from node.label_builder import witnessed_label_builder
from node.reconcile import stored_checkpoint
from node.replication.peer import PeerServicer
from node.witness import Witness
from node.witness_collector import CosignCollector
from node.witness_http import WitnessHttpServer

__all__ = ["PEER_SERVICE", "ClusterConfig", "ClusterNode"]

PEER_SERVICE = cluster_pb2.DESCRIPTOR.services_by_name["Peer"].full_name


@dataclass
class ClusterConfig:
    """What a node needs to know to work with others (all optional)."""

    node_dir: Path
    node_id: str = ""
    peers: Sequence[str] = ()
    policy: Policy | None = None
    witness_key: Signer | None = None
    witness_http: str | None = None
    etcd: Sequence[str] = ()
    etcd_prefix: str = ""
    lease_ttl: int = 30
    compact_interval: float = 5.0
    cosign_interval: float = 0.5
    etcd_timeout: float = 5.0
    extra: dict[str, Any] = field(default_factory=dict)


class ClusterNode:
    def __init__(self, ledger: Ledger, config: ClusterConfig) -> None:
        self.ledger = ledger
        self.config = config
        policy = config.policy
        self.log_keys: list[Verifier] = [log.verifier for log in policy.logs] if policy else []
        self.witness_keys: list[Verifier] = [w.verifier for w in policy.witnesses] if policy else []
        self.witness: Witness | None = None
        if config.witness_key is not None:
            self.witness = Witness(config.witness_key, config.node_dir / "witness", self.log_keys, local=ledger)
        self.collector: CosignCollector | None = None
        if config.peers:
            self.collector = CosignCollector(
                ledger, config.peers, self.witness_keys, own=self.witness, interval=config.cosign_interval
            )
        self.http: WitnessHttpServer | None = None
        if config.witness_http:
            if self.witness is None:
                raise ValueError("--witness-http needs --witness-key")
            host, port = config.witness_http.rsplit(":", 1)
            self.http = WitnessHttpServer(self.witness, host, int(port))
        self.replicator: Any = None
        if config.etcd:
            from node.replication.replicator import Replicator

            self.replicator = Replicator(
                ledger,
                endpoints=list(config.etcd),
                prefix=config.etcd_prefix or f"/carbonledger/{ledger.origin}/",
                node_id=config.node_id,
                peers=list(config.peers),
                policy=policy,
                lease_ttl=config.lease_ttl,
                compact_interval=config.compact_interval,
                timeout=config.etcd_timeout,
                genesis=_genesis(config.node_dir),
                evidence_dir=config.node_dir / "evidence",
            )
            if self.collector is not None:
                self.replicator.add_listener(lambda committed: self.collector.poke())  # type: ignore[union-attr]

    def committer_factory(self, ledger: Ledger, **kwargs: Any) -> GroupCommitter:
        if self.replicator is None:
            return GroupCommitter(ledger, **kwargs)
        from node.replication.replicator import ReplicatedCommitter

        return ReplicatedCommitter(ledger, self.replicator, **kwargs)

    def label_builder(self, ledger: Ledger, footprint_id: str, tree_size: int) -> tuple[bytes, str]:
        """Labels against the newest checkpoint peers have cosigned, so they
        verify under the cluster's k-of-n policy."""
        cosigned = self.collector.cosigned_at_most if self.collector is not None else (lambda size: None)
        return witnessed_label_builder(cosigned)(ledger, footprint_id, tree_size)

    def published_checkpoint(self) -> str:
        """The checkpoint the tlog-tiles endpoint serves: the newest that the
        cluster's policy accepts (a quorum of witnesses cosigned it), so that
        a reader checks it against the same policy as a label; this node's
        latest until there is one, or when there is no policy (a reader then
        fails closed and asks again)."""
        if self.collector is not None and self.config.policy is not None:
            note = self.collector.newest_meeting(self.config.policy)
            if note is not None:
                return note
        return self.ledger.checkpoint()

    async def reconcile_checkpoint(self, size: int) -> str:
        """The checkpoint a reconciliation at ``size`` answers with: cosigned
        by the witnesses that can cosign it now, so that an exchange's
        ``reconcile --policy`` can check it against the cluster's k-of-n
        policy."""
        if self.collector is None:
            return await asyncio.to_thread(stored_checkpoint, self.ledger, size)
        return await self.collector.cosigned_note(size)

    def register(self, server: grpc.aio.Server, committer: GroupCommitter) -> list[str]:
        status = self.replicator.fill_status if self.replicator is not None else None
        servicer = PeerServicer(
            self.ledger, witness=self.witness, collector=self.collector, policy=self.config.policy, status=status
        )
        cluster_pb2_grpc.add_PeerServicer_to_server(servicer, server)
        return [PEER_SERVICE]

    async def start(self) -> None:
        """Start what runs beside the server (after ``server.start()``)."""
        if self.http is not None:
            await self.http.start()
        if self.collector is not None:
            await self.collector.start()

    async def stop(self) -> None:
        if self.collector is not None:
            await self.collector.stop()
        if self.http is not None:
            await self.http.stop()


def _genesis(node_dir: Path) -> bytes | None:
    path = node_dir / "genesis.dsse"
    return path.read_bytes() if path.is_file() else None
