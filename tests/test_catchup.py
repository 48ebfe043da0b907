"""Catching up from a peer (node/replication/catchup.py) takes only blocks
that a checkpoint meeting the cluster's witness policy vouches for, and whose
block hashes (times, state digests) and resume position a quorum of replicas
sign.

In process: replicas are memory ledgers with the cluster's origin and their
own keys, and their blocks are served by the real ``read_blocks``. The cluster
test of a late node catching up after compaction is in test_cluster_faults.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from carbonledger.v1 import cluster_pb2, cluster_pb2_grpc

from ledger._b64 import b64decode
from ledger.block import block_hash, decode_block
from ledger.block_note import parse_block_note
from ledger.checkpoint import cosign_checkpoint
from ledger.errors import (
    BlockConflict,
    BlockNotConfirmed,
    InconsistencyError,
    InvalidSignature,
    NotFound,
    QuorumNotMet,
    VerificationError,
)
from ledger.keys import Signer
from ledger.log import Ledger
from ledger.note import open_note
from ledger.policy import parse_policy
from node.cluster import ClusterConfig, ClusterNode
from node.replication import replicator
from node.replication.catchup import (
    CATCHING_UP,
    catch_up,
    confirm_page,
    encode_position,
    verify_and_apply,
    verify_page,
)
from node.replication.conflicts import BlockConflicts, conflict_evidence
from node.replication.etcd import OrderingUnavailable
from node.replication.peer import (
    POSITION_KEY,
    NotWitnessedYet,
    PeerServicer,
    position_at_key,
    read_block_note,
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


def replica(n: int, batches: list[list[bytes]], *, first_time: int = 100, first_revision: int = 1000) -> Ledger:
    """Replica ``n``, having applied ``batches`` as ordered batches 0, 1, ...
    (positions recorded as the replicator records them). An honest replica
    has the default times and revisions; a forger picks others."""
    led = Ledger.memory(signer=log_key(n), created_time=0)
    advance(led, batches, first_time=first_time, first_revision=first_revision)
    return led


def advance(led: Ledger, batches: list[list[bytes]], *, first_time: int = 100, first_revision: int = 1000) -> None:
    """Apply ``batches`` to ``led`` as the ordered batches after those it holds."""
    for batch in batches:
        seq = led.head.height
        position = encode_position(seq, first_revision + seq)
        led.submit(batch, time=first_time + seq, meta={POSITION_KEY: position, position_at_key(seq + 1): position})


def notes(height: int, *replicas: Ledger) -> list[str]:
    """The signed block notes at ``height`` of the replicas that hold it."""
    out = []
    for led in replicas:
        try:
            out.append(read_block_note(led, height).note)
        except NotFound:
            pass
    return out


def cosigned(led: Ledger, size: int, *witnesses: int) -> str:
    note = led.checkpoint(size)
    for n in witnesses:
        note = cosign_checkpoint(note, witness_key(n), 1_700_000_000)
    return note


def test_a_history_one_replica_alone_vouches_for_is_refused() -> None:
    # The attack this rule stops: a malicious replica feeds a fresh node its
    # fork, the fresh node's witness cosigns what it then holds, and with the
    # malicious replica's own cosignature the fork meets a 2-of-3 quorum.
    # Even with two replicas' keys signing the fork's blocks, the anchor's
    # cosignatures decide about the entries.
    malicious, fresh = replica(1, FORK), replica(2, [])
    vouchers = notes(3, malicious, replica(0, FORK))
    for anchor in (None, cosigned(malicious, malicious.size, 1)):
        page = read_blocks(malicious, 1, 0, 256, anchor)
        assert len(page.blocks) == 3
        with pytest.raises(QuorumNotMet) as refused:
            verify_and_apply(fresh, page, POLICY, vouchers)
        assert not isinstance(refused.value, BlockNotConfirmed)
        assert fresh.size == 0 and fresh.meta(POSITION_KEY) is None


def test_blocks_are_applied_up_to_the_quorum_checkpoint_and_no_further() -> None:
    peer, other, fresh = replica(0, HONEST), replica(1, HONEST), replica(2, [])
    anchor = cosigned(peer, 2, 0, 1)  # the newest the cluster cosigned: block 2 of 3
    page = read_blocks(peer, 1, 0, 256, anchor)
    assert len(page.blocks) == 2 and page.has_position and not page.consistency
    assert verify_and_apply(fresh, page, POLICY, notes(2, peer, other)) == (1, 1001)  # batch 1 made block 2
    assert fresh.size == 2 and fresh.root() == peer.root(2) and fresh.head == peer.block(2)
    assert fresh.meta(POSITION_KEY) == fresh.meta(position_at_key(2)) == encode_position(1, 1001)
    # Having caught up, it can serve the same blocks, with their position, in turn.
    again = read_blocks(fresh, 1, 0, 256, anchor)
    assert len(again.blocks) == 2 and (again.applied_seq, again.applied_revision) == (1, 1001)


def test_pages_short_of_the_anchor_are_proven_a_prefix_of_it() -> None:
    peer, other, fresh = replica(0, HONEST), replica(1, HONEST), replica(2, [])
    anchor = cosigned(peer, 3, 0, 2)
    first = read_blocks(peer, 1, 0, 1, anchor)
    assert len(first.blocks) == 1 and first.consistency and not first.has_position
    assert verify_and_apply(fresh, first, POLICY, notes(1, peer, other)) is None
    assert fresh.size == 1 and fresh.meta(POSITION_KEY) == CATCHING_UP
    rest = read_blocks(peer, 2, 1, 256, anchor)
    assert verify_and_apply(fresh, rest, POLICY, notes(3, peer, other)) == (2, 1002)
    assert fresh.root() == peer.root()


@pytest.mark.parametrize("max_blocks", [2, 3])
def test_blocks_that_are_not_a_prefix_of_the_anchor_are_refused(max_blocks: int) -> None:
    # A real quorum checkpoint of the honest tree, served with the fork's
    # blocks: short of the anchor the consistency proof fails, at its size
    # the roots differ.
    honest, malicious, fresh = replica(0, HONEST), replica(1, FORK), replica(2, [])
    page = read_blocks(malicious, 1, 0, max_blocks, cosigned(honest, 3, 0, 2))
    with pytest.raises(VerificationError) as refused:
        verify_and_apply(fresh, page, POLICY, notes(max_blocks, malicious, replica(2, FORK)))
    assert not isinstance(refused.value, (BlockConflict, BlockNotConfirmed))
    assert fresh.size == 0


def test_a_position_on_a_page_short_of_the_anchor_is_refused() -> None:
    peer, fresh = replica(0, HONEST), replica(2, [])
    page = read_blocks(peer, 1, 0, 1, cosigned(peer, 3, 0, 1))
    page.has_position, page.applied_seq, page.applied_revision = True, 0, 1000
    with pytest.raises(InconsistencyError, match="does not reach its anchor"):
        verify_and_apply(fresh, page, POLICY, notes(1, peer, replica(1, HONEST)))
    assert fresh.size == 0 and fresh.meta(POSITION_KEY) is None


def test_a_node_past_a_peers_anchor_takes_nothing_from_it() -> None:
    ahead = replica(2, HONEST)
    page = read_blocks(replica(0, HONEST), 4, 3, 256, cosigned(replica(0, HONEST), 2, 0, 1))
    assert not page.blocks
    assert verify_and_apply(ahead, page, POLICY, []) is None
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
            position = asyncio.run(catch_up(fresh, [serving_node.target, other_node.target], POLICY, executor, rounds=3))
        # Both replicas signed block 3 and the position of batch 2, which made
        # it: the node resumes right after that batch.
        assert position == (2, 1002)
        assert fresh.root() == serving.root() and fresh.head == serving.head
        assert fresh.meta(POSITION_KEY) == fresh.meta(position_at_key(3)) == encode_position(2, 1002)
        serving_node.run(collector.stop())
    finally:
        serving_node.stop()
        other_node.stop()


# -- what the anchor's cosignatures do not cover: block times, state digests, the position


def forged_times() -> Ledger:
    """Replica 0 gone bad: the honest entries, in the honest order, with
    other block times. Its blocks, hashes and state digests are what its
    state machine computed with those times, as a real attacker's would be;
    its tree, and so every checkpoint, is the honest one."""
    return replica(0, HONEST, first_time=100 + 86_400 * 365)


@pytest.mark.parametrize("max_blocks", [1, 3])
def test_blocks_with_forged_times_are_refused_when_a_replica_signs_the_honest_ones(max_blocks: int) -> None:
    malicious, honest, fresh = forged_times(), replica(1, HONEST), replica(2, [])
    assert malicious.root() == honest.root() and malicious.head.time != honest.head.time
    # The witnesses cosign the tree, which is the honest one.
    page = read_blocks(malicious, 1, 0, max_blocks, cosigned(malicious, 3, 0, 1))
    height = max_blocks
    with pytest.raises(BlockConflict) as conflict:
        verify_and_apply(fresh, page, POLICY, notes(height, malicious, honest))
    served, signed = block_hash(malicious.block(height)), block_hash(honest.block(height))
    assert (conflict.value.height, conflict.value.what) == (height, "block hash")
    assert (conflict.value.served, conflict.value.signed) == (served, signed)
    assert conflict.value.signer == log_key(1).vkey and conflict.value.note == notes(height, honest)[0]
    assert f"block {height}" in str(conflict.value) and served.hex() in str(conflict.value) and signed.hex() in str(conflict.value)
    assert fresh.size == 0 and fresh.meta(POSITION_KEY) is None


def test_a_forged_resume_position_is_refused_when_a_replica_signs_the_honest_one() -> None:
    # The same blocks (positions are not in them), another position recorded.
    malicious, honest, fresh = replica(0, HONEST, first_revision=5000), replica(1, HONEST), replica(2, [])
    assert malicious.head == honest.head
    page = read_blocks(malicious, 1, 0, 256, cosigned(malicious, 3, 0, 1))
    assert (page.applied_seq, page.applied_revision) == (2, 5002)
    with pytest.raises(BlockConflict) as conflict:
        verify_and_apply(fresh, page, POLICY, notes(3, malicious, honest))
    assert (conflict.value.height, conflict.value.what) == (3, "position")
    assert (conflict.value.served, conflict.value.signed) == (encode_position(2, 5002), encode_position(2, 1002))
    assert fresh.size == 0 and fresh.meta(POSITION_KEY) is None
    # A peer that edits the position of an honest page, and signs nothing, fares no better.
    page = read_blocks(honest, 1, 0, 256, cosigned(honest, 3, 0, 1))
    page.applied_seq = 7
    with pytest.raises(BlockConflict, match="position"):
        verify_and_apply(fresh, page, POLICY, notes(3, honest, replica(0, HONEST)))
    assert fresh.size == 0 and fresh.meta(POSITION_KEY) is None


def test_one_replica_alone_does_not_vouch_for_blocks_however_many_addresses_it_has() -> None:
    malicious, fresh = forged_times(), replica(2, [])
    page = read_blocks(malicious, 1, 0, 256, cosigned(malicious, 3, 0, 1))
    # Its note twice (two addresses), and an honest replica that is behind.
    with pytest.raises(BlockNotConfirmed) as unconfirmed:
        verify_and_apply(fresh, page, POLICY, notes(3, malicious, malicious, replica(1, HONEST[:2])))
    assert unconfirmed.value.vouchers == (log_key(0).vkey,) and unconfirmed.value.needed == 2
    assert fresh.size == 0 and fresh.meta(POSITION_KEY) is None


def test_a_replica_that_holds_the_block_but_not_its_position_does_not_vouch_for_the_position() -> None:
    peer, fresh = replica(0, HONEST), replica(2, [])
    # Replica 1 took the blocks from a peer up to block 3 and recorded no position there.
    without = replica(1, [])
    for height in (1, 2, 3):
        without.submit(HONEST[height - 1], time=peer.block(height).time, meta={POSITION_KEY: CATCHING_UP})
    assert without.head == peer.head and read_block_note(without, 3).note != read_block_note(peer, 3).note
    page = read_blocks(peer, 1, 0, 256, cosigned(peer, 3, 0, 1))
    with pytest.raises(BlockNotConfirmed):
        verify_and_apply(fresh, page, POLICY, notes(3, peer, without))
    assert fresh.size == 0
    # Short of the anchor no position is asked for, and it vouches for the block.
    short = read_blocks(peer, 1, 0, 2, cosigned(peer, 3, 0, 1))
    assert verify_and_apply(fresh, short, POLICY, notes(2, peer, without)) is None and fresh.size == 2


def test_a_node_ignores_notes_that_say_nothing_about_the_block() -> None:
    peer, other, fresh = replica(0, HONEST), replica(1, HONEST), replica(2, [])
    page = read_blocks(peer, 1, 0, 256, cosigned(peer, 3, 0, 1))
    outsider = Ledger.memory(signer=Signer.from_seed(ORIGIN, hashlib.sha256(b"not in the policy").digest()), created_time=0)
    advance(outsider, HONEST, first_time=0)  # conflicting, but not a replica of the policy
    junk = [notes(2, other)[0], notes(3, outsider)[0], "not a note", notes(3, other)[0].replace("carbonledger", "x", 1)]
    with pytest.raises(BlockNotConfirmed):
        verify_and_apply(fresh, page, POLICY, notes(3, peer) + junk)
    assert verify_and_apply(fresh, page, POLICY, notes(3, peer, other) + junk) == (2, 1002)


class _FixedAnchor:
    """A collector whose newest checkpoint meeting the policy is ``note``."""

    def __init__(self, note: str) -> None:
        self.note = note

    def newest_meeting(self, policy: object) -> str:
        return self.note


class _CountingPeer(PeerServicer):
    """A peer servicer counting calls; ``before_note`` runs before each
    GetBlockNote is answered."""

    def __init__(self, led: Ledger, before_note: object = None, **kwargs: object) -> None:
        super().__init__(led, **kwargs)  # type: ignore[arg-type]
        self.get_blocks = self.get_notes = 0
        self.before_note = before_note

    async def GetBlocks(self, request, context):  # type: ignore[no-untyped-def]
        self.get_blocks += 1
        return await super().GetBlocks(request, context)

    async def GetBlockNote(self, request, context):  # type: ignore[no-untyped-def]
        self.get_notes += 1
        if callable(self.before_note):
            self.before_note(self.get_notes)
        return await super().GetBlockNote(request, context)


def test_no_block_is_applied_until_another_replica_can_vouch_for_it() -> None:
    serving, behind, fresh = replica(0, HONEST), replica(1, HONEST[:1]), replica(2, [])
    anchor = cosigned(serving, 3, 0, 1)
    serving_peer = _CountingPeer(serving, collector=_FixedAnchor(anchor), policy=POLICY)  # type: ignore[arg-type]
    behind_peer = _CountingPeer(behind)
    serving_node, behind_node = peer_node(serving, serving_peer), peer_node(behind, behind_peer)
    peers = [serving_node.target, behind_node.target]
    try:
        with ThreadPoolExecutor(1) as executor:
            # The replica behind cannot vouch for block 3: nothing is applied,
            # however often the node asks.
            with pytest.raises(OrderingUnavailable):
                asyncio.run(catch_up(fresh, peers, POLICY, executor, rounds=2, vouch_rounds=2, backoff=0.01))
            assert behind_peer.get_notes >= 2
            assert fresh.size == 0 and fresh.meta(POSITION_KEY) is None
            # It reaches block 3 while the node waits with a verified page:
            # that page is applied, without fetching it again.
            serving_peer.get_blocks = behind_peer.get_notes = 0
            behind_peer.before_note = lambda calls: calls == 2 and advance(behind, HONEST[1:])
            position = asyncio.run(catch_up(fresh, peers, POLICY, executor, rounds=1, vouch_rounds=3, backoff=0.01))
        assert position == (2, 1002) and fresh.head == serving.head
        assert serving_peer.get_blocks == 1 and behind_peer.get_notes == 2
    finally:
        serving_node.stop()
        behind_node.stop()


def test_a_peer_serving_forged_times_over_grpc_is_refused_and_the_conflict_logged(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    malicious, honest, fresh = forged_times(), replica(1, HONEST), replica(2, [])
    nodes = [
        peer_node(led, PeerServicer(led, collector=_FixedAnchor(cosigned(led, 3, 0, 1)), policy=POLICY))  # type: ignore[arg-type]
        for led in (malicious, honest)
    ]
    try:
        # The malicious peer's blocks conflict with the honest replica's note;
        # the honest peer's, tried next, with the malicious one's: two
        # replicas of three disagree, and neither view is taken.
        peers = [n.target for n in nodes]
        with (
            ThreadPoolExecutor(1) as executor,
            caplog.at_level("ERROR", logger="carbonledger.node"),
            pytest.raises(OrderingUnavailable),
        ):
            kept = BlockConflicts(tmp_path)
            asyncio.run(catch_up(fresh, peers, POLICY, executor, rounds=2, backoff=0.01, conflicts=kept))
        assert fresh.size == 0 and fresh.meta(POSITION_KEY) is None
        forged, real = block_hash(malicious.head).hex(), block_hash(honest.head).hex()
        conflicts = [r for r in caplog.records if getattr(r, "event", None) == "block_conflict"]
        assert len(conflicts) == 2
        assert all(
            "CONFLICT" in m and "block 3" in m and forged in m and real in m
            for m in (r.getMessage() for r in conflicts)
        )
        # Two distinct conflicts, each kept with its dissenting replica's key.
        files = {r.__dict__["evidence"] for r in conflicts}
        assert files == {str(p) for p in tmp_path.iterdir()} and len(files) == 2
        assert {(c.peer, c.signer) for c in kept.recent()} == {
            (peers[0], log_key(1).vkey), (peers[1], log_key(0).vkey)
        }
    finally:
        for n in nodes:
            n.stop()


# -- the evidence of a conflict: kept on disk, once, and reported


def key_id(n: int) -> str:
    return log_key(n).vkey.split("+")[1]


def test_a_conflict_met_while_catching_up_is_kept_once_with_both_sides_and_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    malicious, honest, fresh = forged_times(), replica(1, HONEST), replica(2, [])
    nodes = [
        peer_node(led, PeerServicer(led, collector=_FixedAnchor(cosigned(led, 3, 0, 1)), policy=POLICY))  # type: ignore[arg-type]
        for led in (malicious, honest)
    ]
    peers = [n.target for n in nodes]
    evidence = tmp_path / "node" / "evidence"
    # One round of catch-up per call: it asks the malicious peer for blocks,
    # and the honest replica's note conflicts with them.
    monkeypatch.setattr(replicator, "catch_up", functools.partial(catch_up, rounds=1, backoff=0.01))

    async def meet_it_twice() -> tuple[replicator.Replicator, list[str], cluster_pb2.ClusterStatus]:
        # Wired as `carbonledger serve --etcd` wires it (etcd is never reached here).
        config = ClusterConfig(tmp_path / "node", node_id="fresh", peers=peers, policy=POLICY, etcd=["127.0.0.1:9"])
        rep = ClusterNode(fresh, config).replicator
        assert isinstance(rep, replicator.Replicator)
        try:
            texts = []
            for _ in range(2):
                with pytest.raises(OrderingUnavailable):
                    await rep._catch_up()
                texts += [p.read_text() for p in evidence.iterdir()]
            servicer = PeerServicer(fresh, status=rep.fill_status)
            status = await servicer.GetClusterStatus(cluster_pb2.GetClusterStatusRequest(), None)  # type: ignore[arg-type]
        finally:
            await rep.stop()
        return rep, texts, status

    try:
        rep, texts, status = asyncio.run(meet_it_twice())
    finally:
        for n in nodes:
            n.stop()
    assert fresh.size == 0 and fresh.meta(POSITION_KEY) is None
    # (1) Exactly one file, named by height and the dissenting key, met twice
    # and written once: the second meeting found it and left it as it was.
    (path,) = evidence.iterdir()
    assert path.name.startswith(f"block-conflict-3-{key_id(1)}-") and path.suffix == ".json"
    assert len(texts) == 2 and texts[0] == texts[1] == path.read_text()
    record = json.loads(path.read_text())
    assert (record["kind"], record["origin"], record["height"], record["what"]) == ("block_conflict", ORIGIN, 3, "block hash")
    assert any("NOT signed by the serving peer" in line for line in record["about"])
    # (2) The side served: the malicious peer's block 3, by address.
    served = record["served"]
    assert served["peer"] == peers[0]
    assert decode_block(b64decode(served["block"], what="block")) == malicious.block(3)
    assert served["value"] == served["block_hash"] == block_hash(malicious.block(3)).hex()
    assert served["position"] is not None and b64decode(served["position"], what="position") == encode_position(2, 1002)
    # (3) The side signed: the honest replica's note, which verifies with its
    # log key (and with no other) and names its own block 3.
    signed = record["signed"]
    assert signed["signer"] == log_key(1).vkey and signed["value"] == block_hash(honest.block(3)).hex()
    opened = open_note(signed["note"], [log_key(1).verifier()])
    assert parse_block_note(opened.text).block == honest.block(3)
    with pytest.raises(InvalidSignature):
        open_note(signed["note"], [log_key(0).verifier()])
    # (4) Each replica signed its own side: no quorum for either.
    quorum = record["quorum"]
    assert (quorum["needed"], quorum["supports"]) == (2, "neither")
    assert (quorum["served_by"], quorum["signed_by"]) == ([log_key(0).vkey], [log_key(1).vkey])
    assert sorted(quorum["notes"]) == sorted(notes(3, malicious, honest))
    # (5) GetClusterStatus: met twice, one distinct conflict with its file.
    assert status.block_conflicts == 2 == rep.conflicts.count
    (seen,) = status.recent_block_conflicts
    assert (seen.height, seen.what, seen.signer, seen.evidence) == (3, "block hash", log_key(1).vkey, str(path))
    assert (seen.peer, seen.quorum_side, seen.times_seen) == (peers[0], "neither", 2)


def position_conflict() -> tuple[BlockConflict, list[str], Ledger]:
    """A peer serving a forged resume position, met with the notes of two
    honest replicas (keys 1 and 2) and its own."""
    malicious = replica(0, HONEST, first_revision=5000)
    fresh = Ledger.memory(signer=Signer.from_seed(ORIGIN, hashlib.sha256(b"fresh").digest()), created_time=0)
    page = verify_page(fresh, read_blocks(malicious, 1, 0, 256, cosigned(malicious, 3, 0, 1)), POLICY)
    fetched = notes(3, malicious, replica(1, HONEST), replica(2, HONEST))
    with pytest.raises(BlockConflict) as conflict:
        confirm_page(fresh, page, fetched, POLICY)
    return conflict.value, fetched, malicious


def test_the_evidence_names_the_side_a_quorum_of_replicas_signed() -> None:
    conflict, fetched, malicious = position_conflict()
    record = conflict_evidence(
        ORIGIN, conflict, peer="peer-a:1", served_block=malicious.head,
        served_position=encode_position(2, 5002), notes=fetched, policy=POLICY, time=0,
    )  # fmt: skip
    assert (record["what"], record["served"]["value"]) == ("position", encode_position(2, 5002).hex())
    assert record["signed"]["value"] == encode_position(2, 1002).hex()
    quorum = record["quorum"]
    assert (quorum["supports"], quorum["served_by"]) == ("signed", [log_key(0).vkey])
    assert quorum["signed_by"] == [log_key(1).vkey, log_key(2).vkey]
    # The digest covers both sides, not who served them nor when.
    again = conflict_evidence(
        ORIGIN, conflict, peer="peer-b:2", served_block=malicious.head,
        served_position=encode_position(2, 5002), notes=fetched[:2], policy=POLICY, time=99,
    )  # fmt: skip
    assert again["digest"] == record["digest"]


def test_evidence_is_never_overwritten_nor_written_twice(tmp_path: Path) -> None:
    conflict, fetched, malicious = position_conflict()
    args = {
        "peer": "peer-a:1", "served_block": malicious.head, "served_position": encode_position(2, 5002),
        "notes": fetched, "policy": POLICY,
    }  # fmt: skip
    record = conflict_evidence(ORIGIN, conflict, time=0, **args)  # type: ignore[arg-type]
    name = f"block-conflict-3-{key_id(1)}-{record['digest'][:16]}.json"
    # Another file already holds the name (a different conflict whose digest
    # starts the same): it is left as it was, and the evidence goes beside it.
    tmp_path.joinpath(name).write_text('{"digest": "another"}')
    first = BlockConflicts(tmp_path).keep(ORIGIN, conflict, **args)  # type: ignore[arg-type]
    assert first.evidence == str(tmp_path / name.replace(".json", "-2.json"))
    assert tmp_path.joinpath(name).read_text() == '{"digest": "another"}'
    # A node restarted meets the same conflict: it finds the file it kept.
    second = BlockConflicts(tmp_path).keep(ORIGIN, conflict, **args)  # type: ignore[arg-type]
    assert second.evidence == first.evidence and second.quorum_side == "signed"
    assert {p.name for p in tmp_path.iterdir()} == {name, name.replace(".json", "-2.json")}
    assert json.loads(Path(first.evidence).read_text())["digest"] == record["digest"]


# -- one faulty replica outvoted: the page is applied, the dissent kept


def fresh_node() -> Ledger:
    """A node joining the cluster with nothing, under a key of its own."""
    return Ledger.memory(signer=Signer.from_seed(ORIGIN, hashlib.sha256(b"fresh").digest()), created_time=0)


def liar(what: str) -> Ledger:
    """Replica 2 gone bad (a corrupt disk, or worse): the honest entries,
    with other block times (so other block hashes) or, for ``"position"``,
    other etcd revisions recorded with the same blocks."""
    if what == "block hash":
        return replica(2, HONEST, first_time=100 + 86_400 * 365)
    return replica(2, HONEST, first_revision=5000)


def serving(led: Ledger) -> RunningNode:
    """``led`` serving its blocks up to a checkpoint of size 3 that witnesses 0 and 1 cosigned."""
    return peer_node(led, PeerServicer(led, collector=_FixedAnchor(cosigned(led, 3, 0, 1)), policy=POLICY))  # type: ignore[arg-type]


@pytest.mark.parametrize("what", ["block hash", "position"])
@pytest.mark.parametrize("liar_first", [False, True])
def test_one_lying_replica_does_not_stop_a_node_catching_up_and_is_kept_as_evidence(
    what: str, liar_first: bool, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    honest, fresh = [replica(0, HONEST), replica(1, HONEST)], fresh_node()
    lying = liar(what)
    nodes = [serving(led) for led in ([lying, *honest] if liar_first else [*honest, lying])]
    peers = [n.target for n in nodes]
    liar_address = peers[0] if liar_first else peers[2]
    evidence = tmp_path / "node" / "evidence"
    monkeypatch.setattr(replicator, "catch_up", functools.partial(catch_up, rounds=2, backoff=0.01))
    config = ClusterConfig(tmp_path / "node", node_id="fresh", peers=peers, policy=POLICY, etcd=["127.0.0.1:9"])

    async def status_of(rep: replicator.Replicator) -> cluster_pb2.ClusterStatus:
        servicer = PeerServicer(fresh, status=rep.fill_status)
        return await servicer.GetClusterStatus(cluster_pb2.GetClusterStatusRequest(), None)  # type: ignore[arg-type]

    async def catch_up_then_restart() -> tuple[cluster_pb2.ClusterStatus, cluster_pb2.ClusterStatus]:
        # Wired as `carbonledger serve --etcd` wires it (etcd is never reached here).
        rep = ClusterNode(fresh, config).replicator
        try:
            await rep._catch_up()
            status = await status_of(rep)
        finally:
            await rep.stop()
        # The node restarts: the conflicts it kept are still reported.
        again = ClusterNode(fresh, config).replicator
        try:
            return status, await status_of(again)
        finally:
            await again.stop()

    try:
        with caplog.at_level("ERROR", logger="carbonledger.node"):
            status, restarted = asyncio.run(catch_up_then_restart())
    finally:
        for n in nodes:
            n.stop()
    # (1) Replicas 0 and 1 vouch for the honest page: it is applied, up to the anchor.
    assert fresh.head == honest[0].head and fresh.root() == honest[0].root()
    assert fresh.meta(POSITION_KEY) == fresh.meta(position_at_key(3)) == encode_position(2, 1002)
    # (2) The liar's dissent, kept in a file naming it, with the honest
    # quorum's side as the one the notes support.
    files = {json.loads(p.read_text())["signed"]["signer"]: p for p in evidence.iterdir()}
    path = files[log_key(2).vkey]
    assert path.name.startswith(f"block-conflict-3-{key_id(2)}-")
    record = json.loads(path.read_text())
    assert (record["what"], record["served"]["peer"]) == (what, peers[1] if liar_first else peers[0])
    assert record["signed"]["note"] == read_block_note(lying, 3).note
    assert (record["quorum"]["supports"], record["quorum"]["signed_by"]) == ("served", [log_key(2).vkey])
    dissents = [r for r in caplog.records if getattr(r, "event", None) == "block_conflict" and r.__dict__["applied"]]
    (logged,) = dissents
    assert "CONFLICT" in logged.getMessage() and log_key(2).vkey in logged.getMessage()
    assert "is applied" in logged.getMessage() and logged.__dict__["evidence"] == str(path)
    if liar_first:
        # Asked first, the liar served its own page, which the honest quorum
        # outvoted: nothing of it applied, and that conflict kept as well.
        refused = json.loads(files[log_key(0).vkey].read_text())
        assert (refused["served"]["peer"], refused["quorum"]["supports"]) == (liar_address, "signed")
        assert [r.__dict__["applied"] for r in caplog.records if getattr(r, "event", None) == "block_conflict"] == [False, True]
    assert len(files) == status.block_conflicts == (2 if liar_first else 1)
    # (3) GetClusterStatus reports it, also after a restart.
    assert status.recent_block_conflicts[0].signer == log_key(2).vkey
    assert status.recent_block_conflicts[0].quorum_side == "served"
    assert restarted.block_conflicts == status.block_conflicts
    assert {(c.signer, c.evidence) for c in restarted.recent_block_conflicts} == {
        (c.signer, c.evidence) for c in status.recent_block_conflicts
    }


def test_a_page_vouched_for_by_the_serving_peer_alone_against_a_dissent_is_not_applied() -> None:
    # As before quorums decided: the serving peer's own note, against one
    # replica's dissent and one replica that is behind.
    for what in ("block hash", "position"):
        lying, fresh = liar(what), fresh_node()
        page = read_blocks(lying, 1, 0, 256, cosigned(lying, 3, 0, 1))
        with pytest.raises(BlockConflict) as conflict:
            verify_and_apply(fresh, page, POLICY, notes(3, lying, replica(0, HONEST), replica(1, HONEST[:2])))
        assert (conflict.value.what, conflict.value.signer) == (what, log_key(0).vkey)
        assert fresh.size == 0 and fresh.meta(POSITION_KEY) is None


def test_an_equivocating_replica_vouches_for_nothing() -> None:
    # Replica 2's key signs the honest block 3 behind one address and a
    # forged one behind another: with replica 0, two keys sign the served
    # block, but replica 2 counts for neither side, and one is short of two.
    served, fresh = replica(0, HONEST), fresh_node()
    page = read_blocks(served, 1, 0, 256, cosigned(served, 3, 0, 1))
    for what in ("block hash", "position"):
        fetched = notes(3, served, replica(2, HONEST), liar(what))
        with pytest.raises(BlockConflict) as conflict:
            verify_and_apply(fresh, page, POLICY, fetched)
        assert (conflict.value.what, conflict.value.signer) == (what, log_key(2).vkey)
        assert fresh.size == 0 and fresh.meta(POSITION_KEY) is None
        # Its evidence says so: replica 2 signed both sides, and neither has a quorum.
        record = conflict_evidence(
            ORIGIN, conflict.value, peer="peer-a:1", served_block=served.head,
            served_position=encode_position(2, 1002), notes=fetched, policy=POLICY, time=0,
        )  # fmt: skip
        quorum = record["quorum"]
        assert (quorum["served_by"], quorum["signed_by"]) == ([log_key(0).vkey, log_key(2).vkey], [log_key(2).vkey])
        assert (quorum["equivocating"], quorum["supports"]) == ([log_key(2).vkey], "neither")
    # With replica 1 vouching as well, the page is applied without replica 2.
    assert verify_and_apply(fresh, page, POLICY, fetched + notes(3, replica(1, HONEST))) == (2, 1002)
    assert fresh.head == served.head


def test_when_both_sides_have_a_quorum_nothing_is_applied(tmp_path: Path) -> None:
    # A policy whose quorum is one witness: the serving replica and the liar
    # each make a quorum alone, so the policy's assumption is broken and
    # nothing is decided.
    one = parse_policy(
        "".join(f"log {log_key(n).vkey}\n" for n in range(3)) + f"witness w0 {witness_key(0).vkey}\nquorum w0\n"
    )
    for what in ("block hash", "position"):
        honest, lying, fresh = replica(0, HONEST), liar(what), fresh_node()
        nodes = [
            peer_node(led, PeerServicer(led, collector=_FixedAnchor(cosigned(led, 3, 0)), policy=one))  # type: ignore[arg-type]
            for led in (honest, lying)
        ]
        kept = BlockConflicts(tmp_path / what)
        try:
            with ThreadPoolExecutor(1) as executor, pytest.raises(OrderingUnavailable):
                asyncio.run(catch_up(fresh, [n.target for n in nodes], one, executor, rounds=2, backoff=0.01, conflicts=kept))
        finally:
            for n in nodes:
                n.stop()
        assert fresh.size == 0 and fresh.meta(POSITION_KEY) is None
        assert kept.count == 2 and {c.quorum_side for c in kept.recent()} == {"both"}


def test_a_restarted_node_reports_the_conflicts_it_kept(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    position, fetched, malicious = position_conflict()
    args = {
        "peer": "peer-a:1", "served_block": malicious.head, "served_position": encode_position(2, 5002),
        "notes": fetched, "policy": POLICY,
    }  # fmt: skip
    # Two distinct conflicts kept by a first run, at times 100 and 200: the
    # position one, and a dissent that replica 0 signed against an honest block.
    honest = replica(1, HONEST)
    page = verify_page(fresh_node(), read_blocks(honest, 1, 0, 256, cosigned(honest, 3, 0, 1)), POLICY)
    vouching = confirm_page(fresh_node(), page, notes(3, honest, replica(2, HONEST), malicious), POLICY)
    (dissent,) = vouching.dissents
    clock = iter([100, 200])
    first = BlockConflicts(tmp_path, clock=lambda: next(clock))
    older = first.keep(ORIGIN, position, **args)  # type: ignore[arg-type]
    newer = first.keep(
        ORIGIN, dissent, **dict(args, peer="peer-b:2", served_position=encode_position(2, 1002))  # type: ignore[arg-type]
    )
    # What is not such evidence is not counted: another kind, junk, or the
    # record of another conflict padded far past the size of any evidence.
    (tmp_path / "block-conflict-9-x-0.json").write_text('{"kind": "fork", "version": 1}')
    (tmp_path / "block-conflict-9-y-0.json").write_text("not json")
    padded = json.loads(Path(older.evidence).read_text())
    padded.update(digest="0" * 64, pad="x" * (1 << 20))
    (tmp_path / "block-conflict-9-z-0.json").write_text(json.dumps(padded))
    with caplog.at_level("WARNING", logger="carbonledger.node"):
        restarted = BlockConflicts(tmp_path)
    assert sum("not block conflict evidence" in r.getMessage() for r in caplog.records) == 3
    # (1) Both counted, listed newest first, as met no time since the start.
    assert restarted.count == 2
    assert restarted.recent() == [replace(newer, times_seen=0), replace(older, times_seen=0)]
    status = cluster_pb2.ClusterStatus()
    replicator.fill_conflicts(status, restarted)
    assert status.block_conflicts == 2 and [c.evidence for c in status.recent_block_conflicts] == [
        newer.evidence, older.evidence
    ]
    # (2) Met again, a conflict counts again and finds its file.
    again = restarted.keep(ORIGIN, position, **args)  # type: ignore[arg-type]
    assert (again.evidence, again.times_seen, restarted.count) == (older.evidence, 1, 3)
    assert len(list(tmp_path.iterdir())) == 5
    # (3) The list stays bounded; the newest is the one first met last.
    assert BlockConflicts(tmp_path, recent=1).recent() == [replace(newer, times_seen=0)]
