"""C2SP tlog-proof: an offline proof that an entry is in a witnessed log.

The text (c2sp.org/tlog-proof, version ``c2sp.org/tlog-proof@v1``) is::

    c2sp.org/tlog-proof@v1
    [extra <base64 opaque data>]
    index <decimal, no leading zeros>
    <base64 inclusion proof hash>      (zero or more, leaf's sibling first)

    <the checkpoint note, verbatim, with its signatures and cosignatures>

Anyone holding the entry bytes and a tlog-policy checks it with
:func:`verify_tlog_proof`, with no network and no log state. The ``extra``
data is not authenticated and this module never interprets it.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from ledger._b64 import b64decode, b64encode
from ledger.checkpoint import HASH_SIZE, Checkpoint, parse_checkpoint
from ledger.errors import InvalidProof, MalformedError
from ledger.merkle import leaf_hash, verify_inclusion
from ledger.note import MAX_NOTE_SIZE, parse_note
from ledger.policy import Policy, verify_checkpoint_policy

__all__ = [
    "MAX_PROOF_HASHES",
    "MAX_TLOG_PROOF_SIZE",
    "TLOG_PROOF_HEADER",
    "TlogProof",
    "format_tlog_proof",
    "parse_tlog_proof",
    "verify_tlog_proof",
]

#: First line of every v1 proof.
TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"
#: An inclusion proof in a tree of fewer than 2^64 leaves has at most 64 hashes.
MAX_PROOF_HASHES = 64
#: Largest proof text accepted: the note cap plus room for the header lines.
MAX_TLOG_PROOF_SIZE = MAX_NOTE_SIZE + (1 << 16)

_MAX_EXTRA = 1 << 15
_MAX_INDEX = (1 << 64) - 1
_DECIMAL_RE = re.compile(r"0|[1-9][0-9]{0,19}")


@dataclass(frozen=True, slots=True)
class TlogProof:
    """A parsed tlog-proof: entry ``index``, inclusion ``proof`` hashes
    (32 bytes each), the signed ``checkpoint_note`` text, and optional opaque
    ``extra`` bytes (non-empty when present). Construction validates every
    field and raises :class:`MalformedError`."""

    index: int
    proof: tuple[bytes, ...]
    checkpoint_note: str
    extra: bytes | None = None

    def __post_init__(self) -> None:
        if type(self.index) is not int or not 0 <= self.index <= _MAX_INDEX:
            raise MalformedError("tlog-proof index", "must be an int in [0, 2^64)")
        if not isinstance(self.proof, tuple) or len(self.proof) > MAX_PROOF_HASHES:
            raise MalformedError(
                "tlog-proof", f"proof must be a tuple of at most {MAX_PROOF_HASHES}"
            )
        for h in self.proof:
            if not isinstance(h, bytes) or len(h) != HASH_SIZE:
                raise MalformedError("tlog-proof hash", "must be 32 bytes")
        if self.extra is not None and (
            not isinstance(self.extra, bytes) or not 1 <= len(self.extra) <= _MAX_EXTRA
        ):
            raise MalformedError("tlog-proof extra", f"must be 1 to {_MAX_EXTRA} bytes")
        # The note must be a well-formed signed checkpoint; signatures are
        # checked only by verify_tlog_proof.
        _check_checkpoint_note(self.checkpoint_note)


@functools.lru_cache(maxsize=64)
def _check_checkpoint_note(note: str) -> None:
    # Every proof of a label, or of a batch of proofs served at one tree
    # size, carries the same note: parse it once. Keyed by the text, so a
    # hit is always right; a note that fails to parse raises and is not kept.
    parse_checkpoint(parse_note(note).text)


def format_tlog_proof(proof: TlogProof) -> str:
    """Return the proof text."""
    lines = [TLOG_PROOF_HEADER]
    if proof.extra is not None:
        lines.append("extra " + b64encode(proof.extra))
    lines.append(f"index {proof.index}")
    lines.extend(b64encode(h) for h in proof.proof)
    return "".join(line + "\n" for line in lines) + "\n" + proof.checkpoint_note


def parse_tlog_proof(data: str | bytes) -> TlogProof:
    """Parse a tlog-proof strictly.

    Raises :class:`MalformedError` for: input over
    :data:`MAX_TLOG_PROOF_SIZE` bytes or not UTF-8, a wrong header, an empty
    or non-canonical ``extra``, an index with leading zeros, a proof line
    that is not canonical base64 of 32 bytes, more than 64 proof hashes, a
    missing blank line, or a checkpoint note that does not parse.
    """
    text = _decode(data)
    # The header part has no empty line, so the first "\n\n" ends it.
    split = text.find("\n\n")
    if split < 0:
        raise MalformedError("tlog-proof", "no blank line before the checkpoint")
    head, note = text[:split].split("\n"), text[split + 2 :]
    if head[0] != TLOG_PROOF_HEADER:
        raise MalformedError("tlog-proof", f"first line must be {TLOG_PROOF_HEADER}")
    pos = 1
    extra = None
    if pos < len(head) and head[pos].startswith("extra "):
        extra = b64decode(head[pos][len("extra ") :], what="tlog-proof extra", max_len=_MAX_EXTRA)
        if not extra:
            raise MalformedError("tlog-proof extra", "must not be empty when present")
        pos += 1
    if pos >= len(head) or not head[pos].startswith("index "):
        raise MalformedError("tlog-proof", "missing index line")
    index_text = head[pos][len("index ") :]
    if _DECIMAL_RE.fullmatch(index_text) is None:
        raise MalformedError("tlog-proof index", "must be decimal without leading zeros")
    index = int(index_text)
    hash_lines = head[pos + 1 :]
    if len(hash_lines) > MAX_PROOF_HASHES:
        raise MalformedError("tlog-proof", f"more than {MAX_PROOF_HASHES} proof hashes")
    hashes = []
    for line in hash_lines:
        h = b64decode(line, what="tlog-proof hash", max_len=HASH_SIZE)
        if len(h) != HASH_SIZE:
            raise MalformedError("tlog-proof hash", "must be 32 bytes")
        hashes.append(h)
    return TlogProof(index, tuple(hashes), note, extra)


def _decode(data: str | bytes) -> str:
    if isinstance(data, bytes):
        if len(data) > MAX_TLOG_PROOF_SIZE:
            raise MalformedError("tlog-proof", f"larger than {MAX_TLOG_PROOF_SIZE} bytes")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedError("tlog-proof", "not valid UTF-8") from None
    if not isinstance(data, str):
        raise MalformedError("tlog-proof", "must be str or bytes")
    if len(data) > MAX_TLOG_PROOF_SIZE:
        raise MalformedError("tlog-proof", f"larger than {MAX_TLOG_PROOF_SIZE} bytes")
    return data


def verify_tlog_proof(data: str | bytes, entry: bytes, policy: Policy) -> Checkpoint:
    """Check that ``entry`` is in a log the ``policy`` trusts, and return the
    checkpoint that proves it.

    Raises :class:`MalformedError` for bad input, :class:`InvalidSignature` or
    :class:`QuorumNotMet` if the checkpoint does not satisfy the policy, and
    :class:`InvalidProof` or :class:`RootMismatch` if the inclusion proof fails.
    """
    # (1) Parse.
    proof = parse_tlog_proof(data)
    # (2) The checkpoint must carry a trusted log signature and the quorum.
    cp = verify_checkpoint_policy(proof.checkpoint_note, policy)
    # (3) The inclusion proof of the entry's leaf hash must reach its root.
    if proof.index >= cp.size:
        raise InvalidProof(f"index {proof.index} is not below tree size {cp.size}")
    verify_inclusion(leaf_hash(entry), proof.index, cp.size, list(proof.proof), cp.root_hash)
    return cp
