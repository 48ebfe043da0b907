"""DSSE v1 envelopes: the signed wrapper around every ledger entry's payload.

A signature is Ed25519 over the pre-authentication encoding (DSSE protocol)::

    PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body

with lengths in bytes as ASCII decimal. The JSON envelope is
``{"payload": b64, "payloadType": type, "signatures": [{"keyid", "sig"}]}``.

This ledger fixes what the DSSE specification leaves open:

* ``keyid`` is the signer's full signed-note verifier key text
  (``name+keyid+base64(0x01||pub)``, see :mod:`ledger.keys`). A signature can
  then be checked with no state lookup, in parallel; the state machine later
  decides whether that key belongs to the organization the payload acts for.
* Signatures are checked with libsodium (PyNaCl) rather than OpenSSL
  (``cryptography``): it verifies about three times faster here and, like
  OpenSSL, releases the GIL, so the node's verification threads scale with
  cores. It is at least as strict (it also refuses small-order keys and
  points), and every node uses the same library, so replicas agree on which
  signatures verify. Key handling stays with :mod:`ledger.keys`.
* Parsing is strict: exactly the three envelope fields and the two signature
  fields (DSSE lets consumers ignore unknown fields; a ledger that stores and
  hashes the bytes it received must not carry data nobody checked), standard
  padded base64 only (DSSE also allows URL-safe), no duplicate JSON keys, a
  media-type ``payloadType``, 1 to 16 signatures with distinct key IDs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from nacl.bindings import crypto_sign_open as _sodium_sign_open
from nacl.exceptions import BadSignatureError as _SodiumBadSignature

from ledger._b64 import b64decode, b64encode
from ledger._json import canonical_dumps, strict_loads
from ledger.errors import InvalidSignature, MalformedError
from ledger.keys import ALG_ED25519, MAX_KEY_TEXT, Signer, Verifier

__all__ = [
    "MAX_ENVELOPE_SIGNATURES",
    "MAX_ENVELOPE_SIZE",
    "Envelope",
    "EnvelopeSignature",
    "encode_envelope",
    "pae",
    "parse_envelope",
    "sign_envelope",
    "verified_keys",
    "verify_envelope",
]

#: Largest encoded envelope accepted, in bytes.
MAX_ENVELOPE_SIZE = 1 << 20
#: Most signatures in one envelope.
MAX_ENVELOPE_SIGNATURES = 16

_MAX_SIG_BYTES = 512
_MAX_TYPE_LEN = 255
# RFC 6838 section 4.2 restricted-name, for both type and subtype.
_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_MEDIA_TYPE_RE = re.compile(f"{_NAME}/{_NAME}")
# Key IDs are stored and compared as text, so refuse characters that would
# make two different-looking key IDs print alike or not encode at all.
_BAD_KEYID_RE = re.compile("[\\x00-\\x20\\x7f\\ud800-\\udfff]")


class EnvelopeSignature(NamedTuple):
    """One DSSE signature: ``keyid`` (a verifier key text) and raw ``sig``."""

    keyid: str
    sig: bytes


@dataclass(frozen=True, slots=True)
class Envelope:
    """A DSSE envelope. Construction validates the fields and raises
    :class:`MalformedError`, so an ``Envelope`` always encodes."""

    payload_type: str
    payload: bytes
    signatures: tuple[EnvelopeSignature, ...]

    def __post_init__(self) -> None:
        _check_payload_type(self.payload_type)
        if not isinstance(self.payload, bytes):
            raise MalformedError("envelope payload", "must be bytes")
        if not isinstance(self.signatures, tuple):
            raise MalformedError("envelope signatures", "must be a tuple")
        if not 1 <= len(self.signatures) <= MAX_ENVELOPE_SIGNATURES:
            raise MalformedError(
                "envelope signatures", f"needs 1 to {MAX_ENVELOPE_SIGNATURES} signatures"
            )
        seen: set[str] = set()
        for s in self.signatures:
            if not isinstance(s, EnvelopeSignature):
                raise MalformedError("envelope signature", "must be an EnvelopeSignature")
            _check_keyid(s.keyid)
            if not isinstance(s.sig, bytes) or not 1 <= len(s.sig) <= _MAX_SIG_BYTES:
                raise MalformedError(
                    "envelope signature", f"sig must be 1 to {_MAX_SIG_BYTES} bytes"
                )
            if s.keyid in seen:
                raise MalformedError("envelope signature", f"two signatures with keyid {s.keyid!r}")
            seen.add(s.keyid)


def _check_payload_type(payload_type: object) -> None:
    if (
        not isinstance(payload_type, str)
        or len(payload_type) > _MAX_TYPE_LEN
        or _MEDIA_TYPE_RE.fullmatch(payload_type) is None
    ):
        raise MalformedError("envelope payloadType", "must be an ASCII media type")


def _check_keyid(keyid: object) -> None:
    if not isinstance(keyid, str) or not 1 <= len(keyid) <= MAX_KEY_TEXT:
        raise MalformedError("envelope keyid", f"must be a string of 1 to {MAX_KEY_TEXT} chars")
    if _BAD_KEYID_RE.search(keyid):
        raise MalformedError("envelope keyid", "must not contain spaces or control characters")


def pae(payload_type: str, payload: bytes) -> bytes:
    """Return the DSSE v1 pre-authentication encoding of a payload."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(t), t, len(payload), payload)


def encode_envelope(env: Envelope) -> bytes:
    """Return the compact JSON envelope, keys in sorted order, ASCII only.

    The output is deterministic: equal envelopes encode to equal bytes.
    """
    doc = {
        "payload": b64encode(env.payload),
        "payloadType": env.payload_type,
        "signatures": [{"keyid": s.keyid, "sig": b64encode(s.sig)} for s in env.signatures],
    }
    return canonical_dumps(doc)


def _fields(obj: object, want: set[str], what: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise MalformedError(what, "must be a JSON object")
    if set(obj) != want:
        raise MalformedError(what, f"fields must be exactly {sorted(want)}, got {sorted(obj)}")
    return obj


def _string(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise MalformedError(what, "must be a JSON string")
    return value


def parse_envelope(data: bytes) -> Envelope:
    """Parse a JSON envelope strictly.

    Raises :class:`MalformedError` for: input over
    :data:`MAX_ENVELOPE_SIZE` bytes, not UTF-8, not JSON, duplicate keys,
    missing or extra fields, wrong JSON types, base64 that is not canonical
    standard padded base64, a payloadType that is not a media type, no
    signatures or more than :data:`MAX_ENVELOPE_SIGNATURES`, repeated keyids.
    """
    if not isinstance(data, bytes):
        raise MalformedError("envelope", "must be bytes")
    doc = strict_loads(data, what="envelope", max_bytes=MAX_ENVELOPE_SIZE)
    obj = _fields(doc, {"payload", "payloadType", "signatures"}, "envelope")
    payload = b64decode(_string(obj["payload"], "envelope payload"), what="envelope payload")
    payload_type = _string(obj["payloadType"], "envelope payloadType")
    raw_sigs = obj["signatures"]
    if not isinstance(raw_sigs, list):
        raise MalformedError("envelope signatures", "must be a JSON array")
    if not 1 <= len(raw_sigs) <= MAX_ENVELOPE_SIGNATURES:
        raise MalformedError(
            "envelope signatures", f"needs 1 to {MAX_ENVELOPE_SIGNATURES} signatures"
        )
    sigs = []
    for item in raw_sigs:
        s = _fields(item, {"keyid", "sig"}, "envelope signature")
        keyid = _string(s["keyid"], "envelope keyid")
        sig = b64decode(
            _string(s["sig"], "envelope sig"), what="envelope sig", max_len=_MAX_SIG_BYTES
        )
        sigs.append(EnvelopeSignature(keyid, sig))
    return Envelope(payload_type, payload, tuple(sigs))


def sign_envelope(payload_type: str, payload: bytes, signers: Sequence[Signer]) -> Envelope:
    """Sign ``payload`` with each of ``signers`` (type 0x01 keys, distinct).

    Each signature's keyid is the signer's verifier key text.
    """
    _check_payload_type(payload_type)
    if not signers:
        raise ValueError("sign_envelope needs at least one signer")
    message = pae(payload_type, payload)
    sigs = []
    for signer in signers:
        if signer.cosigner:
            raise ValueError(f"{signer.name} is a cosigner key, not an envelope signer")
        sigs.append(EnvelopeSignature(signer.vkey, signer.sign(message)))
    return Envelope(payload_type, payload, tuple(sigs))


#: Verifier key texts already parsed: keyid text -> raw Ed25519 public key,
#: or None for a keyid that is not a canonical type 0x01 verifier key. A
#: handful of org keys sign almost every entry, and parsing a key text
#: (base64, key ID hash, point decoding) costs about as much as verifying.
_PUBLIC_KEYS: dict[str, bytes | None] = {}
_PUBLIC_KEYS_MAX = 8192
_SIG_LEN = 64


def _public_key(keyid: str) -> bytes | None:
    try:
        return _PUBLIC_KEYS[keyid]
    except KeyError:
        pass
    try:
        verifier = Verifier.from_vkey(keyid)
    except MalformedError:
        pub = None
    else:
        pub = verifier.public_key if verifier.alg == ALG_ED25519 else None
    if len(_PUBLIC_KEYS) >= _PUBLIC_KEYS_MAX:
        # Many distinct keys (or junk keyids): start over rather than track
        # recency; dict operations are atomic under the GIL, so threads may
        # race here harmlessly.
        _PUBLIC_KEYS.clear()
    _PUBLIC_KEYS[keyid] = pub
    return pub


def _signature_verifies(sig: EnvelopeSignature, message: bytes) -> bool:
    pub = _public_key(sig.keyid)
    if pub is None or len(sig.sig) != _SIG_LEN:
        return False
    try:
        # libsodium's combined-mode open: signature || message. Releases the GIL.
        _sodium_sign_open(sig.sig + message, pub)
    except _SodiumBadSignature:
        return False
    return True


def verified_keys(env: Envelope) -> frozenset[str]:
    """Return the keyids (verifier key texts) whose signatures verify over
    the envelope's PAE.

    Signatures whose keyid is not a canonical type 0x01 verifier key, or that
    do not verify, are left out; the caller decides which keys it needs.
    """
    message = pae(env.payload_type, env.payload)
    return frozenset(s.keyid for s in env.signatures if _signature_verifies(s, message))


def verify_envelope(env: Envelope, verifiers: Iterable[Verifier]) -> None:
    """Require a valid signature by every one of ``verifiers``.

    The signature of a verifier is the one whose keyid is its verifier key
    text. Raises :class:`InvalidSignature` naming the first verifier that has
    no valid signature. Requires at least one verifier.
    """
    wanted = list(verifiers)
    if not wanted:
        raise ValueError("verify_envelope needs at least one verifier")
    by_keyid = {s.keyid: s for s in env.signatures}
    message = pae(env.payload_type, env.payload)
    for v in wanted:
        if v.cosigner:
            raise ValueError(f"{v.name} is a cosigner key, not an envelope verifier")
        sig = by_keyid.get(v.vkey)
        if sig is None:
            raise InvalidSignature(v.name, v.keyid, "no signature in the envelope")
        v.verify(message, sig.sig)
