"""Block notes: a replica's signed word on one of its blocks, and counting them.

Checkpoints, and the witnesses' cosignatures on them, cover the entries'
Merkle tree only. A block also records the sequencer's time and the state
digest after it, and a replica records beside it the ordering position of the
batch that made it; no checkpoint covers those. A block note is one replica's
statement of a block as it stores it, with that position, signed with the
replica's log key. A node that takes blocks from a single peer counts how many
*distinct* replicas sign the same block before it applies anything
(node/replication/catchup.py). Blocks are hash-chained (ledger/block.py), so
vouching for one block vouches for every block before it.

The note text (c2sp.org/signed-note, signed by a type 0x01 log key)::

    carbonledger/block-note/v1
    <origin>
    <base64 of the encoded block>
    <base64 of the position recorded with the block, or "-" for none>

The first line is a domain marker, so a block note never parses as a
checkpoint (its second line is not a tree size) and a checkpoint never parses
as a block note. The position is opaque here: node/replication writes a
sequence number and an etcd revision. A block note says something about
history that never changes, so it carries no time: replaying an old one
tells nothing new.
"""

from __future__ import annotations

import hmac
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from ledger._b64 import b64decode, b64encode
from ledger.block import Block, block_hash, decode_block, encode_block
from ledger.errors import BlockConflict, BlockNotConfirmed, LedgerError, MalformedError
from ledger.keys import Signer, Verifier
from ledger.note import check_note_text, open_note, sign_note
from ledger.policy import Policy, quorum_size

__all__ = [
    "BLOCK_NOTE_MARKER",
    "MAX_POSITION_SIZE",
    "BlockNote",
    "SignedStatement",
    "Vouching",
    "format_block_note",
    "open_block_note",
    "parse_block_note",
    "sign_block_note",
    "tally_block_notes",
    "verify_block_vouchers",
]

#: The first line of every block note's text.
BLOCK_NOTE_MARKER = "carbonledger/block-note/v1"
#: Largest position accepted, in bytes (replication's is 16).
MAX_POSITION_SIZE = 64
_NO_POSITION = "-"
_MAX_TEXT = 1024
_BLOCK_SIZE = len(encode_block(Block(0, bytes(32), 0, 0, 0, bytes(32), 0, bytes(32))))


@dataclass(frozen=True, slots=True)
class BlockNote:
    """Block ``block`` of log ``origin``, with the ``position`` (opaque, at
    most :data:`MAX_POSITION_SIZE` bytes) recorded with it, if any."""

    origin: str
    block: Block
    position: bytes | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.block, Block):
            raise MalformedError("block note block", "must be a Block")
        if not isinstance(self.origin, str) or self.origin == "" or "\n" in self.origin:
            raise MalformedError("block note origin", "must be one non-empty line")
        if self.position is not None and (
            not isinstance(self.position, bytes) or not 0 < len(self.position) <= MAX_POSITION_SIZE
        ):
            raise MalformedError("block note position", f"must be 1 to {MAX_POSITION_SIZE} bytes")


def format_block_note(note: BlockNote) -> str:
    """Return the block note's text (ending in a newline)."""
    position = b64encode(note.position) if note.position is not None else _NO_POSITION
    text = (
        f"{BLOCK_NOTE_MARKER}\n{note.origin}\n{b64encode(encode_block(note.block))}\n{position}\n"
    )
    check_note_text(text)
    return text


def parse_block_note(text: str) -> BlockNote:
    """Parse block note text strictly: exactly the four lines above, each
    canonical, or :class:`MalformedError`."""
    if not isinstance(text, str) or len(text) > _MAX_TEXT:
        raise MalformedError("block note", "not a string of sane length")
    check_note_text(text)
    lines = text[:-1].split("\n")
    if len(lines) != 4 or lines[0] != BLOCK_NOTE_MARKER:
        raise MalformedError("block note", f"expected {BLOCK_NOTE_MARKER!r} and three lines")
    _, origin, block_text, position_text = lines
    block = decode_block(b64decode(block_text, what="block note block", max_len=_BLOCK_SIZE))
    position = None
    if position_text != _NO_POSITION:
        position = b64decode(position_text, what="block note position", max_len=MAX_POSITION_SIZE)
    note = BlockNote(origin, block, position)
    if format_block_note(note) != text:
        raise MalformedError("block note", "not in canonical form")
    return note


def sign_block_note(note: BlockNote, signer: Signer) -> str:
    """Return the block note signed by the replica's log key ``signer``,
    whose name must be the note's origin."""
    if signer.name != note.origin:
        raise ValueError(f"key {signer.name!r} is not a log key of {note.origin!r}")
    return sign_note(format_block_note(note), [signer])


def open_block_note(
    data: str | bytes, verifiers: Iterable[Verifier]
) -> tuple[BlockNote, tuple[Verifier, ...]]:
    """Verify a signed block note and return it with the keys among
    ``verifiers`` whose signatures verified (at least one).

    (1) Open the note (:func:`ledger.note.open_note`); (2) parse the text;
    (3) keep only keys named as the note's origin, so that a key cannot vouch
    for another log's blocks. Raises :class:`MalformedError` or
    :class:`~ledger.errors.InvalidSignature`.
    """
    known = {(v.name, v.keyid): v for v in verifiers}
    # (1) The signatures.
    opened = open_note(data, known.values())
    # (2) The text.
    note = parse_block_note(opened.text)
    # (3) Keys bound to the origin.
    signers = tuple(known[(s.name, s.keyid)] for s in opened.verified if s.name == note.origin)
    if not signers:
        raise MalformedError("block note", f"no signature by a log key of {note.origin!r}")
    return note, signers


@dataclass(frozen=True, slots=True)
class SignedStatement:
    """One statement about a block height that replicas signed: the block
    hash and the position (None for notes without one), the distinct log
    keys (verifier keys) that sign it, and their signed notes."""

    block_hash: bytes
    position: bytes | None
    signers: tuple[str, ...]
    notes: tuple[str, ...]


def tally_block_notes(
    origin: str, height: int, notes: Iterable[str | bytes], policy: Policy
) -> tuple[SignedStatement, ...]:
    """Who signs what about block ``height`` of log ``origin``: each distinct
    (block hash, position) the notes state, with the policy's log keys that
    sign it, in the order first seen.

    Notes are opened and passed over exactly as in
    :func:`verify_block_vouchers` (1). This decides nothing: it tells, for
    the evidence of a :class:`BlockConflict`, on which side of it the
    replicas stand. A key that signs two statements appears in both.
    """
    verifiers = [log.verifier for log in policy.logs if log.verifier.name == origin]
    found: dict[tuple[bytes, bytes | None], tuple[dict[str, None], list[str]]] = {}
    for data in notes:
        try:
            note, signers = open_block_note(data, verifiers)
        except LedgerError:
            continue
        if note.origin != origin or note.block.height != height:
            continue
        keys, texts = found.setdefault((block_hash(note.block), note.position), ({}, []))
        keys.update((v.vkey, None) for v in signers)
        text = data.decode() if isinstance(data, bytes) else data
        if text not in texts:
            texts.append(text)
    return tuple(
        SignedStatement(hash_, position, tuple(keys), tuple(texts))
        for (hash_, position), (keys, texts) in found.items()
    )


@dataclass(frozen=True, slots=True)
class Vouching:
    """What :func:`verify_block_vouchers` found when it accepted a block:
    the log keys that vouch for it, and the dissents -- each note of a
    replica that signed another block hash or position at that height,
    as a :class:`BlockConflict` naming its signer with the signed note as
    evidence. A dissent does not stop a block a quorum vouches for, but it
    proves a replica faulty, so a caller keeps it."""

    vouchers: tuple[str, ...]
    dissents: tuple[BlockConflict, ...]


def verify_block_vouchers(
    origin: str, block: Block, position: bytes | None, notes: Iterable[str | bytes], policy: Policy
) -> Vouching:
    """Check that a quorum of distinct replicas sign ``block`` (and
    ``position``, unless it is None) of log ``origin``, and that no quorum
    signs anything else at its height; return who vouches and who dissents.

    (1) Open each note with the policy's log keys for ``origin``; a note that
    does not open, or is of another origin or height, is passed over (it says
    nothing about this block). (2) Sort each note to a side: the served one
    (the same block hash and, when ``position`` is given, the same position),
    or a conflicting value (another block hash; or, when ``position`` is
    given, the same block with another position). A note of the same block
    without a position, when one is given, is on no side: it neither vouches
    for the position nor contradicts it. (3) Count distinct log keys per
    side (one replica behind several addresses counts once). A key on two
    sides signed two contradicting notes for one height, which no honest
    replica does: it counts for no side, and its note against the served
    side is a dissent like any other. (4) Decide, with ``needed`` the
    witnesses the policy's quorum asks for (:func:`ledger.policy.quorum_size`;
    at least one):

    - a conflicting value signed by ``needed`` keys: :class:`BlockConflict`,
      also when the served side has as many;
    - the served side signed by ``needed`` keys: return its keys and the
      dissents (:class:`Vouching`);
    - otherwise, any dissent: :class:`BlockConflict` (the first one; the
      served block may be the lie), else :class:`BlockNotConfirmed`.

    Why a quorum decides: each replica of a cluster holds one log key and one
    witness key, and the policy assumes fewer than ``needed`` of them are
    faulty -- as it does when ``needed`` witnesses vouch for the tree. Then
    any ``needed`` distinct keys include an honest replica, which signs only
    the block (and position) every honest replica holds: a side they sign is
    the true one, whatever the other replicas sign. Two sides that both reach
    ``needed`` prove that assumption broken, and nothing is decided.
    """
    verifiers = [log.verifier for log in policy.logs if log.verifier.name == origin]
    served = block_hash(block)
    # Side None is the served one; a conflicting side is (what, value).
    sides: dict[tuple[str, bytes] | None, dict[str, None]] = {None: {}}
    dissents: dict[str, BlockConflict] = {}  # by note text
    for data in notes:
        # (1) Open, and keep only notes about this block's height.
        try:
            note, signers = open_block_note(data, verifiers)
        except LedgerError:
            continue
        if note.origin != origin or note.block.height != block.height:
            continue
        signer = ", ".join(v.vkey for v in signers)
        text = data.decode() if isinstance(data, bytes) else data
        # (2) The side of the note: None for the served one.
        signed = block_hash(note.block)
        dissent: BlockConflict | None = None
        if not hmac.compare_digest(signed, served):
            dissent = BlockConflict(block.height, "block hash", served, signed, signer, text)
        elif position is not None:
            if note.position is None:
                continue  # the block without its position: on no side
            if not hmac.compare_digest(note.position, position):
                dissent = BlockConflict(
                    block.height, "position", position, note.position, signer, text
                )
        side: tuple[str, bytes] | None = None
        if dissent is not None:
            side = (dissent.what, dissent.signed)
            dissents.setdefault(text, dissent)
        # (3) Distinct keys per side.
        sides.setdefault(side, {}).update((v.vkey, None) for v in signers)
    # A key on two sides equivocates: it counts for neither.
    on_two = {
        key for key, n in Counter(k for keys in sides.values() for k in keys).items() if n > 1
    }
    counted = {side: tuple(k for k in keys if k not in on_two) for side, keys in sides.items()}
    vouchers = counted.pop(None)
    # (4) The quorum.
    needed = max(1, quorum_size(policy))
    for side, keys in counted.items():
        if len(keys) >= needed:
            raise next(c for c in dissents.values() if (c.what, c.signed) == side)
    if len(vouchers) >= needed:
        return Vouching(vouchers, tuple(dissents.values()))
    if dissents:
        raise next(iter(dissents.values()))
    raise BlockNotConfirmed(block.height, vouchers, needed)
