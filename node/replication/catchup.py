"""Catching up from a peer when etcd no longer holds the batches a node needs.

The node asks a peer for the blocks after its head (``Peer.GetBlocks``) and
applies nothing that is not verified and vouched for:

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
5. the page's last block is vouched for by as many distinct replicas as the
   policy's quorum asks for witnesses (2 of a 2-of-3 cluster): the node asks
   every peer for its block note of that height (``Peer.GetBlockNote``, a
   note signed with the peer's log key; ledger/block_note.py) and counts the
   log keys that sign the same block hash and, on the page that reaches the
   anchor, the same position. Counting keys, not addresses, one replica
   behind two addresses counts once; the serving peer counts only through
   its own signed note. A note with another hash or position is a dissent
   (:class:`BlockConflict`, naming the height, both values and the signer):
   two replicas cannot both be right. A quorum decides, as it does for the
   tree (:func:`~ledger.block_note.verify_block_vouchers`; a key that signs
   both sides counts for neither). If a quorum signs the served block and
   no quorum signs another value, each dissent is logged as a ``CONFLICT``
   error and its evidence kept, and the page is applied: one faulty replica
   does not stop a node from catching up. Otherwise a dissent is a
   conflict: it is logged and its evidence kept the same way, nothing of
   the page is applied, and the next peer is tried. The evidence
   (node/replication/conflicts.py) is one file per distinct conflict under
   the node directory's ``evidence/``, with the block and position as
   served and by whom, the dissenting replica's signed note, and which side
   the replicas' notes give a quorum; ``Peer.GetClusterStatus`` reports
   their count and the newest few. Too few vouchers and no dissent (peers
   behind that height, down, or without the position) is
   :class:`BlockNotConfirmed`: the page stays verified in memory
   and the peers are asked again with back-off; after ``vouch_rounds`` the
   page is dropped and fetched again (the anchor may have moved to a height
   more replicas hold), and the node keeps catching up, never applying an
   unvouched block;
6. each block is then applied through ``Ledger.submit`` with the block's time,
   and the block our state machine writes must equal the peer's byte for
   byte (entries accepted, root and state digest): otherwise the transaction
   is aborted and nothing of that block is kept.

What authenticates what: the entries (their tree) by the witnesses'
cosignatures on the anchor; the blocks -- their times, the state machine's
only clock, and their state digests -- and the etcd position the node
resumes from by the quorum of replicas' signed block notes, since blocks are
hash-chained and vouching for a page's last block vouches for every block
before it. No single peer's word is taken for any of it, nor can a single
replica's word stop it: a quorum of replicas outvotes one that signs a false
block. A quorum of replicas signing the same false block would be taken, as
a quorum of witnesses cosigning a false tree would.

While pages are being applied the position is :data:`CATCHING_UP` (a
restart continues from a peer, keeping every page already applied, each of
which was vouched for); the page that reaches the anchor carries the etcd
position of the batch that made the anchor's block, which becomes ours.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import struct
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

import grpc
from carbonledger.v1 import cluster_pb2, cluster_pb2_grpc

from ledger.block import Block, block_hash, decode_block
from ledger.block_note import Vouching, verify_block_vouchers
from ledger.errors import (
    BlockConflict,
    BlockNotConfirmed,
    InconsistencyError,
    LedgerError,
    VerificationError,
)
from ledger.log import Ledger, Receipt, open_tile_reader
from ledger.merkle import CompactRange, leaf_hash, verify_consistency
from ledger.policy import Policy, verify_checkpoint_policy
from node.replication.conflicts import BlockConflicts
from node.replication.etcd import OrderingUnavailable
from node.replication.peer import POSITION_KEY, position_at_key

__all__ = [
    "CATCHING_UP",
    "POSITION_KEY",
    "VerifiedPage",
    "apply_page",
    "catch_up",
    "confirm_page",
    "decode_position",
    "encode_position",
    "fetch_block_notes",
    "verify_and_apply",
    "verify_page",
]

#: The position value while blocks from a peer are being applied.
CATCHING_UP = b"catching-up"
_POS = struct.Struct(">QQ")
_log = logging.getLogger("carbonledger.node")


def encode_position(seq: int, revision: int) -> bytes:
    return _POS.pack(seq, revision)


def decode_position(value: bytes) -> tuple[int, int]:
    seq, revision = _POS.unpack(value)
    return int(seq), int(revision)


@dataclass(frozen=True, slots=True)
class VerifiedPage:
    """A page of a peer's blocks that passed steps (1) to (4), not applied.

    ``last`` is the block replicas must vouch for: the page's last block, or
    our head for a page without blocks. ``position`` is the peer's, given
    only on the page that reaches its anchor.
    """

    base: bytes
    blocks: tuple[Block, ...]
    entries: tuple[tuple[bytes, ...], ...]
    last: Block
    position: tuple[int, int] | None

    @property
    def needs_vouchers(self) -> bool:
        """Whether applying the page would change anything."""
        return bool(self.blocks) or self.position is not None


def verify_page(ledger: Ledger, response: cluster_pb2.GetBlocksResponse, policy: Policy) -> VerifiedPage:
    """Steps (1) to (4) of the module doc on one page of a peer's blocks.
    Reads our ledger, writes nothing."""
    head = ledger.head
    base = block_hash(head)
    # (1) The anchor: a checkpoint of our log that the cluster's policy accepts.
    cp = verify_checkpoint_policy(response.checkpoint, policy)
    if cp.origin != ledger.origin:
        raise VerificationError(f"peer checkpoint is for {cp.origin!r}, not {ledger.origin!r}")
    blocks: list[Block] = [decode_block(b.block) for b in response.blocks]
    # (2) + (3) Chain continuity, and the entries re-hashed into our tree.
    with ledger.store.read() as txn:
        edge = CompactRange.load(open_tile_reader(txn), head.tree_size)
    previous, height = base, head.height
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
        # We are past what this peer has had cosigned so far: nothing to take from it.
        return VerifiedPage(base, (), (), head, None)
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
    entries = tuple(tuple(page.entries) for page in response.blocks)
    return VerifiedPage(base, tuple(blocks), entries, blocks[-1] if blocks else head, final)


def confirm_page(ledger: Ledger, page: VerifiedPage, notes: Sequence[str], policy: Policy) -> Vouching:
    """Step (5): a quorum of distinct replicas sign the page's last block
    (and the position, if the page gives one) in ``notes``, and no quorum
    signs anything else. Returns their log keys and the dissents of other replicas
    (:func:`ledger.block_note.verify_block_vouchers`); raises
    :class:`BlockConflict` or :class:`BlockNotConfirmed`."""
    position = encode_position(*page.position) if page.position is not None else None
    return verify_block_vouchers(ledger.origin, page.last, position, notes, policy)


def apply_page(ledger: Ledger, page: VerifiedPage) -> tuple[int, int] | None:
    """Step (6): apply a verified and vouched-for page. Returns the peer's
    position once its anchor is reached, else None."""
    head = ledger.head
    if not hmac.compare_digest(block_hash(head), page.base):
        raise InconsistencyError(f"our head moved to block {head.height} since the page was verified")
    final = page.position
    for i, (block, entries) in enumerate(zip(page.blocks, page.entries)):
        last = i == len(page.blocks) - 1
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
        results = ledger.submit(list(entries), time=block.time, meta=meta, check=expect)
        if any(not isinstance(r, Receipt) or r.duplicate for r in results):
            raise InconsistencyError(f"peer block {block.height}: an entry was not accepted here")
    if not page.blocks and final is not None:
        # Our head is the anchor (checked in step 4): only the position was missing.
        position = encode_position(*final)
        ledger.submit([], meta={POSITION_KEY: position, position_at_key(head.height): position})
    return final


def verify_and_apply(
    ledger: Ledger, response: cluster_pb2.GetBlocksResponse, policy: Policy, notes: Sequence[str]
) -> tuple[int, int] | None:
    """Verify one page of a peer's blocks, check that the block notes in
    ``notes`` vouch for it, and apply it (steps (1) to (6) of the module doc).
    Returns the peer's position once its anchor is reached, else None."""
    page = verify_page(ledger, response, policy)
    if page.needs_vouchers:
        vouching = confirm_page(ledger, page, notes, policy)
        for dissent in vouching.dissents:
            _log_dissent(dissent, vouching, peer=None, evidence="")
    return apply_page(ledger, page)


async def fetch_block_notes(peers: Sequence[str], height: int, *, timeout: float = 5.0) -> list[str]:
    """Ask every peer for its signed note of block ``height``; the notes of
    those that answered. A peer that has not reached ``height`` answers
    NOT_FOUND and gives nothing, as does one that is down."""

    async def ask(peer: str) -> str | None:
        async with grpc.aio.insecure_channel(peer) as channel:
            try:
                request = cluster_pb2.GetBlockNoteRequest(height=height)
                response = await cluster_pb2_grpc.PeerStub(channel).GetBlockNote(request, timeout=timeout)
            except grpc.RpcError as exc:
                _log.debug("peer %s gave no note of block %d: %s", peer, height, exc.code())  # type: ignore[attr-defined]
                return None
        return str(response.note)

    return [note for note in await asyncio.gather(*(ask(p) for p in peers)) if note]


async def _vouched(
    ledger: Ledger,
    peers: Sequence[str],
    page: VerifiedPage,
    policy: Policy,
    *,
    rounds: int,
    backoff: float,
    peer: str,
    conflicts: BlockConflicts | None,
) -> Vouching:
    """Step (5) over the network: the page stays verified in memory while
    too few replicas can vouch for it yet, and is asked about again. A
    conflict is logged, its evidence kept in ``conflicts``, and raised. A
    page a quorum vouches for is returned, to be applied, once each dissent
    from it is logged and its evidence kept the same way."""
    attempt = 0
    while True:
        notes = await fetch_block_notes(peers, page.last.height)
        try:
            vouching = confirm_page(ledger, page, notes, policy)
        except BlockConflict as exc:
            evidence = await _keep_evidence(conflicts, ledger, exc, page, peer, notes, policy)
            _log.error(
                "CONFLICT: blocks served by %s disagree with a replica's signed note; nothing of them "
                "applied: %s (evidence: %s)",
                peer,
                exc,
                evidence or "not kept",
                extra={
                    "event": "block_conflict",
                    "applied": False,
                    "height": exc.height,
                    "signed_note": exc.note,
                    "evidence": evidence,
                },
            )
            raise
        except BlockNotConfirmed as exc:
            attempt += 1
            if attempt >= rounds:
                raise
            _log.info("waiting for replicas to vouch for block %d: %s", page.last.height, exc)
        else:
            # A replica that signed something else is faulty even when it is
            # outvoted: an operator must hear of it as of any other conflict.
            for dissent in vouching.dissents:
                evidence = await _keep_evidence(conflicts, ledger, dissent, page, peer, notes, policy)
                _log_dissent(dissent, vouching, peer=peer, evidence=evidence)
            return vouching
        await asyncio.sleep(min(2.0, backoff * attempt))


async def _keep_evidence(
    conflicts: BlockConflicts | None,
    ledger: Ledger,
    conflict: BlockConflict,
    page: VerifiedPage,
    peer: str,
    notes: Sequence[str],
    policy: Policy,
) -> str:
    """Keep the evidence of ``conflict``, met on ``page`` from ``peer``; the
    path of its file, or "" when none is kept."""
    if conflicts is None:
        return ""
    position = encode_position(*page.position) if page.position is not None else None
    seen = await asyncio.to_thread(
        conflicts.keep,
        ledger.origin,
        conflict,
        peer=peer,
        served_block=page.last,
        served_position=position,
        notes=notes,
        policy=policy,
    )
    return seen.evidence


def _log_dissent(dissent: BlockConflict, vouching: Vouching, *, peer: str | None, evidence: str) -> None:
    """Report a replica that a quorum outvoted as loudly as a conflict that
    stops a page: it is just as surely faulty."""
    _log.error(
        "CONFLICT: replica %s signed another %s of block %d than the one served%s; the page is applied, "
        "as a quorum of replicas (%s) vouch for the served one: %s (evidence: %s)",
        dissent.signer,
        dissent.what,
        dissent.height,
        f" by {peer}" if peer else "",
        ", ".join(vouching.vouchers),
        dissent,
        evidence or "not kept",
        extra={
            "event": "block_conflict",
            "applied": True,
            "height": dissent.height,
            "signer": dissent.signer,
            "signed_note": dissent.note,
            "evidence": evidence,
        },
    )


async def catch_up(
    ledger: Ledger,
    peers: Sequence[str],
    policy: Policy,
    executor: Executor,
    *,
    rounds: int = 1000,
    vouch_rounds: int = 10,
    backoff: float = 0.2,
    conflicts: BlockConflicts | None = None,
) -> tuple[int, int]:
    """Fetch, verify, have vouched for, and apply blocks from ``peers`` until
    one of them gives its etcd position; return it. Each of ``rounds`` asks
    one peer for blocks; each page is asked about up to ``vouch_rounds``
    times before it is dropped and fetched again. Block conflicts met are
    kept in ``conflicts`` (node/replication/conflicts.py)."""
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
                page = await loop.run_in_executor(executor, verify_page, ledger, response, policy)
                if page.needs_vouchers:
                    vouching = await _vouched(
                        ledger,
                        peers,
                        page,
                        policy,
                        rounds=vouch_rounds,
                        backoff=backoff,
                        peer=peer,
                        conflicts=conflicts,
                    )
                    _log.info(
                        "block %d from peer %s is vouched for by %s",
                        page.last.height,
                        peer,
                        ", ".join(vouching.vouchers),
                    )
                position = await loop.run_in_executor(executor, apply_page, ledger, page)
                if position is not None:
                    _log.info("caught up from peer %s at batch %d", peer, position[0])
                    return position
                if not response.blocks:
                    break
        except grpc.RpcError as exc:
            _log.warning("catch-up from %s failed: %s", peer, exc.code())  # type: ignore[attr-defined]
        except BlockConflict:
            pass  # logged, and its evidence kept, where it was met (_vouched)
        except BlockNotConfirmed as exc:
            _log.warning("blocks from %s not applied, too few replicas vouch for them yet: %s", peer, exc)
        except LedgerError as exc:
            _log.error("peer %s sent blocks that do not verify: %s", peer, exc)
        finally:
            await channel.close()
        await asyncio.sleep(min(2.0, backoff * (attempt + 1)))
    raise OrderingUnavailable("no peer could bring this node up to date")
