"""The ``carbonledger.v1.Peer`` servicer: blocks for catching-up peers and
signed notes of single blocks for them to count, the witness's
``AddCheckpoint``, and checkpoints and proofs with cosignatures.

Thin, as every servicer: validate, call the core, convert.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import grpc
from carbonledger.v1 import cluster_pb2, cluster_pb2_grpc, log_pb2

from ledger.block import decode_block
from ledger.checkpoint import parse_checkpoint
from ledger.errors import MalformedError, NotFound
from ledger.log import META_PREFIX, Ledger, open_tile_reader
from ledger.merkle import consistency_proof, inclusion_proof
from ledger.note import parse_note
from ledger.policy import QUORUM_NONE, Policy
from ledger.storage import ReadTxn, Table, u64
from ledger.tlog_proof import TlogProof, format_tlog_proof
from node.errors import ShuttingDown, Unimplemented
from node.witness import Witness, WitnessRefused
from node.witness_collector import CosignCollector

__all__ = ["NotWitnessedYet", "PeerServicer", "position_at_key", "read_block_note", "read_blocks"]

#: ``Ledger.meta`` key of the applied position (see node/replication/catchup.py).
POSITION_KEY = b"replication/position"
_MAX_BLOCKS = 256
_MAX_BYTES = 4 << 20


class NotWitnessedYet(ShuttingDown):
    """No checkpoint of this node meets the cluster's witness policy yet, so
    it serves no blocks to catch up from (UNAVAILABLE: ask again later)."""


def position_at_key(height: int) -> bytes:
    """``Ledger.meta`` key of the ordering position of the batch that wrote
    block ``height``.

    Each applied batch writes its position under the *next* height, in the
    transaction that applies it: a batch that makes no block (all its entries
    refused) is overwritten by the one that does, so for every block that
    exists the key holds the batch that made it, the same on every replica.
    A peer catching up to that block resumes from there.
    """
    return POSITION_KEY + b"/" + u64(height)


def _position_of(txn: ReadTxn, height: int, head_height: int) -> bytes | None:
    """The ordering position recorded with block ``height``, if this node has one."""
    position = txn.get(Table.META, META_PREFIX + position_at_key(height))
    if position is None and height == head_height:
        # Blocks this node took from a peer have no position of their own;
        # at the head, the latest applied one resumes as well.
        position = txn.get(Table.META, META_PREFIX + POSITION_KEY)
    return bytes(position) if position is not None and len(position) == 16 else None


def read_block_note(ledger: Ledger, height: int) -> cluster_pb2.GetBlockNoteResponse:
    """Our block ``height`` and the position recorded with it, as a block note
    signed with our log key; :class:`NotFound` past our head."""
    with ledger.store.read() as txn:
        last = txn.last(Table.BLOCKS)
        assert last is not None
        head_height = decode_block(last[1]).height
        if height > head_height:
            raise NotFound("block", height)
        position = _position_of(txn, height, head_height)
    return cluster_pb2.GetBlockNoteResponse(note=ledger.block_note(height, position), head_height=head_height)


def read_blocks(
    ledger: Ledger, first_height: int, known_size: int, max_blocks: int, anchor: str | None = None
) -> cluster_pb2.GetBlocksResponse:
    """Blocks from ``first_height`` with their entries, up to the ``anchor``:
    the newest checkpoint note of ours that meets the cluster's witness
    policy (``None``: our signed head, for a cluster without witnesses). The
    answer carries the anchor and a consistency proof to it from the last
    block returned, and the ordering position once that block is the
    anchor's, all read in one snapshot."""
    if first_height < 1:
        raise MalformedError("first_height", "must be at least 1")
    max_blocks = min(max_blocks or _MAX_BLOCKS, _MAX_BLOCKS)
    out = cluster_pb2.GetBlocksResponse()
    with ledger.store.read() as txn:
        last = txn.last(Table.BLOCKS)
        assert last is not None
        head = decode_block(last[1])
        out.head_height = head.height
        if known_size > head.tree_size:
            raise NotFound("tree size", known_size)
        if anchor is None:
            note = txn.get(Table.CHECKPOINTS, u64(head.tree_size))
            assert note is not None
            anchor = bytes(note).decode()
        anchor_size = parse_checkpoint(parse_note(anchor).text).size
        out.checkpoint = anchor
        end, end_height = known_size, first_height - 1
        total = 0
        for height in range(first_height, min(head.height, first_height + max_blocks - 1) + 1):
            raw = txn.get(Table.BLOCKS, u64(height))
            assert raw is not None
            block = decode_block(raw)
            if block.tree_size > anchor_size:
                break  # past what the cluster's witnesses vouch for
            entries = []
            for index in range(block.first_index, block.end_index):
                value = txn.get(Table.ENTRIES, u64(index))
                assert value is not None
                entries.append(bytes(value))
                total += len(value)
            out.blocks.append(cluster_pb2.BlockWithEntries(block=bytes(raw), entries=entries))
            end, end_height = block.tree_size, height
            if total > _MAX_BYTES:
                break
        if 0 < end < anchor_size:
            out.consistency.extend(consistency_proof(open_tile_reader(txn), end, anchor_size))
        if end == anchor_size and end_height >= 0:
            position = _position_of(txn, end_height, head.height)
            if position is not None:
                out.has_position = True
                out.applied_seq, out.applied_revision = struct.unpack(">QQ", position)
    return out


class PeerServicer(cluster_pb2_grpc.PeerServicer):
    def __init__(
        self,
        ledger: Ledger,
        *,
        witness: Witness | None = None,
        collector: CosignCollector | None = None,
        policy: Policy | None = None,
        status: Any = None,
    ) -> None:
        self._ledger = ledger
        self._witness = witness
        self._collector = collector
        # Blocks are served only up to a checkpoint this policy accepts.
        self._policy = policy if policy is not None and policy.quorum != QUORUM_NONE else None
        self._status = status  # a callable filling a ClusterStatus, from the replicator

    async def GetBlocks(
        self, request: cluster_pb2.GetBlocksRequest, context: grpc.aio.ServicerContext
    ) -> cluster_pb2.GetBlocksResponse:
        anchor = None
        if self._policy is not None:
            anchor = self._collector.newest_meeting(self._policy) if self._collector is not None else None
            if anchor is None:
                raise NotWitnessedYet("no checkpoint of this node meets the cluster's witness quorum yet; retry")
        return await asyncio.to_thread(
            read_blocks, self._ledger, request.first_height, request.known_size, request.max_blocks, anchor
        )

    async def GetBlockNote(
        self, request: cluster_pb2.GetBlockNoteRequest, context: grpc.aio.ServicerContext
    ) -> cluster_pb2.GetBlockNoteResponse:
        return await asyncio.to_thread(read_block_note, self._ledger, request.height)

    async def AddCheckpoint(
        self, request: cluster_pb2.AddCheckpointRequest, context: grpc.aio.ServicerContext
    ) -> cluster_pb2.AddCheckpointResponse:
        if self._witness is None:
            raise Unimplemented("this node has no witness key")
        try:
            line = await asyncio.to_thread(
                self._witness.add_checkpoint, request.checkpoint, request.old_size, list(request.consistency)
            )
        except WitnessRefused as exc:
            refusal = cluster_pb2.WitnessRefusal(
                http_status=exc.http_status, kind=exc.kind, reason=exc.reason, known_size=exc.known_size
            )
            return cluster_pb2.AddCheckpointResponse(refusal=refusal)
        return cluster_pb2.AddCheckpointResponse(cosignature=line)

    def _best(self, min_cosignatures: int) -> tuple[int, str, list[str]]:
        if self._collector is None:
            raise Unimplemented("this node collects no cosignatures (no peers)")
        best = self._collector.best(min_cosignatures)
        if best is None:
            raise NotFound("checkpoint with cosignatures", min_cosignatures)
        return best

    async def GetCosignedCheckpoint(
        self, request: cluster_pb2.GetCosignedCheckpointRequest, context: grpc.aio.ServicerContext
    ) -> cluster_pb2.CosignedCheckpoint:
        size, note, names = self._best(request.min_cosignatures)
        return cluster_pb2.CosignedCheckpoint(tree_size=size, note=note, witnesses=names)

    async def GetCosignedTlogProof(
        self, request: cluster_pb2.GetCosignedTlogProofRequest, context: grpc.aio.ServicerContext
    ) -> log_pb2.TlogProof:
        size, note, _ = self._best(request.min_cosignatures)
        if request.index >= size:
            raise NotFound("entry in the newest cosigned checkpoint", request.index)

        def build() -> str:
            with self._ledger.store.read() as txn:
                proof = inclusion_proof(open_tile_reader(txn), request.index, size)
            return format_tlog_proof(TlogProof(request.index, tuple(proof), note))

        return log_pb2.TlogProof(proof=await asyncio.to_thread(build))

    async def GetClusterStatus(
        self, request: cluster_pb2.GetClusterStatusRequest, context: grpc.aio.ServicerContext
    ) -> cluster_pb2.ClusterStatus:
        out = cluster_pb2.ClusterStatus(tree_size=self._ledger.size, root_hash=self._ledger.root())
        if self._collector is not None:
            best = self._collector.best(1)
            out.cosigned_size = best[0] if best else 0
            for r in self._collector.refusals.values():
                out.refusals.append(cluster_pb2.PeerRefusal(peer=r.peer, tree_size=r.tree_size, kind=r.kind, reason=r.reason))
        if self._status is not None:
            self._status(out)
        return out
