"""Several nodes under faults, with real processes on loopback: 3 etcd members
(Debian's etcd-server) and 3 ``carbonledger serve`` nodes.

Every test is bounded in time (deadlines on every call and wait) and stops
what it started by pid.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from carbonledger.v1 import cluster_pb2, cluster_pb2_grpc

from client.sdk import LedgerClient
from ledger.block import block_hash, decode_block, encode_block
from ledger.checkpoint import Checkpoint, parse_checkpoint, sign_checkpoint
from ledger.errors import LedgerError
from ledger.keys import Signer
from ledger.leaf_index import clear_stored
from ledger.log import Ledger
from ledger.merkle import CompactRange, leaf_hash
from ledger.note import parse_note
from ledger.policy import parse_policy, verify_checkpoint_policy
from ledger.records.build import org_spec
from ledger.state import StateMachine
from ledger.storage import LmdbStore, Table, u64
from ledger.storage.tiles import TILE_BYTES, node_slot, tile_key
from ledger.tlog_proof import verify_tlog_proof
from ledger.tlog_tiles import verify_entry_from_tiles
from tests.cluster_fixtures import ORIGIN, EtcdCluster, NodeCluster
from tests.test_node_support import Net, key

pytestmark = pytest.mark.slow


def supplier(net: Net, n: int, tag: str) -> bytes:
    org = f"S{tag}{n}"
    return net.op("org.register", "AUTH", org_spec(org, f"{org} Co., Ltd.", ["supplier"], [key(org)]))


class Load:
    """Submitters in threads, one per target; each records what was acknowledged."""

    def __init__(self, targets: list[str], per_thread: int, tag: str) -> None:
        self.net = Net()
        self.acked: dict[int, bytes] = {}
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._run, args=(t, per_thread, f"{tag}{i}"), daemon=True)
            for i, t in enumerate(targets)
        ]

    def _run(self, target: str, n: int, tag: str) -> None:
        with LedgerClient(target, timeout=15) as client:
            for i in range(n):
                entry = supplier(self.net, i, tag)
                try:
                    receipt = client.submit(entry, timeout=15)
                except LedgerError as exc:
                    with self._lock:
                        self.errors.append(type(exc).__name__)
                    continue
                with self._lock:
                    self.acked[receipt.index] = entry

    def start(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def join(self, timeout: float = 120) -> None:
        for t in self.threads:
            t.join(timeout)
            assert not t.is_alive(), "a submitter did not finish"


def assert_all_present(cluster: NodeCluster, nodes: list[int], acked: dict[int, bytes]) -> None:
    for i in nodes:
        with LedgerClient(cluster.targets[i], timeout=15) as client:
            have = dict(client.entries(0, 0))
        for index, entry in acked.items():
            assert have.get(index) == entry, f"node {i} lacks acknowledged entry {index}"


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(tmp_path)
    try:
        yield cluster
    finally:
        cluster.stop()


def test_three_nodes_agree_and_a_killed_node_catches_up(tmp_path: Path, etcd: EtcdCluster) -> None:
    cluster = NodeCluster(tmp_path, etcd, tiles=[1])
    try:
        cluster.wait_converged([0, 1, 2], min_size=1, timeout=30)
        load = Load(cluster.targets, 40, "a").start()
        # SIGKILL node 2 mid-load; the others go on.
        deadline = time.monotonic() + 30
        while len(load.acked) < 15 and time.monotonic() < deadline:
            time.sleep(0.05)
        cluster.kill(2)
        size_at_kill = cluster.status(0).tree_size
        load.join()
        assert cluster.wait_converged([0, 1], timeout=60).tree_size > size_at_kill
        # It restarts and catches up from its last applied batch.
        cluster.start(2)
        top = cluster.wait_converged([0, 1, 2], timeout=60)
        assert top.tree_size >= 1 + len(load.acked)
        assert_all_present(cluster, [0, 1, 2], load.acked)
        # Peers' cosignatures: a tlog-proof from any node meets the 2-of-3 policy.
        index, entry = next(iter(load.acked.items()))
        deadline = time.monotonic() + 20
        with grpc.insecure_channel(cluster.targets[1]) as ch:
            while True:
                try:
                    proof = cluster_pb2_grpc.PeerStub(ch).GetCosignedTlogProof(
                        cluster_pb2.GetCosignedTlogProofRequest(index=index, min_cosignatures=2), timeout=10
                    )
                    break
                except grpc.RpcError as exc:
                    assert exc.code() == grpc.StatusCode.NOT_FOUND and time.monotonic() < deadline, exc
                    time.sleep(0.3)
        verify_tlog_proof(proof.proof, entry, parse_policy(cluster.policy_text))
        # Its tlog-tiles endpoint serves a checkpoint that meets the same
        # 2-of-3 policy, and the entry is proven from its tiles alone.
        base = cluster.tiles[1]

        def fetch(path: str) -> bytes:
            with urllib.request.urlopen(f"{base}/{path}", timeout=10) as resp:
                return bytes(resp.read())

        note = fetch("checkpoint").decode()
        verify_checkpoint_policy(note, parse_policy(cluster.policy_text))
        cp = parse_checkpoint(parse_note(note).text)
        assert cp.size > index
        assert verify_entry_from_tiles(fetch, cp.size, cp.root_hash, index) == entry
    finally:
        cluster.stop()
    # Identical blocks (so identical trees, times and state digests) everywhere.
    chains = []
    for d in cluster.dirs:
        signer = Signer.from_key((d / "node.key").read_text().strip())
        with Ledger.open(d / "ledger", signer=signer, machine=StateMachine()) as led:
            chains.append([block_hash(led.block(h)) for h in range(led.head.height + 1)])
    assert chains[0] == chains[1] == chains[2]


def test_etcd_member_failures(tmp_path: Path, etcd: EtcdCluster) -> None:
    cluster = NodeCluster(tmp_path, etcd)
    net = Net()
    acked: dict[int, bytes] = {}
    try:
        cluster.wait_converged([0, 1, 2], min_size=1, timeout=30)
        with LedgerClient(cluster.targets[0], timeout=15) as client:
            for i in range(5):
                e = supplier(net, i, "before")
                acked[client.submit(e).index] = e
            # One member down: writes continue.
            etcd.kill(0)
            for i in range(5):
                e = supplier(net, i, "one-down")
                acked[client.submit(e, timeout=20).index] = e
            # Two down: no quorum; writes fail with UNAVAILABLE, nothing acknowledged.
            etcd.kill(1)
            started = time.monotonic()
            with grpc.insecure_channel(cluster.targets[1]) as ch:
                from carbonledger.v1 import log_pb2, log_pb2_grpc

                with pytest.raises(grpc.RpcError) as failed:
                    log_pb2_grpc.LogStub(ch).Submit(log_pb2.SubmitRequest(envelope=supplier(net, 0, "no-quorum")), timeout=30)
            assert failed.value.code() == grpc.StatusCode.UNAVAILABLE, failed.value
            assert "etcd" in (failed.value.details() or "")
            assert time.monotonic() - started < 30
            # Reads still work, and every acknowledged entry is on the node
            # that acknowledged it (the others get it from etcd, below).
            assert_all_present(cluster, [0], acked)
            # Service resumes when the members come back.
            etcd.start(0)
            etcd.start(1)
            etcd.wait_healthy()
            deadline = time.monotonic() + 60
            while True:
                try:
                    e = supplier(net, 0, "after")
                    acked[client.submit(e, timeout=20).index] = e
                    break
                except LedgerError:
                    assert time.monotonic() < deadline, "writes did not resume"
                    time.sleep(0.5)
        cluster.wait_converged([0, 1, 2], min_size=len(acked) + 1, timeout=60)
        assert_all_present(cluster, [0, 1, 2], acked)
    finally:
        cluster.stop()


def rewrite_entry(node_dir: Path, index: int) -> None:
    """Flip one byte of entry ``index`` and rewrite the whole history so that
    the store is self-consistent again (tiles, blocks, re-signed checkpoints):
    what an operator rewriting history would do."""
    signer = Signer.from_key((node_dir / "node.key").read_text().strip())
    store = LmdbStore(node_dir / "ledger")

    def work(txn):  # type: ignore[no-untyped-def]
        entries = [bytes(v) for _, v in txn.scan(Table.ENTRIES, u64(0))]
        old = entries[index]
        at = old.index(b'"') + 1
        entries[index] = old[:at] + bytes([old[at] ^ 1]) + old[at + 1 :]
        txn.put(Table.ENTRIES, u64(index), entries[index])
        clear_stored(txn)  # the next open rebuilds the leaf index from the tiles
        blocks = [decode_block(bytes(v)) for _, v in txn.scan(Table.BLOCKS, u64(0))]
        roots = {0: blocks[0].root}
        tiles: dict[tuple[int, int], bytearray] = {}
        edge, nodes = CompactRange(), []  # type: ignore[var-annotated]
        ends = {b.tree_size for b in blocks}
        for e in entries:
            nodes.clear()
            edge.append(leaf_hash(e), nodes)
            for level, i, h in nodes:
                tile_level, tile_index, offset = node_slot(level, i)
                buf = tiles.setdefault((tile_level, tile_index), bytearray(TILE_BYTES))
                buf[offset : offset + 32] = h
            if edge.size in ends:
                roots[edge.size] = edge.root()
        for (tile_level, tile_index), buf in tiles.items():
            txn.put(Table.TILES, tile_key(tile_level, tile_index), bytes(buf))
        previous = None
        for b in blocks:
            if b.height > 0:
                b = replace(b, previous_hash=previous, root=roots[b.tree_size])
                txn.put(Table.BLOCKS, u64(b.height), encode_block(b))
                note = sign_checkpoint(Checkpoint(signer.name, b.tree_size, b.root), signer)
                txn.put(Table.CHECKPOINTS, u64(b.tree_size), note.encode())
            previous = block_hash(b)

    store.run_write(work)
    store.close()


def test_altered_store_is_refused_by_its_peers(tmp_path: Path, etcd: EtcdCluster) -> None:
    cluster = NodeCluster(tmp_path, etcd)
    net = Net()
    try:
        cluster.wait_converged([0, 1, 2], min_size=1, timeout=30)
        with LedgerClient(cluster.targets[0], timeout=15) as client:
            for i in range(6):
                client.submit(supplier(net, i, "pre"))
        cluster.wait_converged([0, 1, 2], min_size=7, timeout=30)
        cluster.kill(2, 15)
        rewrite_entry(cluster.dirs[2], 3)
        cluster.start(2)
        with LedgerClient(cluster.targets[0], timeout=15) as client:
            for i in range(3):
                client.submit(supplier(net, i, "post"))
        # Node 2 applied the same batches but its tree differs from entry 3 on.
        deadline = time.monotonic() + 30
        while cluster.status(2).tree_size < 10 and time.monotonic() < deadline:
            time.sleep(0.2)
        with LedgerClient(cluster.targets[2], timeout=15) as client:
            note = client.checkpoint()
        with grpc.insecure_channel(cluster.targets[0]) as ch:
            answer = cluster_pb2_grpc.PeerStub(ch).AddCheckpoint(
                cluster_pb2.AddCheckpointRequest(old_size=0, checkpoint=note), timeout=10
            )
        assert answer.WhichOneof("result") == "refusal"
        assert answer.refusal.kind == "fork" and answer.refusal.http_status == 409
        assert "inconsistent checkpoint" in answer.refusal.reason and "size 10" in answer.refusal.reason
        # Node 2 hears the same refusal from both peers, and they keep the evidence.
        deadline = time.monotonic() + 20
        while len(cluster.status(2).refusals) < 2 and time.monotonic() < deadline:
            time.sleep(0.3)
        refusals = cluster.status(2).refusals
        assert {r.kind for r in refusals} == {"fork"} and len(refusals) == 2
        for d in cluster.dirs[:2]:
            evidence = [json.loads(p.read_text()) for p in (d / "witness" / "evidence").glob("*.json")]
            assert any(e["kind"] == "fork" and e["submitted_checkpoint"].startswith(ORIGIN) for e in evidence)
        # The honest nodes still agree with each other and cosign each other.
        cluster.wait_converged([0, 1], min_size=10, timeout=30)
        assert cluster.status(0).root_hash != cluster.status(2).root_hash
    finally:
        cluster.stop()


def etcd_log_keys(etcd: EtcdCluster) -> list[str]:
    return etcd.keys(f"/carbonledger/{ORIGIN}/log/")


def test_late_node_catches_up_from_a_peer_after_compaction(tmp_path: Path, etcd: EtcdCluster) -> None:
    cluster = NodeCluster(tmp_path, etcd, lease_ttl=3, compact_interval=0.5, start=[0, 1])
    net = Net()
    try:
        cluster.wait_converged([0, 1], min_size=1, timeout=30)
        with LedgerClient(cluster.targets[0], timeout=15) as client:
            for i in range(30):
                client.submit(supplier(net, i, "early"))
        cluster.wait_converged([0, 1], min_size=31, timeout=30)
        # Nodes 0 and 1 delete what both applied and compact: batch 0 is gone.
        deadline = time.monotonic() + 20
        while any(k.endswith("/" + "0" * 20) for k in etcd_log_keys(etcd)) and time.monotonic() < deadline:
            time.sleep(0.3)
        keys = etcd_log_keys(etcd)
        assert keys and not any(k.endswith("/" + "0" * 20) for k in keys), keys
        cluster.start(2)
        top = cluster.wait_converged([0, 1, 2], min_size=31, timeout=60)
        status = cluster.status(2)
        assert status.blocks_from_peers > 0 and status.root_hash == top.root_hash
        # And it follows etcd from there.
        with LedgerClient(cluster.targets[2], timeout=15) as client:
            receipt = client.submit(supplier(net, 0, "late"))
        cluster.wait_converged([0, 1, 2], min_size=receipt.index + 1, timeout=30)
    finally:
        cluster.stop()


def test_genesis_is_shared(tmp_path: Path) -> None:
    """Block 0 is the same on replicas created at different times."""
    a = Ledger.memory(signer=key("x"), created_time=0)
    time.sleep(1.1)
    b = Ledger.memory(signer=key("y"), created_time=0)
    assert block_hash(a.block(0)) == block_hash(b.block(0))
    assert hashlib.sha256(b"").digest() == a.root()
