"""Tests of ledger.policy: tlog-policy text and quorum checks."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.checkpoint import Checkpoint, cosign_checkpoint, sign_checkpoint
from ledger.errors import InvalidSignature, MalformedError, QuorumNotMet
from ledger.keys import Signer
from ledger.note import NoteSignature, SignedNote, format_note, parse_note
from ledger.policy import (
    Policy,
    PolicyGroup,
    PolicyLog,
    PolicyWitness,
    format_policy,
    parse_policy,
    verify_checkpoint_policy,
)
from tests.test_note import assert_only_ledger_errors, mutations

ROOT = bytes(range(32))
LOG = Signer.from_seed("ledger.example/log", bytes([1]) * 32)
W = {
    name: Signer.from_seed(f"{name.lower()}.example", bytes([10 + i]) * 32, cosigner=True)
    for i, name in enumerate(["X1", "X2", "X3", "Y1", "Y2", "Y3"])
}


def spec_like_policy_text() -> str:
    # The structure of the example policy of c2sp.org/tlog-policy, with keys.
    return f"""# trusted log
log {LOG.vkey} https://ledger.example/

witness X1 {W["X1"].vkey}
witness X2 {W["X2"].vkey}
witness X3 {W["X3"].vkey}
group X-witnesses 2 X1 X2 X3

  witness\tY1   {W["Y1"].vkey}
witness Y2 {W["Y2"].vkey} https://y2.example/
witness Y3 {W["Y3"].vkey}
group Y-witnesses any Y1 Y2 Y3

group X-and-Y all X-witnesses Y-witnesses
quorum X-and-Y
"""


def note_cosigned_by(*names: str, size: int = 10) -> str:
    note = sign_checkpoint(Checkpoint("ledger.example/log", size, ROOT), LOG)
    for i, name in enumerate(names):
        note = cosign_checkpoint(note, W[name], 1700000000 + i)
    return note


# ---------------------------------------------------------------------------
# Text format.


def test_parse_spec_like_policy() -> None:
    p = parse_policy(spec_like_policy_text())
    assert [log.verifier for log in p.logs] == [LOG.verifier()]
    assert p.logs[0].url == "https://ledger.example/"
    assert [w.name for w in p.witnesses] == ["X1", "X2", "X3", "Y1", "Y2", "Y3"]
    assert p.witnesses[4].url == "https://y2.example/"
    assert p.groups == (
        PolicyGroup("X-witnesses", 2, ("X1", "X2", "X3")),
        PolicyGroup("Y-witnesses", 1, ("Y1", "Y2", "Y3")),
        PolicyGroup("X-and-Y", 2, ("X-witnesses", "Y-witnesses")),
    )
    assert p.quorum == "X-and-Y"


def test_format_parse_round_trip() -> None:
    p = parse_policy(spec_like_policy_text())
    text = format_policy(p)
    assert parse_policy(text) == p
    assert format_policy(parse_policy(text)) == text
    assert parse_policy(text.encode()) == p


def test_quorum_none_and_no_trailing_newline() -> None:
    p = parse_policy(f"log {LOG.vkey}\nquorum none")
    assert p.quorum == "none" and p.witnesses == () and p.groups == ()
    assert format_policy(p) == f"log {LOG.vkey}\nquorum none\n"


@pytest.mark.parametrize(
    "text",
    [
        "",
        f"log {LOG.vkey}\n",  # no quorum
        "quorum none\nquorum none\n",
        "quorum X1\n",  # undefined
        f"quorum X1\nwitness X1 {W['X1'].vkey}\n",  # defined too late
        f"group G 1 X1\nwitness X1 {W['X1'].vkey}\nquorum G\n",  # forward reference
        f"witness X1 {W['X1'].vkey}\ngroup G 1 X1 X1\nquorum G\n",  # member twice
        f"witness X1 {W['X1'].vkey}\ngroup G 0 X1\nquorum G\n",
        f"witness X1 {W['X1'].vkey}\ngroup G 2 X1\nquorum G\n",  # k > n
        f"witness X1 {W['X1'].vkey}\ngroup G 01 X1\nquorum G\n",
        f"witness X1 {W['X1'].vkey}\ngroup G some X1\nquorum G\n",
        f"witness X1 {W['X1'].vkey}\ngroup G any\nquorum G\n",  # no members
        f"witness X1 {W['X1'].vkey}\ngroup G any X1 none\nquorum G\n",
        f"witness none {W['X1'].vkey}\nquorum none\n",
        f"witness X1 {W['X1'].vkey}\nwitness X1 {W['X2'].vkey}\nquorum X1\n",  # name twice
        f"witness X1 {W['X1'].vkey}\nwitness X2 {W['X1'].vkey.replace('x1.', 'x9.', 1)}\nquorum X1\n",
        f"witness X1 {W['X1'].vkey}\ngroup X1 any X1\nquorum X1\n",  # group reuses a name
        f"log {LOG.vkey}\nlog {LOG.vkey}\nquorum none\n",  # duplicate log
        f"witness X1 {LOG.vkey}\nquorum X1\n",  # 0x01 key as witness
        f"log {W['X1'].vkey}\nquorum none\n",  # 0x04 key as log
        f"log {LOG.vkey} url extra\nquorum none\n",
        "log\nquorum none\n",
        "witness X1\nquorum none\n",
        "logs x\nquorum none\n",
        "quorum none # trailing comment\n",
        "quorum none\r\n",
        "quorum\x00none\n",
        f"log {LOG.vkey[:-2]}\nquorum none\n",
    ],
)
def test_parse_policy_rejects(text: str) -> None:
    with pytest.raises(MalformedError):
        parse_policy(text)


def test_duplicate_witness_key_under_another_name_is_rejected() -> None:
    # tlog-policy: two vkeys wrapping the same public key are duplicates even
    # if their names and key IDs differ.
    same_key = Signer.from_seed("other.example", bytes([10]) * 32, cosigner=True)
    text = f"witness X1 {W['X1'].vkey}\nwitness Z {same_key.vkey}\nquorum X1\n"
    with pytest.raises(MalformedError, match="duplicate witness key"):
        parse_policy(text)


def test_parse_policy_rejects_bad_bytes_and_oversize() -> None:
    with pytest.raises(MalformedError):
        parse_policy(b"quorum none\n\xff\n")
    with pytest.raises(MalformedError):
        parse_policy("# x\n" * 20000 + "quorum none\n")
    with pytest.raises(MalformedError):
        parse_policy(42)  # type: ignore[arg-type]


def test_policy_constructor_validates() -> None:
    w = PolicyWitness("X1", W["X1"].verifier())
    with pytest.raises(MalformedError):
        Policy((), (w,), (PolicyGroup("G", 1, ("nope",)),), "G")
    with pytest.raises(MalformedError):
        Policy((PolicyLog(W["X1"].verifier()),), (), (), "none")
    with pytest.raises(MalformedError):
        Policy((), (w,), (), "Z")


def test_mutated_policies_raise_only_ledger_errors() -> None:
    rejected = assert_only_ledger_errors(parse_policy, mutations(spec_like_policy_text().encode()))
    assert rejected > 100


# ---------------------------------------------------------------------------
# Quorum checks.


def test_k_of_n_met_and_not_met() -> None:
    text = format_policy(parse_policy(spec_like_policy_text())).replace(
        "quorum X-and-Y", "quorum X-witnesses"
    )
    p = parse_policy(text)
    cp = verify_checkpoint_policy(note_cosigned_by("X1", "X3"), p)
    assert cp.size == 10
    with pytest.raises(QuorumNotMet) as info:
        verify_checkpoint_policy(note_cosigned_by("X2", "Y1", "Y2"), p)
    assert "X-witnesses" in str(info.value) and "needs 2 of 3" in str(info.value)
    assert "X1" in str(info.value)  # a missing witness is named


def test_nested_groups() -> None:
    p = parse_policy(spec_like_policy_text())
    verify_checkpoint_policy(note_cosigned_by("X1", "X2", "Y3"), p)
    verify_checkpoint_policy(note_cosigned_by("Y1", "X3", "Y2", "X2"), p)
    with pytest.raises(QuorumNotMet, match="Y-witnesses"):
        verify_checkpoint_policy(note_cosigned_by("X1", "X2", "X3"), p)
    with pytest.raises(QuorumNotMet, match="X-witnesses"):
        verify_checkpoint_policy(note_cosigned_by("X1", "Y1", "Y2", "Y3"), p)
    with pytest.raises(QuorumNotMet):
        verify_checkpoint_policy(note_cosigned_by(), p)


def test_all_subsets_against_a_direct_count() -> None:
    p = parse_policy(spec_like_policy_text())
    names = list(W)
    for r in range(len(names) + 1):
        for subset in itertools.combinations(names, r):
            xs = sum(1 for n in subset if n.startswith("X"))
            ys = sum(1 for n in subset if n.startswith("Y"))
            note = note_cosigned_by(*subset)
            if xs >= 2 and ys >= 1:
                verify_checkpoint_policy(note, p)
            else:
                with pytest.raises(QuorumNotMet):
                    verify_checkpoint_policy(note, p)


def test_single_witness_quorum_and_none() -> None:
    p = parse_policy(f"log {LOG.vkey}\nwitness X1 {W['X1'].vkey}\nquorum X1\n")
    verify_checkpoint_policy(note_cosigned_by("X1"), p)
    with pytest.raises(QuorumNotMet, match="X1"):
        verify_checkpoint_policy(note_cosigned_by("X2"), p)
    none = parse_policy(f"log {LOG.vkey}\nquorum none\n")
    assert verify_checkpoint_policy(note_cosigned_by(), none).size == 10


def test_log_signature_is_required() -> None:
    p = parse_policy(f"log {LOG.vkey}\nquorum none\n")
    other = Signer.from_seed("ledger.example/log", bytes([2]) * 32)
    forged = sign_checkpoint(Checkpoint("ledger.example/log", 10, ROOT), other)
    with pytest.raises(InvalidSignature):
        verify_checkpoint_policy(forged, p)
    elsewhere = Signer.from_seed("elsewhere.example/log", bytes([1]) * 32)
    wrong_origin = sign_checkpoint(Checkpoint("elsewhere.example/log", 10, ROOT), elsewhere)
    with pytest.raises(InvalidSignature, match="origin"):
        verify_checkpoint_policy(wrong_origin, p)
    with pytest.raises(InvalidSignature):
        verify_checkpoint_policy(note_cosigned_by(), Policy((), (), (), "none"))


def test_bad_cosignature_by_known_witness_rejects() -> None:
    p = parse_policy(spec_like_policy_text())
    note = note_cosigned_by("X1", "X2", "Y1")
    parsed = parse_note(note)
    sigs = list(parsed.signatures)
    last = sigs[-1]
    sigs[-1] = NoteSignature(
        last.name, last.keyid, last.signature[:-1] + bytes([last.signature[-1] ^ 1])
    )
    with pytest.raises(InvalidSignature):
        verify_checkpoint_policy(format_note(SignedNote(parsed.text, tuple(sigs))), p)


def test_a_witness_counts_once_however_many_lines_it_has() -> None:
    p = parse_policy(
        f"log {LOG.vkey}\nwitness X1 {W['X1'].vkey}\nwitness X2 {W['X2'].vkey}\n"
        "group G 2 X1 X2\nquorum G\n"
    )
    note = note_cosigned_by("X1")
    line = note.rstrip("\n").rsplit("\n", 1)[1] + "\n"
    later = cosign_checkpoint(note_cosigned_by(), W["X1"], 1800000000).rstrip("\n").rsplit("\n", 1)[1] + "\n"
    # The same line again, and X1 again at another time: one witness of two.
    for extra in (line, line * 5, later):
        with pytest.raises(QuorumNotMet, match="has 1"):
            verify_checkpoint_policy(note + extra, p)
    verify_checkpoint_policy(note_cosigned_by("X1", "X2") + line, p)
    # A repeated line by a trusted witness that does not verify rejects.
    sig = parse_note(note + later).repeats[0]
    bad = NoteSignature(sig.name, sig.keyid, sig.signature[:-1] + bytes([sig.signature[-1] ^ 1]))
    with pytest.raises(InvalidSignature):
        verify_checkpoint_policy(note_cosigned_by("X1", "X2") + bad.line(), p)


def test_cosignatures_by_unknown_witnesses_do_not_count() -> None:
    p = parse_policy(f"log {LOG.vkey}\nwitness X1 {W['X1'].vkey}\nquorum X1\n")
    stranger = Signer.from_seed("x1.example", bytes([99]) * 32, cosigner=True)
    note = cosign_checkpoint(
        sign_checkpoint(Checkpoint("ledger.example/log", 10, ROOT), LOG), stranger, 1
    )
    with pytest.raises(QuorumNotMet):
        verify_checkpoint_policy(note, p)


def test_cosignature_from_another_checkpoint_rejects() -> None:
    p = parse_policy(f"log {LOG.vkey}\nwitness X1 {W['X1'].vkey}\nquorum X1\n")
    other = parse_note(note_cosigned_by("X1", size=11))
    mine = parse_note(note_cosigned_by(size=10))
    spliced = format_note(SignedNote(mine.text, (mine.signatures[0], other.signatures[1])))
    with pytest.raises(InvalidSignature):
        verify_checkpoint_policy(spliced, p)


@settings(max_examples=40, deadline=None)
@given(
    k=st.integers(min_value=1, max_value=6),
    present=st.sets(st.sampled_from(list(W)), max_size=6),
)
def test_flat_threshold_property(k: int, present: set[str]) -> None:
    members = " ".join(W)
    text = "".join(f"witness {n} {s.vkey}\n" for n, s in W.items())
    p = parse_policy(f"log {LOG.vkey}\n{text}group G {k} {members}\nquorum G\n")
    note = note_cosigned_by(*sorted(present))
    try:
        verify_checkpoint_policy(note, p)
        ok = True
    except QuorumNotMet:
        ok = False
    assert ok == (len(present) >= k)


def test_mutated_checkpoint_notes_raise_only_ledger_errors() -> None:
    p = parse_policy(spec_like_policy_text())
    note = note_cosigned_by("X1", "X2", "Y1").encode()
    rejected = assert_only_ledger_errors(
        lambda d: verify_checkpoint_policy(d, p), mutations(note, budget=150)
    )
    assert rejected > 100
