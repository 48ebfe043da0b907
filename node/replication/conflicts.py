"""Keeping the evidence of block conflicts that catch-up meets.

A :class:`~ledger.errors.BlockConflict` (node/replication/catchup.py, step 5)
means that a replica signed a block note naming another block hash, or
another position, than the block a peer served at the same height. Both
cannot be true: one of the two replicas lies or is corrupt, and an operator
must find out which. Nothing of the page is applied, unless a quorum of
replicas vouches for it and none for another value: then the dissent is
kept all the same, as evidence against the replica that signed it. What is
kept here is what the operator needs to act on it:

- one JSON file per distinct conflict under the node directory's
  ``evidence/`` folder (the witness keeps its fork evidence the same way
  under ``witness/evidence/``), written durably (a temporary file, fsync,
  then linked into place), named ``block-conflict-<height>-<signer key
  id>-<digest>.json``. The digest covers both sides (the served block and
  position, the dissenting note), so a conflict met again on a retry finds
  its file and writes nothing, and a different conflict never overwrites an
  earlier file. At most 1,000 files are kept, as for the witness;
- in memory, how many conflicts there are and the newest few distinct
  ones, which ``Peer.GetClusterStatus`` reports. A node starts from the
  evidence files it finds (each counted once, the newest listed, as met no
  time since the start), so a restart does not hide a conflict; each time
  one is met after that counts, also the same one met again on a retry.

What in the file proves what is said in the file itself (:data:`ABOUT`):
the dissenting note is signed, the served block is not.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ledger._b64 import b64encode
from ledger.block import Block, block_hash, encode_block
from ledger.block_note import tally_block_notes
from ledger.errors import BlockConflict
from ledger.policy import Policy, quorum_size
from node._files import write_durably

__all__ = ["ABOUT", "BlockConflicts", "ConflictSeen", "conflict_evidence"]

#: The header of every evidence file: what each part proves, and what not.
ABOUT = (
    "carbonledger block conflict evidence, version 1.",
    (
        "A node catching up (node/replication/catchup.py) was served a block by the peer at served.peer, "
        "and a replica of the same log signed a block note naming another block hash or position at the "
        "same height. Both cannot be true: one of the two replicas lies or is corrupt."
    ),
    (
        "signed.note is self-authenticating: a c2sp.org/signed-note signed with the dissenting replica's "
        "log key signed.signer. Check it with ledger.note.open_note (or ledger.block_note.open_block_note) "
        "and that key."
    ),
    (
        "served.block is NOT signed by the serving peer: it is what that address sent over an "
        "unauthenticated call, and alone proves nothing against that replica. The notes in "
        "quorum.notes are all signed: a replica that signed the served block (the serving one, if it "
        "did) is named in quorum.served_by, and its note is among them."
    ),
    (
        "quorum.supports names the side that as many replicas as the cluster policy's quorum (quorum.needed) "
        "signed among the notes fetched when the conflict was met: served, signed, both or neither. A key "
        "that signed both sides (quorum.equivocating) counts for neither. When only the served side has a "
        "quorum, the node went on to apply the served block and kept this file as evidence against the "
        "dissenting replica."
    ),
)
_KIND = "block_conflict"
_VERSION = 1
_MAX_EVIDENCE_FILES = 1000
# Far more than a file of ours holds (both sides and a few signed notes): a
# larger one is not read when the node starts.
_MAX_EVIDENCE_BYTES = 1 << 20
_RECENT = 8
_log = logging.getLogger("carbonledger.node")


@dataclass(frozen=True, slots=True)
class ConflictSeen:
    """One distinct conflict as ``GetClusterStatus`` reports it. ``evidence``
    is the path of its file, or "" when none could be kept."""

    height: int
    what: str
    signer: str
    evidence: str
    peer: str
    quorum_side: str
    times_seen: int
    digest: str


def conflict_evidence(
    origin: str,
    conflict: BlockConflict,
    *,
    peer: str,
    served_block: Block,
    served_position: bytes | None,
    notes: Sequence[str],
    policy: Policy,
    time: int,
) -> dict[str, Any]:
    """The evidence record of ``conflict``, met when ``peer`` served
    ``served_block`` (the page's last block, the one at the conflict's
    height) and ``served_position`` (None short of the anchor), and the
    replicas answered with ``notes``. (On a page that brings only the
    position, ``served_block`` is this node's head, which the peer's anchor
    was found to match.) Pure: writes nothing."""
    served_hash = block_hash(served_block)
    # (1) Who signed which side: for a block hash conflict, any note of each
    # hash; for a position conflict, notes of the served block with each position.
    tally = tally_block_notes(origin, conflict.height, notes, policy)
    if conflict.what == "position":

        def signers_of(value: bytes) -> list[str]:
            return _union(
                t.signers for t in tally if t.block_hash == served_hash and t.position == value
            )

    else:

        def signers_of(value: bytes) -> list[str]:
            return _union(t.signers for t in tally if t.block_hash == value)

    served_by, signed_by = signers_of(conflict.served), signers_of(conflict.signed)
    # A key that signed both sides counts for neither, as when catch-up
    # decides (ledger.block_note.verify_block_vouchers).
    equivocating = [key for key in served_by if key in signed_by]
    needed = max(1, quorum_size(policy))
    supports = {(True, True): "both", (True, False): "served", (False, True): "signed"}.get(
        (
            len(served_by) - len(equivocating) >= needed,
            len(signed_by) - len(equivocating) >= needed,
        ),
        "neither",
    )
    # (2) Both sides. The digest covers them and nothing that may change when
    # the same conflict is met again: not the time, the other notes, nor the
    # address that served the block.
    served = {
        "peer": peer,
        "value": conflict.served.hex(),
        "block": b64encode(encode_block(served_block)),
        "block_hash": served_hash.hex(),
        "position": b64encode(served_position) if served_position is not None else None,
    }
    signed = {"signer": conflict.signer, "value": conflict.signed.hex(), "note": conflict.note}
    sides = {
        "origin": origin,
        "height": conflict.height,
        "what": conflict.what,
        "served": served,
        "signed": signed,
    }
    both = dict(sides, served={k: v for k, v in served.items() if k != "peer"})
    digest = hashlib.sha256(json.dumps(both, sort_keys=True).encode()).hexdigest()
    return {
        "about": list(ABOUT),
        "kind": _KIND,
        "version": _VERSION,
        **sides,
        "quorum": {
            "needed": needed,
            "served_by": served_by,
            "signed_by": signed_by,
            "equivocating": equivocating,
            "supports": supports,
            "notes": [n for t in tally for n in t.notes],
        },
        "digest": digest,
        "time": time,
    }


def _union(groups: Iterable[Iterable[str]]) -> list[str]:
    out: dict[str, None] = {}
    for group in groups:
        out.update((key, None) for key in group)
    return list(out)


def _key_ids(signer: str) -> str:
    # A verifier key is name+hexkeyid+base64; the name may hold no '+'.
    return "_".join(
        vkey.split("+", 2)[1] if vkey.count("+") >= 2 else "unknown" for vkey in signer.split(", ")
    )


class BlockConflicts:
    """Block conflicts met by catch-up: evidence files under ``directory``
    (none kept when it is None) and, in memory, the count and the newest few.
    Thread-safe: catch-up keeps from a worker thread while the gRPC status
    call reads from the event loop."""

    def __init__(
        self,
        directory: Path | None,
        *,
        recent: int = _RECENT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._dir = directory
        self._recent_max = recent
        self._clock = clock
        self._lock = threading.Lock()
        # The conflicts kept before this start: an operator restarting the
        # node must still see them.
        kept = self._read_kept()
        self._recent: list[ConflictSeen] = kept[:recent]
        self.count = len(kept)

    def recent(self) -> list[ConflictSeen]:
        """The newest distinct conflicts, newest first."""
        with self._lock:
            return list(self._recent)

    def evidence_files(self) -> list[Path]:
        if self._dir is None or not self._dir.is_dir():
            return []
        return sorted(self._dir.glob("block-conflict-*.json"))

    def _read_kept(self) -> list[ConflictSeen]:
        """The distinct conflicts whose evidence files are in the directory,
        newest first, each as met no time yet. Reads at most as many files as
        are ever kept, none larger than any evidence; a file that is not such
        evidence is logged and passed over."""
        files = self.evidence_files()
        if len(files) > _MAX_EVIDENCE_FILES:
            _log.warning(
                "%d block conflict evidence files in %s; reading the first %d",
                len(files),
                self._dir,
                _MAX_EVIDENCE_FILES,
            )
        found: dict[str, tuple[int, ConflictSeen]] = {}
        for path in files[:_MAX_EVIDENCE_FILES]:
            try:
                if path.stat().st_size > _MAX_EVIDENCE_BYTES:
                    raise ValueError(f"larger than {_MAX_EVIDENCE_BYTES} bytes")
                met, seen = _seen_in(json.loads(path.read_text()), str(path))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                _log.warning("%s is not block conflict evidence, not counted: %s", path, exc)
                continue
            found.setdefault(seen.digest, (met, seen))
        newest = sorted(found.values(), key=lambda t: (t[0], t[1].evidence), reverse=True)
        return [seen for _, seen in newest]

    def keep(
        self,
        origin: str,
        conflict: BlockConflict,
        *,
        peer: str,
        served_block: Block,
        served_position: bytes | None,
        notes: Sequence[str],
        policy: Policy,
    ) -> ConflictSeen:
        """Record ``conflict`` (see :func:`conflict_evidence` for the
        arguments): write its evidence file unless one exists, count it, and
        return it as the status reports it. A file that cannot be written is
        logged, and the conflict reported without one."""
        record = conflict_evidence(
            origin,
            conflict,
            peer=peer,
            served_block=served_block,
            served_position=served_position,
            notes=notes,
            policy=policy,
            time=int(self._clock()),
        )
        digest = str(record["digest"])
        with self._lock:
            self.count += 1
            known = next((c for c in self._recent if c.digest == digest), None)
            try:
                # Also for a conflict met before: its file is found, not rewritten.
                path = self._write(record, conflict)
            except OSError as exc:
                # The conflict is still counted and reported; only the file is missing.
                _log.error("could not keep the evidence of %s: %s", conflict, exc)
                path = ""
            seen = ConflictSeen(
                conflict.height,
                conflict.what,
                conflict.signer,
                path,
                peer,
                str(record["quorum"]["supports"]),
                1,
                digest,
            )
            if known is not None:
                seen = replace(seen, times_seen=known.times_seen + 1)
            self._recent = [seen, *(c for c in self._recent if c.digest != digest)][
                : self._recent_max
            ]
            return seen

    def _write(self, record: dict[str, Any], conflict: BlockConflict) -> str:
        """The evidence file of ``record``: the existing one if the same
        conflict was kept before (by this run or an earlier one), else a new
        one under a name no other file holds; "" past the file cap."""
        if self._dir is None:
            return ""
        self._dir.mkdir(parents=True, exist_ok=True)
        digest = str(record["digest"])
        stem = f"block-conflict-{conflict.height}-{_key_ids(conflict.signer)}-{digest[:16]}"
        text = json.dumps(record, indent=1) + "\n"
        for n in range(1, 100):
            path = self._dir / (stem + ("" if n == 1 else f"-{n}") + ".json")
            if not path.exists():
                if len(self.evidence_files()) >= _MAX_EVIDENCE_FILES:
                    _log.error(
                        "not keeping the evidence of %s: %d evidence files already",
                        conflict,
                        _MAX_EVIDENCE_FILES,
                    )
                    return ""
                if write_durably(path, text, replace=False):
                    return str(path)
            if _digest_of(path) == digest:
                return str(path)
            # Another conflict's file (a digest prefix shared): never overwritten.
        return ""


def _seen_in(record: Any, path: str) -> tuple[int, ConflictSeen]:
    """When the conflict that an evidence ``record`` (as
    :func:`conflict_evidence` writes it) kept at ``path`` was met, and the
    conflict as met no time since. KeyError, TypeError or ValueError if it is
    not such a record."""
    if not isinstance(record, dict) or (record.get("kind"), record.get("version")) != (
        _KIND,
        _VERSION,
    ):
        raise ValueError(f"not a {_KIND} record of version {_VERSION}")
    met = record["time"]
    seen = ConflictSeen(
        height=record["height"],
        what=record["what"],
        signer=record["signed"]["signer"],
        evidence=path,
        peer=record["served"]["peer"],
        quorum_side=record["quorum"]["supports"],
        times_seen=0,
        digest=record["digest"],
    )
    texts = (seen.what, seen.signer, seen.peer, seen.quorum_side, seen.digest)
    if not (isinstance(met, int) and isinstance(seen.height, int)) or not all(
        isinstance(t, str) for t in texts
    ):
        raise TypeError("a field of the wrong type")
    return met, seen


def _digest_of(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return str(data.get("digest")) if isinstance(data, dict) else None
