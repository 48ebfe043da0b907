"""Catching up from a peer when etcd no longer holds the batches a node needs.

The node asks a peer for the blocks after its head (``Peer.GetBlocks``) and
applies nothing it has not verified:

1. the peer's anchor checkpoint meets the cluster's policy: signed by one of
   its log keys (each replica's key, same origin) *and* cosigned by a quorum
   of its witnesses. One replica's signature is not enough: a replica that
   fed a fresh node a history of its own choosing would otherwise get that
   node's witness to cosign it, and with its own cosignature make a quorum
   for a fork. The peer serves blocks only up to such a checkpoint;
2. the blocks continue our chain: heights follow our head, each names the
   previous block's hash, entry ranges are contiguous from our tree size;
3. the entries, re-hashed into our tree, give each block's root;
4. the tree after the last block is a prefix of the anchor: the peer's
   consistency proof from that size to the anchor's verifies (or, at the
   anchor's size, the roots are equal);
5. each block is then applied through ``Ledger.submit`` with the block's time,
   and the block our state machine writes must equal the peer's byte for
   byte (entries accepted, root and state digest): otherwise the transaction
   is aborted and nothing of that block is kept.

While pages are being applied the position is :data:`CATCHING_UP` (a
restart continues from a peer); the page that reaches the anchor carries the
etcd position of the batch that made the anchor's block, which becomes ours.
Block times, state digests and that position are the peer's word: the
witnesses' cosignatures cover the entries' tree, not the blocks.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import struct
from collections.abc import Sequence
from concurrent.futures import Executor

import grpc
from carbonledger.v1 import cluster_pb2, cluster_pb2_grpc

from ledger.block import Block, block_hash, decode_block
from ledger.errors import InconsistencyError, LedgerError, VerificationError
from ledger.log import Ledger, Receipt, open_tile_reader
from ledger.merkle import CompactRange, leaf_hash, verify_consistency
from ledger.policy import Policy, verify_checkpoint_policy
from node.replication.etcd import OrderingUnavailable
from node.replication.peer import POSITION_KEY, position_at_key

__all__ = ["CATCHING_UP", "POSITION_KEY", "catch_up", "decode_position", "encode_position", "verify_and_apply"]

#: The position value while blocks from a peer are being applied.
CATCHING_UP = b"catching-up"
_POS = struct.Struct(">QQ")
_log = logging.getLogger("carbonledger.node")


def encode_position(seq: int, revision: int) -> bytes:
    return _POS.pack(seq, revision)


def decode_position(value: bytes) -> tuple[int, int]:
    seq, revision = _POS.unpack(value)
    return int(seq), int(revision)


def verify_and_apply(
    ledger: Ledger, response: cluster_pb2.GetBlocksResponse, policy: Policy
) -> tuple[int, int] | None:
    """Verify one page of a peer's blocks and apply it (see the module doc).
    Returns the peer's position once its anchor is reached, else None."""
    head = ledger.head
    # (1) The anchor: a checkpoint of our log that the cluster's policy accepts.
    cp = verify_checkpoint_policy(response.checkpoint, policy)
    if cp.origin != ledger.origin:
        raise VerificationError(f"peer checkpoint is for {cp.origin!r}, not {ledger.origin!r}")
    blocks: list[Block] = [decode_block(b.block) for b in response.blocks]
    # (2) + (3) Chain continuity, and the entries re-hashed into our tree.
    with ledger.store.read() as txn:
        edge = CompactRange.load(open_tile_reader(txn), head.tree_size)
    previous, height = block_hash(head), head.height
    for block, page in zip(blocks, response.blocks):
        if block.height != height + 1 or block.previous_hash != previous or block.first_index != edge.size:
            raise InconsistencyError(f"peer block {block.height} does not continue our chain at height {height}")
        if block.count != len(page.entries) or block.tree_size != block.first_index + block.count:
            raise InconsistencyError(f"peer block {block.height} does not match its entries")
        for entry in page.entries:
            edge.append(leaf_hash(entry), [])
        if not hmac.compare_digest(edge.root(), block.root):
            raise InconsistencyError(f"peer block {block.height}: its entries hash to another root")
        previous, height = block_hash(block), block.height
    # (4) What we would hold after the page is a prefix of the anchor.
    if not blocks and edge.size > cp.size:
        return None  # we are past what this peer has had cosigned so far: nothing to take from it
    if edge.size > cp.size:
        raise InconsistencyError(f"peer blocks reach size {edge.size}, past its anchor checkpoint of size {cp.size}")
    if edge.size == cp.size:
        if not hmac.compare_digest(cp.root_hash, edge.root()):
            raise InconsistencyError(f"peer anchor checkpoint has another root than its blocks at size {cp.size}")
    elif edge.size > 0:
        verify_consistency(edge.size, cp.size, list(response.consistency), edge.root(), cp.root_hash)
    final = (response.applied_seq, response.applied_revision) if response.has_position else None
    if final is not None and edge.size != cp.size:
        raise InconsistencyError("peer gave its position on a page that does not reach its anchor")
    # (5) Apply, each block checked against the peer's before it commits.
    for i, (block, page) in enumerate(zip(blocks, response.blocks)):
        last = i == len(blocks) - 1
        position = encode_position(*final) if last and final else CATCHING_UP

        def expect(mine: Block, theirs: Block = block) -> None:
            if mine != theirs:
                raise InconsistencyError(
                    f"block {theirs.height} from the peer differs from the one our state machine built "
                    f"(state digest {mine.state_digest.hex()} vs {theirs.state_digest.hex()})",
                    {"ours": mine, "theirs": theirs},
                )

        meta = {POSITION_KEY: position}
        if last and final:
            meta[position_at_key(block.height)] = position
        results = ledger.submit(list(page.entries), time=block.time, meta=meta, check=expect)
        if any(not isinstance(r, Receipt) or r.duplicate for r in results):
            raise InconsistencyError(f"peer block {block.height}: an entry was not accepted here")
    if not blocks and final is not None:
        # Our head is the anchor (checked in step 4): only the position was missing.
        position = encode_position(*final)
        ledger.submit([], meta={POSITION_KEY: position, position_at_key(head.height): position})
    return final


async def catch_up(
    ledger: Ledger, peers: Sequence[str], policy: Policy, executor: Executor, *, rounds: int = 1000
) -> tuple[int, int]:
    """Fetch, verify and apply blocks from ``peers`` until one of them gives
    its etcd position; return it."""
    loop = asyncio.get_running_loop()
    for attempt in range(rounds):
        peer = peers[attempt % len(peers)]
        channel = grpc.aio.insecure_channel(peer, options=[("grpc.max_receive_message_length", 64 << 20)])
        try:
            stub = cluster_pb2_grpc.PeerStub(channel)
            while True:
                request = cluster_pb2.GetBlocksRequest(
                    first_height=ledger.head.height + 1, known_size=ledger.size, max_blocks=256
                )
                response = await stub.GetBlocks(request, timeout=30)
                position = await loop.run_in_executor(executor, verify_and_apply, ledger, response, policy)
                if position is not None:
                    _log.info("caught up from peer %s at batch %d", peer, position[0])
                    return position
                if not response.blocks:
                    break
        except grpc.RpcError as exc:
            _log.warning("catch-up from %s failed: %s", peer, exc.code())  # type: ignore[attr-defined]
        except LedgerError as exc:
            _log.error("peer %s sent blocks that do not verify: %s", peer, exc)
        finally:
            await channel.close()
        await asyncio.sleep(min(2.0, 0.2 * (attempt + 1)))
    raise OrderingUnavailable("no peer could bring this node up to date")
