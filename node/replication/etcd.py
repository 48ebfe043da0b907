"""etcd as the ordering service (aetcd, grpc.aio).

Keys under the cluster's prefix ``P``::

    P genesis          the genesis entry's hash; written once, never deleted
    P log/<seq>        a batch record (records.py); seq is 20 decimal digits
    P applied/<node>   "<seq> <revision>" a node has applied, on a lease

The order is the sequence: a batch goes to ``log/<seq>`` in a transaction
that succeeds only if that key was never created, so two nodes can never
both own one sequence number, and a node that loses the race learns the
newest key from the failed transaction and tries the next number. Keys are
only created after the key before them, so sequence order is etcd revision
order, without gaps.

Reading follows the keys at the current revision, never old revisions: a
compaction cannot take away what a node still needs, only the deletion of
keys can, and keys are deleted only below the smallest sequence applied by
every node holding a live lease (:meth:`EtcdOrdering.compact`). A watch
only wakes the reader; when etcd cancels it (compaction, a member going
away) it is opened again from the current revision.

All endpoints go to one gRPC channel (``ipv4:a,b,c``), which moves to
another member when one fails. Every call has a deadline; a failure is
:class:`OrderingUnavailable` (gRPC UNAVAILABLE to clients).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aetcd
import grpc
from aetcd import rpc

from node.errors import ShuttingDown

__all__ = ["EtcdOrdering", "OrderingUnavailable"]

T = TypeVar("T")
_log = logging.getLogger("carbonledger.node")


class OrderingUnavailable(ShuttingDown):
    """The ordering service (etcd) cannot be reached or has no quorum; nothing
    was acknowledged. Clients see UNAVAILABLE and may retry."""


def _seq_key(prefix: bytes, seq: int) -> bytes:
    return prefix + b"log/" + b"%020d" % seq


def _prefix_end(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])


class EtcdOrdering:
    def __init__(self, endpoints: Sequence[str], prefix: str, *, timeout: float = 5.0) -> None:
        if not endpoints:
            raise ValueError("no etcd endpoints")
        self._prefix = prefix.encode() if prefix.endswith("/") else (prefix + "/").encode()
        self._log_prefix = self._prefix + b"log/"
        self._timeout = timeout
        # aetcd joins host and port into the channel target; a gRPC target
        # naming every member lets the channel fail over between them.
        host, port = endpoints[-1].rsplit(":", 1)
        target_host = "ipv4:" + ",".join([*endpoints[:-1], host]) if len(endpoints) > 1 else host
        self._client = aetcd.Client(
            host=target_host, port=int(port), timeout=int(max(1, timeout)),
            options={"grpc.max_receive_message_length": 64 << 20, "grpc.lb_policy_name": "pick_first"},
        )  # fmt: skip
        self._lease: int | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self.changed = asyncio.Event()

    async def close(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
            try:
                await self._watch_task
            except asyncio.CancelledError:
                pass
        try:
            await asyncio.wait_for(self._client.close(), 3)
        except (TimeoutError, Exception):  # noqa: BLE001, S110 - closing a broken channel: nothing to report
            pass

    async def _call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        try:
            await self._client.connect()
            return await asyncio.wait_for(fn(), self._timeout)
        except (TimeoutError, grpc.RpcError, aetcd.ClientError, OSError) as exc:
            detail = exc.details() if isinstance(exc, grpc.RpcError) else (str(exc) or type(exc).__name__)  # type: ignore[attr-defined]
            raise OrderingUnavailable(f"etcd unavailable ({what}): {detail}") from None

    # -- writing the order ------------------------------------------------

    async def put_batch(self, record: bytes, seq: int) -> tuple[int, int]:
        """Put ``record`` under the first free sequence number from ``seq``;
        return (seq, revision)."""
        for _ in range(1000):
            key = _seq_key(self._prefix, seq)
            last = rpc.RangeRequest(
                key=self._log_prefix, range_end=_prefix_end(self._log_prefix), limit=1, keys_only=True,
                sort_order=rpc.RangeRequest.DESCEND, sort_target=rpc.RangeRequest.KEY,
            )  # fmt: skip
            request = rpc.TxnRequest(
                compare=[rpc.Compare(key=key, result=rpc.Compare.EQUAL, target=rpc.Compare.CREATE, create_revision=0)],
                success=[rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=record))],
                failure=[rpc.RequestOp(request_range=last)],
            )
            response = await self._call("put", lambda r=request: self._client.kvstub.Txn(r, timeout=self._timeout))
            if response.succeeded:
                return seq, response.header.revision
            kvs = response.responses[0].response_range.kvs
            newest = int(kvs[0].key[len(self._log_prefix) :]) if kvs else seq
            seq = max(seq + 1, newest + 1)
        raise OrderingUnavailable("could not claim a sequence number")

    async def put_genesis(self, record: bytes, marker: bytes) -> bool:
        """Put the genesis batch as sequence 0 unless a genesis exists."""
        gkey = self._prefix + b"genesis"
        key = _seq_key(self._prefix, 0)
        request = rpc.TxnRequest(
            compare=[
                rpc.Compare(key=gkey, result=rpc.Compare.EQUAL, target=rpc.Compare.CREATE, create_revision=0),
                rpc.Compare(key=key, result=rpc.Compare.EQUAL, target=rpc.Compare.CREATE, create_revision=0),
            ],
            success=[
                rpc.RequestOp(request_put=rpc.PutRequest(key=gkey, value=marker)),
                rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=record)),
            ],
        )
        response = await self._call("genesis", lambda: self._client.kvstub.Txn(request, timeout=self._timeout))
        return bool(response.succeeded)

    # -- reading the order ------------------------------------------------

    async def read_from(self, seq: int, limit: int = 64) -> list[tuple[int, int, bytes]]:
        """Batches from ``seq`` on, in order: (seq, create revision, record)."""
        request = rpc.RangeRequest(
            key=_seq_key(self._prefix, seq), range_end=_prefix_end(self._log_prefix), limit=limit,
            sort_order=rpc.RangeRequest.ASCEND, sort_target=rpc.RangeRequest.KEY,
            # A member applies only committed entries, so its local view is
            # stale at worst, never wrong: a node keeps applying what was
            # ordered even while etcd has lost its quorum.
            serializable=True,
        )  # fmt: skip
        response = await self._call("read", lambda: self._client.kvstub.Range(request, timeout=self._timeout))
        return [(int(kv.key[len(self._log_prefix) :]), kv.create_revision, kv.value) for kv in response.kvs]

    def start_watch(self) -> None:
        """Set :attr:`changed` whenever a batch key changes (a wake-up only)."""
        if self._watch_task is None:
            self._watch_task = asyncio.create_task(self._watch(), name="etcd-watch")

    async def _watch(self) -> None:
        while True:
            try:
                await self._client.connect()
                watch = await self._client.watch(self._log_prefix, range_end=_prefix_end(self._log_prefix))
                self.changed.set()  # anything may have happened while no watch was open
                async for _event in watch:
                    self.changed.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - compaction or a member went away: watch again
                _log.debug("etcd watch ended; reopening", extra={"error": repr(exc)})
            self.changed.set()
            await asyncio.sleep(0.2)

    # -- the window: applied positions, deletion, compaction ---------------

    async def publish_applied(self, node: str, seq: int, revision: int, ttl: int) -> None:
        async def run() -> None:
            if self._lease is not None:
                try:
                    reply = await self._client.refresh_lease(self._lease)
                    if reply.TTL <= 0:
                        self._lease = None
                except (grpc.RpcError, aetcd.ClientError):
                    self._lease = None
            if self._lease is None:
                grant = await self._client.leasestub.LeaseGrant(rpc.LeaseGrantRequest(TTL=ttl), timeout=self._timeout)
                self._lease = grant.ID
            put = rpc.PutRequest(key=self._prefix + b"applied/" + node.encode(), value=b"%d %d" % (seq, revision), lease=self._lease)
            await self._client.kvstub.Put(put, timeout=self._timeout)

        await self._call("publish", run)

    async def compact(self) -> int | None:
        """Delete the batches every live node has applied and compact etcd's
        history up to now; return the first sequence number kept."""

        async def run() -> int | None:
            prefix = self._prefix + b"applied/"
            got = await self._client.kvstub.Range(
                rpc.RangeRequest(key=prefix, range_end=_prefix_end(prefix)), timeout=self._timeout
            )
            seqs = [int(kv.value.split()[0]) for kv in got.kvs]
            if not seqs:
                return None
            keep = min(seqs)  # the newest batch applied everywhere stays: it is the sequence's tail
            deleted = await self._client.kvstub.DeleteRange(
                rpc.DeleteRangeRequest(key=_seq_key(self._prefix, 0), range_end=_seq_key(self._prefix, keep)),
                timeout=self._timeout,
            )
            try:
                await self._client.kvstub.Compact(
                    rpc.CompactionRequest(revision=deleted.header.revision), timeout=self._timeout
                )
            except grpc.RpcError as exc:
                if "compacted" not in (exc.details() or ""):  # type: ignore[attr-defined]
                    raise
            return keep

        return await self._call("compact", run)

    async def status(self) -> dict[str, Any]:
        response = await self._call(
            "status", lambda: self._client.kvstub.Range(rpc.RangeRequest(key=self._prefix + b"genesis"), timeout=self._timeout)
        )
        return {"revision": response.header.revision, "genesis": bool(response.kvs)}
