"""Group commit: many concurrent submissions, one durable transaction per group.

A submission goes through three stages:

1. **admission**: a submission that would take the node past
   ``max_pending`` submissions, or past ``max_pending_bytes`` of envelopes,
   is refused at once with :class:`Pushback` (the client backs off for its
   ``retry_after``); an admitted submission takes its place in the
   sequencing order. The two bounds bound the node's memory for work in
   flight: a submission holds its envelope, and once prepared its parsed
   payload (several times the envelope's size), until its group is durable;
2. **preparation**, in parallel: preparation threads parse the envelope and
   its payload (the state machine's stateless ``prepare(entry)``, or
   :func:`ledger.envelope.parse_envelope` for a ledger without one) while a
   :class:`~node.sigpool.SignaturePool`, when given, checks the signatures in
   worker processes; without one the threads check them too. Submissions that
   arrived together are handed over in a few chunks, not one task each: a
   task and its wake-up cost about as much as an envelope's parsing; and a
   thread takes the chunks queued behind its own with it, so that under RPC
   load, where each event-loop pass admits a few envelopes, they share one
   round trip to a signature worker. The workers have GILs of their own, so
   verification scales with cores without making the node's threads queue
   for its GIL once per signature;
3. **commit**: one task takes the longest run of prepared submissions at the
   head of the order (up to ``max_batch``) and calls ``ledger.submit(batch,
   verified=..., prepared=...)`` in a dedicated writer thread, so the event
   loop never blocks on LMDB's fsync and the state machine does not parse the
   envelopes again. While one group commits, the next one is prepared; that
   is what amortises the fsync under load.

Submissions are sequenced in the order they were admitted, whatever order
their preparation finishes in, so a client that pipelines dependent
operations (a transfer, then a retirement of the same units) sees them
applied in the order it sent them.

Each caller is answered only after the transaction holding its entry is
durable: with its index, or with the earlier index and ``duplicate`` for
bytes already in the log, or with the state machine's typed rejection
(a malformed or unsigned envelope is answered as soon as it is prepared). A
caller that went away (deadline, cancellation) before its group was taken is
dropped from the group; once taken, the entry is committed regardless, and a
resubmission finds it (submission is idempotent per envelope bytes). A
submission keeps its place under the bounds for as long as the committer
holds it, not as long as its caller waits: one whose caller went away is
still prepared, and counts, until the head of the order reaches it; one
rejected in preparation stops counting when it is answered.

The committer knows nothing of gRPC; replication (issue 6) can put an ordering
service between :meth:`GroupCommitter._commit` and the ledger.
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ledger.envelope import parse_envelope, verified_keys
from ledger.errors import LedgerError, MalformedError, Pushback
from ledger.log import MAX_ENTRY_BYTES, Ledger, Receipt
from node.errors import ShuttingDown
from node.sigpool import SignaturePool, Verdict

__all__ = ["MAX_PENDING", "MAX_PENDING_BYTES", "CommitListener", "Committed", "GroupCommitter"]

_log = logging.getLogger("carbonledger.node")

#: Most envelopes one preparation task takes: small enough that a burst is
#: spread over every worker, large enough to amortise the task.
_PREPARE_CHUNK = 64
#: Default bound on submissions held at once. The group being written and
#: the next one being prepared share it, so groups run to about half of it,
#: and a group's transaction holds a copy of every LMDB page it changes:
#: memory grows with the bound. So does throughput, up to a point (each
#: page copied is shared by more entries of a larger group): ingesting the
#: bench workload with 1,000 in flight (groups of ~480) took 12% more CPU
#: per entry than with 2,000 or 4,000, which were alike within noise; at
#: 10^6 entries, 4,000 raised the node's peak RSS by about 50 MB over 2,000.
MAX_PENDING = 2_000
#: Default bound on the envelope bytes held at once: one request of the
#: node's largest message size (8 MiB), whatever the count. Without it,
#: ``max_pending`` envelopes of up to 1 MiB each could hold gigabytes.
MAX_PENDING_BYTES = 8 << 20
#: Fewest envelopes a chunk is split down to. Waking a worker is a system
#: call made holding the GIL; the few envelopes one event-loop pass admits
#: under RPC load are cheaper prepared by one worker than woken four.
_PREPARE_CHUNK_MIN = 8


@dataclass(frozen=True, slots=True)
class Committed:
    """One durable group: its receipts (in order) and the tree size after it."""

    receipts: tuple[Receipt, ...]
    tree_size: int


#: Called on the event loop after every durable group.
CommitListener = Callable[[Committed], None]

_Outcome = tuple[Receipt | LedgerError, int]


@dataclass(slots=True)
class _Pending:
    entry: bytes
    future: asyncio.Future[_Outcome]
    #: True while this submission counts against ``max_pending`` and
    #: ``max_pending_bytes``.
    counted: bool = True
    #: False until preparation has finished; then ``verified`` and
    #: ``prepared`` are set, or the future already holds the rejection.
    checked: bool = False
    verified: frozenset[str] | None = None
    prepared: Any = None


def _prepare_many(
    machine: Any, entries: list[bytes], verdicts: Callable[[], list[Verdict]] | None = None
) -> list[tuple[frozenset[str], Any] | BaseException]:
    """Parse envelopes and learn which signatures verify; runs in a
    preparation thread.

    ``verdicts``, if given, returns the signature pool's verdict on each
    entry; it is called after the parsing, which overlaps the pool's work.
    Without it signatures are verified here. Returns, per entry,
    ``(verified keyids, prepared or None)`` or the LedgerError that rejects it.
    """
    prepare = getattr(machine, "prepare", None)
    here = verdicts is None
    out: list[Any] = []
    try:
        for entry in entries:
            try:
                if len(entry) > MAX_ENTRY_BYTES:
                    raise MalformedError("envelope", f"{len(entry)} bytes, at most {MAX_ENTRY_BYTES}")
                if prepare is not None:
                    prepared = prepare(entry, verify=here)
                    out.append((prepared.verified, prepared))
                else:
                    env = parse_envelope(entry)
                    out.append((verified_keys(env) if here else None, None))
            except LedgerError as exc:
                out.append(exc)
    finally:
        # Collected even if parsing failed: collecting returns the worker.
        answers = verdicts() if verdicts is not None else None
    if answers is not None:
        for i, (result, verdict) in enumerate(zip(out, answers)):
            if isinstance(result, tuple):
                # The worker parsed the same bytes with the same code, so it
                # fails exactly where this thread did; a None here would be
                # a bug's symptom, and verifying locally is still correct.
                keys = verdict if verdict is not None else verified_keys(parse_envelope(entries[i]))
                out[i] = (keys, result[1])
    return out


class GroupCommitter:
    """Queues submissions and commits them to ``ledger`` in groups.

    Use from one event loop: :meth:`start`, then :meth:`submit` from any
    number of tasks, then :meth:`close`.
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        max_pending: int = MAX_PENDING,
        max_pending_bytes: int = MAX_PENDING_BYTES,
        max_batch: int = 2_000,
        prepare_threads: int = 2,
        signature_pool: SignaturePool | None = None,
        metrics: Any = None,
    ) -> None:
        if min(max_pending, max_pending_bytes, max_batch, prepare_threads) < 1:
            raise ValueError("max_pending, max_pending_bytes, max_batch and prepare_threads must be positive")
        self._ledger = ledger
        self._machine = getattr(ledger, "machine", None)
        self._max_pending = max_pending
        self._max_pending_bytes = max_pending_bytes
        self._max_batch = max_batch
        self._workers = prepare_threads
        self._signatures = signature_pool
        self._metrics = metrics
        # Preparation workers take chunks from one queue. Not a
        # ThreadPoolExecutor: its per-task future, locks and done-callback
        # cost the event loop more than a small chunk's parsing.
        # Started by start(), not here: a committer built and never started
        # (a node whose port cannot be bound) then leaves no threads behind.
        self._chunks: queue.SimpleQueue[list[_Pending] | None] = queue.SimpleQueue()
        self._prepare_threads: list[threading.Thread] = []
        # One writer thread: the ledger serialises appends anyway, and a
        # single thread keeps the commit order equal to the queue order.
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="commit")
        self._loop: asyncio.AbstractEventLoop | None = None
        # Every admitted submission not yet taken by a group, in admission
        # order; and those admitted since the last hand-over to the pool.
        self._order: deque[_Pending] = deque()
        self._backlog: list[_Pending] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pending = 0
        self._pending_bytes = 0
        self._closing = False
        self._listeners: list[CommitListener] = []
        self._latency_ewma = 0.005  # seconds per group, for the retry hint
        if metrics is not None:
            # Read when scraped: setting the gauge takes its lock twice per
            # submission on the event loop.
            metrics.queue_depth.set_function(lambda: self._pending)

    # -- lifecycle ------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._loop = asyncio.get_running_loop()
            self._wake = asyncio.Event()
            self._prepare_threads = [
                threading.Thread(target=self._prepare_worker, name=f"prepare_{i}", daemon=True)
                for i in range(self._workers)
            ]
            for t in self._prepare_threads:
                t.start()
            self._task = asyncio.create_task(self._run(), name="group-committer")

    async def close(self) -> None:
        """Refuse new submissions, commit everything already queued, stop."""
        self._closing = True
        if self._task is not None:
            while (self._pending > 0 or self._order) and not self._task.done():
                await asyncio.sleep(0.005)
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for _ in self._prepare_threads:
            self._chunks.put(None)
        for t in self._prepare_threads:
            t.join()
        self._writer.shutdown(wait=True)

    def add_listener(self, listener: CommitListener) -> None:
        self._listeners.append(listener)

    @property
    def pending(self) -> int:
        """Submissions admitted and still held: not yet committed, rejected,
        or passed over by the head of the order."""
        return self._pending

    @property
    def pending_bytes(self) -> int:
        """Envelope bytes of the :attr:`pending` submissions."""
        return self._pending_bytes

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
        self._admit(1, len(entry))
        result, size = await self._enqueue(entry)
        if isinstance(result, LedgerError):
            raise result
        return result, size

    async def submit_many(self, entries: Sequence[bytes]) -> list[_Outcome]:
        """Submit several envelopes, each accepted or rejected on its own, in
        the order given (they are prepared in parallel, sequenced in order).

        Admission is all or nothing (a batch bigger than the free room gets
        Pushback); results come back in request order.
        """
        self._admit(len(entries), sum(map(len, entries)))
        futures = [self._enqueue(e) for e in entries]
        return [await f for f in futures]

    def _admit(self, n: int, nbytes: int) -> None:
        """Count ``n`` submissions of ``nbytes`` in all, or raise Pushback.

        Past ``max_pending_bytes`` only while something else is held: a
        request larger than the whole budget (the transport bounds how
        large) is admitted into an empty committer rather than never.
        """
        if self._closing or self._task is None:
            raise ShuttingDown("the node is not accepting submissions")
        if self._pending + n > self._max_pending or (
            self._pending and self._pending_bytes + nbytes > self._max_pending_bytes
        ):
            if self._metrics is not None:
                self._metrics.pushbacks.inc()
            raise Pushback(
                f"{self._pending} submissions ({self._pending_bytes} bytes) queued; retry later", self.retry_after()
            )
        self._pending += n
        self._pending_bytes += nbytes

    def _release(self, p: _Pending) -> None:
        """``p`` no longer counts against the bounds (once only)."""
        if p.counted:
            p.counted = False
            self._pending -= 1
            self._pending_bytes -= len(p.entry)

    def _enqueue(self, entry: bytes) -> asyncio.Future[_Outcome]:
        # Cancelling the caller cancels the future; a group not yet taken
        # then leaves the entry out.
        assert self._loop is not None
        p = _Pending(entry, self._loop.create_future())
        self._order.append(p)
        if not self._backlog:
            self._loop.call_soon(self._dispatch)
        self._backlog.append(p)
        return p.future

    def _dispatch(self) -> None:
        """Hand what was admitted since the last call to the pool, in chunks."""
        backlog, self._backlog = self._backlog, []
        if not backlog:
            return
        size = min(_PREPARE_CHUNK, max(_PREPARE_CHUNK_MIN, math.ceil(len(backlog) / self._workers)))
        for lo in range(0, len(backlog), size):
            self._chunks.put(backlog[lo : lo + size])

    def _prepare_worker(self) -> None:
        """A preparation thread: prepare chunks until told to stop (None)."""
        pool = self._signatures
        chunks = self._chunks
        stop = False
        while not stop and (chunk := chunks.get()) is not None:
            # Take what else is queued, until the chunk is full or overfull
            # (under two chunks): under RPC load each event-loop pass admits
            # a few envelopes, one chunk each, and one round trip to a
            # signature worker for all of them costs far less than one each.
            while len(chunk) < _PREPARE_CHUNK:
                try:
                    more = chunks.get_nowait()
                except queue.Empty:
                    break
                if more is None:  # this thread's stop, after this chunk
                    stop = True
                    break
                chunk = chunk + more
            entries = [p.entry for p in chunk]
            try:
                verdicts = pool.submit(entries) if pool is not None else None
                results: list[Any] = _prepare_many(self._machine, entries, verdicts)
            except BaseException as exc:  # noqa: BLE001 - a bug in preparation: fail these callers, not the node
                _log.error("preparation failed", exc_info=exc)
                results = [exc] * len(chunk)
            assert self._loop is not None
            try:
                self._loop.call_soon_threadsafe(self._prepared, chunk, results)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

    def _prepared(self, chunk: list[_Pending], results: list[Any]) -> None:
        rejected = 0
        for p, result in zip(chunk, results):
            p.checked = True
            if isinstance(result, tuple):
                p.verified, p.prepared = result
            else:
                rejected += 1
                if not p.future.done():
                    if isinstance(result, LedgerError):
                        p.future.set_result((result, self._ledger.size))
                    else:
                        p.future.set_exception(result)
                # Answered and never committed: what is left in the order
                # until the head passes it is this small record alone.
                self._release(p)
                p.entry = b""
        self._count("rejected", rejected)
        self._wake.set()

    def _count(self, outcome: str, n: int = 1) -> None:
        if self._metrics is not None and n:
            self._metrics.submissions.labels(outcome=outcome).inc(n)

    # -- committing -----------------------------------------------------

    def _take_group(self) -> list[_Pending]:
        """The prepared submissions at the head of the order, skipping (and
        releasing) those already answered (rejected, or their caller went
        away)."""
        order, group = self._order, []
        while order and len(group) < self._max_batch and order[0].checked:
            p = order.popleft()
            if p.future.done():
                self._release(p)
            else:
                group.append(p)
        return group

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while group := self._take_group():
                # Shielded: a shutdown that cancels this task still lets the
                # group in flight finish and its callers hear about it.
                await asyncio.shield(self._commit(loop, group))

    async def _commit(self, loop: asyncio.AbstractEventLoop, group: list[_Pending]) -> None:
        try:
            await self._commit_group(loop, group)
        finally:
            # Answered (or failed) either way: the group's room is free.
            for p in group:
                self._release(p)

    async def _commit_group(self, loop: asyncio.AbstractEventLoop, group: list[_Pending]) -> None:
        entries = [p.entry for p in group]
        verified: list[frozenset[str] | None] = [p.verified for p in group]
        prepared = [p.prepared for p in group] if self._machine is not None else None
        started = time.perf_counter()
        try:
            results = await loop.run_in_executor(
                self._writer, self._submit_to_ledger, entries, verified, prepared
            )
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
        self, entries: list[bytes], verified: list[frozenset[str] | None], prepared: list[Any] | None = None
    ) -> list[Receipt | LedgerError]:
        if prepared is None:
            return self._ledger.submit(entries, verified=verified)
        return self._ledger.submit(entries, verified=verified, prepared=prepared)
