"""Tests of ledger.keys: golden keys from other implementations, key IDs,
strict parsing and signing."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import InvalidSignature, MalformedError
from ledger.keys import (
    ALG_COSIGNATURE_V1,
    ALG_ED25519,
    Signer,
    Verifier,
    check_key_name,
    key_id,
)
from tests.test_note import assert_only_ledger_errors, mutations

# golang.org/x/mod/sumdb/note note_test.go.
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
# golang.org/x/mod/sumdb/note example_test.go: GenerateKey from a zero reader.
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
# transparency-dev/formats note/note_cosigv1_test.go: a type 0x01 key whose
# base64 holds a '+', and a type 0x04 cosignature key.
PLUS_VKEY = "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6"
COSIG_VKEY = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"


def test_golden_key_id() -> None:
    pub = base64.b64decode(PETER_VKEY.split("+", 2)[2])[1:]
    assert key_id("PeterNeumann", ALG_ED25519, pub) == bytes.fromhex("c74f20a3")
    # The same computation spelled out from c2sp.org/signed-note.
    assert hashlib.sha256(b"PeterNeumann\n\x01" + pub).digest()[:4].hex() == "c74f20a3"


def test_golden_signer_key_round_trip() -> None:
    s = Signer.from_key(PETER_SKEY)
    assert s.name == "PeterNeumann"
    assert s.keyid == bytes.fromhex("c74f20a3")
    assert s.vkey == PETER_VKEY
    assert s.skey == PETER_SKEY
    assert s.public_key == Verifier.from_vkey(PETER_VKEY).public_key
    assert not s.cosigner and s.alg == ALG_ED25519


def test_golden_zero_seed_key() -> None:
    assert Signer.from_seed("EnochRoot", bytes(32)).vkey == ENOCH_VKEY


@pytest.mark.parametrize("vkey", [PETER_VKEY, ENOCH_VKEY, PLUS_VKEY, COSIG_VKEY])
def test_verifier_keys_of_other_implementations_round_trip(vkey: str) -> None:
    v = Verifier.from_vkey(vkey)
    assert v.vkey == vkey
    assert str(v) == vkey
    assert v.keyid.hex() == vkey.split("+")[1]


def test_cosignature_key_type() -> None:
    v = Verifier.from_vkey(COSIG_VKEY)
    assert v.cosigner and v.alg == ALG_COSIGNATURE_V1
    assert key_id(v.name, ALG_COSIGNATURE_V1, v.public_key) == bytes.fromhex("da77ade7")
    # The same key material as type 0x01 has another key ID.
    assert key_id(v.name, ALG_ED25519, v.public_key) != v.keyid


def test_generate_and_sign() -> None:
    s = Signer.generate("example.com/log")
    v = Verifier.from_vkey(s.vkey)
    assert v == s.verifier()
    sig = s.sign(b"hello")
    v.verify(b"hello", sig)
    Ed25519PublicKey.from_public_bytes(s.public_key).verify(sig, b"hello")
    with pytest.raises(InvalidSignature) as info:
        v.verify(b"hellp", sig)
    assert info.value.name == "example.com/log" and info.value.keyid == s.keyid
    with pytest.raises(InvalidSignature):
        v.verify(b"hello", sig[:63])
    assert Signer.from_key(s.skey).vkey == s.vkey


def test_generate_cosigner() -> None:
    w = Signer.generate("witness.example/w1", cosigner=True)
    assert w.cosigner
    assert w.vkey.split("+")[2].startswith("B")  # base64 of a 0x04 byte
    assert Signer.from_key(w.skey).cosigner
    assert Verifier.from_vkey(w.vkey).cosigner


def test_repr_hides_private_key() -> None:
    s = Signer.from_key(PETER_SKEY)
    assert "AYEKFALV" not in repr(s)
    assert "c74f20a3" in repr(s)


@pytest.mark.parametrize(
    "name", ["", "a b", "a+b", "a\tb", "a\u00a0b", "a\nb", "a\x00b", "a\u2028b"]
)
def test_bad_names_are_rejected(name: str) -> None:
    with pytest.raises(MalformedError):
        check_key_name(name)
    with pytest.raises(MalformedError):
        Signer.generate(name)


@pytest.mark.parametrize(
    "vkey",
    [
        "",
        "PeterNeumann",
        "PeterNeumann+c74f20a3",
        "PeterNeumann+00000000+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong ID
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # upper case
        "PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW=",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq_LDE4izWy10TW",  # URL-safe
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TX",  # other key
        "PeterNeumann+c74f20a3+AhpC2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # type 0x02
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "rekor.sigstore.dev+12345678+AwEB",
        "rekor.sigstore.dev+12345678+THIS_IS_NOT_BASE64!",
        PETER_SKEY,
        PETER_VKEY + "\n",
        "x" * 5000,
    ],
)
def test_from_vkey_rejects(vkey: str) -> None:
    with pytest.raises(MalformedError):
        Verifier.from_vkey(vkey)


@pytest.mark.parametrize(
    "skey",
    [
        PETER_VKEY,
        PETER_SKEY.replace("PRIVATE+KEY", "PRIVATE+KEYS"),
        PETER_SKEY.replace("c74f20a3", "c74f20a4"),
        PETER_SKEY.replace("PeterNeumann", "PeterNeumanN"),
        PETER_SKEY[:-1],
        PETER_SKEY + "A",
        "PRIVATE+KEY+PeterNeumann+c74f20a3",
        "private+key+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
    ],
)
def test_from_key_rejects(skey: str) -> None:
    with pytest.raises(MalformedError):
        Signer.from_key(skey)


def test_constructors_validate() -> None:
    with pytest.raises(MalformedError):
        Verifier("a", ALG_ED25519, b"\x00" * 31)
    with pytest.raises(MalformedError):
        Verifier("a", 0x02, b"\x00" * 32)
    with pytest.raises(MalformedError):
        Verifier("a", True, b"\x00" * 32)
    with pytest.raises(MalformedError):
        Signer.from_seed("a", b"\x00" * 31)


def test_mutated_keys_raise_only_malformed_and_survivors_are_canonical() -> None:
    def same_vkey(data: bytes, v: Verifier) -> None:
        assert v.vkey.encode("utf-8") == data

    def same_skey(data: bytes, s: Signer) -> None:
        assert s.skey.encode("utf-8") == data

    for vkey in (PETER_VKEY, PLUS_VKEY, COSIG_VKEY):
        assert_only_ledger_errors(
            Verifier.from_vkey, mutations(vkey.encode()), as_text=True, on_success=same_vkey
        )
    assert_only_ledger_errors(
        Signer.from_key, mutations(PETER_SKEY.encode()), as_text=True, on_success=same_skey
    )


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_random_text_raises_only_malformed(text: str) -> None:
    for parse in (Verifier.from_vkey, Signer.from_key):
        try:
            parse(text)
        except MalformedError:
            pass


@settings(max_examples=50, deadline=None)
@given(
    name=st.text(
        alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40
    ).filter(lambda s: "+" not in s),
    seed=st.binary(min_size=32, max_size=32),
    cosigner=st.booleans(),
)
def test_key_text_round_trip(name: str, seed: bytes, cosigner: bool) -> None:
    s = Signer.from_seed(name, seed, cosigner=cosigner)
    assert Signer.from_key(s.skey).skey == s.skey
    v = Verifier.from_vkey(s.vkey)
    assert v == s.verifier() and v.cosigner == cosigner
    v.verify(b"m", s.sign(b"m"))
