"""Ed25519 keys in the C2SP signed-note text forms.

A verifier key ("vkey") is ``name+hexkeyid+base64(type || public key)`` and a
signer key ("skey") is ``PRIVATE+KEY+name+hexkeyid+base64(type || seed)``,
exactly as golang.org/x/mod/sumdb/note writes them, so keys move freely between
this ledger and existing transparency-log tooling (c2sp.org/signed-note).

Two signature types are supported, both Ed25519:

* ``0x01`` (:data:`ALG_ED25519`): plain signed-note signatures, used by logs to
  sign checkpoints and by organizations to sign DSSE envelopes;
* ``0x04`` (:data:`ALG_COSIGNATURE_V1`): timestamped witness cosignatures
  (c2sp.org/tlog-cosignature). Only the key ID and the signed message differ;
  the message is built in :mod:`ledger.checkpoint`.

The key ID is ``SHA-256(name || 0x0A || type || public key)[:4]``. Parsers
check it, because a key whose ID does not match its material is either corrupt
or an attempt to pass one key off under another's identity.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature as _CryptoInvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from ledger._b64 import b64decode, b64encode
from ledger.errors import InvalidSignature, MalformedError

__all__ = [
    "ALG_COSIGNATURE_V1",
    "ALG_ED25519",
    "MAX_KEY_TEXT",
    "Signer",
    "Verifier",
    "check_key_name",
    "key_id",
]

#: Signature type byte of signed-note Ed25519 keys (c2sp.org/signed-note).
ALG_ED25519 = 0x01
#: Signature type byte of Ed25519 witness cosignature keys (c2sp.org/tlog-cosignature).
ALG_COSIGNATURE_V1 = 0x04
_ALGS = (ALG_ED25519, ALG_COSIGNATURE_V1)

#: Longest key text a parser looks at; real keys are under 200 characters.
MAX_KEY_TEXT = 1024

_ED25519_KEY_LEN = 32
_ED25519_SIG_LEN = 64
_PRIVATE_PREFIX = "PRIVATE+KEY+"


def check_key_name(name: str) -> None:
    """Raise :class:`MalformedError` unless ``name`` is a valid signed-note key name.

    Signed-note requires names to be non-empty and free of Unicode spaces and
    ``+``. ASCII controls below U+0020 are refused too, since a signed note
    may not contain them, and lone surrogates, since the name must encode as
    UTF-8. DEL (U+007F) is allowed, as by the spec and Go's note package: a
    note cosigned by a witness so named must open. (A tlog-policy file cannot
    name such a key: that format forbids DEL.)
    """
    if not isinstance(name, str) or name == "":
        raise MalformedError("key name", "must be a non-empty string")
    if len(name) > MAX_KEY_TEXT:
        raise MalformedError("key name", "too long")
    for ch in name:
        if ch == "+" or ch.isspace() or ord(ch) < 0x20:
            raise MalformedError("key name", f"contains forbidden character {ch!r}")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedError("key name", "not encodable as UTF-8") from None


def key_id(name: str, alg: int, public_key: bytes) -> bytes:
    """Return the 4-byte signed-note key ID of a named public key.

    ``key ID = SHA-256(name || 0x0A || alg || public_key)[:4]`` (c2sp.org/signed-note).
    """
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([alg]) + public_key).digest()[:4]


def _check_alg(alg: int) -> None:
    if type(alg) is not int or alg not in _ALGS:
        raise MalformedError("key", f"unsupported signature type {alg!r}")


@dataclass(frozen=True, slots=True)
class Verifier:
    """A named Ed25519 public key that checks signatures.

    ``alg`` is :data:`ALG_ED25519` for signed-note signatures or
    :data:`ALG_COSIGNATURE_V1` for witness cosignatures. Two verifiers are
    equal when name, type and key are equal.
    """

    name: str
    alg: int
    public_key: bytes
    _key: Ed25519PublicKey = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        check_key_name(self.name)
        _check_alg(self.alg)
        if not isinstance(self.public_key, bytes) or len(self.public_key) != _ED25519_KEY_LEN:
            raise MalformedError("public key", "Ed25519 public keys are 32 bytes")
        try:
            key = Ed25519PublicKey.from_public_bytes(self.public_key)
        except ValueError as exc:
            raise MalformedError("public key", str(exc)) from None
        object.__setattr__(self, "_key", key)

    @classmethod
    def from_vkey(cls, text: str) -> Verifier:
        """Parse a verifier key ``name+hexkeyid+base64(type||pub)``.

        Raises :class:`MalformedError` on any syntax error, an unknown type,
        a non-canonical spelling (upper-case hex, non-canonical base64), or a
        key ID that does not match the name and key.
        """
        if not isinstance(text, str) or len(text) > MAX_KEY_TEXT:
            raise MalformedError("verifier key", "not a string of sane length")
        # The base64 part may itself contain '+', so split at most twice.
        parts = text.split("+", 2)
        if len(parts) != 3:
            raise MalformedError("verifier key", "expected name+keyid+key")
        name, hexid, b64 = parts
        check_key_name(name)
        keyid = _parse_hex_keyid(hexid)
        raw = b64decode(b64, what="verifier key", max_len=1 + _ED25519_KEY_LEN)
        if len(raw) != 1 + _ED25519_KEY_LEN:
            raise MalformedError("verifier key", "expected a type byte and 32 key bytes")
        alg, pub = raw[0], raw[1:]
        _check_alg(alg)
        verifier = cls(name, alg, pub)
        if verifier.keyid != keyid:
            raise MalformedError("verifier key", "key ID does not match name and key")
        return verifier

    @property
    def cosigner(self) -> bool:
        """Whether this is a witness cosignature key (type 0x04)."""
        return self.alg == ALG_COSIGNATURE_V1

    @property
    def keyid(self) -> bytes:
        """The 4-byte key ID."""
        return key_id(self.name, self.alg, self.public_key)

    @property
    def vkey(self) -> str:
        """The verifier key text ``name+hexkeyid+base64(type||pub)``."""
        return f"{self.name}+{self.keyid.hex()}+{b64encode(bytes([self.alg]) + self.public_key)}"

    def verify(self, message: bytes, signature: bytes) -> None:
        """Check a raw Ed25519 ``signature`` over ``message``.

        Raises :class:`InvalidSignature` naming this key if it does not verify.
        """
        if len(signature) != _ED25519_SIG_LEN:
            raise InvalidSignature(self.name, self.keyid, "Ed25519 signatures are 64 bytes")
        try:
            self._key.verify(signature, message)
        except _CryptoInvalidSignature:
            raise InvalidSignature(self.name, self.keyid, "signature does not verify") from None

    def __str__(self) -> str:
        return self.vkey


def _parse_hex_keyid(hexid: str) -> bytes:
    # Exactly eight lower-case hex digits, which is what every writer emits;
    # bytes.fromhex alone would also take spaces and upper case.
    if len(hexid) != 8 or any(c not in "0123456789abcdef" for c in hexid):
        raise MalformedError("key", "key ID must be 8 lower-case hex digits")
    return bytes.fromhex(hexid)


class Signer:
    """A named Ed25519 private key in signed-note form.

    Build one with :meth:`generate` or :meth:`from_key`. ``cosigner=True``
    makes a witness cosignature key (type 0x04) instead of a note key (0x01).
    The private key never appears in ``repr``.
    """

    __slots__ = ("_alg", "_key", "_name", "_public", "_vkey")

    def __init__(
        self, name: str, private_key: Ed25519PrivateKey, *, cosigner: bool = False
    ) -> None:
        check_key_name(name)
        self._name = name
        self._alg = ALG_COSIGNATURE_V1 if cosigner else ALG_ED25519
        self._key = private_key
        self._public = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self._vkey: str | None = None

    @classmethod
    def generate(cls, name: str, *, cosigner: bool = False) -> Signer:
        """Create a fresh random key named ``name``."""
        return cls(name, Ed25519PrivateKey.generate(), cosigner=cosigner)

    @classmethod
    def from_seed(cls, name: str, seed: bytes, *, cosigner: bool = False) -> Signer:
        """Build a key from a 32-byte RFC 8032 seed (for tests and key import)."""
        if not isinstance(seed, bytes) or len(seed) != _ED25519_KEY_LEN:
            raise MalformedError("signer key", "Ed25519 seeds are 32 bytes")
        return cls(name, Ed25519PrivateKey.from_private_bytes(seed), cosigner=cosigner)

    @classmethod
    def from_key(cls, text: str) -> Signer:
        """Parse a signer key ``PRIVATE+KEY+name+hexkeyid+base64(type||seed)``.

        The key ID is checked against the public key derived from the seed.
        Raises :class:`MalformedError` on any problem; the message never
        contains key material.
        """
        if not isinstance(text, str) or len(text) > MAX_KEY_TEXT:
            raise MalformedError("signer key", "not a string of sane length")
        if not text.startswith(_PRIVATE_PREFIX):
            raise MalformedError("signer key", "must start with PRIVATE+KEY+")
        parts = text[len(_PRIVATE_PREFIX) :].split("+", 2)
        if len(parts) != 3:
            raise MalformedError("signer key", "expected PRIVATE+KEY+name+keyid+key")
        name, hexid, b64 = parts
        check_key_name(name)
        keyid = _parse_hex_keyid(hexid)
        raw = b64decode(b64, what="signer key", max_len=1 + _ED25519_KEY_LEN)
        if len(raw) != 1 + _ED25519_KEY_LEN:
            raise MalformedError("signer key", "expected a type byte and a 32-byte seed")
        alg, seed = raw[0], raw[1:]
        _check_alg(alg)
        signer = cls.from_seed(name, seed, cosigner=alg == ALG_COSIGNATURE_V1)
        if signer.keyid != keyid:
            raise MalformedError("signer key", "key ID does not match name and key")
        return signer

    @property
    def name(self) -> str:
        """The key name."""
        return self._name

    @property
    def alg(self) -> int:
        """The signature type byte, 0x01 or 0x04."""
        return self._alg

    @property
    def cosigner(self) -> bool:
        """Whether this is a witness cosignature key (type 0x04)."""
        return self._alg == ALG_COSIGNATURE_V1

    @property
    def public_key(self) -> bytes:
        """The 32-byte Ed25519 public key."""
        return self._public

    @property
    def keyid(self) -> bytes:
        """The 4-byte key ID."""
        return key_id(self._name, self._alg, self._public)

    @property
    def vkey(self) -> str:
        """The verifier key text to hand to verifiers."""
        # Every envelope a signer signs names it, and building it decodes the
        # public key and hashes the key ID: keep it (a key never changes).
        if self._vkey is None:
            self._vkey = self.verifier().vkey
        return self._vkey

    @property
    def skey(self) -> str:
        """The signer key text. It is secret: store it like a password."""
        seed = self._key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        payload = b64encode(bytes([self._alg]) + seed)
        return f"{_PRIVATE_PREFIX}{self._name}+{self.keyid.hex()}+{payload}"

    def verifier(self) -> Verifier:
        """The matching :class:`Verifier`."""
        return Verifier(self._name, self._alg, self._public)

    def sign(self, message: bytes) -> bytes:
        """Return the raw 64-byte Ed25519 signature of ``message``."""
        return self._key.sign(message)

    def __repr__(self) -> str:
        kind = "cosigner" if self.cosigner else "signer"
        return f"<Signer {kind} {self._name}+{self.keyid.hex()}>"
