"""Tests of ledger.checkpoint: the tlog-checkpoint text, log signatures, and
tlog-cosignature v1 witness cosignatures."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.checkpoint import (
    MAX_TIMESTAMP,
    Checkpoint,
    cosign_checkpoint,
    cosignature_message,
    format_checkpoint,
    parse_checkpoint,
    sign_checkpoint,
    verify_checkpoint,
    verify_cosignature,
)
from ledger.errors import InvalidSignature, MalformedError
from ledger.keys import Signer
from ledger.note import NoteSignature, SignedNote, format_note, open_note, parse_note, sign_note
from tests.test_note import assert_only_ledger_errors, mutations

# The example checkpoint of c2sp.org/tlog-checkpoint and c2sp.org/tlog-cosignature.
SPEC_TEXT = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
SPEC_NOTE = (
    SPEC_TEXT
    + "\n"
    + "\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5"
    + "/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    + "\u2014 witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dl"
    + "rDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"
)
# The signed message example of c2sp.org/tlog-cosignature, "Ed25519 signed message".
SPEC_COSIGNED_MESSAGE = b"cosignature/v1\ntime 1679315147\n" + SPEC_TEXT.encode()
# A cosignature of transparency-dev/formats note/note_cosigv1_test.go
# (TestCosignatureTimestamp), whose timestamp is 1727964367.
TD_COSIG = "ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEBYJXORmnFBOBA=="

ROOT = bytes(range(32))
LOG_SEED = bytes([7]) * 32
WITNESS_SEED = bytes([9]) * 32


def log_signer() -> Signer:
    return Signer.from_seed("ledger.example/log", LOG_SEED)


def witness() -> Signer:
    return Signer.from_seed("witness.example/w1", WITNESS_SEED, cosigner=True)


def signed(size: int = 5, extensions: tuple[str, ...] = ()) -> str:
    return sign_checkpoint(Checkpoint("ledger.example/log", size, ROOT, extensions), log_signer())


# ---------------------------------------------------------------------------
# Text format.


def test_spec_example_parses_and_formats() -> None:
    cp = parse_checkpoint(SPEC_TEXT)
    assert cp == Checkpoint(
        "example.com/behind-the-sofa",
        20852163,
        base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="),
    )
    assert format_checkpoint(cp) == SPEC_TEXT


def test_spec_example_signature_layout() -> None:
    log_sig, cosig = parse_note(SPEC_NOTE).signatures
    assert len(log_sig.signature) == 64
    # keyid(4) || timestamp(8) || Ed25519 signature(64): the timestamp is the
    # one of the spec's signed message example.
    assert len(cosig.signature) == 72
    assert int.from_bytes(cosig.signature[:8], "big") == 1679315147


def test_transparency_dev_cosignature_timestamp() -> None:
    raw = base64.b64decode(TD_COSIG)
    note = format_note(SignedNote(SPEC_TEXT, (NoteSignature("w", raw[:4], raw[4:]),)))
    (sig,) = parse_note(note).signatures
    assert int.from_bytes(sig.signature[:8], "big") == 1727964367


def test_extensions_round_trip() -> None:
    cp = Checkpoint("o", 1, ROOT, ("ext one", "ext\u00e9two"))
    assert (
        format_checkpoint(cp) == f"o\n1\n{base64.b64encode(ROOT).decode()}\next one\next\u00e9two\n"
    )
    assert parse_checkpoint(format_checkpoint(cp)) == cp


@pytest.mark.parametrize(
    "text",
    [
        "",
        "o\n5\n",
        "o\n5\n" + base64.b64encode(ROOT).decode(),  # no final newline
        "\n5\n" + base64.b64encode(ROOT).decode() + "\n",
        "o\n05\n" + base64.b64encode(ROOT).decode() + "\n",
        "o\n00\n" + base64.b64encode(ROOT).decode() + "\n",
        "o\n+5\n" + base64.b64encode(ROOT).decode() + "\n",
        "o\n-5\n" + base64.b64encode(ROOT).decode() + "\n",
        "o\n 5\n" + base64.b64encode(ROOT).decode() + "\n",
        "o\n5 \n" + base64.b64encode(ROOT).decode() + "\n",
        "o\n\u0665\n" + base64.b64encode(ROOT).decode() + "\n",  # Arabic-Indic five
        "o\n18446744073709551616\n" + base64.b64encode(ROOT).decode() + "\n",
        "o\n5\n" + base64.b64encode(ROOT[:31]).decode() + "\n",
        "o\n5\n" + base64.b64encode(ROOT + b"\x00").decode() + "\n",
        "o\n5\n" + base64.b64encode(ROOT).decode().rstrip("=") + "\n",
        "o\n5\n" + base64.urlsafe_b64encode(b"\xff" * 32).decode() + "\n",
        "o\n5\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9=\n",  # non-zero pad bits
        "o\n5\n" + base64.b64encode(ROOT).decode() + "\n\next\n",
        "o\r\n5\n" + base64.b64encode(ROOT).decode() + "\n",
        "o\n0\n" + base64.b64encode(ROOT).decode() + "\n",  # size 0, not the empty tree's root
    ],
)
def test_parse_checkpoint_rejects(text: str) -> None:
    with pytest.raises(MalformedError):
        parse_checkpoint(text)


def test_the_empty_tree_is_accepted() -> None:
    text = "o\n0\n" + base64.b64encode(hashlib.sha256(b"").digest()).decode() + "\n"
    assert parse_checkpoint(text).size == 0


def test_largest_size_is_accepted() -> None:
    text = "o\n18446744073709551615\n" + base64.b64encode(ROOT).decode() + "\n"
    assert parse_checkpoint(text).size == 2**64 - 1


@pytest.mark.parametrize(
    "args",
    [
        ("", 1, ROOT, ()),
        ("o\np", 1, ROOT, ()),
        ("o", -1, ROOT, ()),
        ("o", True, ROOT, ()),
        ("o", 2**64, ROOT, ()),
        ("o", 1, ROOT[:31], ()),
        ("o", 1, ROOT, ("",)),
        ("o", 1, ROOT, ("a\nb",)),
        ("o", 1, ROOT, ["x"]),
        ("o\x07", 1, ROOT, ()),
    ],
)
def test_checkpoint_constructor_validates(args: tuple[object, ...]) -> None:
    with pytest.raises(MalformedError):
        Checkpoint(*args)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(
    origin=st.text(alphabet=st.characters(min_codepoint=0x20, codec="utf-8"), min_size=1),
    size=st.integers(min_value=1, max_value=2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(
        st.text(alphabet=st.characters(min_codepoint=0x20, codec="utf-8"), min_size=1),
        max_size=3,
    ),
)
def test_format_parse_round_trip(
    origin: str, size: int, root: bytes, extensions: list[str]
) -> None:
    cp = Checkpoint(origin, size, root, tuple(extensions))
    assert parse_checkpoint(format_checkpoint(cp)) == cp


# ---------------------------------------------------------------------------
# Log signatures.


def test_sign_and_verify_checkpoint() -> None:
    note = signed(extensions=("x",))
    cp = verify_checkpoint(note, log_signer().verifier())
    assert cp == Checkpoint("ledger.example/log", 5, ROOT, ("x",))


def test_signature_is_plain_ed25519_over_the_text() -> None:
    # An independent check with cryptography directly, from the seed.
    text = format_checkpoint(Checkpoint("ledger.example/log", 5, ROOT))
    expected_sig = Ed25519PrivateKey.from_private_bytes(LOG_SEED).sign(text.encode())
    line = (
        "\u2014 ledger.example/log " + base64.b64encode(log_signer().keyid + expected_sig).decode()
    )
    assert signed() == text + "\n" + line + "\n"


def test_verify_checkpoint_rejects_wrong_key_and_tampering() -> None:
    with pytest.raises(InvalidSignature):
        verify_checkpoint(signed(), Signer.generate("ledger.example/log").verifier())
    tampered = signed().replace("\n5\n", "\n6\n")
    with pytest.raises(InvalidSignature):
        verify_checkpoint(tampered, log_signer().verifier())


def test_verify_checkpoint_binds_origin_to_key_name() -> None:
    other = Signer.from_seed("other.example/log", LOG_SEED)
    note = sign_checkpoint(Checkpoint("ledger.example/log", 5, ROOT), other)
    with pytest.raises(InvalidSignature, match="origin"):
        verify_checkpoint(note, other.verifier())


def test_verify_checkpoint_rejects_non_checkpoint_text() -> None:
    signer = log_signer()
    with pytest.raises(MalformedError):
        verify_checkpoint(sign_note("just one line\n", [signer]), signer.verifier())


# ---------------------------------------------------------------------------
# Cosignatures.


def test_cosignature_message_matches_spec_example() -> None:
    assert cosignature_message(SPEC_TEXT, 1679315147) == SPEC_COSIGNED_MESSAGE


def test_cosign_and_verify() -> None:
    note = cosign_checkpoint(signed(), witness(), 1700000000)
    assert verify_cosignature(note, witness().verifier()) == 1700000000
    # The log signature still verifies; the cosignature is an unknown key to it.
    opened = open_note(note, [log_signer().verifier()])
    assert [s.name for s in opened.unverified] == ["witness.example/w1"]


def test_cosignature_layout_independently() -> None:
    ts = 1679315147
    note = cosign_checkpoint(signed(), witness(), ts)
    line = note.rstrip("\n").split("\n")[-1]
    assert line.startswith("\u2014 witness.example/w1 ")
    raw = base64.b64decode(line.split(" ")[2])
    assert raw[:4] == witness().keyid
    assert raw[4:12] == ts.to_bytes(8, "big")
    text = note.split("\n\n")[0] + "\n"
    message = f"cosignature/v1\ntime {ts}\n{text}".encode()
    Ed25519PublicKey.from_public_bytes(witness().public_key).verify(raw[12:], message)
    # Ed25519 is deterministic, so the exact signature is fixed too.
    assert raw[12:] == Ed25519PrivateKey.from_private_bytes(WITNESS_SEED).sign(message)


def test_cosign_replaces_own_earlier_cosignature() -> None:
    once = cosign_checkpoint(signed(), witness(), 100)
    twice = cosign_checkpoint(once, witness(), 200)
    assert len(parse_note(twice).signatures) == 2
    assert verify_cosignature(twice, witness().verifier()) == 200


def _last_line(note: str) -> str:
    return note.rstrip("\n").rsplit("\n", 1)[1] + "\n"


def test_repeated_cosignature_lines_are_each_verified() -> None:
    # Two lines by one witness, at two times, both valid: the first one's
    # time is the answer. Signed-note asks that a known key's lines all
    # verify, so a bad later line rejects.
    first = cosign_checkpoint(signed(), witness(), 100)
    second = _last_line(cosign_checkpoint(signed(), witness(), 200))
    assert verify_cosignature(first + second, witness().verifier()) == 100
    assert verify_cosignature(parse_note(first + second), witness().verifier()) == 100
    assert verify_cosignature(first + _last_line(first), witness().verifier()) == 100
    sig = parse_note(first + second).repeats[0]
    bad = NoteSignature(sig.name, sig.keyid, sig.signature[:-1] + bytes([sig.signature[-1] ^ 1])).line()
    with pytest.raises(InvalidSignature, match="witness.example/w1"):
        verify_cosignature(first + bad, witness().verifier())


def test_cosign_checks_log_signature_when_asked() -> None:
    note = signed()
    cosign_checkpoint(note, witness(), 1, log_verifier=log_signer().verifier())
    with pytest.raises(InvalidSignature):
        cosign_checkpoint(
            note, witness(), 1, log_verifier=Signer.generate("ledger.example/log").verifier()
        )


def test_cosignature_rejections() -> None:
    note = cosign_checkpoint(signed(), witness(), 1700000000)
    # Another witness key is simply absent.
    with pytest.raises(InvalidSignature, match="no cosignature"):
        verify_cosignature(note, Signer.generate("witness.example/w2", cosigner=True).verifier())
    # A changed timestamp breaks the signature.
    sigs = parse_note(note).signatures
    cos = sigs[1]
    moved = NoteSignature(cos.name, cos.keyid, (1700000001).to_bytes(8, "big") + cos.signature[8:])
    bad = format_note(SignedNote(parse_note(note).text, (sigs[0], moved)))
    with pytest.raises(InvalidSignature):
        verify_cosignature(bad, witness().verifier())
    # A timestamp above 2^63 - 1 is refused before verification.
    huge = NoteSignature(cos.name, cos.keyid, (2**63).to_bytes(8, "big") + cos.signature[8:])
    with pytest.raises(InvalidSignature, match="2\\^63"):
        verify_cosignature(
            format_note(SignedNote(parse_note(note).text, (huge,))), witness().verifier()
        )
    # A 64-byte plain signature under the witness's key ID is not a cosignature.
    short = NoteSignature(cos.name, cos.keyid, cos.signature[8:])
    with pytest.raises(InvalidSignature, match="72"):
        verify_cosignature(
            format_note(SignedNote(parse_note(note).text, (short,))), witness().verifier()
        )
    # The cosignature moved onto another checkpoint does not verify.
    other = signed(size=6)
    moved_note = format_note(
        SignedNote(parse_note(other).text, (parse_note(other).signatures[0], cos))
    )
    with pytest.raises(InvalidSignature):
        verify_cosignature(moved_note, witness().verifier())


def test_cosignature_is_not_a_log_signature() -> None:
    # The same seed as type 0x01 and 0x04: domain separation keeps them apart.
    same_seed_log = Signer.from_seed("witness.example/w1", WITNESS_SEED)
    note = cosign_checkpoint(signed(), witness(), 5)
    with pytest.raises(InvalidSignature):
        open_note(note, [same_seed_log.verifier()])


def test_cosign_argument_checks() -> None:
    with pytest.raises(ValueError):
        cosign_checkpoint(signed(), log_signer(), 1)
    with pytest.raises(ValueError):
        verify_cosignature(signed(), log_signer().verifier())
    for ts in (-1, MAX_TIMESTAMP + 1, True, 1.5):
        with pytest.raises(MalformedError):
            cosign_checkpoint(signed(), witness(), ts)  # type: ignore[arg-type]
    assert (
        verify_cosignature(
            cosign_checkpoint(signed(), witness(), MAX_TIMESTAMP), witness().verifier()
        )
        == MAX_TIMESTAMP
    )


# ---------------------------------------------------------------------------
# Mutations.


def test_mutated_inputs_raise_only_ledger_errors() -> None:
    def canonical(data: bytes, cp: Checkpoint) -> None:
        assert format_checkpoint(cp).encode("utf-8") == data

    text = format_checkpoint(Checkpoint("ledger.example/log", 1234, ROOT, ("ext",)))
    rejected = assert_only_ledger_errors(
        parse_checkpoint, mutations(text.encode()), as_text=True, on_success=canonical
    )
    assert rejected > 100
    note = cosign_checkpoint(signed(size=1234), witness(), 1700000000).encode()
    assert_only_ledger_errors(
        lambda d: verify_checkpoint(d, log_signer().verifier()), mutations(note)
    )
    assert_only_ledger_errors(
        lambda d: verify_cosignature(d, witness().verifier()), mutations(note)
    )
