"""Collects peers' cosignatures on this node's checkpoints.

Each round, the collector offers the node's latest checkpoint to every peer's
witness (``Peer.AddCheckpoint``), with the consistency proof from the size
that peer last cosigned, and to the node's own witness, if it has one (it
vouches for the tree this node built from the ordered batches, so that with
one node of three down the other two still meet a 2-of-3 quorum). A
cosignature that verifies under a trusted witness key is merged into the
note; the newest notes with their cosignatures are kept, so that proofs and
labels can carry them (:meth:`CosignCollector.best`), and catching-up peers
are served blocks up to the newest one the cluster's policy accepts
(:meth:`CosignCollector.newest_meeting`). An answer given at one exact size
(a reconciliation) gets that size cosigned on demand
(:meth:`CosignCollector.cosigned_note`). A peer's refusal is recorded with its reason
(``refusals``) and logged: a fork refusal means this node's log differs from
what its peers built, which an operator must look at.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from carbonledger.v1 import cluster_pb2, cluster_pb2_grpc

from ledger.checkpoint import parse_checkpoint, verify_cosignature
from ledger.errors import LedgerError
from ledger.keys import Verifier
from ledger.log import Ledger
from ledger.note import parse_note
from ledger.policy import Policy, verify_checkpoint_policy
from node.reconcile import stored_checkpoint
from node.witness import Witness, WitnessRefused, merge_cosignatures

__all__ = ["CosignCollector", "Refusal"]

_log = logging.getLogger("carbonledger.node")
_KEEP = 64
#: Notes cosigned on demand at an exact size, kept for the later pages of
#: the same answer.
_KEEP_EXACT = 16


@dataclass(frozen=True, slots=True)
class Refusal:
    peer: str
    tree_size: int
    kind: str
    reason: str


def _keep_merged(notes: OrderedDict[int, str], size: int, note: str, lines: Sequence[str | None], keep: int) -> str:
    """``note`` with the cosignature ``lines`` merged in, kept in ``notes``
    as its newest (at most ``keep`` of them); returns it."""
    for line in lines:
        if line:
            note = merge_cosignatures(note, line)
    notes[size] = note
    notes.move_to_end(size)
    while len(notes) > keep:
        notes.popitem(last=False)
    return note


class CosignCollector:
    """See the module doc. ``witnesses`` are the trusted cosigner keys; a
    cosignature by any other key is dropped."""

    def __init__(
        self,
        ledger: Ledger,
        peers: Sequence[str],
        witnesses: Sequence[Verifier],
        *,
        own: Witness | None = None,
        interval: float = 0.5,
        timeout: float = 5.0,
    ) -> None:
        self._ledger = ledger
        self._peers = list(peers)
        self._own = own
        self._own_done = -1
        self._witnesses = {(w.name, w.keyid): w for w in witnesses}
        self._interval = interval
        self._timeout = timeout
        self._known: dict[str, int] = {p: 0 for p in self._peers}
        self._done: dict[str, int] = {p: -1 for p in self._peers}
        self._notes: OrderedDict[int, str] = OrderedDict()
        self._exact: OrderedDict[int, str] = OrderedDict()
        self.refusals: dict[str, Refusal] = {}
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def start(self) -> None:
        if self._peers and self._task is None:
            self._task = asyncio.create_task(self._run(), name="cosign-collector")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()

    def poke(self) -> None:
        """Something was appended: collect soon."""
        self._wake.set()

    # -- reading what was collected --------------------------------------

    def best(self, min_cosignatures: int = 1) -> tuple[int, str, list[str]] | None:
        """The newest checkpoint with at least ``min_cosignatures`` trusted
        cosignatures: (size, note, witness names)."""
        for size in reversed(self._notes):
            note = self._notes[size]
            names = self._cosigners(note)
            if len(names) >= min_cosignatures:
                return size, note, names
        return None

    def cosigned_at_most(self, size: int, min_cosignatures: int = 1) -> tuple[int, str] | None:
        """The newest collected checkpoint of at most ``size`` with at least
        ``min_cosignatures`` trusted cosignatures: (its size, note)."""
        for have in sorted(self._notes, reverse=True):
            if have <= size and len(self._cosigners(self._notes[have])) >= min_cosignatures:
                return have, self._notes[have]
        return None

    def newest_meeting(self, policy: Policy) -> str | None:
        """The newest collected checkpoint note that ``policy`` accepts (its
        log signature and witness quorum), or None."""
        for size in reversed(self._notes):
            try:
                verify_checkpoint_policy(self._notes[size], policy)
            except LedgerError:
                continue
            return self._notes[size]
        return None

    async def cosigned_note(self, size: int) -> str:
        """This node's checkpoint at ``size``, with the cosignatures of every
        witness that gives one now: the peers' and this node's own.

        For an answer made at one exact tree size (a reconciliation), which
        the collected notes (made at whatever size was latest) seldom match.
        A cluster witness checks a checkpoint against its own tree, whatever
        it cosigned before, so an older size is offered as it is, from size
        0 without a proof. A witness that is down or behind ``size`` adds
        nothing; the note is then short of cosignatures, never wrong, and
        the witnesses are asked again the next time: a note kept short
        would answer every retry at that size short, long after the
        replicas behind it have caught up.
        """
        held = self._exact.get(size) or self._notes.get(size)
        asked = min(len(self._witnesses), len(self._peers) + (self._own is not None))
        if held is not None and len(set(self._cosigners(held))) >= asked:
            return held
        # From the store: the size may be a commit not yet published as the head.
        note = held if held is not None else await asyncio.to_thread(stored_checkpoint, self._ledger, size)
        lines = list(await asyncio.gather(*(self._ask_at(p, note) for p in self._peers)))
        if self._own is not None:
            lines.append(await asyncio.to_thread(self._ask_own_at, note))
        return _keep_merged(self._exact, size, note, lines, _KEEP_EXACT)

    async def _ask_at(self, peer: str, note: str) -> str | None:
        request = cluster_pb2.AddCheckpointRequest(old_size=0, consistency=[], checkpoint=note)
        try:
            response = await cluster_pb2_grpc.PeerStub(self._channel(peer)).AddCheckpoint(request, timeout=self._timeout)
        except grpc.RpcError:
            return None
        if response.WhichOneof("result") != "cosignature" or not self._trusted(note, response.cosignature):
            return None
        return str(response.cosignature)

    def _ask_own_at(self, note: str) -> str | None:
        assert self._own is not None
        try:
            return self._own.add_checkpoint(note, 0, [])
        except WitnessRefused:
            return None

    def _cosigners(self, note: str) -> list[str]:
        signed = parse_note(note)
        return [s.name for s in signed.signatures if (s.name, s.keyid) in self._witnesses]

    # -- collecting -----------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                await self.collect_once()
            except Exception:  # noqa: BLE001 - keep collecting; the next round retries
                _log.exception("cosignature round failed")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self._interval)
            except TimeoutError:
                pass

    async def collect_once(self) -> None:
        """Offer the current checkpoint to every peer that has not cosigned it."""
        note = self._ledger.checkpoint()
        size = parse_checkpoint(parse_note(note).text).size
        if size == 0:
            return
        todo = [p for p in self._peers if self._done[p] < size]
        own_due = self._own is not None and self._own_done < size
        if not todo and not own_due:
            return
        lines = await asyncio.gather(*(self._ask(p, note, size) for p in todo))
        if own_due:
            lines.append(await asyncio.to_thread(self._ask_own, note, size))
        _keep_merged(self._notes, size, self._notes.get(size, note), lines, _KEEP)

    async def _ask(self, peer: str, note: str, size: int) -> str | None:
        stub = cluster_pb2_grpc.PeerStub(self._channel(peer))
        for _ in range(2):  # a conflict tells us the size to prove from; retry once
            old = self._known[peer]
            old = old if 0 < old <= size else 0
            proof = await asyncio.to_thread(self._ledger.consistency_proof, old, size) if 0 < old < size else []
            request = cluster_pb2.AddCheckpointRequest(old_size=old, consistency=proof, checkpoint=note)
            try:
                response = await stub.AddCheckpoint(request, timeout=self._timeout)
            except grpc.RpcError as exc:
                _log.debug("peer unreachable for cosigning", extra={"peer": peer, "code": str(exc.code())})  # type: ignore[attr-defined]
                return None
            if response.WhichOneof("result") == "cosignature":
                line = response.cosignature
                if not self._trusted(note, line):
                    _log.warning("peer returned an untrusted cosignature", extra={"peer": peer})
                    return None
                self._known[peer] = size
                self._done[peer] = size
                self.refusals.pop(peer, None)
                return line
            refusal = response.refusal
            if refusal.kind == "conflict":
                self._known[peer] = refusal.known_size
                continue
            if refusal.kind != "not_yet":
                self.refusals[peer] = Refusal(peer, size, refusal.kind, refusal.reason)
                _log.error(
                    "peer refused to cosign",
                    extra={"event": "cosign_refused", "peer": peer, "size": size, "kind": refusal.kind,
                           "reason": refusal.reason},
                )  # fmt: skip
            return None
        return None

    def _ask_own(self, note: str, size: int) -> str | None:
        assert self._own is not None
        try:
            line = self._own.add_checkpoint(note, 0, [])
        except WitnessRefused as exc:
            _log.error("this node's own witness refused its checkpoint", extra={"size": size, "kind": exc.kind,
                                                                             "reason": exc.reason})  # fmt: skip
            return None
        self._own_done = size
        return line

    def _trusted(self, note: str, line: str) -> bool:
        """Whether ``line`` is one cosignature, by a trusted witness, that
        verifies on ``note``. Anything more is refused whole: a peer answers
        for its own witness only, and a line merged unverified could replace
        another witness's real cosignature or inflate the count."""
        try:
            # Counted as lines: the note parser drops a repeated line (as
            # signed-note asks), which would hide a second one here.
            if len(line.splitlines()) != 1:
                return False
            sigs = parse_note(parse_note(note).text + "\n" + line).signatures
            if len(sigs) != 1:
                return False
            witness = self._witnesses.get((sigs[0].name, sigs[0].keyid))
            if witness is None:
                return False
            verify_cosignature(merge_cosignatures(note, line), witness)
            return True
        except LedgerError:
            return False

    def _channel(self, peer: str) -> grpc.aio.Channel:
        ch = self._channels.get(peer)
        if ch is None:
            # A peer that restarts must be asked again within a round or two,
            # not after gRPC's default reconnect backoff (up to two minutes).
            ch = grpc.aio.insecure_channel(
                peer, options=[("grpc.max_reconnect_backoff_ms", 1000), ("grpc.initial_reconnect_backoff_ms", 200)]
            )
            self._channels[peer] = ch
        return ch
