"""Tests of ledger.note: golden notes from golang.org/x/mod/sumdb/note, strict
parsing, verification rules, and mutated input.

The helpers ``mutations`` and ``assert_only_ledger_errors`` are shared with the
other format tests.
"""

from __future__ import annotations

import base64
import random
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import InvalidSignature, LedgerError, MalformedError
from ledger.keys import Signer, Verifier
from ledger.note import (
    MAX_NOTE_SIZE,
    MAX_SIGNATURES,
    Note,
    NoteSignature,
    SignedNote,
    format_note,
    open_note,
    parse_note,
    sign_note,
)

# Keys and text of golang.org/x/mod/sumdb/note note_test.go and example_test.go.
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
# Output of ExampleSign in golang.org/x/mod/sumdb/note example_test.go.
GOLDEN_NOTE = (
    TEXT
    + "\n"
    + "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNX"
    + "gKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
# Output of ExampleSign_add_signatures in the same file: EnochRoot is the key
# GenerateKey makes from an all-zero random source, i.e. a zero seed.
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GOLDEN_TWO = (
    GOLDEN_NOTE
    + "\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGw"
    + "nWLox33WWd1RvMc+QQ=\n"
)
# The example of c2sp.org/signed-note; its text holds an empty line.
C2SP_EXAMPLE = (
    "Ognuno sta solo sul cuor della terra\n"
    "trafitto da un raggio di sole:\n"
    "\n"
    "ed \u00e8 subito sera.\n"
    "\n"
    "\u2014 quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONr"
    "MouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n"
)


def peter() -> Signer:
    return Signer.from_key(PETER_SKEY)


def enoch() -> Signer:
    return Signer.from_seed("EnochRoot", bytes(32))


# ---------------------------------------------------------------------------
# Shared mutation machinery.


def mutations(data: bytes, *, seed: int = 1, budget: int = 400) -> Iterator[bytes]:
    """Mechanically mutated variants of a valid input: truncation, bit flips,
    trailing and leading garbage, oversize, bad UTF-8, wrong dashes, bad
    base64, leading zeros, CRLF, dropped and repeated lines."""
    rng = random.Random(seed)
    n = len(data)
    cuts = range(n) if n <= budget else sorted(rng.sample(range(n), budget))
    for i in cuts:
        yield data[:i]
    for i in cuts:
        for bit in (0, 5, 7):
            b = bytearray(data)
            b[i] ^= 1 << bit
            yield bytes(b)
    for junk in (b"x", b"\n", b"\n\n", b"\x00", b"\xff", b" ", "\u2014 a AAAAAAA=\n".encode()):
        yield data + junk
        yield junk + data
    yield data + b"A" * (2 * MAX_NOTE_SIZE)
    yield b"A" * (2 * MAX_NOTE_SIZE)
    for bad in (b"\xc3\x28", b"\xff", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf8\x88\x80\x80\x80"):
        for i in (0, n // 3, n // 2, max(n - 1, 0)):
            yield data[:i] + bad + data[i:]
    dash = "\u2014".encode()
    for other in ("-", "\u2013", "\u2015", "\u2014\u2014", ""):
        yield data.replace(dash, other.encode(), 1)
        yield data.replace(dash, other.encode())
    for old, new in ((b"=", b""), (b"=", b"=="), (b"+", b"-"), (b"/", b"_"), (b"A", b"!")):
        yield data.replace(old, new, 1)
        yield data.replace(old, new)
    yield re.sub(rb"(?m)^(\d)", rb"0\1", data)
    yield re.sub(rb"(?m)^(index |time )(\d)", rb"\g<1>0\2", data)
    yield data.replace(b"\n", b"\r\n")
    yield data.replace(b" ", b"\t")
    yield data.replace(b" ", b"  ", 1)
    lines = data.split(b"\n")
    for i in range(len(lines)):
        yield b"\n".join(lines[:i] + lines[i + 1 :])
        yield b"\n".join(lines[: i + 1] + lines[i:])
    for _ in range(50):
        b = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            if b:
                b[rng.randrange(len(b))] = rng.randrange(256)
        yield bytes(b)


def assert_only_ledger_errors(
    parse: Callable[[Any], Any],
    inputs: Iterator[bytes],
    *,
    as_text: bool = False,
    on_success: Callable[[bytes, Any], None] | None = None,
) -> int:
    """Feed every input to ``parse``; anything raised must be a LedgerError.
    Returns how many inputs were rejected, so callers can check the
    mutations did reach the parser's error paths."""
    rejected = 0
    for data in inputs:
        arg: Any = data
        if as_text:
            try:
                arg = data.decode("utf-8")
            except UnicodeDecodeError:
                # str parsers also get the undecodable part as surrogates.
                arg = data.decode("utf-8", "surrogateescape")
        try:
            result = parse(arg)
        except LedgerError:
            rejected += 1
            continue
        except Exception as exc:  # noqa: BLE001 - catching everything is the point of the check
            pytest.fail(f"{type(exc).__name__} leaked for input {data[:200]!r}: {exc}")
        if on_success is not None:
            on_success(data, result)
    return rejected


# ---------------------------------------------------------------------------
# Golden values.


def test_golden_signed_note_matches_go() -> None:
    assert sign_note(TEXT, [peter()]) == GOLDEN_NOTE


def test_golden_two_signatures_match_go() -> None:
    assert sign_note(TEXT, [peter(), enoch()]) == GOLDEN_TWO
    assert enoch().vkey == ENOCH_VKEY


def test_open_golden_note() -> None:
    note = open_note(GOLDEN_NOTE.encode("utf-8"), [Verifier.from_vkey(PETER_VKEY)])
    assert isinstance(note, Note)
    assert note.text == TEXT
    assert [(s.name, s.keyid.hex()) for s in note.verified] == [("PeterNeumann", "c74f20a3")]
    assert note.unverified == ()


def test_unknown_signatures_are_kept_unverified() -> None:
    note = open_note(GOLDEN_TWO, [Verifier.from_vkey(ENOCH_VKEY)])
    assert [s.name for s in note.verified] == ["EnochRoot"]
    assert [s.name for s in note.unverified] == ["PeterNeumann"]


def test_note_without_known_signature_is_rejected() -> None:
    with pytest.raises(InvalidSignature):
        open_note(GOLDEN_NOTE, [Verifier.from_vkey(ENOCH_VKEY)])
    with pytest.raises(InvalidSignature):
        open_note(GOLDEN_NOTE, [])


def test_same_name_other_key_is_unknown_not_an_error() -> None:
    # Signed-note: a key that shares only the name is a different key.
    impostor = Signer.generate("PeterNeumann").verifier()
    with pytest.raises(InvalidSignature, match="no signature by a known key"):
        open_note(GOLDEN_NOTE, [impostor])


def test_a_line_by_a_key_whose_name_holds_del_opens_like_any_unknown_key() -> None:
    # Signed-note forbids only controls below U+0020 (and Go's note package
    # accepts DEL in names): the note opens by the known key, and the other
    # line is kept, unverified.
    odd = Signer.generate("witness\x7fone", cosigner=False)
    line = f"\u2014 {odd.name} {base64.b64encode(odd.keyid + odd.sign(TEXT.encode())).decode()}\n"
    note = open_note(GOLDEN_NOTE + line, [Verifier.from_vkey(PETER_VKEY)])
    assert [s.name for s in note.verified] == ["PeterNeumann"]
    assert [s.name for s in note.unverified] == ["witness\x7fone"]
    assert open_note(GOLDEN_NOTE + line, [odd.verifier()]).verified[0].name == "witness\x7fone"


def test_bad_signature_by_known_key_rejects_note() -> None:
    sig = parse_note(GOLDEN_TWO).signatures[0]
    flipped = NoteSignature(sig.name, sig.keyid, bytes([sig.signature[0] ^ 1]) + sig.signature[1:])
    bad = format_note(SignedNote(TEXT, (flipped, parse_note(GOLDEN_TWO).signatures[1])))
    with pytest.raises(InvalidSignature) as info:
        open_note(bad, [Verifier.from_vkey(PETER_VKEY), Verifier.from_vkey(ENOCH_VKEY)])
    assert info.value.name == "PeterNeumann"
    assert info.value.keyid == bytes.fromhex("c74f20a3")


def test_tampered_text_fails() -> None:
    bad = GOLDEN_NOTE.replace("problem,", "problem;")
    with pytest.raises(InvalidSignature):
        open_note(bad, [Verifier.from_vkey(PETER_VKEY)])


def test_cosigner_keys_are_refused_by_note_functions() -> None:
    w = Signer.generate("witness", cosigner=True)
    with pytest.raises(ValueError):
        sign_note(TEXT, [w])
    with pytest.raises(ValueError):
        open_note(GOLDEN_NOTE, [w.verifier()])


# ---------------------------------------------------------------------------
# Strictness.


@pytest.mark.parametrize(
    "text",
    ["", "no newline", "\n", "a\n\nb\n", "\nx\n", "tab\there\n", "nul\x00\n", "cr\r\n", "\ud800\n"],
)
def test_sign_note_rejects_bad_text(text: str) -> None:
    with pytest.raises(MalformedError):
        sign_note(text, [peter()])


def test_c2sp_example_with_empty_text_line_is_refused_on_purpose() -> None:
    # This module forbids empty lines in the text (see its docstring).
    with pytest.raises(MalformedError):
        parse_note(C2SP_EXAMPLE)


@pytest.mark.parametrize(
    "note",
    [
        GOLDEN_NOTE.replace("\u2014", "-"),
        GOLDEN_NOTE.replace("\u2014", "\u2013"),
        GOLDEN_NOTE.replace("\u2014 ", "\u2014"),
        GOLDEN_NOTE.replace("PeterNeumann ", "PeterNeumann  "),
        GOLDEN_NOTE.replace("PeterNeumann ", "Peter+Neumann "),
        GOLDEN_NOTE.replace("AM=\n", "AM="),
        GOLDEN_NOTE.replace("AM=\n", "AM=\n\n"),
        GOLDEN_NOTE.replace("AM=\n", "AM\n"),
        GOLDEN_NOTE.replace("\n\n", "\n"),
        TEXT + "\n",
        TEXT + "\n\u2014 PeterNeumann AAAAAA==\n",  # fewer than 5 signature bytes
        GOLDEN_NOTE.replace("\n", "\r\n"),
    ],
)
def test_parse_note_rejects(note: str) -> None:
    with pytest.raises(MalformedError):
        parse_note(note)


def test_parse_note_rejects_bad_utf8_and_oversize() -> None:
    with pytest.raises(MalformedError):
        parse_note(GOLDEN_NOTE.encode() + b"\xff")
    with pytest.raises(MalformedError):
        parse_note(b"a\n\n" + "\u2014 a AAAAAAA=\n".encode() * (MAX_NOTE_SIZE // 10))
    with pytest.raises(MalformedError):
        parse_note(None)  # type: ignore[arg-type]


def test_signature_count_cap() -> None:
    signers = [Signer.from_seed(f"k{i}", bytes([i]) * 32) for i in range(MAX_SIGNATURES + 1)]
    with pytest.raises(MalformedError):
        sign_note(TEXT, signers)
    ok = sign_note(TEXT, signers[:MAX_SIGNATURES])
    assert len(open_note(ok, [signers[7].verifier()]).unverified) == MAX_SIGNATURES - 1
    extra = ok + signers[-1:][0].name.join(["\u2014 ", " AAAAAAA=\n"])
    with pytest.raises(MalformedError):
        parse_note(extra)


# ---------------------------------------------------------------------------
# What signed-note ignores, and what still rejects a note.

PETER_LINE = GOLDEN_NOTE.split("\n\n")[1]
ENOCH_LINE = GOLDEN_TWO[len(GOLDEN_NOTE) :]
# Each line's base64 ends in one "=": its last character carries two padding
# bits, which Go's decoder ignores. "N" is "M" and "R" is "Q" with the low bit
# set, so these spell the same key IDs and signatures non-canonically.
PETER_LINE_LAX = PETER_LINE.replace("AM=\n", "AN=\n")
ENOCH_LINE_LAX = ENOCH_LINE.replace("QQ=\n", "QR=\n")
PETER = Verifier.from_vkey(PETER_VKEY)
ENOCH = Verifier.from_vkey(ENOCH_VKEY)


def _bad(line: str) -> str:
    """``line`` with its signature's first byte flipped (key ID kept)."""
    sig = parse_note(TEXT + "\n" + line).signatures[0]
    return NoteSignature(sig.name, sig.keyid, bytes([sig.signature[0] ^ 1]) + sig.signature[1:]).line()


def test_unknown_keys_non_canonical_base64_is_ignored() -> None:
    note = GOLDEN_NOTE + ENOCH_LINE_LAX
    opened = open_note(note, [PETER])
    assert [s.name for s in opened.verified] == ["PeterNeumann"]
    assert [s.name for s in opened.unverified] == ["EnochRoot"]
    # Written back canonically: the same signature bytes.
    assert format_note(parse_note(note)) == GOLDEN_TWO


def test_known_keys_non_canonical_base64_names_the_same_signature() -> None:
    note = TEXT + "\n" + PETER_LINE_LAX
    assert [s.name for s in open_note(note, [PETER]).verified] == ["PeterNeumann"]
    assert format_note(parse_note(note)) == GOLDEN_NOTE


@pytest.mark.parametrize(
    "extra",
    [PETER_LINE, PETER_LINE_LAX, PETER_LINE * 3],
    ids=["same-line", "same-signature-other-spelling", "three-times"],
)
def test_repeated_signature_line_counts_once(extra: str) -> None:
    note = GOLDEN_TWO + extra
    parsed = parse_note(note)
    assert parsed.signatures == parse_note(GOLDEN_TWO).signatures
    assert parsed.repeats == ()
    for verifiers in ([PETER], [ENOCH], [PETER, ENOCH]):
        opened = open_note(note, verifiers)
        assert len(opened.verified) == len(verifiers)
        assert len(opened.verified) + len(opened.unverified) == 2


def test_unknown_keys_repeated_bad_line_is_ignored() -> None:
    note = GOLDEN_TWO + _bad(ENOCH_LINE)
    assert len(parse_note(note).repeats) == 1
    assert [s.name for s in open_note(note, [PETER]).verified] == ["PeterNeumann"]


@pytest.mark.parametrize("order", ["good-first", "bad-first"])
def test_known_keys_repeated_bad_line_rejects_note(order: str) -> None:
    # Signed-note: a known key's signature MUST be verified, and a failure
    # SHOULD reject the whole note, whichever of the key's lines it is.
    lines = [PETER_LINE, _bad(PETER_LINE)]
    if order == "bad-first":
        lines.reverse()
    note = TEXT + "\n" + "".join(lines) + ENOCH_LINE
    with pytest.raises(InvalidSignature) as info:
        open_note(note, [PETER])
    assert (info.value.name, info.value.keyid) == ("PeterNeumann", PETER.keyid)
    # Ignored when the key is unknown.
    assert [s.name for s in open_note(note, [ENOCH]).verified] == ["EnochRoot"]


@pytest.mark.parametrize(
    "line",
    [
        ENOCH_LINE.replace("\u2014", "-"),  # no em dash
        ENOCH_LINE.replace("\u2014 ", "\u2014"),  # no space after it
        ENOCH_LINE.replace("EnochRoot ", "EnochRoot  "),  # two spaces
        ENOCH_LINE.replace("EnochRoot ", "Enoch+Root "),  # a "+" in the name
        ENOCH_LINE.replace("EnochRoot ", "Enoch\u00a0Root "),  # a Unicode space in the name
        ENOCH_LINE.replace("EnochRoot ", "EnochRoot"),  # no base64
        ENOCH_LINE.replace("QQ=\n", "QQ\n"),  # padding missing
        ENOCH_LINE.replace("QQ=\n", "QQ==\n"),  # padding too long
        ENOCH_LINE.replace("+", "-"),  # the URL-safe alphabet
        ENOCH_LINE.replace("rwz+", "rw=+"),  # padding in the middle
        ENOCH_LINE.replace("rwz+", "rwz!"),  # outside the alphabet
        "\u2014 EnochRoot AAAAAA==\n",  # a key ID and no signature
        "\u2014 EnochRoot " + base64.b64encode(bytes(4 + 8193)).decode() + "\n",  # over the bound
    ],
)
def test_malformed_line_rejects_note_even_for_an_unknown_key(line: str) -> None:
    # A line must parse before anyone can tell whose key it names.
    with pytest.raises(MalformedError):
        open_note(GOLDEN_NOTE + line, [PETER])


def test_signature_line_cap_counts_repeated_lines() -> None:
    # As Go's note.Open: the cap bounds parsing work, so repeats count.
    ok = GOLDEN_NOTE + PETER_LINE * (MAX_SIGNATURES - 1)
    assert len(open_note(ok, [PETER]).verified) == 1
    with pytest.raises(MalformedError, match="more than"):
        parse_note(ok + PETER_LINE)


# ---------------------------------------------------------------------------
# Round trips and mutations.

_line = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FFF, codec="utf-8"),
    min_size=1,
    max_size=30,
)
_name = st.text(
    alphabet=st.characters(
        min_codepoint=0x21, max_codepoint=0x2FFF, exclude_categories=("Cs", "Zs", "Zl", "Zp", "Cc")
    ),
    min_size=1,
    max_size=20,
).filter(lambda s: "+" not in s and not any(c.isspace() for c in s))


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(_line, min_size=1, max_size=6),
    sigs=st.lists(
        st.tuples(_name, st.binary(min_size=4, max_size=4), st.binary(min_size=1, max_size=80)),
        min_size=1,
        max_size=5,
        unique_by=lambda t: (t[0], t[1]),
    ),
)
def test_format_parse_round_trip(lines: list[str], sigs: list[tuple[str, bytes, bytes]]) -> None:
    note = SignedNote("".join(x + "\n" for x in lines), tuple(NoteSignature(*s) for s in sigs))
    text = format_note(note)
    assert parse_note(text) == note
    assert parse_note(text.encode("utf-8")) == note
    assert format_note(parse_note(text)) == text


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_malformed(data: bytes) -> None:
    try:
        parse_note(data)
    except MalformedError:
        pass


def test_mutated_notes_raise_only_ledger_errors_and_survivors_are_canonical() -> None:
    verifiers = [Verifier.from_vkey(PETER_VKEY), Verifier.from_vkey(ENOCH_VKEY)]
    normalised: list[bytes] = []

    def canonical(data: bytes, parsed: SignedNote) -> None:
        out = format_note(parsed)
        if out.encode("utf-8") != data:
            # Only what signed-note lets through may change: a repeated line
            # dropped, or padding bits set to zero. The result is canonical.
            normalised.append(data)
            assert parse_note(out) == SignedNote(parsed.text, parsed.signatures)
            assert format_note(parse_note(out)) == out

    muts = list(mutations(GOLDEN_TWO.encode("utf-8")))
    rejected = assert_only_ledger_errors(parse_note, iter(muts), on_success=canonical)
    assert rejected > len(muts) // 2
    assert 0 < len(normalised) < 10
    assert_only_ledger_errors(lambda d: open_note(d, verifiers), iter(muts))
    assert_only_ledger_errors(parse_note, iter(muts), as_text=True)
