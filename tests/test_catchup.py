"""Catching up from a peer (node/replication/catchup.py) takes only blocks
that a checkpoint meeting the cluster's witness policy vouches for.

In process: replicas are memory ledgers with the cluster's origin and their
own keys, and their blocks are served by the real ``read_blocks``. The cluster
test of a late node catching up after compaction is in test_cluster_faults.
"""

from __future__ import annotations

import asyncio
import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from carbonledger.v1 import cluster_pb2, cluster_pb2_grpc

from ledger.checkpoint import cosign_checkpoint
from ledger.errors import InconsistencyError, QuorumNotMet, VerificationError
from ledger.keys import Signer
from ledger.log import Ledger
from ledger.policy import parse_policy
from node.replication.catchup import CATCHING_UP, catch_up, encode_position, verify_and_apply
from node.replication.peer import (
    POSITION_KEY,
    NotWitnessedYet,
    PeerServicer,
    position_at_key,
    read_blocks,
)
from node.witness import Witness
from node.witness_collector import CosignCollector
from tests.test_node_support import RunningNode

ORIGIN = "cluster.example/log"
HONEST = [[b"issue 100 MWh to alice"], [b"alice retires 100 MWh for label L1"], [b"transfer 5 MWh to bob"]]
# What a malicious replica would like a fresh node to believe: the same
# units retired for another label.
FORK = [[b"issue 100 MWh to alice"], [b"alice retires 100 MWh for label L2"], [b"transfer 5 MWh to bob"]]


def log_key(n: int) -> Signer:
    return Signer.from_seed(ORIGIN, hashlib.sha256(b"log %d" % n).digest())


def witness_key(n: int) -> Signer:
    return Signer.from_seed(f"witness-{n}", hashlib.sha256(b"witness %d" % n).digest(), cosigner=True)


POLICY = parse_policy(
    "".join(f"log {log_key(n).vkey}\n" for n in range(3))
    + "".join(f"witness w{n} {witness_key(n).vkey}\n" for n in range(3))
    + "group replicas 2 w0 w1 w2\nquorum replicas\n"
)


def replica(n: int, batches: list[list[bytes]]) -> Ledger:
    """Replica ``n``, having applied ``batches`` as ordered batches 0, 1, ...
    (positions recorded as the replicator records them)."""
    led = Ledger.memory(signer=log_key(n), created_time=0)
    for seq, batch in enumerate(batches):
        position = encode_position(seq, 1000 + seq)
        led.submit(batch, time=100 + seq, meta={POSITION_KEY: position, position_at_key(led.head.height + 1): position})
    return led


def cosigned(led: Ledger, size: int, *witnesses: int) -> str:
    note = led.checkpoint(size)
    for n in witnesses:
        note = cosign_checkpoint(note, witness_key(n), 1_700_000_000)
    return note


def test_a_history_one_replica_alone_vouches_for_is_refused() -> None:
    # The attack this rule stops: a malicious replica feeds a fresh node its
    # fork, the fresh node's witness cosigns what it then holds, and with the
    # malicious replica's own cosignature the fork meets a 2-of-3 quorum.
    malicious, fresh = replica(1, FORK), replica(2, [])
    for anchor in (None, cosigned(malicious, malicious.size, 1)):
        page = read_blocks(malicious, 1, 0, 256, anchor)
        assert len(page.blocks) == 3
        with pytest.raises(QuorumNotMet):
            verify_and_apply(fresh, page, POLICY)
        assert fresh.size == 0 and fresh.meta(POSITION_KEY) is None


def test_blocks_are_applied_up_to_the_quorum_checkpoint_and_no_further() -> None:
    peer, fresh = replica(0, HONEST), replica(2, [])
    anchor = cosigned(peer, 2, 0, 1)  # the newest the cluster cosigned: block 2 of 3
    page = read_blocks(peer, 1, 0, 256, anchor)
    assert len(page.blocks) == 2 and page.has_position and not page.consistency
    assert verify_and_apply(fresh, page, POLICY) == (1, 1001)  # batch 1 made block 2
    assert fresh.size == 2 and fresh.root() == peer.root(2) and fresh.head == peer.block(2)
    assert fresh.meta(POSITION_KEY) == fresh.meta(position_at_key(2)) == encode_position(1, 1001)
    # Having caught up, it can serve the same blocks, with their position, in turn.
    again = read_blocks(fresh, 1, 0, 256, anchor)
    assert len(again.blocks) == 2 and (again.applied_seq, again.applied_revision) == (1, 1001)


def test_pages_short_of_the_anchor_are_proven_a_prefix_of_it() -> None:
    peer, fresh = replica(0, HONEST), replica(2, [])
    anchor = cosigned(peer, 3, 0, 2)
    first = read_blocks(peer, 1, 0, 1, anchor)
    assert len(first.blocks) == 1 and first.consistency and not first.has_position
    assert verify_and_apply(fresh, first, POLICY) is None
    assert fresh.size == 1 and fresh.meta(POSITION_KEY) == CATCHING_UP
    rest = read_blocks(peer, 2, 1, 256, anchor)
    assert verify_and_apply(fresh, rest, POLICY) == (2, 1002)
    assert fresh.root() == peer.root()


@pytest.mark.parametrize("max_blocks", [2, 3])
def test_blocks_that_are_not_a_prefix_of_the_anchor_are_refused(max_blocks: int) -> None:
    # A real quorum checkpoint of the honest tree, served with the fork's
    # blocks: short of the anchor the consistency proof fails, at its size
    # the roots differ.
    honest, malicious, fresh = replica(0, HONEST), replica(1, FORK), replica(2, [])
    page = read_blocks(malicious, 1, 0, max_blocks, cosigned(honest, 3, 0, 2))
    with pytest.raises(VerificationError):
        verify_and_apply(fresh, page, POLICY)
    assert fresh.size == 0


def test_a_position_on_a_page_short_of_the_anchor_is_refused() -> None:
    peer, fresh = replica(0, HONEST), replica(2, [])
    page = read_blocks(peer, 1, 0, 1, cosigned(peer, 3, 0, 1))
    page.has_position, page.applied_seq, page.applied_revision = True, 0, 1000
    with pytest.raises(InconsistencyError, match="does not reach its anchor"):
        verify_and_apply(fresh, page, POLICY)
    assert fresh.size == 0 and fresh.meta(POSITION_KEY) is None


def test_a_node_past_a_peers_anchor_takes_nothing_from_it() -> None:
    ahead = replica(2, HONEST)
    page = read_blocks(replica(0, HONEST), 4, 3, 256, cosigned(replica(0, HONEST), 2, 0, 1))
    assert not page.blocks
    assert verify_and_apply(ahead, page, POLICY) is None
    assert ahead.size == 3


def test_a_peer_serves_blocks_only_once_its_checkpoint_meets_the_quorum(tmp_path: Path) -> None:
    peer = replica(0, HONEST)
    logs = [log_key(n).verifier() for n in range(3)]
    own = Witness(witness_key(0), tmp_path / "w0", logs, local=peer)
    collector = CosignCollector(peer, [], [witness_key(n).verifier() for n in range(3)], own=own)
    servicer = PeerServicer(peer, collector=collector, policy=POLICY)
    request = cluster_pb2.GetBlocksRequest(first_height=1, known_size=0)
    with pytest.raises(NotWitnessedYet):
        asyncio.run(servicer.GetBlocks(request, None))  # type: ignore[arg-type]
    # The collector has the node's own witness cosign its checkpoint: one of
    # the two cosignatures the policy asks for, so still no blocks.
    asyncio.run(collector.collect_once())
    best = collector.best(1)
    assert best is not None and best[2] == ["witness-0"]
    with pytest.raises(NotWitnessedYet):
        asyncio.run(servicer.GetBlocks(request, None))  # type: ignore[arg-type]
    assert collector.newest_meeting(POLICY) is None


def peer_node(led: Ledger, servicer: PeerServicer) -> RunningNode:
    def register(server: grpc.aio.Server, committer: object) -> list[str]:
        cluster_pb2_grpc.add_PeerServicer_to_server(servicer, server)
        return ["carbonledger.v1.Peer"]

    return RunningNode(led, register=register)


def test_a_fresh_node_catches_up_over_grpc_to_what_two_witnesses_cosigned(tmp_path: Path) -> None:
    serving, other, fresh = replica(0, HONEST), replica(1, HONEST), replica(2, [])
    logs = [log_key(n).verifier() for n in range(3)]
    witnesses = [witness_key(n).verifier() for n in range(3)]
    other_node = peer_node(other, PeerServicer(other, witness=Witness(witness_key(1), tmp_path / "w1", logs, local=other)))
    collector = CosignCollector(
        serving, [other_node.target], witnesses, own=Witness(witness_key(0), tmp_path / "w0", logs, local=serving)
    )
    serving_node = peer_node(serving, PeerServicer(serving, collector=collector, policy=POLICY))
    try:
        serving_node.run(collector.collect_once())
        best = collector.best(2)
        assert best is not None and sorted(best[2]) == ["witness-0", "witness-1"]
        with ThreadPoolExecutor(1) as executor:
            position = asyncio.run(catch_up(fresh, [serving_node.target], POLICY, executor, rounds=3))
        assert position == (2, 1002)
        assert fresh.root() == serving.root() and fresh.head == serving.head
        serving_node.run(collector.stop())
    finally:
        serving_node.stop()
        other_node.stop()
