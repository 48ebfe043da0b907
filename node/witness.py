"""A witness: cosigns checkpoints only when they are consistent with what it has seen.

This is the core of c2sp.org/tlog-witness, without the transport: the gRPC
``Peer.AddCheckpoint`` call and the HTTP ``POST /add-checkpoint`` endpoint
(:mod:`node.witness_http`) both call :meth:`Witness.add_checkpoint`.

For every log it knows (an origin and the log keys allowed to sign for it),
the witness keeps the latest checkpoint it cosigned, on disk, written before
the cosignature leaves. It cosigns a new checkpoint only after:

1. the origin is known (else ``unknown_log``, HTTP 404);
2. a known key of that log signed it (else ``bad_signature``, 403);
3. the caller's ``old`` size is the size the witness last cosigned (else
   ``conflict`` with the known size, 409) and is not above the new size (400);
4. the consistency proof from the old checkpoint to the new one verifies
   (else ``bad_proof``, 422); a checkpoint of the same size must carry the
   same root (else ``fork``, 409).

A cluster node witnessing its own log (``local=``) holds the whole tree, which
is a stronger reference than one old root: it cosigns a checkpoint of any size
it has applied if, and only if, the root equals its own root at that size
(else ``fork``), and asks the caller to retry (``not_yet``, 503) for sizes it
has not reached. Its tree is append-only and verified entry by entry, so
everything it cosigns is consistent with everything it cosigned before; a
tree found shorter than the size last cosigned (a restored backup) cosigns
nothing (``not_yet``) until it holds that size again with the same root.

A refusal made against a checkpoint the log really signed is evidence (of a
fork, or of a log that cannot prove its append-only history): it is written
to ``evidence/`` with both sides, and kept.
"""

from __future__ import annotations

import hmac
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger._b64 import b64decode, b64encode
from ledger.checkpoint import Checkpoint, cosign_checkpoint, parse_checkpoint
from ledger.errors import (
    InvalidProof,
    InvalidSignature,
    LedgerError,
    MalformedError,
    RootMismatch,
    StorageError,
)
from ledger.keys import Signer, Verifier
from ledger.log import Ledger
from ledger.merkle import verify_consistency
from ledger.note import SignedNote, format_note, open_note, parse_note
from node._files import write_durably

__all__ = [
    "MAX_ADD_CHECKPOINT_BYTES",
    "Witness",
    "WitnessRefused",
    "format_add_checkpoint",
    "merge_cosignatures",
    "parse_add_checkpoint",
]

#: Largest add-checkpoint request body: a checkpoint note plus a proof of at
#: most 63 hashes fits in a few KiB; the cap keeps abuse cheap.
MAX_ADD_CHECKPOINT_BYTES = 64 << 10
_MAX_PROOF_HASHES = 64
_MAX_EVIDENCE_FILES = 1000
_STATE_VERSION = 1

# The tlog-witness HTTP status of each refusal kind.
_HTTP_STATUS = {
    "malformed": 400,
    "bad_signature": 403,
    "unknown_log": 404,
    "conflict": 409,
    "fork": 409,
    "bad_proof": 422,
    "not_yet": 503,
}


class WitnessRefused(LedgerError):
    """The witness will not cosign. ``kind`` is one of ``malformed``,
    ``bad_signature``, ``unknown_log``, ``conflict``, ``fork``, ``bad_proof``,
    ``not_yet``; ``http_status`` is its tlog-witness status; ``known_size`` is
    the latest size cosigned for the log (what a 409 conflict reports);
    ``evidence`` names the evidence file when one was kept."""

    def __init__(self, kind: str, reason: str, *, known_size: int = 0, evidence: str | None = None) -> None:
        super().__init__(f"witness refused ({kind}): {reason}")
        self.kind = kind
        self.reason = reason
        self.http_status = _HTTP_STATUS[kind]
        self.known_size = known_size
        self.evidence = evidence


@dataclass(frozen=True, slots=True)
class _Latest:
    size: int
    root: bytes
    note: str


def parse_add_checkpoint(body: bytes) -> tuple[int, list[bytes], str]:
    """Parse a tlog-witness add-checkpoint body: ``old <size>``, one base64
    consistency proof hash per line, an empty line, the checkpoint note.
    Raises :class:`MalformedError`."""
    if len(body) > MAX_ADD_CHECKPOINT_BYTES:
        raise MalformedError("add-checkpoint", f"larger than {MAX_ADD_CHECKPOINT_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedError("add-checkpoint", "not UTF-8") from None
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise MalformedError("add-checkpoint", "missing the empty line before the checkpoint")
    lines = head.split("\n")
    first = lines[0]
    if not first.startswith("old ") or not first[4:].isascii() or not first[4:].isdigit():
        raise MalformedError("add-checkpoint", "first line must be 'old <size>'")
    if len(first) > 4 + 20 or (len(first) > 5 and first[4] == "0"):
        raise MalformedError("add-checkpoint", "old size must be decimal without leading zeros")
    if len(lines) - 1 > _MAX_PROOF_HASHES:
        raise MalformedError("add-checkpoint", f"more than {_MAX_PROOF_HASHES} proof hashes")
    proof = [b64decode(line, what="consistency proof hash", max_len=32) for line in lines[1:]]
    return int(first[4:]), proof, note


def format_add_checkpoint(old_size: int, proof: Sequence[bytes], note: str) -> bytes:
    """The add-checkpoint request body (inverse of :func:`parse_add_checkpoint`)."""
    lines = [f"old {old_size}", *(b64encode(h) for h in proof)]
    return ("\n".join(lines) + "\n\n" + note).encode()


def merge_cosignatures(note: str, lines: str) -> str:
    """Add signature lines (cosignatures) to a signed note; a line by a key
    that already signed replaces the old one."""
    signed = parse_note(note)
    extra = parse_note(signed.text + "\n" + lines).signatures
    keys = {(s.name, s.keyid) for s in extra}
    kept = tuple(s for s in signed.signatures if (s.name, s.keyid) not in keys)
    return format_note(SignedNote(signed.text, kept + extra))


class Witness:
    """See the module doc. Thread-safe; each call does file I/O, so call it
    from a worker thread in async code."""

    def __init__(
        self,
        signer: Signer,
        directory: str | os.PathLike[str],
        logs: Iterable[Verifier],
        *,
        local: Ledger | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not signer.cosigner:
            raise ValueError(f"{signer.name} is not a cosigner key (type 0x04)")
        self._signer = signer
        self._dir = Path(directory)
        self._dir.mkdir(parents=True, exist_ok=True)
        (self._dir / "evidence").mkdir(exist_ok=True)
        self._logs: dict[str, list[Verifier]] = {}
        for v in logs:
            if v.cosigner:
                raise ValueError(f"{v.name}: a log key must be type 0x01")
            if all(v.public_key != w.public_key for w in self._logs.get(v.name, [])):
                self._logs.setdefault(v.name, []).append(v)
        self._local = local
        if local is not None:
            self._logs.setdefault(local.origin, [])
            if all(local.vkey != w.vkey for w in self._logs[local.origin]):
                self._logs[local.origin].append(Verifier.from_vkey(local.vkey))
        self._clock = clock
        self._lock = threading.Lock()
        self._latest = self._load()

    @property
    def verifier(self) -> Verifier:
        return self._signer.verifier()

    @property
    def origins(self) -> list[str]:
        return sorted(self._logs)

    def latest(self, origin: str) -> tuple[int, bytes] | None:
        """The size and root of the latest checkpoint cosigned for ``origin``."""
        with self._lock:
            got = self._latest.get(origin)
        return (got.size, got.root) if got else None

    def evidence_files(self) -> list[Path]:
        return sorted((self._dir / "evidence").glob("*.json"))

    # -- the check ------------------------------------------------------

    def add_checkpoint(self, note: str, old_size: int, proof: Sequence[bytes]) -> str:
        """Check a checkpoint and return this witness's cosignature line.

        Raises :class:`WitnessRefused` (see the module doc for the checks).
        """
        # (1) Parse, and find the log.
        try:
            signed = parse_note(note)
            cp = parse_checkpoint(signed.text)
        except MalformedError as exc:
            raise WitnessRefused("malformed", str(exc)) from None
        keys = self._logs.get(cp.origin)
        if not keys:
            raise WitnessRefused("unknown_log", f"this witness does not know the log {cp.origin!r}")
        # (2) The log's signature.
        try:
            open_note(note, keys)
        except InvalidSignature as exc:
            raise WitnessRefused("bad_signature", str(exc)) from None
        if old_size > cp.size:
            raise WitnessRefused("malformed", f"old size {old_size} is above the checkpoint size {cp.size}")
        with self._lock:
            if self._local is not None and cp.origin == self._local.origin:
                self._check_against_tree(cp, note)
            else:
                self._check_against_latest(cp, note, old_size, proof)
            # (5) Remember before answering: a crash after this line at worst
            # forgets to answer, never forgets what was cosigned.
            latest = self._latest.get(cp.origin)
            if latest is None or cp.size > latest.size:
                self._latest[cp.origin] = _Latest(cp.size, cp.root_hash, signed.text)
                self._save()
            timestamp = int(self._clock())
        cosigned = parse_note(cosign_checkpoint(note, self._signer, timestamp))
        mine = [s for s in cosigned.signatures if (s.name, s.keyid) == (self._signer.name, self._signer.keyid)]
        return mine[0].line()

    def _check_against_latest(self, cp: Checkpoint, note: str, old_size: int, proof: Sequence[bytes]) -> None:
        latest = self._latest.get(cp.origin)
        known = latest.size if latest else 0
        # (3) The caller must extend what this witness last cosigned.
        if old_size != known:
            raise WitnessRefused("conflict", f"the latest checkpoint cosigned for {cp.origin} has size {known}", known_size=known)
        if latest is None or old_size == 0:
            if proof:
                raise WitnessRefused("malformed", "a proof from size 0 must be empty")
            return
        if cp.size == latest.size:
            if proof:
                raise WitnessRefused("malformed", "equal sizes need an empty proof")
            if not hmac.compare_digest(cp.root_hash, latest.root):
                path = self._keep_evidence("fork", cp, note, latest.note, "same size, different roots")
                raise WitnessRefused(
                    "fork",
                    f"{cp.origin} at size {cp.size} has root {cp.root_hash.hex()}, but this witness cosigned "
                    f"root {latest.root.hex()} at that size",
                    known_size=known, evidence=path,
                )  # fmt: skip
            return
        # (4) Consistency from the old checkpoint to the new one.
        try:
            verify_consistency(latest.size, cp.size, list(proof), latest.root, cp.root_hash)
        except (InvalidProof, RootMismatch) as exc:
            path = self._keep_evidence("inconsistent", cp, note, latest.note, str(exc))
            raise WitnessRefused(
                "bad_proof",
                f"{cp.origin} size {cp.size} root {cp.root_hash.hex()} is not proven consistent with the "
                f"cosigned size {latest.size} root {latest.root.hex()}: {exc}",
                known_size=known, evidence=path,
            ) from None  # fmt: skip

    def _check_against_tree(self, cp: Checkpoint, note: str) -> None:
        local = self._local
        assert local is not None
        size = local.size
        latest = self._latest.get(cp.origin)
        if latest is not None and latest.size > size:
            # The tree is shorter than what this witness cosigned (a restored
            # backup, a ledger replaced by hand): it cannot show that a new
            # checkpoint extends the cosigned one until it holds that size
            # again, and then the check below compares the roots there.
            raise WitnessRefused(
                "not_yet",
                f"this witness cosigned size {latest.size} of {cp.origin}, and its tree holds {size} entries: "
                "it cosigns again once its tree reaches that size",
                known_size=latest.size,
            )
        if cp.size > size:
            raise WitnessRefused("not_yet", f"this witness has applied {size} entries, not yet {cp.size}")
        # The witness's own tree must still hold what it cosigned; if not, its
        # store changed under it and it must stop vouching.
        if latest is not None and latest.size <= size and not hmac.compare_digest(local.root(latest.size), latest.root):
            raise StorageError(f"this node's tree no longer matches the root it cosigned at size {latest.size}")
        ours = local.root(cp.size)
        if not hmac.compare_digest(ours, cp.root_hash):
            mine = local.checkpoint(cp.size)
            path = self._keep_evidence("fork", cp, note, mine, "same size, different roots")
            raise WitnessRefused(
                "fork",
                f"inconsistent checkpoint: {cp.origin} at size {cp.size} has root {cp.root_hash.hex()}, but "
                f"the tree this witness built from the ordered entries has root {ours.hex()} at that size "
                "(a fork or a rewritten entry)",
                known_size=latest.size if latest else 0, evidence=path,
            )  # fmt: skip

    # -- persistence ----------------------------------------------------

    def _load(self) -> dict[str, _Latest]:
        path = self._dir / "state.json"
        if not path.exists():
            return {}
        try:
            data = json.loads(path.read_text())
            if data.get("version") != _STATE_VERSION:
                raise ValueError(f"unknown version {data.get('version')!r}")
            return {
                origin: _Latest(int(v["size"]), b64decode(v["root"], what="root"), str(v["note"]))
                for origin, v in data["logs"].items()
            }
        except (ValueError, KeyError, TypeError, MalformedError) as exc:
            raise StorageError(f"{path}: unreadable witness state: {exc}") from None

    def _save(self) -> None:
        data = {
            "version": _STATE_VERSION,
            "logs": {o: {"size": v.size, "root": b64encode(v.root), "note": v.note} for o, v in self._latest.items()},
        }
        write_durably(self._dir / "state.json", json.dumps(data, indent=1, sort_keys=True))

    def _keep_evidence(self, kind: str, cp: Checkpoint, note: str, ours: str, detail: str) -> str | None:
        files = self.evidence_files()
        if len(files) >= _MAX_EVIDENCE_FILES:
            return None
        record: dict[str, Any] = {
            "kind": kind,
            "origin": cp.origin,
            "size": cp.size,
            "root": cp.root_hash.hex(),
            "detail": detail,
            "submitted_checkpoint": note,
            "witness_view": ours,
            "time": int(self._clock()),
        }
        path = self._dir / "evidence" / f"{time.time_ns()}-{kind}-{cp.size}.json"
        write_durably(path, json.dumps(record, indent=1, sort_keys=True))
        return str(path)
