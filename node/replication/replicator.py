"""Applying the order: every node runs the same batches through ``Ledger.submit``.

:class:`Replicator` owns a node's side of the ordering service:

- **ordering** (:meth:`Replicator.order`): the committer's group, already
  verified, is cut into records under etcd's size limit, each put under the
  next sequence number; the call returns once every record has come back in
  order and been applied *on this node*, durably, with the receipts of that
  application. That is when a submitter gets its index.
- **applying** (the apply loop): batches are read in sequence from etcd and
  applied one by one with ``submit(entries, time=<record time>,
  meta={position})``: the block time comes from the record, and the applied
  position (sequence, etcd revision) is written in the same LMDB transaction
  as the block, so a restart resumes exactly after the last applied batch.
  A record that does not parse is applied as an empty batch on every node
  alike. Local batches skip signature re-verification (already done by the
  committer); the state machine is deterministic either way.
- **catching up**: when the next batch is no longer in etcd (deleted behind
  the live nodes while this one was away, or never seen by a new node), the
  node fetches blocks from a peer and verifies them before applying
  (:mod:`node.replication.catchup`), then continues from the peer's position.
- **the window**: the node publishes its applied position on a lease and,
  every ``compact_interval``, deletes what all live nodes applied and
  compacts etcd (any node may do it: the rule has no leader).

Submissions are answered UNAVAILABLE while etcd has no quorum; applied
entries are never lost, since each is in some node's LMDB before any answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from carbonledger.v1 import cluster_pb2

from ledger.errors import LedgerError, MalformedError, StorageError
from ledger.keys import Verifier
from ledger.log import Ledger, Receipt
from ledger.policy import QUORUM_NONE, Policy, PolicyLog
from node.committer import CommitListener, Committed, GroupCommitter
from node.replication.catchup import (
    CATCHING_UP,
    POSITION_KEY,
    catch_up,
    decode_position,
    encode_position,
)
from node.replication.conflicts import BlockConflicts
from node.replication.etcd import EtcdOrdering, OrderingUnavailable
from node.replication.peer import position_at_key
from node.replication.records import BatchRecord, decode_record, encode_record, split_batch

__all__ = ["ReplicatedCommitter", "Replicator", "fill_conflicts"]

_log = logging.getLogger("carbonledger.node")
_ApplyResult = list[Receipt | LedgerError]


class Replicator:
    def __init__(
        self,
        ledger: Ledger,
        *,
        endpoints: Sequence[str],
        prefix: str,
        node_id: str,
        peers: Sequence[str] = (),
        policy: Policy | None = None,
        lease_ttl: int = 30,
        compact_interval: float = 5.0,
        timeout: float = 5.0,
        apply_timeout: float = 30.0,
        genesis: bytes | None = None,
        evidence_dir: Path | None = None,
    ) -> None:
        self._ledger = ledger
        self._etcd = EtcdOrdering(endpoints, prefix, timeout=timeout)
        self._node = node_id
        self._peers = list(peers)
        # What a peer's blocks must be anchored to before this node applies
        # them: the cluster's policy, or without one, this log's own key.
        self._policy = policy or Policy((PolicyLog(Verifier.from_vkey(ledger.vkey)),), (), (), QUORUM_NONE)
        self._lease_ttl = lease_ttl
        self._compact_interval = compact_interval
        self._apply_timeout = apply_timeout
        self._genesis = genesis
        self._applier = ThreadPoolExecutor(1, thread_name_prefix="apply")
        self._waiting: dict[bytes, asyncio.Future[_ApplyResult]] = {}
        self._verified: dict[bytes, list[frozenset[str] | None]] = {}
        self._listeners: list[CommitListener] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._next_seq = 0
        self.blocks_from_peers = 0
        # Block conflicts met while catching up: evidence files under
        # ``evidence_dir`` (the node directory's evidence/), and the status.
        self.conflicts = BlockConflicts(evidence_dir)
        self.position: tuple[int, int] | None = None
        self.caught_up = asyncio.Event()

    def add_listener(self, listener: CommitListener) -> None:
        self._listeners.append(listener)

    # -- lifecycle ------------------------------------------------------

    async def start(self) -> None:
        stored = self._ledger.meta(POSITION_KEY)
        if stored is None and self._ledger.size > 0:
            raise StorageError(
                "this ledger was not created as a cluster replica (carbonledger init --cluster); "
                "it has entries but no replication position"
            )
        self.position = decode_position(stored) if stored not in (None, CATCHING_UP) else None
        self._next_seq = self.position[0] + 1 if self.position else 0
        self._etcd.start_watch()
        self._tasks = [
            asyncio.create_task(self._apply_loop(), name="replication-apply"),
            asyncio.create_task(self._window_loop(), name="replication-window"),
        ]
        if self._genesis is not None and stored is None:
            await self._offer_genesis(self._genesis)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001, S110 - stopping; errors were logged
                pass
        self._tasks = []
        await self._etcd.close()
        self._applier.shutdown(wait=True)

    async def _offer_genesis(self, entry: bytes) -> None:
        record = encode_record(BatchRecord(int(time.time()), self._node, os.urandom(16), (entry,)))
        marker = hashlib.sha256(entry).hexdigest().encode()
        for attempt in range(50):
            try:
                if await self._etcd.put_genesis(record, marker):
                    _log.info("put the cluster genesis", extra={"event": "genesis"})
                return
            except OrderingUnavailable:
                await asyncio.sleep(min(2.0, 0.1 * (attempt + 1)))

    # -- ordering (the committer's side) -----------------------------------

    async def order(self, entries: Sequence[bytes], verified: Sequence[frozenset[str] | None]) -> _ApplyResult:
        out: _ApplyResult = []
        loop = asyncio.get_running_loop()
        for start, end in split_batch(entries):
            batch_id = os.urandom(16)
            record = encode_record(BatchRecord(int(time.time()), self._node, batch_id, tuple(entries[start:end])))
            future: asyncio.Future[_ApplyResult] = loop.create_future()
            self._waiting[batch_id] = future
            self._verified[batch_id] = list(verified[start:end])
            try:
                seq, _ = await self._etcd.put_batch(record, self._next_seq)
                self._next_seq = max(self._next_seq, seq + 1)
                self._etcd.changed.set()
                out.extend(await asyncio.wait_for(asyncio.shield(future), self._apply_timeout))
            except TimeoutError:
                raise OrderingUnavailable("the batch was ordered but not applied here in time; retry") from None
            finally:
                self._waiting.pop(batch_id, None)
                self._verified.pop(batch_id, None)
        return out

    # -- applying -------------------------------------------------------

    async def _apply_loop(self) -> None:
        backoff = 0.1
        while True:
            try:
                if self._ledger.meta(POSITION_KEY) == CATCHING_UP:
                    await self._catch_up()
                    continue
                expected = self.position[0] + 1 if self.position else 0
                batches = await self._etcd.read_from(expected)
                if batches and batches[0][0] != expected:
                    _log.info("etcd no longer holds batch %d; catching up from a peer", expected)
                    await self._catch_up()
                    continue
                for seq, revision, value in batches:
                    if seq != expected:
                        break
                    await self._apply(seq, revision, value)
                    expected += 1
                backoff = 0.1
                if not self.caught_up.is_set() and len(batches) < 64:
                    self.caught_up.set()
                if not batches:
                    self._etcd.changed.clear()
                    try:
                        await asyncio.wait_for(self._etcd.changed.wait(), 1.0)
                    except TimeoutError:
                        pass
            except asyncio.CancelledError:
                raise
            except OrderingUnavailable as exc:
                _log.warning("ordering unavailable: %s", exc)
                await asyncio.sleep(backoff)
                backoff = min(2.0, backoff * 2)
            except Exception:  # noqa: BLE001 - log and retry; a bug must not stop replication silently
                _log.exception("replication apply failed")
                await asyncio.sleep(1.0)

    async def _apply(self, seq: int, revision: int, value: bytes) -> None:
        try:
            rec: BatchRecord | None = decode_record(value)
        except MalformedError as exc:
            _log.error("batch %d does not parse (%s); applied as empty on every node", seq, exc)
            rec = None
        entries: tuple[bytes, ...] = rec.entries if rec else ()
        mine = rec is not None and rec.node == self._node
        verified = self._verified.get(rec.batch_id) if mine and rec else None
        position = encode_position(seq, revision)
        when = rec.time if rec else None
        loop = asyncio.get_running_loop()

        def work() -> _ApplyResult:
            # Read here, in the applier thread: only it moves the head.
            meta = {POSITION_KEY: position, position_at_key(self._ledger.head.height + 1): position}
            try:
                return self._ledger.submit(entries, verified=verified, time=when, meta=meta)
            except MalformedError as exc:
                # Deterministic on every replica: the batch as a whole is unusable.
                _log.error("batch %d refused as a whole (%s)", seq, exc)
                self._ledger.submit([], time=when, meta=meta)
                return [exc for _ in entries]

        results = await loop.run_in_executor(self._applier, work)
        self.position = (seq, revision)
        self._next_seq = max(self._next_seq, seq + 1)
        if rec is not None:
            future = self._waiting.get(rec.batch_id)
            if future is not None and not future.done():
                future.set_result(results)
        committed = Committed(tuple(r for r in results if isinstance(r, Receipt)), self._ledger.size)
        for listener in self._listeners:
            try:
                listener(committed)
            except Exception:  # noqa: BLE001 - a listener must not stop replication
                _log.exception("commit listener failed")

    async def _catch_up(self) -> None:
        if not self._peers:
            raise OrderingUnavailable("etcd no longer holds the batches this node needs and it has no --peer")
        before = self._ledger.head.height
        position = await catch_up(
            self._ledger, self._peers, self._policy, self._applier, conflicts=self.conflicts
        )
        self.blocks_from_peers += self._ledger.head.height - before
        if self.position is not None and position[0] <= self.position[0]:
            await asyncio.sleep(0.5)  # the peers are no further than we are; let them move on
        self.position = position
        self._next_seq = max(self._next_seq, position[0] + 1)
        committed = Committed((), self._ledger.size)
        for listener in self._listeners:
            listener(committed)

    # -- the window -----------------------------------------------------

    async def _window_loop(self) -> None:
        while True:
            try:
                if self.position is not None:
                    await self._etcd.publish_applied(self._node, *self.position, ttl=self._lease_ttl)
                    await self._etcd.compact()
            except asyncio.CancelledError:
                raise
            except OrderingUnavailable as exc:
                _log.debug("window upkeep skipped: %s", exc)
            await asyncio.sleep(self._compact_interval)

    def fill_status(self, status: cluster_pb2.ClusterStatus) -> None:
        status.node_id = self._node
        if self.position is not None:
            status.applied_seq, status.applied_revision = self.position
        status.blocks_from_peers = self.blocks_from_peers
        fill_conflicts(status, self.conflicts)


def fill_conflicts(status: cluster_pb2.ClusterStatus, conflicts: BlockConflicts) -> None:
    """The block conflicts part of ``status``."""
    status.block_conflicts = conflicts.count
    for c in conflicts.recent():
        status.recent_block_conflicts.append(
            cluster_pb2.BlockConflictSeen(
                height=c.height,
                what=c.what,
                signer=c.signer,
                evidence=c.evidence,
                peer=c.peer,
                quorum_side=c.quorum_side,
                times_seen=c.times_seen,
            )
        )


class ReplicatedCommitter(GroupCommitter):
    """The node's group committer with etcd between the group and the ledger:
    a group is ordered through the :class:`Replicator` and answered with the
    receipts of its application on this node."""

    def __init__(self, ledger: Ledger, replicator: Replicator, **kwargs: Any) -> None:
        super().__init__(ledger, **kwargs)
        self._replicator = replicator
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._replicator.start()
        await super().start()

    async def close(self) -> None:
        await super().close()
        await self._replicator.stop()

    def add_listener(self, listener: CommitListener) -> None:
        # Every applied batch, whoever submitted it, is a commit on this node.
        self._replicator.add_listener(listener)

    def _submit_to_ledger(
        self, entries: list[bytes], verified: list[frozenset[str] | None], *_local: Any
    ) -> list[Receipt | LedgerError]:
        # Anything else the committer prepared locally (parsed envelopes) is
        # not used: every replica applies the same bytes the same way.
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(self._replicator.order(entries, verified), self._loop)
        return future.result()
