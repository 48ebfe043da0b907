"""C2SP signed notes: text signed by one or more Ed25519 keys.

A signed note is its text (one or more non-empty lines, each ending in a
newline), a blank line, and one or more signature lines
``— <key name> <base64(keyid || signature)>`` (U+2014, space), as specified by
c2sp.org/signed-note and implemented by golang.org/x/mod/sumdb/note.

What rejects a whole note, as in the specification and Go's ``note.Open``:
a note that is too large, not UTF-8, or holds an ASCII control other than
newline; no blank line, or no signature line after it; more than
:data:`MAX_SIGNATURES` signature lines, repeated ones counted as Go counts
them; a signature line that is not an em dash, a space, a valid key name, a
space, and standard padded base64 of a key ID and at least one byte. The line
syntax holds for every line, known key or not, because a line must parse
before anyone can tell whose key it names.

What is ignored, because signed-note says verifiers MUST ignore signatures by
unknown keys: base64 with non-zero padding bits is decoded as Go decodes it
(RFC 4648 section 3.5 lets a decoder accept it), and a line equal to an
earlier one is dropped. A later, different line by a key that already signed
is kept apart in :attr:`SignedNote.repeats`, so that no key is counted twice;
:func:`open_note` still verifies it when the key is known, since signed-note
says a known key's signature MUST be verified and a bad one SHOULD reject the
note (Go skips such lines unverified).

This module is stricter than the specification on purpose in small ways.
The text may not contain an empty line: every note this ledger opens is a
checkpoint, whose lines c2sp.org/tlog-checkpoint requires to be non-empty, or
a block note (ledger/block_note.py), whose lines are non-empty too,
and then the boundary between text and signatures is the only ``\\n\\n``
in the note. A signature after its key ID is at most 8192 bytes, a size bound
that still admits post-quantum signatures. Key names are checked by
:func:`ledger.keys.check_key_name`, as the specification and Go's note
package check them.

:func:`parse_note` checks syntax only. :func:`open_note` also verifies the
signatures of the keys it is given: signatures by unknown keys are kept as
unverified, a bad signature by a known key rejects the note, and a note with no
good signature by a known key is rejected. A parsed note re-formats to the same
bytes unless it held ignored lines or non-canonical base64: :func:`format_note`
writes one canonical line per key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ledger._b64 import b64decode, b64encode
from ledger.errors import InvalidSignature, MalformedError
from ledger.keys import Signer, Verifier, check_key_name

__all__ = [
    "MAX_NOTE_SIZE",
    "MAX_SIGNATURES",
    "Note",
    "NoteSignature",
    "SignedNote",
    "check_note_text",
    "format_note",
    "open_note",
    "parse_note",
    "sign_note",
]

#: Largest encoded note accepted, in bytes.
MAX_NOTE_SIZE = 1 << 20
#: Most signature lines accepted in one note. Signed-note requires at least 16;
#: golang.org/x/mod/sumdb/note stops at 100.
MAX_SIGNATURES = 100

# A signature is a 4-byte key ID and at least one byte; this caps one line's
# decoded signature well above Ed25519 cosignatures (76 bytes) and even
# ML-DSA-44 cosignatures (2432 bytes).
_MAX_SIG_BYTES = 8192
_SIG_PREFIX = "\u2014 "
# Signed-note forbids ASCII controls other than newline; surrogates cannot be
# encoded as UTF-8 and only reach here through a str built in Python.
_FORBIDDEN_RE = re.compile("[\x00-\x09\x0b-\x1f\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line: key ``name``, 4-byte ``keyid``, and the signature
    bytes that follow the key ID (64 bytes for Ed25519, 72 for cosignatures)."""

    name: str
    keyid: bytes
    signature: bytes

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if not isinstance(self.keyid, bytes) or len(self.keyid) != 4:
            raise MalformedError("note signature", "key ID must be 4 bytes")
        if not isinstance(self.signature, bytes) or not 1 <= len(self.signature) <= _MAX_SIG_BYTES:
            raise MalformedError("note signature", "signature length out of range")

    def line(self) -> str:
        """The signature line, including its final newline."""
        return f"{_SIG_PREFIX}{self.name} {b64encode(self.keyid + self.signature)}\n"


@dataclass(frozen=True, slots=True)
class SignedNote:
    """A parsed but unverified note: ``text`` (ending in a newline) and its
    signature lines in order, the first line of each (name, key ID) only.

    ``repeats`` holds later lines by a key already in ``signatures`` that
    differ from every earlier one (exact repeats are dropped). Code that counts
    signers reads ``signatures``, so no key counts twice; verifiers also check
    ``repeats`` by the keys they know. :func:`format_note` does not write them.
    """

    text: str
    signatures: tuple[NoteSignature, ...]
    repeats: tuple[NoteSignature, ...] = ()


@dataclass(frozen=True, slots=True)
class Note:
    """A note opened by :func:`open_note`: its ``text``, the signatures that
    verified under a known key, and the signatures by keys it did not know."""

    text: str
    verified: tuple[NoteSignature, ...]
    unverified: tuple[NoteSignature, ...]


def check_note_text(text: str) -> None:
    """Raise :class:`MalformedError` unless ``text`` can be the text of a note.

    The text must be non-empty, end in a newline, contain no empty line, no
    ASCII control character other than newline, and encode as UTF-8.
    """
    if not isinstance(text, str) or text == "":
        raise MalformedError("note text", "must be a non-empty string")
    if not text.endswith("\n"):
        raise MalformedError("note text", "must end in a newline")
    if text.startswith("\n") or "\n\n" in text:
        raise MalformedError("note text", "must not contain an empty line")
    _check_chars(text, "note text")


def _check_chars(text: str, what: str) -> None:
    bad = _FORBIDDEN_RE.search(text)
    if bad is not None:
        raise MalformedError(what, f"forbidden character U+{ord(bad.group()):04X}")


def _decode(data: str | bytes) -> str:
    if isinstance(data, bytes):
        if len(data) > MAX_NOTE_SIZE:
            raise MalformedError("note", f"larger than {MAX_NOTE_SIZE} bytes")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedError("note", "not valid UTF-8") from None
    if not isinstance(data, str):
        raise MalformedError("note", "must be str or bytes")
    # A str of n characters encodes to at least n bytes, so this rejects huge
    # input before the exact check below encodes it.
    if len(data) > MAX_NOTE_SIZE:
        raise MalformedError("note", f"larger than {MAX_NOTE_SIZE} bytes")
    try:
        size = len(data.encode("utf-8"))
    except UnicodeEncodeError:
        raise MalformedError("note", "not encodable as UTF-8") from None
    if size > MAX_NOTE_SIZE:
        raise MalformedError("note", f"larger than {MAX_NOTE_SIZE} bytes")
    return data


def format_note(note: SignedNote) -> str:
    """Return the encoded note: text, blank line, signature lines.

    Requires a valid text and at least one, at most :data:`MAX_SIGNATURES`,
    signatures with distinct (name, key ID); raises :class:`MalformedError`
    otherwise. ``note.repeats`` are left out: a note this module writes has
    one line per key.
    """
    check_note_text(note.text)
    if not 1 <= len(note.signatures) <= MAX_SIGNATURES:
        raise MalformedError("note", f"needs 1 to {MAX_SIGNATURES} signatures")
    seen: set[tuple[str, bytes]] = set()
    for sig in note.signatures:
        if (sig.name, sig.keyid) in seen:
            raise MalformedError("note", f"two signatures by {sig.name}+{sig.keyid.hex()}")
        seen.add((sig.name, sig.keyid))
    out = note.text + "\n" + "".join(sig.line() for sig in note.signatures)
    return _decode(out)


def parse_note(data: str | bytes) -> SignedNote:
    """Parse an encoded note without verifying anything.

    Raises :class:`MalformedError` if the note is too large, not UTF-8, holds a
    forbidden character, or does not have the exact shape text, blank line,
    one to :data:`MAX_SIGNATURES` signature lines of valid syntax (see the
    module doc). Repeated lines are dropped or kept apart, not refused.
    """
    note = _decode(data)
    _check_chars(note, "note")
    split = note.find("\n\n")
    if split < 0:
        raise MalformedError("note", "no blank line before the signatures")
    text, sigblock = note[: split + 1], note[split + 2 :]
    check_note_text(text)
    if sigblock == "" or not sigblock.endswith("\n"):
        raise MalformedError("note", "signature block must be non-empty lines ending in newline")
    lines = sigblock[:-1].split("\n")
    # Counted before repeats are dropped, as Go does: the cap bounds the work
    # of parsing, whatever the lines hold.
    if len(lines) > MAX_SIGNATURES:
        raise MalformedError("note", f"more than {MAX_SIGNATURES} signatures")
    firsts: dict[tuple[str, bytes], NoteSignature] = {}
    repeats: list[NoteSignature] = []
    for line in lines:
        sig = _parse_signature_line(line)
        first = firsts.setdefault((sig.name, sig.keyid), sig)
        if first is not sig and sig != first and sig not in repeats:
            repeats.append(sig)
    return SignedNote(text, tuple(firsts.values()), tuple(repeats))


def _parse_signature_line(line: str) -> NoteSignature:
    if not line.startswith(_SIG_PREFIX):
        raise MalformedError("note signature", "line must start with U+2014 and a space")
    rest = line[len(_SIG_PREFIX) :]
    name, sep, b64 = rest.partition(" ")
    if sep == "":
        raise MalformedError("note signature", "expected a name, a space and base64")
    check_key_name(name)
    # Non-canonical padding bits are accepted as Go's decoder accepts them:
    # the line may be an unknown key's, which signed-note says to ignore, and
    # for a known key the decoded bytes are what is verified.
    raw = b64decode(b64, what="note signature", max_len=4 + _MAX_SIG_BYTES, canonical=False)
    if len(raw) < 5:
        raise MalformedError("note signature", "shorter than a key ID and one byte")
    return NoteSignature(name, raw[:4], raw[4:])


def sign_note(text: str, signers: Sequence[Signer]) -> str:
    """Sign ``text`` with each of ``signers`` (type 0x01 keys) and return the note.

    Requires at least one signer, all distinct, none a witness cosigner
    (cosignatures sign a different message: see
    :func:`ledger.checkpoint.cosign_checkpoint`). Raises
    :class:`MalformedError` if ``text`` is not a valid note text.
    """
    check_note_text(text)
    if not signers:
        raise ValueError("sign_note needs at least one signer")
    message = text.encode("utf-8")
    sigs = []
    for signer in signers:
        if signer.cosigner:
            raise ValueError(f"{signer.name} is a cosigner key; use cosign_checkpoint")
        sigs.append(NoteSignature(signer.name, signer.keyid, signer.sign(message)))
    return format_note(SignedNote(text, tuple(sigs)))


def open_note(data: str | bytes, verifiers: Iterable[Verifier]) -> Note:
    """Parse a note and verify its signatures by the known ``verifiers``.

    (1) Parse (see :func:`parse_note`); (2) for each signature line whose
    (name, key ID) is a known verifier, repeated lines included, verify it
    over the text, raising :class:`InvalidSignature` if it fails; (3) keep
    signatures by unknown keys as unverified; (4) raise
    :class:`InvalidSignature` if no signature verified. ``verified`` and
    ``unverified`` hold one signature per key.

    ``verifiers`` must be type 0x01 keys; pass witness keys to
    :func:`ledger.checkpoint.verify_cosignature` instead.
    """
    known: dict[tuple[str, bytes], Verifier] = {}
    for v in verifiers:
        if v.cosigner:
            raise ValueError(f"{v.name} is a cosigner key; use verify_cosignature")
        other = known.setdefault((v.name, v.keyid), v)
        if other != v:
            # Two trusted keys share a name and key ID: the trust
            # configuration is broken, and guessing would be unsafe.
            raise ValueError(f"ambiguous verifiers for {v.name}+{v.keyid.hex()}")
    # (1) Parse.
    note = parse_note(data)
    message = note.text.encode("utf-8")
    verified: list[NoteSignature] = []
    unverified: list[NoteSignature] = []
    for sig in note.signatures:
        verifier = known.get((sig.name, sig.keyid))
        if verifier is None:
            # (3) Signed-note: signatures by unknown keys are ignored, not errors.
            unverified.append(sig)
            continue
        # (2) A known key's bad signature rejects the whole note.
        verifier.verify(message, sig.signature)
        verified.append(sig)
    for sig in note.repeats:
        # (2) A known key's later line must verify too, though its key counts
        # once; an unknown key's is ignored.
        verifier = known.get((sig.name, sig.keyid))
        if verifier is not None:
            verifier.verify(message, sig.signature)
    # (4) At least one known key must have signed.
    if not verified:
        names = ", ".join(sorted(f"{n}+{k.hex()}" for n, k in known)) or "no keys given"
        raise InvalidSignature(names, None, "no signature by a known key")
    return Note(note.text, tuple(verified), tuple(unverified))
