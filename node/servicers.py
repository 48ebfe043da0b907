"""The gRPC servicers: validate, convert from proto, call the core, convert back.

Nothing else happens here. Errors are raised as LedgerError and mapped to
status codes by :mod:`node.errors`; submissions go through the group
committer; ledger reads run in worker threads so the event loop stays free
(each read opens and closes its own LMDB read transaction in that thread).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
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

from ledger.errors import LedgerError, MalformedError, NotFound
from ledger.log import Ledger, Receipt, snapshot_size, time_at
from ledger.state import Applied, queries
from ledger.storage import Table
from node import convert, paging
from node.committer import Committed, GroupCommitter
from node.errors import rpc_status_of
from node.event_cache import EventCache
from node.events import EventFilter, with_stale_events
from node.labels import LabelBuilder
from node.reconcile import BookRow, Reconciler

__all__ = ["CommitSignal", "EventsServicer", "LogServicer", "QueryServicer", "ReconcileServicer"]

T = TypeVar("T")
_MAX_ID = 256
_MAX_BATCH_ENVELOPES = 1000


async def _read(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.to_thread(fn, *args)


def _tree_size(ledger: Ledger, requested: int, what: str = "tree_size") -> int:
    if requested == 0:
        return ledger.size
    if requested > ledger.size:
        raise NotFound("tree size", requested)
    return requested


def _require_id(value: str, field: str) -> str:
    if not value:
        raise MalformedError(field, "required")
    if len(value) > _MAX_ID:
        raise MalformedError(field, f"longer than {_MAX_ID} characters")
    if "/" in value:
        # No id holds one (records refuse it): it separates the parts of
        # state keys, and a lookup would land inside another id's keys.
        raise MalformedError(field, "must not contain '/'")
    return value


def _submit_response(receipt: Receipt, tree_size: int) -> log_pb2.SubmitResponse:
    applied = receipt.applied
    events = []
    if applied is not None:
        events = [
            events_pb2.Event(index=receipt.index, kind=e.kind, op=applied.op, subject=e.subject, refs=list(e.refs))
            for e in applied.events
        ]
    return log_pb2.SubmitResponse(
        index=receipt.index,
        duplicate=receipt.duplicate,
        op=applied.op if applied is not None else "",
        events=events,
        tree_size=tree_size,
    )


class CommitSignal:
    """Wakes subscribers when the log grows (fed by the committer)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def __call__(self, committed: Committed) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            pass


class LogServicer(log_pb2_grpc.LogServicer):
    def __init__(self, ledger: Ledger, committer: GroupCommitter, label_builder: LabelBuilder) -> None:
        self._ledger = ledger
        self._committer = committer
        self._label_builder = label_builder

    async def _with_stale(self, receipt: Receipt) -> Receipt:
        """The receipt with the footprint.stale events of its deprecations,
        read from the state (see :func:`node.events.with_stale_events`)."""
        applied = receipt.applied
        if applied is None or not any(e.kind == "footprint.deprecated" for e in applied.events):
            return receipt

        def run() -> Receipt:
            with self._ledger.state() as kv:
                events = with_stale_events(kv, receipt.index, applied.events)
            return dataclasses.replace(receipt, applied=Applied(applied.op, events))

        return await _read(run)

    async def Submit(self, request: log_pb2.SubmitRequest, context: grpc.aio.ServicerContext) -> log_pb2.SubmitResponse:
        if not request.envelope:
            raise MalformedError("envelope", "required")
        receipt, size = await self._committer.submit(request.envelope)
        return _submit_response(await self._with_stale(receipt), size)

    async def SubmitBatch(
        self, request: log_pb2.SubmitBatchRequest, context: grpc.aio.ServicerContext
    ) -> log_pb2.SubmitBatchResponse:
        if not 1 <= len(request.envelopes) <= _MAX_BATCH_ENVELOPES:
            raise MalformedError("envelopes", f"give 1 to {_MAX_BATCH_ENVELOPES} envelopes")
        results = await self._committer.submit_many(list(request.envelopes))
        out = []
        for result, size in results:
            if isinstance(result, LedgerError):
                out.append(log_pb2.SubmitResult(rejected=rpc_status_of(result)))
            else:
                out.append(log_pb2.SubmitResult(accepted=_submit_response(await self._with_stale(result), size)))
        return log_pb2.SubmitBatchResponse(results=out)

    async def GetEntry(self, request: log_pb2.GetEntryRequest, context: grpc.aio.ServicerContext) -> log_pb2.Entry:
        data = await _read(self._ledger.entry, request.index)
        return log_pb2.Entry(index=request.index, data=data)

    async def ListEntries(
        self, request: log_pb2.ListEntriesRequest, context: grpc.aio.ServicerContext
    ) -> log_pb2.ListEntriesResponse:
        limit = paging.page_size(request.page_size)
        resume = paging.decode_int_token("entries", request.page_token)
        start = request.start if resume is None else resume
        end = min(request.end or self._ledger.size, self._ledger.size)
        stop = min(end, start + limit)
        rows = await _read(lambda: list(self._ledger.entries(start, stop)))
        token = paging.encode_token("entries", str(stop)) if stop < end else ""
        return log_pb2.ListEntriesResponse(
            entries=[log_pb2.Entry(index=i, data=d) for i, d in rows], next_page_token=token
        )

    async def GetCheckpoint(
        self, request: log_pb2.GetCheckpointRequest, context: grpc.aio.ServicerContext
    ) -> log_pb2.Checkpoint:
        size = _tree_size(self._ledger, request.tree_size)
        note = await _read(self._ledger.checkpoint, size)
        root = await _read(self._ledger.root, size)
        return log_pb2.Checkpoint(tree_size=size, note=note, root_hash=root)

    async def GetInclusionProof(
        self, request: log_pb2.GetInclusionProofRequest, context: grpc.aio.ServicerContext
    ) -> log_pb2.InclusionProof:
        size = _tree_size(self._ledger, request.tree_size)
        hashes = await _read(self._ledger.inclusion_proof, request.index, size)
        note = await _read(self._ledger.checkpoint, size)
        return log_pb2.InclusionProof(index=request.index, tree_size=size, hashes=hashes, checkpoint=note)

    async def GetConsistencyProof(
        self, request: log_pb2.GetConsistencyProofRequest, context: grpc.aio.ServicerContext
    ) -> log_pb2.ConsistencyProof:
        size2 = _tree_size(self._ledger, request.second_size)
        hashes = await _read(self._ledger.consistency_proof, request.first_size, size2)
        note = await _read(self._ledger.checkpoint, size2)
        return log_pb2.ConsistencyProof(
            first_size=request.first_size, second_size=size2, hashes=hashes, checkpoint=note
        )

    async def GetTlogProof(
        self, request: log_pb2.GetTlogProofRequest, context: grpc.aio.ServicerContext
    ) -> log_pb2.TlogProof:
        size = _tree_size(self._ledger, request.tree_size)
        return log_pb2.TlogProof(proof=await _read(self._ledger.tlog_proof, request.index, size))

    async def GetLabel(self, request: log_pb2.GetLabelRequest, context: grpc.aio.ServicerContext) -> log_pb2.Label:
        pf_id = _require_id(request.footprint_id, "footprint_id")
        size = _tree_size(self._ledger, request.tree_size)
        data, media_type = await _read(self._label_builder, self._ledger, pf_id, size)
        return log_pb2.Label(footprint_id=pf_id, tree_size=size, media_type=media_type, data=data)


class QueryServicer(query_pb2_grpc.QueryServicer):
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    async def _query(self, fn: Callable[..., T], *args: Any) -> T:
        def run() -> T:
            with self._ledger.state() as kv:
                return fn(kv, *args)

        return await _read(run)

    async def _query_at_ledger_time(self, fn: Callable[[Any, int], T]) -> T:
        """``fn(kv, time)`` on a snapshot of the state and the time of its
        latest block, read in one transaction: statuses that depend on time
        (GEC past its validity end) are judged at the state's own time, as
        reconciliation judges them, and not by this node's clock."""

        def run() -> T:
            with self._ledger.store.read() as txn:
                return fn(txn.kv(Table.STATE), time_at(txn, snapshot_size(txn)))

        return await _read(run)

    async def GetOrg(self, request: query_pb2.GetOrgRequest, context: grpc.aio.ServicerContext) -> query_pb2.Org:
        org = await self._query(queries.get_org, _require_id(request.org_id, "org_id"))
        return convert.org(org)

    async def ListOrgs(
        self, request: query_pb2.ListOrgsRequest, context: grpc.aio.ServicerContext
    ) -> query_pb2.ListOrgsResponse:
        limit = paging.page_size(request.page_size)
        after = paging.decode_token("orgs", request.page_token)
        orgs, last = await self._query(convert.list_orgs, request.role, after, limit)
        token = paging.encode_token("orgs", last) if last is not None else ""
        return query_pb2.ListOrgsResponse(orgs=[convert.org(o) for o in orgs], next_page_token=token)

    async def GetFootprint(
        self, request: query_pb2.GetFootprintRequest, context: grpc.aio.ServicerContext
    ) -> query_pb2.Footprint:
        def read(kv: Any, pf_id: str) -> tuple[queries.FootprintInfo, tuple[str, ...]]:
            return queries.get_footprint(kv, pf_id), queries.footprint_versions(kv, pf_id)  # one snapshot

        info, versions = await self._query(read, _require_id(request.footprint_id, "footprint_id"))
        out = convert.footprint(info)
        out.versions.extend(versions)
        return out

    async def ListFootprints(
        self, request: query_pb2.ListFootprintsRequest, context: grpc.aio.ServicerContext
    ) -> query_pb2.ListFootprintsResponse:
        owner = _require_id(request.owner, "owner")
        limit = paging.page_size(request.page_size)
        after = paging.decode_token("footprints", request.page_token)
        infos, last = await self._query(convert.list_footprints, owner, after, limit)
        token = paging.encode_token("footprints", last) if last is not None else ""
        return query_pb2.ListFootprintsResponse(
            footprints=[convert.footprint(f) for f in infos], next_page_token=token
        )

    async def ListHoldings(
        self, request: query_pb2.ListHoldingsRequest, context: grpc.aio.ServicerContext
    ) -> query_pb2.ListHoldingsResponse:
        account = _require_id(request.account, "account")
        limit = paging.page_size(request.page_size)
        inner = paging.decode_token("holdings", request.page_token)
        page = await self._query_at_ledger_time(
            lambda kv, time: queries.get_holdings(kv, account, time=time, page_token=inner, limit=limit)
        )
        token = paging.encode_token("holdings", page.next_page_token) if page.next_page_token else ""
        return query_pb2.ListHoldingsResponse(
            holdings=[convert.holding(account, h) for h in page.holdings], next_page_token=token
        )

    async def ListUnitHistory(
        self, request: query_pb2.ListUnitHistoryRequest, context: grpc.aio.ServicerContext
    ) -> query_pb2.ListUnitHistoryResponse:
        if not request.start < request.end:
            raise MalformedError("end", "must be greater than start")
        limit = paging.page_size(request.page_size)
        offset = paging.decode_int_token("history", request.page_token) or 0
        events = await self._query(queries.unit_history, request.kind, request.start, request.end)
        page = events[offset : offset + limit]
        token = paging.encode_token("history", str(offset + limit)) if offset + limit < len(events) else ""
        return query_pb2.ListUnitHistoryResponse(
            events=[convert.unit_event(e) for e in page], next_page_token=token
        )

    async def GetUnit(self, request: query_pb2.GetUnitRequest, context: grpc.aio.ServicerContext) -> query_pb2.Unit:
        unit = await self._query_at_ledger_time(
            lambda kv, time: queries.get_unit(kv, request.kind, request.serial, time=time)
        )
        return convert.unit(unit)

    async def GetRetirement(
        self, request: query_pb2.GetRetirementRequest, context: grpc.aio.ServicerContext
    ) -> query_pb2.Retirement:
        unit = await self._query_at_ledger_time(
            lambda kv, time: queries.get_unit(kv, request.kind, request.serial, time=time)
        )
        if unit.retirement is None:
            raise NotFound("retirement", f"{request.kind}:{request.serial}")
        return convert.retirement(unit.retirement)

    async def GetBatch(self, request: query_pb2.GetBatchRequest, context: grpc.aio.ServicerContext) -> query_pb2.Batch:
        batch_id = _require_id(request.batch_id, "batch_id")
        return convert.batch(await self._query(queries.get_batch, request.kind, batch_id))


class EventsServicer(events_pb2_grpc.EventsServicer):
    #: Entries read per step while catching up.
    CHUNK = 256
    #: Longest wait for a commit before looking again (commits may come from
    #: elsewhere than this node's committer, e.g. replication).
    POLL = 1.0

    def __init__(self, ledger: Ledger, signal: CommitSignal, cache: EventCache | None = None) -> None:
        self._ledger = ledger
        self._signal = signal
        # One per ledger: a deprecation's events are derived once and shared
        # by every subscriber (see node.event_cache).
        self._cache = cache if cache is not None else EventCache()

    def _events_between(self, start: int, end: int, flt: EventFilter) -> list[events_pb2.Event]:
        rows = list(self._ledger.entries(start, end))
        out = []
        with self._ledger.state() as kv:
            for index, data in rows:
                for ev in self._cache.events_for_entry(kv, index, bytes(data)):
                    if flt.matches(ev):
                        out.append(events_pb2.Event(
                            index=ev.index, kind=ev.kind, op=ev.op, org=ev.org, subject=ev.subject, refs=list(ev.refs)
                        ))  # fmt: skip
        return out

    async def Subscribe(
        self, request: events_pb2.SubscribeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[events_pb2.Event]:
        flt = EventFilter(frozenset(request.kinds), frozenset(request.op_types), frozenset(request.accounts))
        cursor = request.from_index
        while not context.done():
            size = self._ledger.size
            if cursor >= size:
                await self._signal.wait(self.POLL)
                continue
            end = min(size, cursor + self.CHUNK)
            for event in await _read(self._events_between, cursor, end, flt):
                yield event
            cursor = end


class ReconcileServicer(reconcile_pb2_grpc.ReconcileServicer):
    """Reconciliation runs in its own two threads, not the shared read pool:
    an exchange's big books (or an old tree size, which is replayed) must
    not hold up proofs and queries, and calls at the latest size take the
    reconciler's lock in turn.

    ``checkpoint_at(size)``, if given, gives the checkpoint an answer at
    ``size`` carries, e.g. with the cluster's witness cosignatures, so that
    an exchange can check it against a k-of-n tlog-policy."""

    def __init__(self, ledger: Ledger, checkpoint_at: Callable[[int], Awaitable[str]] | None = None) -> None:
        self._ledger = ledger
        self._reconciler = Reconciler(ledger)
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="reconcile")
        self._checkpoint_at = checkpoint_at

    async def Reconcile(
        self, request: reconcile_pb2.ReconcileRequest, context: grpc.aio.ServicerContext
    ) -> reconcile_pb2.ReconcileResponse:
        limit = paging.page_size(request.page_size)
        resume = paging.decode_token("reconcile", request.page_token)
        size = request.tree_size
        offset = 0
        if resume is not None:
            # Later pages must be read at the same size as the first.
            token_size, _, token_offset = resume.partition(":")
            size, offset = paging.token_number(token_size), paging.token_number(token_offset)
            if size == 0:
                raise MalformedError("page_token", "not a token this server issued")
        rows = [BookRow(r.account, r.kind, r.batch, r.start, r.end, r.amount) for r in request.rows]
        loop = asyncio.get_running_loop()
        size, mismatches = await loop.run_in_executor(self._pool, self._reconciler.reconcile, rows, size)
        if self._checkpoint_at is not None:
            note = await self._checkpoint_at(size)
        else:
            note = await _read(self._reconciler.checkpoint, size)
        page = mismatches[offset : offset + limit]
        more = offset + limit < len(mismatches)
        token = paging.encode_token("reconcile", f"{size}:{offset + limit}") if more else ""
        return reconcile_pb2.ReconcileResponse(
            checkpoint=note, tree_size=size, mismatches=[convert.mismatch(m) for m in page], next_page_token=token
        )
