"""Tests of ledger.envelope: DSSE v1 PAE, strict JSON envelopes, and
signatures keyed by signed-note verifier keys."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.envelope import (
    MAX_ENVELOPE_SIGNATURES,
    MAX_ENVELOPE_SIZE,
    Envelope,
    EnvelopeSignature,
    encode_envelope,
    pae,
    parse_envelope,
    sign_envelope,
    verified_keys,
    verify_envelope,
)
from ledger.errors import InvalidSignature, MalformedError
from ledger.keys import Signer
from tests.test_note import assert_only_ledger_errors, mutations

TYPE = "application/vnd.carbonledger.footprint+json"
PAYLOAD = b'{"id":"pf-1","pcf":{"declaredUnitOfMeasurement":"kilogram"}}'
# golang.org/x/mod/sumdb/note note_test.go.
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
SUPPLIER = Signer.from_key(PETER_SKEY)
AUDITOR = Signer.from_seed("auditor.example", bytes([5]) * 32)
# The example envelope of secure-systems-lab/dsse protocol.md ("Test Vectors").
DSSE_SPEC_ENVELOPE = (
    b'{"payload": "aGVsbG8gd29ybGQ=",\n "payloadType": "http://example.com/HelloWorld",\n'
    b' "signatures": [{"sig": "A3JqsQGtVsJ2O2xqrI5IcnXip5GToJ3F+FnZ+O88SjtR6rDAajabZKciJTfUi'
    b'HqJPcIAriEGAHTVeCUjW2JIZA=="}]}'
)


def test_pae_spec_example() -> None:
    # secure-systems-lab/dsse protocol.md, "Test Vectors".
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_counts_bytes_not_characters() -> None:
    assert pae("", b"") == b"DSSEv1 0  0 "
    assert pae("t\u00e9", b"\x00") == b"DSSEv1 3 t\xc3\xa9 1 \x00"


def test_encoding_is_compact_sorted_and_keyid_is_vkey() -> None:
    env = sign_envelope(TYPE, PAYLOAD, [SUPPLIER])
    sig = env.signatures[0].sig
    expected = (
        b'{"payload":"'
        + base64.b64encode(PAYLOAD)
        + b'","payloadType":"'
        + TYPE.encode()
        + b'","signatures":[{"keyid":"'
        + SUPPLIER.vkey.encode()
        + b'","sig":"'
        + base64.b64encode(sig)
        + b'"}]}'
    )
    assert encode_envelope(env) == expected
    # Independent check: plain Ed25519 over the PAE spelled out by hand.
    message = b"DSSEv1 %d %s %d %s" % (len(TYPE), TYPE.encode(), len(PAYLOAD), PAYLOAD)
    Ed25519PublicKey.from_public_bytes(SUPPLIER.public_key).verify(sig, message)


def test_round_trip_two_signers() -> None:
    env = sign_envelope(TYPE, PAYLOAD, [SUPPLIER, AUDITOR])
    data = encode_envelope(env)
    assert parse_envelope(data) == env
    assert verified_keys(parse_envelope(data)) == frozenset({SUPPLIER.vkey, AUDITOR.vkey})
    verify_envelope(parse_envelope(data), [SUPPLIER.verifier(), AUDITOR.verifier()])


def test_parse_accepts_whitespace_and_any_key_order() -> None:
    env = sign_envelope(TYPE, PAYLOAD, [SUPPLIER])
    doc = json.loads(encode_envelope(env))
    loose = json.dumps(
        {"signatures": doc["signatures"], "payloadType": TYPE, "payload": doc["payload"]}, indent=2
    )
    assert parse_envelope(loose.encode()) == env


def test_dsse_spec_envelope_is_refused_on_purpose() -> None:
    # No keyid and a URI payloadType: this ledger requires both a verifier key
    # as keyid and a media type (see the module docstring).
    with pytest.raises(MalformedError):
        parse_envelope(DSSE_SPEC_ENVELOPE)


def test_verified_keys_skips_bad_signatures() -> None:
    good = sign_envelope(TYPE, PAYLOAD, [SUPPLIER, AUDITOR])
    s0, s1 = good.signatures
    flipped = EnvelopeSignature(s1.keyid, bytes([s1.sig[0] ^ 1]) + s1.sig[1:])
    cosigner = Signer.from_seed("w.example", bytes([5]) * 32, cosigner=True)
    odd = [
        EnvelopeSignature("not-a-vkey", s1.sig),
        EnvelopeSignature(
            AUDITOR.vkey.replace(AUDITOR.keyid.hex(), AUDITOR.keyid.hex().upper()), s1.sig
        ),
        EnvelopeSignature(cosigner.vkey, cosigner.sign(pae(TYPE, PAYLOAD))),
        EnvelopeSignature(AUDITOR.vkey + "=", s1.sig),
    ]
    env = Envelope(TYPE, PAYLOAD, (s0, flipped, *odd))
    assert verified_keys(env) == frozenset({SUPPLIER.vkey})
    other_payload = Envelope(TYPE, PAYLOAD + b" ", good.signatures)
    assert verified_keys(other_payload) == frozenset()
    other_type = Envelope(TYPE.replace("footprint", "gec"), PAYLOAD, good.signatures)
    assert verified_keys(other_type) == frozenset()


def test_verify_envelope_requires_every_verifier() -> None:
    env = sign_envelope(TYPE, PAYLOAD, [SUPPLIER])
    verify_envelope(env, [SUPPLIER.verifier()])
    with pytest.raises(InvalidSignature) as info:
        verify_envelope(env, [SUPPLIER.verifier(), AUDITOR.verifier()])
    assert info.value.name == "auditor.example"
    bad = Envelope(TYPE, PAYLOAD + b"x", env.signatures)
    with pytest.raises(InvalidSignature):
        verify_envelope(bad, [SUPPLIER.verifier()])
    with pytest.raises(ValueError):
        verify_envelope(env, [])


def test_sign_envelope_argument_checks() -> None:
    with pytest.raises(ValueError):
        sign_envelope(TYPE, PAYLOAD, [])
    with pytest.raises(ValueError):
        sign_envelope(TYPE, PAYLOAD, [Signer.generate("w", cosigner=True)])
    with pytest.raises(MalformedError):
        sign_envelope(TYPE, PAYLOAD, [SUPPLIER, SUPPLIER])
    with pytest.raises(MalformedError):
        sign_envelope("application/json; charset=utf-8", PAYLOAD, [SUPPLIER])


def _doc(**overrides: object) -> bytes:
    env = sign_envelope(TYPE, PAYLOAD, [SUPPLIER])
    doc = json.loads(encode_envelope(env))
    doc.update(overrides)
    return json.dumps(doc).encode()


_SIG = json.loads(encode_envelope(sign_envelope(TYPE, PAYLOAD, [SUPPLIER])))["signatures"][0]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"[]",
        b"null",
        b'"x"',
        b"{}",
        _doc(extra=1),
        _doc(payload=None),
        _doc(payload=5),
        _doc(payload="YWI"),  # missing padding
        _doc(payload="YWJ="),  # non-zero padding bits
        _doc(payload=base64.urlsafe_b64encode(b"\xfb\xff" * 10).decode()),
        _doc(payload="aGVsbG8gd29ybGQ= "),
        _doc(payloadType="application/json; charset=utf-8"),
        _doc(payloadType="http://example.com/HelloWorld"),
        _doc(payloadType="application/vnd.\u00e9+json"),
        _doc(payloadType=""),
        _doc(payloadType=["application/x"]),
        _doc(signatures=[]),
        _doc(signatures={}),
        _doc(signatures=[_SIG] * 2),
        _doc(signatures=[dict(_SIG, keyid=f"k{i}") for i in range(MAX_ENVELOPE_SIGNATURES + 1)]),
        _doc(signatures=[{"sig": _SIG["sig"]}]),
        _doc(signatures=[dict(_SIG, extra="x")]),
        _doc(signatures=[dict(_SIG, keyid="")]),
        _doc(signatures=[dict(_SIG, keyid="a b")]),
        _doc(signatures=[dict(_SIG, keyid="a\ud800")]),
        _doc(signatures=[dict(_SIG, keyid=7)]),
        _doc(signatures=[dict(_SIG, sig="")]),
        _doc(signatures=[dict(_SIG, sig=base64.b64encode(bytes(600)).decode())]),
        _doc(signatures=[dict(_SIG, sig="-_-_" + _SIG["sig"][4:])]),  # URL-safe alphabet
        _doc().replace(b'"payload"', b'"payload": "", "payload"', 1),  # duplicate key
        _doc().replace(b'"keyid"', b'"keyid": "x", "keyid"', 1),
        _doc(payload=float("nan")),
        _doc() + b"x",
        _doc() + b"{}",
        b"\xef\xbb\xbf" + _doc(),  # UTF-8 BOM
        _doc().decode().encode("utf-16"),
        _doc()[:-1] + b"\xff}",
        b"[" * 100000 + b"]" * 100000,
        b'{"payload": "' + b"A" * MAX_ENVELOPE_SIZE + b'"}',
    ],
)
def test_parse_envelope_rejects(data: bytes) -> None:
    with pytest.raises(MalformedError):
        parse_envelope(data)


def test_parse_envelope_rejects_non_bytes() -> None:
    with pytest.raises(MalformedError):
        parse_envelope(_doc().decode())  # type: ignore[arg-type]


@settings(max_examples=100, deadline=None)
@given(payload=st.binary(max_size=200), nsigners=st.integers(min_value=1, max_value=3))
def test_round_trip_property(payload: bytes, nsigners: int) -> None:
    signers = [SUPPLIER, AUDITOR, Signer.from_seed("third.example", bytes([6]) * 32)][:nsigners]
    env = sign_envelope(TYPE, payload, signers)
    data = encode_envelope(env)
    assert parse_envelope(data) == env
    assert encode_envelope(parse_envelope(data)) == data
    assert verified_keys(env) == frozenset(s.vkey for s in signers)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_malformed(data: bytes) -> None:
    try:
        parse_envelope(data)
    except MalformedError:
        pass


def test_mutated_envelopes_raise_only_ledger_errors() -> None:
    data = encode_envelope(sign_envelope(TYPE, PAYLOAD, [SUPPLIER, AUDITOR]))

    def still_sound(raw: bytes, env: Envelope) -> None:
        # A mutation that still parses must re-encode to an envelope that
        # parses to the same value, and only intact signatures may verify.
        assert parse_envelope(encode_envelope(env)) == env
        assert verified_keys(env) <= {SUPPLIER.vkey, AUDITOR.vkey}

    rejected = assert_only_ledger_errors(parse_envelope, mutations(data), on_success=still_sound)
    assert rejected > 300
