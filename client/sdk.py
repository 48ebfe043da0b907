"""The Python SDK: :class:`LedgerClient`, a blocking client of a carbonledger node.

Every call has a deadline (the client's ``timeout`` unless given). Failed
calls raise the ledger's own typed errors (``client/errors.py``): a rejected
submission raises ``StateRuleError`` with ``.rule`` and ``.field``, exactly as
the local ledger would. Idempotent calls (every read, and submissions, since
a resubmitted envelope gets its first index back) are retried with
exponential backoff when the node is unavailable or pushes back, honouring the
node's retry hint. List calls page transparently and yield items.

::

    with LedgerClient("localhost:7400") as client:
        receipt = client.submit(envelope_bytes)
        proof = client.tlog_proof(receipt.index)
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from carbonledger.v1 import (
    events_pb2,
    events_pb2_grpc,
    log_pb2,
    log_pb2_grpc,
    query_pb2,
    query_pb2_grpc,
    reconcile_pb2,
    reconcile_pb2_grpc,
)
from google.rpc import status_pb2

from client.errors import RETRYABLE, error_from_rpc, error_from_status
from ledger.errors import LedgerError, Pushback

__all__ = ["DEFAULT_TIMEOUT", "BookRow", "Event", "LedgerClient", "ReconcileResult", "SubmitResult"]

#: Default deadline of a unary call, in seconds.
DEFAULT_TIMEOUT = 30.0
_MAX_MESSAGE_BYTES = 8 << 20
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Event:
    index: int
    kind: str
    op: str
    org: str
    subject: str
    refs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """A durable entry: ``index`` (the earlier one if ``duplicate``), the
    operation the state machine applied and the events it caused."""

    index: int
    duplicate: bool
    op: str
    events: tuple[Event, ...]
    tree_size: int


@dataclass(frozen=True, slots=True)
class BookRow:
    """One line of an exchange's books: a serial range, or an amount."""

    account: str
    kind: str
    batch: str = ""
    start: int = 0
    end: int = 0
    amount: int = 0


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    checkpoint: str
    tree_size: int
    mismatches: tuple[reconcile_pb2.Mismatch, ...]


def _event(e: events_pb2.Event) -> Event:
    return Event(e.index, e.kind, e.op, e.org, e.subject, tuple(e.refs))


def _submit_result(r: log_pb2.SubmitResponse) -> SubmitResult:
    return SubmitResult(r.index, r.duplicate, r.op, tuple(_event(e) for e in r.events), r.tree_size)


class LedgerClient:
    """A blocking client of one node.

    ``target`` is ``host:port``; ``credentials`` from
    :func:`grpc.ssl_channel_credentials` for TLS (with a client key and
    certificate for mTLS); ``timeout`` the default deadline in seconds;
    ``retries`` how many times an idempotent call is retried.
    """

    def __init__(
        self,
        target: str,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = 4,
        backoff: float = 0.1,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        opts = [
            ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
            *options,
        ]
        if credentials is None:
            self._channel = grpc.insecure_channel(target, options=opts)
        else:
            self._channel = grpc.secure_channel(target, credentials, options=opts)
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._log = log_pb2_grpc.LogStub(self._channel)
        self._query = query_pb2_grpc.QueryStub(self._channel)
        self._events = events_pb2_grpc.EventsStub(self._channel)
        self._reconcile = reconcile_pb2_grpc.ReconcileStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> LedgerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calling --------------------------------------------------------

    def _call(self, method: Callable[..., T], request: Any, *, timeout: float | None = None, retry: bool = True) -> T:
        """Call with a deadline; retry RETRYABLE failures if ``retry``."""
        attempt = 0
        while True:
            try:
                return method(request, timeout=timeout or self.timeout)
            except grpc.RpcError as rpc_exc:
                exc = error_from_rpc(rpc_exc)
                code = rpc_exc.code() if hasattr(rpc_exc, "code") else None
                if not retry or code not in RETRYABLE or attempt >= self.retries:
                    raise exc from None
            delay = self.backoff * (2**attempt) * (0.5 + random.random())
            if isinstance(exc, Pushback):
                delay = max(delay, exc.retry_after)
            time.sleep(min(delay, 10.0))
            attempt += 1

    def _pages(self, method: Callable[..., Any], request: Any, items: str, page_size: int) -> Iterator[Any]:
        request.page_size = page_size
        while True:
            response = self._call(method, request)
            yield from getattr(response, items)
            if not response.next_page_token:
                return
            request.page_token = response.next_page_token

    # -- the log --------------------------------------------------------

    def submit(self, envelope: bytes, *, timeout: float | None = None) -> SubmitResult:
        """Submit one DSSE envelope; return once it is durable."""
        response = self._call(self._log.Submit, log_pb2.SubmitRequest(envelope=envelope), timeout=timeout)
        return _submit_result(response)

    def submit_batch(
        self, envelopes: Sequence[bytes], *, timeout: float | None = None
    ) -> list[SubmitResult | LedgerError]:
        """Submit several envelopes; each result is a SubmitResult or the
        LedgerError that rejected that envelope."""
        response = self._call(
            self._log.SubmitBatch, log_pb2.SubmitBatchRequest(envelopes=list(envelopes)), timeout=timeout
        )
        out: list[SubmitResult | LedgerError] = []
        for result in response.results:
            if result.HasField("accepted"):
                out.append(_submit_result(result.accepted))
            else:
                out.append(_rejection(result.rejected))
        return out

    def entry(self, index: int) -> bytes:
        return bytes(self._call(self._log.GetEntry, log_pb2.GetEntryRequest(index=index)).data)

    def entries(self, start: int = 0, end: int = 0, *, page_size: int = 500) -> Iterator[tuple[int, bytes]]:
        """``(index, bytes)`` of entries ``[start, end)`` (``end=0``: to the current size)."""
        request = log_pb2.ListEntriesRequest(start=start, end=end)
        for e in self._pages(self._log.ListEntries, request, "entries", page_size):
            yield e.index, bytes(e.data)

    def checkpoint(self, tree_size: int = 0) -> str:
        """The signed checkpoint note (``0``: the latest)."""
        return self._call(self._log.GetCheckpoint, log_pb2.GetCheckpointRequest(tree_size=tree_size)).note

    def inclusion_proof(self, index: int, tree_size: int = 0) -> log_pb2.InclusionProof:
        return self._call(
            self._log.GetInclusionProof, log_pb2.GetInclusionProofRequest(index=index, tree_size=tree_size)
        )

    def consistency_proof(self, first_size: int, second_size: int = 0) -> log_pb2.ConsistencyProof:
        request = log_pb2.GetConsistencyProofRequest(first_size=first_size, second_size=second_size)
        return self._call(self._log.GetConsistencyProof, request)

    def tlog_proof(self, index: int, tree_size: int = 0) -> str:
        """A C2SP tlog-proof of entry ``index``, verifiable offline."""
        request = log_pb2.GetTlogProofRequest(index=index, tree_size=tree_size)
        return self._call(self._log.GetTlogProof, request).proof

    def label(self, footprint_id: str, tree_size: int = 0) -> bytes:
        request = log_pb2.GetLabelRequest(footprint_id=footprint_id, tree_size=tree_size)
        return bytes(self._call(self._log.GetLabel, request).data)

    # -- state queries --------------------------------------------------

    def org(self, org_id: str) -> query_pb2.Org:
        return self._call(self._query.GetOrg, query_pb2.GetOrgRequest(org_id=org_id))

    def orgs(self, role: str = "", *, page_size: int = 100) -> Iterator[query_pb2.Org]:
        return self._pages(self._query.ListOrgs, query_pb2.ListOrgsRequest(role=role), "orgs", page_size)

    def footprint(self, footprint_id: str) -> query_pb2.Footprint:
        return self._call(self._query.GetFootprint, query_pb2.GetFootprintRequest(footprint_id=footprint_id))

    def footprints(self, owner: str, *, page_size: int = 100) -> Iterator[query_pb2.Footprint]:
        request = query_pb2.ListFootprintsRequest(owner=owner)
        return self._pages(self._query.ListFootprints, request, "footprints", page_size)

    def holdings(self, account: str, *, page_size: int = 100) -> Iterator[query_pb2.Holding]:
        request = query_pb2.ListHoldingsRequest(account=account)
        return self._pages(self._query.ListHoldings, request, "holdings", page_size)

    def unit_history(self, kind: str, start: int, end: int, *, page_size: int = 100) -> Iterator[query_pb2.UnitEvent]:
        request = query_pb2.ListUnitHistoryRequest(kind=kind, start=start, end=end)
        return self._pages(self._query.ListUnitHistory, request, "events", page_size)

    def unit(self, kind: str, serial: int) -> query_pb2.Unit:
        return self._call(self._query.GetUnit, query_pb2.GetUnitRequest(kind=kind, serial=serial))

    def retirement(self, kind: str, serial: int) -> query_pb2.Retirement:
        return self._call(self._query.GetRetirement, query_pb2.GetRetirementRequest(kind=kind, serial=serial))

    def batch(self, kind: str, batch_id: str) -> query_pb2.Batch:
        return self._call(self._query.GetBatch, query_pb2.GetBatchRequest(kind=kind, batch_id=batch_id))

    # -- events and reconciliation ---------------------------------------

    def subscribe(
        self,
        from_index: int = 0,
        *,
        kinds: Iterable[str] = (),
        op_types: Iterable[str] = (),
        accounts: Iterable[str] = (),
        timeout: float = 3600.0,
    ) -> Iterator[Event]:
        """Events from entry ``from_index`` on, history first, then live.

        The stream ends when ``timeout`` passes (it always has a deadline);
        resume with ``from_index = last.index + 1``. Not retried: the caller
        knows where it stopped.
        """
        request = events_pb2.SubscribeRequest(
            from_index=from_index, kinds=list(kinds), op_types=list(op_types), accounts=list(accounts)
        )
        stream = self._events.Subscribe(request, timeout=timeout)
        try:
            for e in stream:
                yield _event(e)
        except grpc.RpcError as rpc_exc:
            raise error_from_rpc(rpc_exc) from None
        finally:
            stream.cancel()

    def reconcile(self, rows: Iterable[BookRow], tree_size: int = 0, *, page_size: int = 500) -> ReconcileResult:
        """Every mismatch between ``rows`` and the ledger at ``tree_size``
        (``0``: the latest), with the entries that prove the ledger's side."""
        request = reconcile_pb2.ReconcileRequest(
            rows=[
                reconcile_pb2.BookRow(
                    account=r.account, kind=r.kind, batch=r.batch, start=r.start, end=r.end, amount=r.amount
                )
                for r in rows
            ],
            tree_size=tree_size,
            page_size=page_size,
        )
        mismatches: list[reconcile_pb2.Mismatch] = []
        while True:
            response = self._call(self._reconcile.Reconcile, request)
            mismatches.extend(response.mismatches)
            if not response.next_page_token:
                return ReconcileResult(response.checkpoint, response.tree_size, tuple(mismatches))
            request.page_token = response.next_page_token


_STATUS_CODES = {sc.value[0]: sc for sc in grpc.StatusCode}


def _rejection(status: status_pb2.Status) -> LedgerError:
    code = _STATUS_CODES.get(status.code, grpc.StatusCode.UNKNOWN)
    return error_from_status(code, status.message, status)
