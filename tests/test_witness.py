"""The witness: tlog-witness checks and outcomes, persisted state and
evidence, the HTTP add-checkpoint endpoint, and peers' cosignatures collected
into checkpoints and tlog-proofs that a k-of-n tlog-policy verifies."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import grpc
import pytest
from carbonledger.v1 import cluster_pb2, cluster_pb2_grpc, reconcile_pb2

from client.reconcile_evidence import AnswerNotVerified, verify_answer_checkpoint
from ledger.checkpoint import parse_checkpoint, verify_cosignature
from ledger.errors import QuorumNotMet
from ledger.keys import Signer, Verifier
from ledger.log import Ledger, Receipt
from ledger.note import parse_note
from ledger.policy import parse_policy, verify_checkpoint_policy
from ledger.state import StateMachine
from ledger.tlog_proof import verify_tlog_proof
from node.errors import CannotListen
from node.replication.peer import PeerServicer
from node.servicers import ReconcileServicer
from node.witness import (
    Witness,
    WitnessRefused,
    format_add_checkpoint,
    merge_cosignatures,
    parse_add_checkpoint,
)
from node.witness_collector import CosignCollector
from node.witness_http import WitnessHttpServer
from tests.test_node_support import Net, RunningNode

ORIGIN = "cluster.example/log"
OUTSIDE = "outside.example/log"


def seed_key(name: str, n: int = 0, *, cosigner: bool = False) -> Signer:
    return Signer.from_seed(name, hashlib.sha256(f"{name}/{n}".encode()).digest(), cosigner=cosigner)


def replica(n: int, entries: list[bytes]) -> Ledger:
    """Replica ``n`` of the cluster log: same origin, its own key."""
    led = Ledger.memory(signer=seed_key(ORIGIN, n), created_time=0)
    for e in entries:
        led.append([e])
    return led


ENTRIES = [f"entry {i}".encode() for i in range(20)]


# -- the outside-log witness (c2sp.org/tlog-witness semantics) --------------


def log_key(log: Ledger) -> Verifier:
    return Verifier.from_vkey(log.vkey)


def outside_log() -> Ledger:
    return Ledger.memory(signer=seed_key(OUTSIDE))


def test_outside_log_first_then_consistent_then_conflict(tmp_path: Path) -> None:
    log = outside_log()
    log.append(ENTRIES[:5])
    w = Witness(seed_key("w1", cosigner=True), tmp_path, [log_key(log)])
    line = w.add_checkpoint(log.checkpoint(), 0, [])
    verify_cosignature(merge_cosignatures(log.checkpoint(), line), w.verifier)
    assert w.latest(OUTSIDE) == (5, log.root())
    log.append(ENTRIES[5:12])
    # The caller claims the witness knows nothing: 409 with the known size.
    with pytest.raises(WitnessRefused) as refused:
        w.add_checkpoint(log.checkpoint(), 0, [])
    assert (refused.value.kind, refused.value.http_status, refused.value.known_size) == ("conflict", 409, 5)
    w.add_checkpoint(log.checkpoint(), 5, log.consistency_proof(5, 12))
    assert w.latest(OUTSIDE) == (12, log.root())
    # Same size again: idempotent.
    w.add_checkpoint(log.checkpoint(), 12, [])
    # The state survives a restart.
    again = Witness(seed_key("w1", cosigner=True), tmp_path, [log_key(log)])
    assert again.latest(OUTSIDE) == (12, log.root())


def test_outside_log_refusals(tmp_path: Path) -> None:
    log = outside_log()
    log.append(ENTRIES[:6])
    w = Witness(seed_key("w1", cosigner=True), tmp_path, [log_key(log)])
    w.add_checkpoint(log.checkpoint(), 0, [])
    log.append(ENTRIES[6:9])
    proof = log.consistency_proof(6, 9)
    # 422: a proof that does not verify; the evidence is kept.
    bad = [proof[0][:-1] + bytes([proof[0][-1] ^ 1]), *proof[1:]]
    with pytest.raises(WitnessRefused) as refused:
        w.add_checkpoint(log.checkpoint(), 6, bad)
    assert (refused.value.kind, refused.value.http_status) == ("bad_proof", 422)
    assert refused.value.evidence and json.loads(Path(refused.value.evidence).read_text())["size"] == 9
    # 404: unknown origin.
    other = Ledger.memory(signer=seed_key("unknown.example/log"))
    other.append([b"x"])
    with pytest.raises(WitnessRefused) as refused:
        w.add_checkpoint(other.checkpoint(), 0, [])
    assert refused.value.http_status == 404
    # 403: the right origin signed by a key the witness does not trust.
    impostor = Ledger.memory(signer=seed_key(OUTSIDE, 7))
    impostor.append(ENTRIES[:9])
    with pytest.raises(WitnessRefused) as refused:
        w.add_checkpoint(impostor.checkpoint(), 6, proof)
    assert refused.value.http_status == 403
    # 400: old size above the checkpoint's.
    with pytest.raises(WitnessRefused) as refused:
        w.add_checkpoint(log.checkpoint(), 10, [])
    assert refused.value.http_status == 400
    # A same-size checkpoint with another root (a fork) is refused, with evidence.
    forked = Ledger.memory(signer=seed_key(OUTSIDE))
    forked.append([*ENTRIES[:5], b"rewritten"])
    with pytest.raises(WitnessRefused) as refused:
        w.add_checkpoint(forked.checkpoint(), 6, [])
    assert refused.value.kind == "fork" and "this witness cosigned root" in refused.value.reason
    assert len(w.evidence_files()) == 2
    # Nothing refused changed what the witness vouches for.
    assert w.latest(OUTSIDE) == (6, log.root(6))


def test_add_checkpoint_body_round_trip() -> None:
    log = outside_log()
    log.append(ENTRIES[:7])
    body = format_add_checkpoint(3, log.consistency_proof(3, 7), log.checkpoint())
    assert parse_add_checkpoint(body) == (3, log.consistency_proof(3, 7), log.checkpoint())
    from ledger.errors import MalformedError

    for broken in (b"old 03\n\n" + log.checkpoint().encode(), b"new 3\n\nx", b"old 3\n" + b"x" * 70_000):
        with pytest.raises(MalformedError):
            parse_add_checkpoint(broken)


# -- the cluster witness: it holds the tree ----------------------------------


def test_cluster_witness_cosigns_matching_roots_and_refuses_a_fork(tmp_path: Path) -> None:
    a, b = replica(1, ENTRIES), replica(2, ENTRIES[:15])
    trusted = [log_key(a), seed_key(ORIGIN, 3).verifier()]
    w = Witness(seed_key("w2", cosigner=True), tmp_path, trusted, local=b)
    # A size this witness has applied: cosigned, whatever the old size.
    line = w.add_checkpoint(a.checkpoint(10), 0, [])
    assert parse_note(merge_cosignatures(a.checkpoint(10), line)).signatures[-1].name == "w2"
    # A size it has not reached yet: retry later.
    with pytest.raises(WitnessRefused) as refused:
        w.add_checkpoint(a.checkpoint(), 10, a.consistency_proof(10, 20))
    assert (refused.value.kind, refused.value.http_status) == ("not_yet", 503)
    # A replica whose entry 3 was rewritten: its root differs; the refusal names
    # the size and both roots, and the evidence holds both checkpoints.
    tampered = replica(3, [*ENTRIES[:3], b"entry 3 altered", *ENTRIES[4:12]])
    with pytest.raises(WitnessRefused) as refused:
        w.add_checkpoint(tampered.checkpoint(), 10, tampered.consistency_proof(10, 12))
    exc = refused.value
    assert exc.kind == "fork" and "inconsistent checkpoint" in exc.reason
    assert tampered.root().hex() in exc.reason and b.root(12).hex() in exc.reason
    evidence = json.loads(Path(exc.evidence or "").read_text())
    assert evidence["submitted_checkpoint"] == tampered.checkpoint()
    assert evidence["witness_view"] == b.checkpoint(12)


# -- HTTP add-checkpoint ----------------------------------------------------


def test_http_add_checkpoint(tmp_path: Path) -> None:
    log = outside_log()
    log.append(ENTRIES[:4])
    w = Witness(seed_key("w1", cosigner=True), tmp_path, [log_key(log)])
    loop = asyncio.new_event_loop()
    server = WitnessHttpServer(w, "127.0.0.1", 0)
    loop.run_until_complete(server.start())
    url = f"http://127.0.0.1:{server.port}/add-checkpoint"

    def post(body: bytes) -> tuple[int, str, str]:
        req = urllib.request.Request(url, data=body, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read().decode(), resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(), err.headers.get("Content-Type", "")

    async def call(body: bytes) -> tuple[int, str, str]:
        return await asyncio.to_thread(post, body)

    try:
        status, text, _ = loop.run_until_complete(call(format_add_checkpoint(0, [], log.checkpoint())))
        assert status == 200 and text.startswith("\u2014 w1 ")
        verify_cosignature(merge_cosignatures(log.checkpoint(), text), w.verifier)
        log.append(ENTRIES[4:8])
        status, text, ctype = loop.run_until_complete(call(format_add_checkpoint(0, [], log.checkpoint())))
        assert (status, text, ctype) == (409, "4\n", "text/x.tlog.size")
        proof = log.consistency_proof(4, 8)
        status, _, _ = loop.run_until_complete(call(format_add_checkpoint(4, [bytes(32)] + proof[1:], log.checkpoint())))
        assert status == 422
        status, _, _ = loop.run_until_complete(call(b"old x\n\n"))
        assert status == 400
        status, text, _ = loop.run_until_complete(call(format_add_checkpoint(4, proof, log.checkpoint())))
        assert status == 200
    finally:
        loop.run_until_complete(server.stop())
        loop.close()


def test_http_reads_a_body_that_arrives_in_pieces(tmp_path: Path) -> None:
    log = outside_log()
    log.append(ENTRIES[:4])
    w = Witness(seed_key("w1", cosigner=True), tmp_path, [log_key(log)])
    body = format_add_checkpoint(0, [], log.checkpoint())
    head = f"POST /add-checkpoint HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"

    def post_in_two_segments(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(head.encode() + body[:20])
            time.sleep(0.3)  # the server reads what has arrived: half a body
            sock.sendall(body[20:])
            reply = b""
            while chunk := sock.recv(4096):
                reply += chunk
        return reply

    async def run() -> bytes:
        server = WitnessHttpServer(w, "127.0.0.1", 0)
        await server.start()
        try:
            return await asyncio.to_thread(post_in_two_segments, server.port)
        finally:
            await server.stop()

    reply = asyncio.run(run())
    assert reply.startswith(b"HTTP/1.1 200"), reply
    assert w.latest(log.origin) == (4, log.root())


def test_http_on_a_taken_port_is_refused_with_the_address(tmp_path: Path) -> None:
    w = Witness(seed_key("w1", cosigner=True), tmp_path, [])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = WitnessHttpServer(w, "127.0.0.1", port)
        with pytest.raises(CannotListen, match=f"the witness on 127.0.0.1:{port}: Address already in use"):
            asyncio.run(server.start())


# -- cosignatures collected from peers, verified by a k-of-n policy ---------


def three_replicas(
    tmp_path: Path,
    servicers: Sequence[type[PeerServicer]] = (PeerServicer,) * 3,
    ledgers: Sequence[Ledger] | None = None,
) -> tuple[list[Ledger], list[Signer], list[RunningNode]]:
    """Three replicas (of ENTRIES unless ``ledgers`` are given), each
    running a Peer service (of the given type) with its own witness:
    (ledgers, witness keys, nodes)."""
    ledgers = list(ledgers) if ledgers is not None else [replica(n, ENTRIES) for n in (1, 2, 3)]
    wkeys = [seed_key(f"witness-{n}", cosigner=True) for n in (1, 2, 3)]
    logs = [log_key(led) for led in ledgers]
    nodes: list[RunningNode] = []
    for n, (led, servicer) in enumerate(zip(ledgers, servicers)):
        witness = Witness(wkeys[n], tmp_path / f"w{n}", logs, local=led)

        def register(server: grpc.aio.Server, committer: object, witness: Witness = witness, led: Ledger = led, servicer: type[PeerServicer] = servicer) -> list[str]:
            cluster_pb2_grpc.add_PeerServicer_to_server(servicer(led, witness=witness), server)
            return ["carbonledger.v1.Peer"]

        nodes.append(RunningNode(led, register=register))
    return ledgers, wkeys, nodes


def test_peers_cosign_and_a_two_of_three_policy_verifies(tmp_path: Path) -> None:
    ledgers, wkeys, nodes = three_replicas(tmp_path)
    try:
        collector = CosignCollector(ledgers[0], [n.target for n in nodes[1:]], [k.verifier() for k in wkeys])
        nodes[0].run(collector.collect_once())
        size, note, names = collector.best(2) or (0, "", [])
        assert size == 20 and sorted(names) == ["witness-2", "witness-3"]
        policy_text = "".join(f"log {led.vkey}\n" for led in ledgers)
        policy_text += "".join(f"witness w{n} {k.vkey}\n" for n, k in enumerate(wkeys, 1))
        verify_checkpoint_policy(note, parse_policy(policy_text + "group g 2 w1 w2 w3\nquorum g\n"))
        with pytest.raises(QuorumNotMet):
            verify_checkpoint_policy(note, parse_policy(policy_text + "group g 3 w1 w2 w3\nquorum g\n"))
        # The node serves a tlog-proof whose checkpoint carries the cosignatures.
        servicer = PeerServicer(ledgers[0], collector=collector)
        req = cluster_pb2.GetCosignedTlogProofRequest(index=7, min_cosignatures=2)
        proof = nodes[0].run(servicer.GetCosignedTlogProof(req, None))  # type: ignore[arg-type]
        verify_tlog_proof(proof.proof, ENTRIES[7], parse_policy(policy_text + "group g 2 w1 w2 w3\nquorum g\n"))
        nodes[0].run(collector.stop())
    finally:
        for node in nodes:
            node.stop()


def test_a_reconciliation_carries_the_cosignatures_of_its_own_size(tmp_path: Path) -> None:
    # An exchange checks a reconciliation against the cluster's 2-of-3
    # policy. Its answer is at one exact size, which the checkpoints the
    # collector gathers (at whatever size was latest) seldom match, so that
    # size is cosigned when asked for, older sizes too.
    net = Net()
    entries = [*net.setup(), net.gec_project(), net.gec_issue(), net.transfer("gec", "STEEL", 0, 50, "EXCH")]
    ledgers = []
    for n in (1, 2, 3):
        led = Ledger.memory(signer=seed_key(ORIGIN, n), machine=StateMachine(), created_time=0)
        for e in entries:
            assert isinstance(led.submit([e])[0], Receipt)
        ledgers.append(led)
    ledgers, wkeys, nodes = three_replicas(tmp_path, ledgers=ledgers)
    policy_text = "".join(f"log {led.vkey}\n" for led in ledgers)
    policy_text += "".join(f"witness w{n} {k.vkey}\n" for n, k in enumerate(wkeys, 1))
    policy = parse_policy(policy_text + "group g 2 w1 w2 w3\nquorum g\n")
    rows = [reconcile_pb2.BookRow(account="EXCH", kind="gec", batch="B1", start=0, end=60)]
    try:
        collector = CosignCollector(ledgers[0], [n.target for n in nodes[1:]], [k.verifier() for k in wkeys])
        nodes[0].run(collector.collect_once())  # the latest size, as every round
        cosigned = ReconcileServicer(ledgers[0], collector.cosigned_note)
        plain = ReconcileServicer(ledgers[0])
        for size in (0, len(entries) - 1):
            request = reconcile_pb2.ReconcileRequest(rows=rows, tree_size=size)
            answer = nodes[0].run(cosigned.Reconcile(request, None))  # type: ignore[arg-type]
            assert answer.tree_size == (size or len(entries)) and len(answer.mismatches) == 1
            cp = verify_answer_checkpoint(answer.checkpoint, answer.tree_size, policy, asked_size=size)
            assert cp.size == answer.tree_size
            # The node's own checkpoint alone does not meet the policy.
            with pytest.raises(AnswerNotVerified, match="checkpoint"):
                alone = nodes[0].run(plain.Reconcile(request, None))  # type: ignore[arg-type]
                verify_answer_checkpoint(alone.checkpoint, alone.tree_size, policy, asked_size=size)
        nodes[0].run(collector.stop())
    finally:
        for node in nodes:
            node.stop()


def test_a_size_cosigned_short_is_asked_again_not_kept_short(tmp_path: Path) -> None:
    # A replica behind the answer's size cannot cosign it yet (not_yet). The
    # note is then short of its cosignature, which README tells an exchange
    # to retry for: once the replica has caught up, the same size must be
    # asked again, not served short from what was kept, whether the short
    # note came from a collector round or from an earlier answer.
    ledgers = [replica(1, ENTRIES), replica(2, ENTRIES), replica(3, ENTRIES[:10])]
    ledgers, wkeys, nodes = three_replicas(tmp_path, ledgers=ledgers)
    try:
        collector = CosignCollector(ledgers[0], [n.target for n in nodes[1:]], [k.verifier() for k in wkeys])
        nodes[0].run(collector.collect_once())  # size 20, while replica 3 holds 10
        for size in (20, 15):
            short = nodes[0].run(collector.cosigned_note(size))
            assert collector._cosigners(short) == ["witness-2"]
        for e in ENTRIES[10:]:
            ledgers[2].append([e])
        for size in (20, 15):
            note = nodes[0].run(collector.cosigned_note(size))
            assert sorted(collector._cosigners(note)) == ["witness-2", "witness-3"]
            assert parse_checkpoint(parse_note(note).text).size == size
        nodes[0].run(collector.stop())
    finally:
        for node in nodes:
            node.stop()


def test_a_size_committed_but_not_yet_published_is_cosigned_not_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A reconciliation takes its size from a read transaction, which may
    # see a commit the ledger has not yet published as its head
    # (Reconciler.checkpoint reads the store for that reason). Its cosigned
    # checkpoint must be read the same way, not refused as past the log.
    ledgers, wkeys, nodes = three_replicas(tmp_path)
    try:
        before = ledgers[0]._head
        ledgers[0].append([b"one more"])
        monkeypatch.setattr(ledgers[0], "_head", before)  # committed, not yet published
        assert ledgers[0].size == len(ENTRIES)
        collector = CosignCollector(ledgers[0], [n.target for n in nodes[1:]], [k.verifier() for k in wkeys])
        note = nodes[0].run(collector.cosigned_note(len(ENTRIES) + 1))
        assert parse_checkpoint(parse_note(note).text).size == len(ENTRIES) + 1
        nodes[0].run(collector.stop())
    finally:
        for node in nodes:
            node.stop()


def test_the_collector_refuses_a_peer_answer_with_more_than_its_own_line(tmp_path: Path) -> None:
    # A peer answers for its own witness only. One that adds a line in
    # another witness's name (right name and key ID, forged signature) must
    # not have it merged: it would replace that witness's real cosignature
    # and make every note the node serves fail verification.
    w2 = seed_key("witness-2", cosigner=True).verifier()
    forged = f"\u2014 {w2.name} " + base64.b64encode(w2.keyid + (1).to_bytes(8, "big") + bytes(64)).decode() + "\n"

    class ForgingPeer(PeerServicer):
        async def AddCheckpoint(self, request, context):  # type: ignore[no-untyped-def]
            response = await super().AddCheckpoint(request, context)
            return cluster_pb2.AddCheckpointResponse(cosignature=response.cosignature + forged)

    class RepeatingPeer(PeerServicer):
        # Its own good line twice: one line is what a peer answers.
        async def AddCheckpoint(self, request, context):  # type: ignore[no-untyped-def]
            response = await super().AddCheckpoint(request, context)
            return cluster_pb2.AddCheckpointResponse(cosignature=response.cosignature * 2)

    ledgers, wkeys, nodes = three_replicas(tmp_path, (PeerServicer, PeerServicer, ForgingPeer))
    ledgers2, _, nodes2 = three_replicas(tmp_path / "again", (PeerServicer, PeerServicer, RepeatingPeer))
    try:
        again = CosignCollector(ledgers2[0], [n.target for n in nodes2[1:]], [k.verifier() for k in wkeys])
        nodes2[0].run(again.collect_once())
        assert [b[2] for b in [again.best(1)] if b] == [["witness-2"]] and again.best(2) is None
        nodes2[0].run(again.stop())
        collector = CosignCollector(ledgers[0], [n.target for n in nodes[1:]], [k.verifier() for k in wkeys])
        nodes[0].run(collector.collect_once())
        assert collector.best(2) is None
        size, note, names = collector.best(1) or (0, "", [])
        assert size == 20 and names == ["witness-2"]
        policy_text = "".join(f"log {led.vkey}\n" for led in ledgers) + f"witness w2 {w2.vkey}\nquorum w2\n"
        verify_checkpoint_policy(note, parse_policy(policy_text))
        nodes[0].run(collector.stop())
    finally:
        for node in nodes + nodes2:
            node.stop()


def test_cluster_witness_whose_tree_shrank_cosigns_nothing_until_it_holds_what_it_cosigned(tmp_path: Path) -> None:
    # The node cosigned size 10, then its ledger was replaced by a shorter,
    # different history (say a restored backup). A checkpoint of that history
    # must not be cosigned: nothing shows it extends the size 10 cosigned.
    honest = replica(1, ENTRIES[:10])
    w = Witness(seed_key("w2", cosigner=True), tmp_path, [log_key(honest)], local=honest)
    w.add_checkpoint(honest.checkpoint(), 0, [])
    other = replica(1, [*ENTRIES[:5], b"another entry 5", *ENTRIES[6:8]])
    # The node restarts on the replaced ledger, with the same witness directory.
    w = Witness(seed_key("w2", cosigner=True), tmp_path, [log_key(honest)], local=other)
    with pytest.raises(WitnessRefused) as refused:
        w.add_checkpoint(other.checkpoint(), 0, [])
    assert refused.value.kind == "not_yet" and "cosigned size 10" in refused.value.reason
    assert w.latest(ORIGIN) == (10, honest.root())
