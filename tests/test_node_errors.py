"""Every error path returns the right status with rich details, and changes
nothing: the ledger's size and checkpoint are the same afterwards."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from carbonledger.v1 import log_pb2, log_pb2_grpc, query_pb2, query_pb2_grpc
from google.rpc import code_pb2, error_details_pb2
from grpc_status import rpc_status

from client.errors import RpcFailure, error_from_rpc
from client.sdk import LedgerClient
from ledger.errors import (
    LedgerError,
    MalformedError,
    NotFound,
    PermissionDenied,
    Pushback,
    StateRuleError,
    TooLarge,
)
from ledger.keys import Signer
from node.errors import CannotListen, rpc_status_of
from node.paging import encode_token
from node.server import create_server
from tests.test_node_support import Net, RunningNode, open_ledger


def _builder_that_crashes(*args: Any) -> tuple[bytes, str]:
    raise RuntimeError("secret detail: /var/lib/node/ledger is on fire")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    led = open_ledger(tmp_path_factory.mktemp("errors") / "ledger")
    running = RunningNode(led, label_builder=_builder_that_crashes)
    net = Net()
    with LedgerClient(running.target) as c:
        for e in [*net.setup(), net.gec_project(), net.gec_issue(), net.retire("STEEL", 0, 10)]:
            c.submit(e)
    running.net = net  # type: ignore[attr-defined]
    yield running
    running.stop()
    led.close()


@pytest.fixture
def net(node: RunningNode) -> Net:
    return node.net  # type: ignore[attr-defined,no-any-return]


@pytest.fixture
def stub(node: RunningNode) -> Iterator[log_pb2_grpc.LogStub]:
    with grpc.insecure_channel(node.target) as channel:
        yield log_pb2_grpc.LogStub(channel)


def _fails(node: RunningNode, call: Callable[[], Any], code: grpc.StatusCode) -> tuple[grpc.RpcError, Any]:
    """Run a raw call that must fail with ``code`` and leave the ledger as it was."""
    size, note = node.ledger.size, node.ledger.checkpoint()
    with pytest.raises(grpc.RpcError) as err:
        call()
    assert err.value.code() == code, err.value.details()
    assert (node.ledger.size, node.ledger.checkpoint()) == (size, note)
    return err.value, rpc_status.from_call(err.value)


def _detail(status: Any, cls: Any) -> Any:
    for d in status.details:
        if d.Is(cls.DESCRIPTOR):
            out = cls()
            d.Unpack(out)
            return out
    return None


def _submit(stub: log_pb2_grpc.LogStub, envelope: bytes) -> Callable[[], Any]:
    return lambda: stub.Submit(log_pb2.SubmitRequest(envelope=envelope), timeout=10)


def test_malformed_envelope_is_invalid_argument(node: RunningNode, stub: Any) -> None:
    err, status = _fails(node, _submit(stub, b'{"payload": 1}'), grpc.StatusCode.INVALID_ARGUMENT)
    info = _detail(status, error_details_pb2.ErrorInfo)
    assert info.reason == "MALFORMED_ERROR" and info.domain == "carbonledger.v1"
    violation = _detail(status, error_details_pb2.BadRequest).field_violations[0]
    assert violation.field.startswith("envelope")
    assert isinstance(error_from_rpc(err), MalformedError)


def test_malformed_payload_names_the_field(node: RunningNode, stub: Any, net: Net) -> None:
    bad = net.op("gec.transfer", "STEEL", {"start": 10, "end": 5, "to": "EXCH"})
    _, status = _fails(node, _submit(stub, bad), grpc.StatusCode.INVALID_ARGUMENT)
    assert _detail(status, error_details_pb2.BadRequest).field_violations[0].field == "body.end"


def test_wrong_signer_is_permission_denied(node: RunningNode, stub: Any, net: Net) -> None:
    forged = net.op("gec.transfer", "STEEL", {"start": 20, "end": 30, "to": "EXCH"}, signer=net.keys["EXCH"])
    err, status = _fails(node, _submit(stub, forged), grpc.StatusCode.PERMISSION_DENIED)
    info = _detail(status, error_details_pb2.ErrorInfo)
    assert info.metadata["rule"] == "not_signed_by_org" and info.metadata["field"] == "signatures"
    exc = error_from_rpc(err)
    assert isinstance(exc, PermissionDenied) and exc.rule == "not_signed_by_org"


def test_unknown_key_signature_is_permission_denied(node: RunningNode, stub: Any, net: Net) -> None:
    stranger = Signer.from_seed("stranger", bytes(32))
    forged = net.op("gec.transfer", "STEEL", {"start": 20, "end": 30, "to": "EXCH"}, signer=stranger)
    _fails(node, _submit(stub, forged), grpc.StatusCode.PERMISSION_DENIED)


def test_wrong_role_is_permission_denied(node: RunningNode, stub: Any, net: Net) -> None:
    body = {"projectId": "P9", "name": "Mine", "technology": "solar", "capacityKw": 10, "location": "Here", "owner": "STEEL"}
    not_an_issuer = net.op("gec.register_project", "STEEL", body)
    _, status = _fails(node, _submit(stub, not_an_issuer), grpc.StatusCode.PERMISSION_DENIED)
    assert _detail(status, error_details_pb2.ErrorInfo).metadata["rule"] == "missing_role"


def test_double_retirement_is_failed_precondition(node: RunningNode, stub: Any, net: Net) -> None:
    again = net.retire("STEEL", 5, 15, nonce="again")
    err, status = _fails(node, _submit(stub, again), grpc.StatusCode.FAILED_PRECONDITION)
    info = _detail(status, error_details_pb2.ErrorInfo)
    assert (info.reason, info.metadata["rule"], info.metadata["field"]) == ("STATE_RULE_ERROR", "units_retired", "body.start")
    assert _detail(status, error_details_pb2.BadRequest).field_violations[0].field == "body.start"
    exc = error_from_rpc(err)
    assert type(exc) is StateRuleError and (exc.rule, exc.field) == ("units_retired", "body.start")


def test_sdk_raises_the_same_typed_errors(node: RunningNode, net: Net) -> None:
    size = node.ledger.size
    with LedgerClient(node.target, timeout=5) as c:
        with pytest.raises(StateRuleError) as err:
            c.submit(net.retire("STEEL", 0, 3, nonce="sdk"))
        assert err.value.rule == "units_retired"
        with pytest.raises(NotFound) as nf:
            c.org("NOBODY")
        assert (nf.value.kind, nf.value.key) == ("organization", "NOBODY")
        with pytest.raises(MalformedError):
            c.submit(b"\xff")
    assert node.ledger.size == size


def test_oversize_message_is_resource_exhausted(node: RunningNode, stub: Any) -> None:
    _fails(node, _submit(stub, b"x" * (9 << 20)), grpc.StatusCode.RESOURCE_EXHAUSTED)


def test_oversize_envelope_is_invalid_argument(node: RunningNode, stub: Any) -> None:
    _, status = _fails(node, _submit(stub, b"x" * ((1 << 20) + 1)), grpc.StatusCode.INVALID_ARGUMENT)
    assert "at most" in status.message


def test_empty_and_oversized_batches_are_invalid(node: RunningNode, stub: Any) -> None:
    _fails(node, lambda: stub.SubmitBatch(log_pb2.SubmitBatchRequest(), timeout=5), grpc.StatusCode.INVALID_ARGUMENT)
    many = log_pb2.SubmitBatchRequest(envelopes=[b"{}"] * 1001)
    _fails(node, lambda: stub.SubmitBatch(many, timeout=5), grpc.StatusCode.INVALID_ARGUMENT)


@pytest.mark.parametrize("call", [
    lambda s, q: s.GetEntry(log_pb2.GetEntryRequest(index=10_000), timeout=5),
    lambda s, q: s.GetCheckpoint(log_pb2.GetCheckpointRequest(tree_size=10_000), timeout=5),
    lambda s, q: s.GetInclusionProof(log_pb2.GetInclusionProofRequest(index=10_000), timeout=5),
    lambda s, q: s.GetTlogProof(log_pb2.GetTlogProofRequest(index=3, tree_size=10_000), timeout=5),
    lambda s, q: q.GetOrg(query_pb2.GetOrgRequest(org_id="NOBODY"), timeout=5),
    lambda s, q: q.GetFootprint(query_pb2.GetFootprintRequest(footprint_id="00000000-0000-0000-0000-000000000000"), timeout=5),
    lambda s, q: q.GetUnit(query_pb2.GetUnitRequest(kind="gec", serial=10_000), timeout=5),
    lambda s, q: q.GetRetirement(query_pb2.GetRetirementRequest(kind="gec", serial=50), timeout=5),
    lambda s, q: q.GetBatch(query_pb2.GetBatchRequest(kind="gec", batch_id="NOPE"), timeout=5),
])  # fmt: skip
def test_unknown_ids_are_not_found(node: RunningNode, call: Any) -> None:
    with grpc.insecure_channel(node.target) as channel:
        stubs = log_pb2_grpc.LogStub(channel), query_pb2_grpc.QueryStub(channel)
        _, status = _fails(node, lambda: call(*stubs), grpc.StatusCode.NOT_FOUND)
        assert _detail(status, error_details_pb2.ResourceInfo).resource_type


@pytest.mark.parametrize("call", [
    lambda s, q: s.GetConsistencyProof(log_pb2.GetConsistencyProofRequest(first_size=0), timeout=5),
    lambda s, q: s.ListEntries(log_pb2.ListEntriesRequest(page_token="garbage"), timeout=5),
    lambda s, q: s.ListEntries(log_pb2.ListEntriesRequest(page_size=-1), timeout=5),
    lambda s, q: q.GetOrg(query_pb2.GetOrgRequest(), timeout=5),
    lambda s, q: q.GetUnit(query_pb2.GetUnitRequest(kind="bitcoin", serial=1), timeout=5),
    lambda s, q: q.ListUnitHistory(query_pb2.ListUnitHistoryRequest(kind="gec", start=5, end=5), timeout=5),
    lambda s, q: q.ListHoldings(query_pb2.ListHoldingsRequest(account="STEEL", page_token="x"), timeout=5),
    # "/" separates the parts of state keys: it would reach into STEEL's own.
    lambda s, q: q.ListHoldings(query_pb2.ListHoldingsRequest(account="STEEL/gec"), timeout=5),
    lambda s, q: q.GetOrg(query_pb2.GetOrgRequest(org_id="STEEL/x"), timeout=5),
    # Tokens shaped like the node's own, holding what no token of its holds:
    # a number past 64 bits, or digits int() refuses ("²") or reads ("١").
    lambda s, q: s.ListEntries(log_pb2.ListEntriesRequest(page_token=encode_token("entries", str(1 << 64))), timeout=5),
    lambda s, q: s.ListEntries(log_pb2.ListEntriesRequest(page_token=encode_token("entries", "²")), timeout=5),
    lambda s, q: s.ListEntries(log_pb2.ListEntriesRequest(page_token=encode_token("entries", "١")), timeout=5),
    lambda s, q: q.ListUnitHistory(query_pb2.ListUnitHistoryRequest(kind="gec", start=0, end=10, page_token=encode_token("history", "²")), timeout=5),
    lambda s, q: q.ListUnitHistory(query_pb2.ListUnitHistoryRequest(kind="gec", start=0, end=10, page_token=encode_token("history", "99999999999999999999")), timeout=5),
])  # fmt: skip
def test_bad_requests_are_invalid_argument(node: RunningNode, call: Any) -> None:
    with grpc.insecure_channel(node.target) as channel:
        stubs = log_pb2_grpc.LogStub(channel), query_pb2_grpc.QueryStub(channel)
        _fails(node, lambda: call(*stubs), grpc.StatusCode.INVALID_ARGUMENT)


@pytest.mark.parametrize("value", ["²:0", "5:²", f"{1 << 64}:0", "5:99999999999999999999", "0:0"])
def test_reconcile_tokens_the_node_did_not_issue_are_invalid_argument(node: RunningNode, value: str) -> None:
    from carbonledger.v1 import reconcile_pb2, reconcile_pb2_grpc

    with grpc.insecure_channel(node.target) as channel:
        stub = reconcile_pb2_grpc.ReconcileStub(channel)
        request = reconcile_pb2.ReconcileRequest(page_token=encode_token("reconcile", value))
        err, _ = _fails(node, lambda: stub.Reconcile(request, timeout=5), grpc.StatusCode.INVALID_ARGUMENT)
        assert "page_token" in err.details()


def test_unexpected_errors_are_internal_and_leak_nothing(node: RunningNode, stub: Any) -> None:
    from carbonledger.v1 import log_pb2 as pb

    err, status = _fails(node, lambda: stub.GetLabel(pb.GetLabelRequest(footprint_id="x"), timeout=5), grpc.StatusCode.INTERNAL)
    assert err.details() == "internal error" and "secret" not in str(status)
    assert isinstance(error_from_rpc(err), RpcFailure)


def test_too_large_is_failed_precondition_not_a_retry() -> None:
    status = rpc_status_of(TooLarge("label", "its component tree holds more than 4096 entries"))
    assert status.code == code_pb2.FAILED_PRECONDITION
    assert status.message == "label too large: its component tree holds more than 4096 entries"


def test_pushback_carries_retry_info() -> None:
    status = rpc_status_of(Pushback("full", 0.25))
    retry = _detail(status, error_details_pb2.RetryInfo)
    assert retry.retry_delay.ToMilliseconds() == 250
    assert rpc_status_of(ValueError("x")).message == "internal error"
    assert rpc_status_of(LedgerError("plain")).message == "internal error"


def test_a_node_that_cannot_bind_its_port_leaves_nothing_running(node: RunningNode, tmp_path: Path) -> None:
    """The port is taken (by the module's node): create_server raises
    CannotListen naming the address and the OS's reason, and neither
    preparation threads nor signature workers outlive it."""
    before = {t.ident for t in threading.enumerate()}
    children_before = _children()
    led = open_ledger(tmp_path / "ledger")
    try:

        async def build() -> None:
            create_server(node.target, led, verify_processes=1)

        with pytest.raises(CannotListen, match=f"gRPC on {node.target}: Address already in use"):
            asyncio.run(build())
    finally:
        led.close()
    left = [t.name for t in threading.enumerate() if t.ident not in before and t.is_alive()]
    assert left == []
    assert {pid: cmd for pid, cmd in _children().items() if pid not in children_before} == {}


def test_a_taken_metrics_port_is_named(tmp_path: Path) -> None:
    led = open_ledger(tmp_path / "ledger")
    try:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]

            async def build() -> None:
                create_server("127.0.0.1:0", led, verify_processes=0, metrics_port=port)

            with pytest.raises(CannotListen, match=f"metrics on 127.0.0.1:{port}: Address already in use"):
                asyncio.run(build())
    finally:
        led.close()


def _children() -> dict[int, str]:
    """This process's live children (Linux /proc): pid -> command line."""
    out = {}
    for task in Path("/proc/self/task").iterdir():
        for pid in (task / "children").read_text().split():
            try:
                out[int(pid)] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except FileNotFoundError:  # exited meanwhile
                pass
    return out
