"""Group commit: many concurrent submissions, one durable transaction per group.

A submission goes through three stages:

1. **admission**: if more than ``max_pending`` submissions are already in the
   node, it is refused at once with :class:`Pushback` (the client backs off);
2. **verification**, in parallel: a thread pool parses the envelope and checks
   its signatures (:func:`ledger.envelope.verified_keys`; ``cryptography``
   releases the GIL, so this scales with cores);
3. **commit**: one task takes everything queued (up to ``max_batch``) and calls
   ``ledger.submit(batch, verified=...)`` in a dedicated writer thread, so the
   event loop never blocks on LMDB's fsync. While one group commits, the next
   one accumulates; that is what amortises the fsync under load.

Each caller is answered only after the transaction holding its entry is
durable: with its index, or with the earlier index and ``duplicate`` for
bytes already in the log, or with the state machine's typed rejection. A
caller that went away (deadline, cancellation) before its group was taken is
dropped from the group; once taken, the entry is committed regardless, and a
resubmission finds it (submission is idempotent per envelope bytes).

The committer knows nothing of gRPC; replication (issue 6) can put an ordering
service between :meth:`GroupCommitter._commit` and the ledger.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ledger.envelope import parse_envelope, verified_keys
from ledger.errors import LedgerError, MalformedError, Pushback
from ledger.log import MAX_ENTRY_BYTES, Ledger, Receipt
from node.errors import ShuttingDown

__all__ = ["CommitListener", "Committed", "GroupCommitter"]

_log = logging.getLogger("carbonledger.node")


@dataclass(frozen=True, slots=True)
class Committed:
    """One durable group: its receipts (in order) and the tree size after it."""

    receipts: tuple[Receipt, ...]
    tree_size: int


#: Called on the event loop after every durable group.
CommitListener = Callable[[Committed], None]


@dataclass(slots=True)
class _Pending:
    entry: bytes
    verified: frozenset[str]
    future: asyncio.Future[tuple[Receipt | LedgerError, int]]


def _precheck(entry: bytes) -> frozenset[str]:
    """Parse and verify one envelope; runs in the verification pool."""
    if len(entry) > MAX_ENTRY_BYTES:
        raise MalformedError("envelope", f"{len(entry)} bytes, at most {MAX_ENTRY_BYTES}")
    return verified_keys(parse_envelope(entry))


class GroupCommitter:
    """Queues submissions and commits them to ``ledger`` in groups.

    Use from one event loop: :meth:`start`, then :meth:`submit` from any
    number of tasks, then :meth:`close`.
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        max_pending: int = 10_000,
        max_batch: int = 2_000,
        verify_workers: int = 4,
        metrics: Any = None,
    ) -> None:
        if max_pending < 1 or max_batch < 1 or verify_workers < 1:
            raise ValueError("max_pending, max_batch and verify_workers must be positive")
        self._ledger = ledger
        self._max_pending = max_pending
        self._max_batch = max_batch
        self._metrics = metrics
        self._verify_pool = ThreadPoolExecutor(verify_workers, thread_name_prefix="verify")
        # One writer thread: the ledger serialises appends anyway, and a
        # single thread keeps the commit order equal to the queue order.
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="commit")
        self._queue: asyncio.Queue[_Pending] | None = None
        self._task: asyncio.Task[None] | None = None
        self._pending = 0
        self._closing = False
        self._listeners: list[CommitListener] = []
        self._latency_ewma = 0.005  # seconds per group, for the retry hint

    # -- lifecycle ------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.create_task(self._run(), name="group-committer")

    async def close(self) -> None:
        """Refuse new submissions, commit everything already queued, stop."""
        self._closing = True
        if self._task is not None and self._queue is not None:
            while self._pending > 0 and not self._task.done():
                await asyncio.sleep(0.005)
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._verify_pool.shutdown(wait=True)
        self._writer.shutdown(wait=True)

    def add_listener(self, listener: CommitListener) -> None:
        self._listeners.append(listener)

    @property
    def pending(self) -> int:
        """Submissions admitted and not yet answered."""
        return self._pending

    # -- submitting -----------------------------------------------------

    def retry_after(self) -> float:
        """Seconds a refused client should wait: about the time to drain the queue."""
        groups = max(1.0, self._pending / self._max_batch)
        return min(5.0, max(0.05, groups * self._latency_ewma))

    async def submit(self, entry: bytes) -> tuple[Receipt, int]:
        """Submit one envelope; return its receipt and the tree size once durable.

        Raises the state machine's LedgerError if it is rejected,
        :class:`Pushback` when the node is full, ShuttingDown when stopping.
        """
        result, size = await self._submit_one(entry)
        if isinstance(result, LedgerError):
            raise result
        return result, size

    async def submit_many(self, entries: Sequence[bytes]) -> list[tuple[Receipt | LedgerError, int]]:
        """Submit several envelopes, each accepted or rejected on its own, in
        the order given (they are verified in parallel, then queued together).

        Admission is all or nothing (a batch bigger than the free room gets
        Pushback); results come back in request order.
        """
        self._admit(len(entries))
        try:
            checked = await asyncio.gather(*(self._verify(e) for e in entries))
            futures = [self._enqueue(e, v) if isinstance(v, frozenset) else None for e, v in zip(entries, checked)]
            out: list[tuple[Receipt | LedgerError, int]] = []
            for fut, v in zip(futures, checked):
                if fut is None:
                    assert isinstance(v, LedgerError)
                    out.append((v, self._ledger.size))
                else:
                    out.append(await fut)
            return out
        finally:
            self._release(len(entries))

    def _admit(self, n: int) -> None:
        if self._closing or self._queue is None:
            raise ShuttingDown("the node is not accepting submissions")
        if self._pending + n > self._max_pending:
            if self._metrics is not None:
                self._metrics.pushbacks.inc()
            raise Pushback(f"{self._pending} submissions queued; retry later", self.retry_after())
        self._pending += n
        if self._metrics is not None:
            self._metrics.queue_depth.set(self._pending)

    def _release(self, n: int) -> None:
        self._pending -= n
        if self._metrics is not None:
            self._metrics.queue_depth.set(self._pending)

    async def _verify(self, entry: bytes) -> frozenset[str] | LedgerError:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._verify_pool, _precheck, entry)
        except LedgerError as exc:
            self._count("rejected")
            return exc

    def _enqueue(self, entry: bytes, verified: frozenset[str]) -> asyncio.Future[tuple[Receipt | LedgerError, int]]:
        # Cancelling the caller cancels the future; a group not yet taken
        # then leaves the entry out.
        future: asyncio.Future[tuple[Receipt | LedgerError, int]] = asyncio.get_running_loop().create_future()
        assert self._queue is not None
        self._queue.put_nowait(_Pending(entry, verified, future))
        return future

    async def _submit_one(self, entry: bytes) -> tuple[Receipt | LedgerError, int]:
        self._admit(1)
        try:
            verified = await self._verify(entry)
            if isinstance(verified, LedgerError):
                return verified, self._ledger.size
            return await self._enqueue(entry, verified)
        finally:
            self._release(1)

    def _count(self, outcome: str, n: int = 1) -> None:
        if self._metrics is not None and n:
            self._metrics.submissions.labels(outcome=outcome).inc(n)

    # -- committing -----------------------------------------------------

    async def _run(self) -> None:
        assert self._queue is not None
        queue = self._queue
        loop = asyncio.get_running_loop()
        while True:
            group = [await queue.get()]
            while len(group) < self._max_batch and not queue.empty():
                group.append(queue.get_nowait())
            group = [p for p in group if not p.future.done()]
            if not group:
                continue
            # Shielded: a shutdown that cancels this task still lets the group
            # in flight finish and its callers hear about it.
            await asyncio.shield(self._commit(loop, group))

    async def _commit(self, loop: asyncio.AbstractEventLoop, group: list[_Pending]) -> None:
        entries = [p.entry for p in group]
        verified: list[frozenset[str] | None] = [p.verified for p in group]
        started = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._writer, self._submit_to_ledger, entries, verified)
        except Exception as exc:  # noqa: BLE001 - the store failed: nobody's entry is durable
            _log.error("group commit failed", exc_info=exc, extra={"event": "commit_failed", "size": len(group)})
            for p in group:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        elapsed = time.perf_counter() - started
        self._latency_ewma = 0.8 * self._latency_ewma + 0.2 * elapsed
        size = self._ledger.size
        accepted = [r for r in results if isinstance(r, Receipt)]
        if self._metrics is not None:
            self._metrics.batch_size.observe(len(group))
            self._metrics.commit_latency.observe(elapsed)
            self._count("accepted", sum(1 for r in accepted if not r.duplicate))
            self._count("duplicate", sum(1 for r in accepted if r.duplicate))
            self._count("rejected", len(results) - len(accepted))
        for p, result in zip(group, results):
            if not p.future.done():
                p.future.set_result((result, size))
        committed = Committed(tuple(accepted), size)
        for listener in self._listeners:
            try:
                listener(committed)
            except Exception:  # noqa: BLE001 - a listener must not stop commits
                _log.exception("commit listener failed")

    def _submit_to_ledger(
        self, entries: list[bytes], verified: list[frozenset[str] | None]
    ) -> list[Receipt | LedgerError]:
        return self._ledger.submit(entries, verified=verified)
