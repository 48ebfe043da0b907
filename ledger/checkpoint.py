"""C2SP checkpoints (signed tree heads) and their witness cosignatures.

A checkpoint is the text of a signed note (c2sp.org/tlog-checkpoint)::

    <origin>
    <tree size, ASCII decimal, no leading zeros>
    <base64 of the 32-byte RFC 6962 root hash>
    [extension lines, each non-empty]

The log signs it with a type 0x01 key. Witnesses add Ed25519 cosignatures
(c2sp.org/tlog-cosignature v1, type 0x04): the signature line carries
``keyid(4) || timestamp(uint64 big-endian) || ed25519 signature(64)`` and the
signed message is ``cosignature/v1\\ntime <timestamp>\\n`` followed by the whole
checkpoint text. The header line keeps a cosignature from ever being mistaken
for a log's signature of the same bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ledger._b64 import b64decode, b64encode
from ledger.errors import InvalidSignature, MalformedError
from ledger.keys import Signer, Verifier
from ledger.merkle import EMPTY_ROOT
from ledger.note import (
    NoteSignature,
    SignedNote,
    check_note_text,
    format_note,
    open_note,
    parse_note,
    sign_note,
)

__all__ = [
    "HASH_SIZE",
    "MAX_TIMESTAMP",
    "MAX_TREE_SIZE",
    "Checkpoint",
    "cosign_checkpoint",
    "cosignature_message",
    "format_checkpoint",
    "parse_checkpoint",
    "sign_checkpoint",
    "verify_checkpoint",
    "verify_cosignature",
]

#: Size of a SHA-256 root hash (RFC 9162 section 2.1).
HASH_SIZE = 32
#: Largest tree size: sizes are uint64 in every checkpoint implementation.
MAX_TREE_SIZE = (1 << 64) - 1
#: Largest cosignature timestamp; tlog-cosignature forbids values above 2^63 - 1.
MAX_TIMESTAMP = (1 << 63) - 1

_COSIG_HEADER = "cosignature/v1\n"
_COSIG_LEN = 8 + 64
# ASCII digits only: str.isdigit() would accept other scripts' digits.
_DECIMAL_RE = re.compile(r"0|[1-9][0-9]{0,19}")
_MAX_CHECKPOINT_TEXT = 1 << 16


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A log's tree head: ``origin``, tree ``size``, ``root_hash`` (32 bytes)
    and opaque ``extensions`` lines. Construction validates every field and
    raises :class:`MalformedError`, so a ``Checkpoint`` always formats."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.origin, str) or self.origin == "":
            raise MalformedError("checkpoint origin", "must be non-empty")
        if type(self.size) is not int or not 0 <= self.size <= MAX_TREE_SIZE:
            raise MalformedError("checkpoint size", "must be an int in [0, 2^64)")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != HASH_SIZE:
            raise MalformedError("checkpoint root hash", "must be 32 bytes")
        if not isinstance(self.extensions, tuple):
            raise MalformedError("checkpoint extensions", "must be a tuple of lines")
        for line in (self.origin, *self.extensions):
            if not isinstance(line, str) or line == "" or "\n" in line:
                raise MalformedError("checkpoint line", "lines must be non-empty single lines")
        # The full text check covers control characters and UTF-8.
        check_note_text(_text(self))


def _text(cp: Checkpoint) -> str:
    lines = [cp.origin, str(cp.size), b64encode(cp.root_hash), *cp.extensions]
    return "".join(line + "\n" for line in lines)


def format_checkpoint(cp: Checkpoint) -> str:
    """Return the checkpoint's note text (ending in a newline)."""
    return _text(cp)


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse checkpoint note text strictly.

    Rejects, with :class:`MalformedError`: fewer than three lines, an empty
    line, a missing final newline, a size with leading zeros or non-ASCII
    digits or above 2^64 - 1, a root hash that is not canonical base64 of
    exactly 32 bytes, a size 0 with a root other than the empty tree's.
    """
    if not isinstance(text, str) or len(text) > _MAX_CHECKPOINT_TEXT:
        raise MalformedError("checkpoint", "not a string of sane length")
    check_note_text(text)
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise MalformedError("checkpoint", "needs origin, size and root hash lines")
    origin, size_text, root_text, *extensions = lines
    if _DECIMAL_RE.fullmatch(size_text) is None:
        raise MalformedError("checkpoint size", "must be decimal without leading zeros")
    size = int(size_text)
    if size > MAX_TREE_SIZE:
        raise MalformedError("checkpoint size", "larger than 2^64 - 1")
    root = b64decode(root_text, what="checkpoint root hash", max_len=HASH_SIZE)
    if len(root) != HASH_SIZE:
        raise MalformedError("checkpoint root hash", "must be 32 bytes")
    if size == 0 and root != EMPTY_ROOT:
        # RFC 9162 2.1.1: the empty tree's hash is SHA-256 of the empty string.
        raise MalformedError("checkpoint root hash", "a tree of size 0 has the empty tree's root, SHA-256 of no bytes")
    return Checkpoint(origin, size, root, tuple(extensions))


def sign_checkpoint(cp: Checkpoint, signer: Signer) -> str:
    """Return the checkpoint as a note signed by the log's ``signer`` (type 0x01)."""
    return sign_note(format_checkpoint(cp), [signer])


def verify_checkpoint(note_text: str | bytes, verifier: Verifier) -> Checkpoint:
    """Verify the log's signature on a checkpoint note and return the checkpoint.

    (1) Open the note with the log key (other signatures are ignored);
    (2) parse the text as a checkpoint; (3) require the origin to equal the
    log key's name, as tlog-policy requires, so that a key cannot vouch for
    another log's tree.

    Raises :class:`MalformedError` or :class:`InvalidSignature`.
    """
    # (1) Verify the log signature.
    note = open_note(note_text, [verifier])
    # (2) Parse.
    cp = parse_checkpoint(note.text)
    # (3) Bind the key to the origin.
    if cp.origin != verifier.name:
        raise InvalidSignature(
            verifier.name, verifier.keyid, f"checkpoint origin is {cp.origin!r}, not the key name"
        )
    return cp


def cosignature_message(checkpoint_text: str, timestamp: int) -> bytes:
    """Return the bytes a v1 Ed25519 cosignature signs (c2sp.org/tlog-cosignature).

    Requires ``0 <= timestamp <= 2^63 - 1`` and a valid checkpoint text.
    """
    parse_checkpoint(checkpoint_text)
    _check_timestamp(timestamp)
    return f"{_COSIG_HEADER}time {timestamp}\n{checkpoint_text}".encode()


def _check_timestamp(timestamp: int) -> None:
    if type(timestamp) is not int or not 0 <= timestamp <= MAX_TIMESTAMP:
        raise MalformedError("cosignature timestamp", "must be an int in [0, 2^63)")


def cosign_checkpoint(
    note_text: str | bytes,
    witness_signer: Signer,
    timestamp: int,
    *,
    log_verifier: Verifier | None = None,
) -> str:
    """Add ``witness_signer``'s v1 cosignature, made at ``timestamp``, to a
    checkpoint note and return the new note.

    An earlier signature line by the same witness key is replaced. If
    ``log_verifier`` is given, the log's signature is verified first; a
    witness must otherwise have checked it, and consistency with what it has
    seen, before calling this.
    """
    if not witness_signer.cosigner:
        raise ValueError(f"{witness_signer.name} is not a cosigner key (type 0x04)")
    if log_verifier is not None:
        verify_checkpoint(note_text, log_verifier)
    note = parse_note(note_text)
    message = cosignature_message(note.text, timestamp)
    raw = timestamp.to_bytes(8, "big") + witness_signer.sign(message)
    mine = NoteSignature(witness_signer.name, witness_signer.keyid, raw)
    kept = tuple(s for s in note.signatures if (s.name, s.keyid) != (mine.name, mine.keyid))
    return format_note(SignedNote(note.text, (*kept, mine)))


def verify_cosignature(note_text: str | bytes | SignedNote, witness_verifier: Verifier) -> int:
    """Verify ``witness_verifier``'s cosignature on a checkpoint note and
    return its timestamp. ``note_text`` may be an already parsed note.

    Raises :class:`InvalidSignature` if the note has no cosignature line by
    that key, or one is not 72 bytes, or its timestamp exceeds 2^63 - 1, or
    it does not verify; :class:`MalformedError` if the note or checkpoint does
    not parse. It does not check the log's signature: see
    :func:`ledger.policy.verify_checkpoint_policy` for the whole check.

    A witness's later, different lines (``SignedNote.repeats``) are verified
    too, as signed-note asks of a known key's signatures; the first line's
    timestamp is returned.
    """
    if not witness_verifier.cosigner:
        raise ValueError(f"{witness_verifier.name} is not a cosigner key (type 0x04)")
    note = note_text if isinstance(note_text, SignedNote) else parse_note(note_text)
    parse_checkpoint(note.text)
    key = (witness_verifier.name, witness_verifier.keyid)
    mine = [s for s in note.signatures if (s.name, s.keyid) == key]  # one at most
    if not mine:
        raise InvalidSignature(witness_verifier.name, witness_verifier.keyid, "no cosignature")
    timestamp = _verify_cosignature_line(note.text, mine[0], witness_verifier)
    for sig in note.repeats:
        if (sig.name, sig.keyid) == key:
            _verify_cosignature_line(note.text, sig, witness_verifier)
    return timestamp


def _verify_cosignature_line(text: str, sig: NoteSignature, witness_verifier: Verifier) -> int:
    if len(sig.signature) != _COSIG_LEN:
        raise InvalidSignature(sig.name, sig.keyid, "cosignature is not 72 bytes")
    timestamp = int.from_bytes(sig.signature[:8], "big")
    if timestamp > MAX_TIMESTAMP:
        raise InvalidSignature(sig.name, sig.keyid, "timestamp above 2^63 - 1")
    witness_verifier.verify(cosignature_message(text, timestamp), sig.signature[8:])
    return timestamp
