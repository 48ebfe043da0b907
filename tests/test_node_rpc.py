"""Every RPC of an in-process node on port 0, through the SDK and raw stubs."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from carbonledger.v1 import log_pb2, log_pb2_grpc, query_pb2, query_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from client.sdk import BookRow, LedgerClient
from ledger.envelope import parse_envelope
from ledger.errors import MalformedError
from ledger.merkle import leaf_hash
from ledger.merkle.verify import verify_consistency, verify_inclusion
from ledger.tlog_proof import parse_tlog_proof
from node.events import KINDS
from tests.test_node_support import Net, RunningNode, open_ledger, pf_uuid


@pytest.fixture
def node(tmp_path: Path) -> Iterator[RunningNode]:
    led = open_ledger(tmp_path / "ledger")
    running = RunningNode(led, metrics_port=0)
    yield running
    running.stop()
    led.close()


@pytest.fixture
def client(node: RunningNode) -> Iterator[LedgerClient]:
    with LedgerClient(node.target, timeout=10) as c:
        yield c


@pytest.fixture
def world(client: LedgerClient) -> Net:
    """Orgs; STEEL holds GEC [0, 100) of batch B1; EXCH got [0, 50) of it."""
    net = Net()
    for e in [*net.setup(), net.gec_project(), net.gec_issue()]:
        client.submit(e)
    return net


def test_submit_answers_index_op_and_events(client: LedgerClient) -> None:
    net = Net()
    first = client.submit(net.genesis())
    assert (first.index, first.duplicate, first.op, first.tree_size) == (0, False, "genesis", 1)
    again = client.submit(net.genesis())
    assert (again.index, again.duplicate) == (0, True)
    reg = client.submit(net.register("STEEL"))
    assert reg.index == 1 and [e.kind for e in reg.events] == ["org.registered"]


def test_submit_batch_reports_each_envelope(client: LedgerClient) -> None:
    from ledger.errors import MalformedError, PermissionDenied

    net = Net()
    bad_signer = net.op("org.register", "AUTH", {"id": "X", "name": "X", "roles": ["supplier"], "keys": [net.keys["VER"].vkey]}, signer=net.keys["VER"])
    results = client.submit_batch([net.genesis(), net.register("STEEL"), b"{}", bad_signer, net.genesis()])
    assert [getattr(r, "index", None) for r in results] == [0, 1, None, None, 0]
    assert isinstance(results[2], MalformedError)
    assert isinstance(results[3], PermissionDenied) and results[3].rule == "not_signed_by_org"
    assert results[4].duplicate  # type: ignore[union-attr]


def test_entries_checkpoints_and_proofs(client: LedgerClient, world: Net, node: RunningNode) -> None:
    size = node.ledger.size
    assert client.entry(3) == node.ledger.entry(3)
    listed = list(client.entries(page_size=3))
    assert [i for i, _ in listed] == list(range(size))
    assert [d for _, d in listed] == [node.ledger.entry(i) for i in range(size)]
    assert [i for i, _ in client.entries(2, 5, page_size=2)] == [2, 3, 4]
    note = client.checkpoint()
    assert note == node.ledger.checkpoint()
    assert client.checkpoint(3) == node.ledger.checkpoint(3)
    proof = client.inclusion_proof(4, size)
    assert proof.checkpoint == note and list(proof.hashes) == node.ledger.inclusion_proof(4, size)
    verify_inclusion(leaf_hash(node.ledger.entry(4)), 4, size, list(proof.hashes), node.ledger.root())
    cons = client.consistency_proof(3)
    assert cons.second_size == size
    verify_consistency(3, size, list(cons.hashes), node.ledger.root(3), node.ledger.root())
    text = client.tlog_proof(4)
    assert text == node.ledger.tlog_proof(4)
    assert parse_tlog_proof(text).index == 4


def test_state_queries(client: LedgerClient, world: Net, node: RunningNode) -> None:
    steel = client.org("STEEL")
    assert steel.roles == ["supplier"] and steel.keys[0].vkey == world.keys["STEEL"].vkey
    assert [o.id for o in client.orgs(page_size=2)] == sorted(o for o in ["AUTH", "GECI", "VER", "STEEL", "PARTS", "EXCH"])
    assert [o.id for o in client.orgs("supplier")] == ["PARTS", "STEEL"]
    t = client.submit(world.transfer("gec", "STEEL", 0, 50, "EXCH"))
    r = client.submit(world.retire("STEEL", 60, 70))
    steel_holdings = [(h.kind, h.batch, h.start, h.end, h.status) for h in client.holdings("STEEL", page_size=1)]
    assert steel_holdings == [("gec", "B1", 50, 60, "held"), ("gec", "B1", 60, 70, "retired"), ("gec", "B1", 70, 100, "held")]
    assert [(h.start, h.end) for h in client.holdings("EXCH")] == [(0, 50)]
    history = list(client.unit_history("gec", 0, 100, page_size=1))
    assert [(e.op, e.index) for e in history] == [("issue", 7), ("transfer", t.index), ("retire", r.index)]
    assert history[1].detail["to"] == "EXCH"
    unit = client.unit("gec", 65)
    assert unit.owner == "STEEL" and unit.status == "retired" and unit.retirement.index == r.index
    ret = client.retirement("gec", 61)
    assert (ret.by, ret.start, ret.end, ret.index) == ("STEEL", 60, 70, r.index)
    batch = client.batch("gec", "B1")
    assert (batch.start, batch.end, batch.issued_to) == (0, 100, "STEEL")
    # Footprints: publish, list by owner, fetch.
    client.submit(world.publish("STEEL", "steel", "1.5"))
    client.submit(world.publish("STEEL", "rebar", "2.5"))
    fp = client.footprint(pf_uuid("steel"))
    assert (fp.owner, fp.status, fp.pcf, fp.stale) == ("STEEL", "Active", "1.5", False)
    assert list(fp.versions) == [pf_uuid("steel")]
    client.submit(world.publish("STEEL", "steel-v2", "1.4", preceding=["steel"]))
    assert list(client.footprint(pf_uuid("steel")).versions) == [pf_uuid("steel"), pf_uuid("steel-v2")]
    listed = [f.id for f in client.footprints("STEEL", page_size=1)]
    assert sorted(listed) == sorted([pf_uuid("steel"), pf_uuid("steel-v2"), pf_uuid("rebar")]) and len(listed) == 3


def test_a_footprint_past_the_staleness_walk_is_answered_and_listed(
    client: LedgerClient, world: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ledger.state import footprints

    monkeypatch.setattr(footprints, "MAX_UPSTREAM_WALK", 1)  # the node runs in this process
    kg = [{"quantity": "1", "unit": "kilogram"}]
    client.submit(world.publish("STEEL", "steel", "1.5"))
    client.submit(world.publish("PARTS", "bracket", "4", components=[{"pfId": pf_uuid("steel"), **kg[0]}]))
    client.submit(world.publish("PARTS", "hinge", "5", components=[{"pfId": pf_uuid("bracket"), **kg[0]}]))
    hinge = client.footprint(pf_uuid("hinge"))
    assert (hinge.stale, hinge.stale_incomplete) == (False, True)
    assert not client.footprint(pf_uuid("bracket")).stale_incomplete
    listed = {f.id: f.stale_incomplete for f in client.footprints("PARTS")}
    assert listed == {pf_uuid("bracket"): False, pf_uuid("hinge"): True}


def test_a_page_of_footprints_ends_early_once_its_staleness_walks_read_enough(
    client: LedgerClient, world: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each footprint's staleness walk reads its upstream graph; a page of
    # many deep footprints would hold a read thread for minutes. The page
    # ends early, with a token, and paging still lists every footprint once.
    from node import convert

    monkeypatch.setattr(convert, "MAX_PAGE_UPSTREAM_READS", 3)  # the node runs in this process
    kg = {"quantity": "1", "unit": "kilogram"}
    client.submit(world.publish("STEEL", "ore", "1"))
    client.submit(world.publish("STEEL", "pig-iron", "1", components=[{"pfId": pf_uuid("ore"), **kg}]))
    names = ["coil", "bar", "rod", "wire", "sheet"]
    for name in names:  # each reads two upstream footprints
        client.submit(world.publish("PARTS", name, "1", components=[{"pfId": pf_uuid("pig-iron"), **kg}]))
    page = client._call(client._query.ListFootprints, query_pb2.ListFootprintsRequest(owner="PARTS", page_size=100))
    assert len(page.footprints) == 2 and page.next_page_token  # 2 + 2 reads reach the bound of 3
    listed = [f.id for f in client.footprints("PARTS", page_size=100)]
    assert sorted(listed) == sorted(pf_uuid(n) for n in names)
    monkeypatch.setattr(convert, "MAX_PAGE_UPSTREAM_READS", 1)
    page = client._call(client._query.ListFootprints, query_pb2.ListFootprintsRequest(owner="PARTS", page_size=100))
    assert len(page.footprints) == 1  # never an empty page


def test_subscribe_replays_history_then_streams_live(client: LedgerClient, world: Net, node: RunningNode) -> None:
    client.submit(world.publish("STEEL", "steel", "1.5"))
    comp = [{"pfId": pf_uuid("steel"), "quantity": "2", "unit": "kilogram"}]
    client.submit(world.publish("PARTS", "bracket", "4", components=comp))
    client.submit(world.retire("STEEL", 0, 10))
    stream = client.subscribe(0, timeout=20)
    seen = []
    for ev in stream:
        seen.append(ev)
        if ev.index == node.ledger.size - 1 and ev.kind == "units.retired":
            break
    assert [e.index for e in seen if e.kind == "entry"] == list(range(node.ledger.size))
    assert [e.subject for e in seen if e.kind == "units.retired"] == ["gec:0-10"]
    stream.close()
    # Live, filtered by account: PARTS hears that its bracket went stale.
    live = client.subscribe(node.ledger.size, kinds=["footprint.stale"], accounts=["PARTS"], timeout=20)
    dep = client.submit(world.deprecate("STEEL", "steel"))
    # The submitter's receipt names the footprints that went stale too.
    assert [(e.kind, e.subject, e.refs) for e in dep.events if e.kind.startswith("footprint.")] == [
        ("footprint.deprecated", pf_uuid("steel"), ()),
        ("footprint.stale", pf_uuid("steel"), (pf_uuid("bracket"),)),
    ]
    ev = next(live)
    assert (ev.index, ev.kind, ev.subject) == (dep.index, "footprint.stale", pf_uuid("steel"))
    assert ev.refs == (pf_uuid("bracket"), "PARTS")
    live.close()
    # Resuming from an index replays the same event.
    again = next(client.subscribe(dep.index, kinds=["footprint.stale"], timeout=20))
    assert again == ev
    # Every kind the stream carried is one a subscriber may ask for.
    assert {e.kind for e in seen} | {ev.kind} <= KINDS
    # A kind or operation no event has is refused at once, not waited for.
    for kw, name in ((dict(kinds=["footprint.stael"]), "kinds"), (dict(op_types=["gec.transfr"]), "op_types")):
        with pytest.raises(MalformedError, match=f"malformed {name}: no event has"):
            next(client.subscribe(0, timeout=20, **kw))


def test_reconcile_reports_mismatches_with_proving_entries(client: LedgerClient, world: Net, node: RunningNode) -> None:
    before = node.ledger.size
    t = client.submit(world.transfer("gec", "STEEL", 0, 50, "EXCH"))
    books = [BookRow("EXCH", "gec", "B1", 0, 40), BookRow("EXCH", "gec", "B1", 60, 70)]
    result = client.reconcile(books, page_size=1)
    assert result.tree_size == node.ledger.size and result.checkpoint == node.ledger.checkpoint()
    got = sorted((m.kind, m.start, m.end, tuple(m.proving_indexes)) for m in result.mismatches)
    assert got == [(1, 60, 70, (7,)), (2, 40, 50, (t.index,))]  # NOT_HELD_ON_LEDGER, MISSING_FROM_BOOKS
    held_by = [m.detail for m in result.mismatches if m.kind == 1]
    assert held_by == ["held by STEEL"]
    # Totals, and the same books against the checkpoint before the transfer.
    assert client.reconcile([BookRow("EXCH", "gec", amount=50)]).mismatches == ()
    old = client.reconcile([BookRow("EXCH", "gec", amount=50)], tree_size=before)
    assert [(m.kind, m.books_amount, m.ledger_amount) for m in old.mismatches] == [(3, 50, 0)]
    assert old.checkpoint == node.ledger.checkpoint(before)


def test_holdings_pages_do_not_repeat_units_when_ranges_merge_between_pages(
    client: LedgerClient, world: Net, node: RunningNode
) -> None:
    client.submit(world.transfer("gec", "STEEL", 10, 20, "EXCH"))
    client.submit(world.transfer("gec", "STEEL", 30, 40, "EXCH"))
    with grpc.insecure_channel(node.target) as channel:  # raw pages, to act between two of them
        stub = query_pb2_grpc.QueryStub(channel)
        first = stub.ListHoldings(query_pb2.ListHoldingsRequest(account="EXCH", page_size=1), timeout=10)
        assert [(h.start, h.end) for h in first.holdings] == [(10, 20)]
        # EXCH gets the gap: its two ranges merge into one that straddles the token.
        client.submit(world.transfer("gec", "STEEL", 20, 30, "EXCH"))
        request = query_pb2.ListHoldingsRequest(account="EXCH", page_size=1, page_token=first.next_page_token)
        second = stub.ListHoldings(request, timeout=10)
    assert [(h.start, h.end) for h in second.holdings] == [(20, 40)] and second.next_page_token == ""


def test_holdings_and_units_past_their_validity_end_are_expired_at_the_ledgers_time(
    client: LedgerClient, world: Net, node: RunningNode
) -> None:
    client.submit(world.transfer("gec", "STEEL", 0, 50, "EXCH"))
    client.submit(world.retire("STEEL", 50, 60))
    assert [(h.start, h.end, h.status) for h in client.holdings("STEEL")] == [(50, 60, "retired"), (60, 100, "held")]
    assert client.unit("gec", 10).status == "held"
    # A year and a day on (B1's validity end is a year after issue) a new
    # batch is issued: the ledger's time, its latest block's, passes B1's
    # validity end. The node's clock is set, never read by the test.
    world.now += 366 * 86400
    node.ledger._clock = lambda: float(world.now)  # type: ignore[attr-defined]
    client.submit(world.gec_issue("B2"))
    assert node.ledger.head.time >= world.now
    got = [(h.batch, h.start, h.end, h.status) for h in client.holdings("STEEL", page_size=1)]
    assert got == [("B1", 50, 60, "retired"), ("B1", 60, 100, "expired"), ("B2", 100, 200, "held")]
    assert [(h.start, h.end, h.status) for h in client.holdings("EXCH")] == [(0, 50, "expired")]
    assert client.unit("gec", 10).status == "expired"
    assert client.unit("gec", 55).status == "retired" and client.retirement("gec", 55).start == 50
    assert client.unit("gec", 150).status == "held"
    # Reconciliation at the same size says the same of the same units.
    result = client.reconcile([BookRow("EXCH", "gec", "B1", 0, 50)])
    assert [(m.start, m.end, m.detail) for m in result.mismatches] == [(0, 50, "expired")]


def test_node_serves_labels_by_default(client: LedgerClient, world: Net) -> None:
    from client.label import parse_label
    from ledger.errors import NotFound

    client.submit(world.publish("STEEL", "steel", "1.5"))
    assert parse_label(client.label(pf_uuid("steel"))) is not None
    with pytest.raises(NotFound):
        client.label("00000000-0000-4000-8000-000000000000")


def test_health_reflection_and_metrics(node: RunningNode, client: LedgerClient, world: Net) -> None:
    with grpc.insecure_channel(node.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "carbonledger.v1.Log"):
            status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
        names = {s.name for r in responses for s in r.list_services_response.service}
        assert {"carbonledger.v1.Log", "carbonledger.v1.Query", "carbonledger.v1.Events", "carbonledger.v1.Reconcile", "grpc.health.v1.Health"} <= names
    port = node.server.metrics.port
    assert port
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'carbonledger_submissions_total{outcome="accepted"} 8.0' in text
    for name in ("carbonledger_commit_batch_size_count", "carbonledger_commit_latency_seconds_count", "carbonledger_queue_depth"):
        assert name in text


def test_raw_stub_sees_the_same_contract(node: RunningNode, world: Net) -> None:
    with grpc.insecure_channel(node.target) as channel:
        stub = log_pb2_grpc.LogStub(channel)
        cp = stub.GetCheckpoint(log_pb2.GetCheckpointRequest(), timeout=5)
        assert cp.tree_size == node.ledger.size and cp.root_hash == node.ledger.root()
        entry = stub.GetEntry(log_pb2.GetEntryRequest(index=0), timeout=5)
        assert json.loads(parse_envelope(entry.data).payload)["op"] == "genesis"
