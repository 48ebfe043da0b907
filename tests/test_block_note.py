"""Block notes (ledger/block_note.py): a replica's signed word on one block,
and how many distinct replicas a tlog-policy's quorum asks to vouch
(ledger/policy.py, ``quorum_size``)."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from itertools import combinations

import pytest

from ledger.block import Block, block_hash
from ledger.block_note import (
    BLOCK_NOTE_MARKER,
    BlockNote,
    Vouching,
    format_block_note,
    open_block_note,
    parse_block_note,
    sign_block_note,
    tally_block_notes,
    verify_block_vouchers,
)
from ledger.checkpoint import Checkpoint, format_checkpoint, parse_checkpoint, sign_checkpoint
from ledger.errors import BlockConflict, BlockNotConfirmed, InvalidSignature, MalformedError
from ledger.keys import Signer
from ledger.note import sign_note
from ledger.policy import Policy, PolicyGroup, PolicyWitness, parse_policy, quorum_size
from ledger.policy import _witnessed as witnessed

ORIGIN = "cluster.example/log"
BLOCK = Block(3, bytes(range(32)), 2, 1, 3, bytes(32), 102, b"\xab" * 32)
POSITION = bytes(range(16))
# The text, field by field: the marker, the origin, base64 of
# encode_block(BLOCK) (137 bytes: version 1 then the fields, big-endian), and
# base64 of POSITION. The block line, without this code:
#   python3 -c "import base64, struct; print(base64.b64encode(struct.pack('>BQ32sQQQ32sQ32s',
#   1, 3, bytes(range(32)), 2, 1, 3, bytes(32), 102, b'\xab' * 32)).decode())"
GOLDEN = (
    "carbonledger/block-note/v1\n"
    "cluster.example/log\n"
    "AQAAAAAAAAADAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8AAAAAAAAAAgAAAAAAAAABAAAAAAAAAAMAAAAA"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABmq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n"
    "AAECAwQFBgcICQoLDA0ODw==\n"
)


def log_key(n: int) -> Signer:
    return Signer.from_seed(ORIGIN, hashlib.sha256(b"log %d" % n).digest())


def witness_key(n: int) -> Signer:
    return Signer.from_seed(
        f"witness-{n}", hashlib.sha256(b"witness %d" % n).digest(), cosigner=True
    )


POLICY = parse_policy(
    "".join(f"log {log_key(n).vkey}\n" for n in range(3))
    + "".join(f"witness w{n} {witness_key(n).vkey}\n" for n in range(3))
    + "group replicas 2 w0 w1 w2\nquorum replicas\n"
)


def test_format_and_parse_are_a_pair() -> None:
    for note in (BlockNote(ORIGIN, BLOCK, POSITION), BlockNote(ORIGIN, BLOCK)):
        assert parse_block_note(format_block_note(note)) == note
    assert format_block_note(BlockNote(ORIGIN, BLOCK, POSITION)) == GOLDEN
    assert format_block_note(BlockNote(ORIGIN, BLOCK)).endswith("\n-\n")


@pytest.mark.parametrize(
    "text",
    [
        GOLDEN.replace(BLOCK_NOTE_MARKER, "carbonledger/block-note/v2"),
        GOLDEN + "extension\n",
        GOLDEN.rsplit("\n", 2)[0] + "\n",  # no position line
        GOLDEN[:-1],  # no final newline
        GOLDEN.replace("6s=\n", "6s\n", 1),  # bad padding of the block
        GOLDEN.replace("6s=\n", "6t=\n", 1),  # non-canonical base64 of the block
        GOLDEN.replace("AQAAAAAAAAAD", "AgAAAAAAAAAD", 1),  # block version 2
        GOLDEN.replace("AAECAwQFBgcICQoLDA0ODw==", "-x"),
        GOLDEN.replace("AAECAwQFBgcICQoLDA0ODw==", "AAAA" * 23),  # a 69-byte position
        GOLDEN.replace("\ncluster", "\n\ncluster", 1),
        "",
        "x" * 5000,
    ],
)
def test_parse_refuses_anything_but_the_canonical_text(text: str) -> None:
    with pytest.raises(MalformedError):
        parse_block_note(text)


def test_a_block_note_and_a_checkpoint_never_pass_for_each_other() -> None:
    checkpoint = format_checkpoint(Checkpoint(ORIGIN, 3, bytes(32)))
    with pytest.raises(MalformedError):
        parse_block_note(checkpoint)
    with pytest.raises(MalformedError):
        parse_checkpoint(GOLDEN)
    signed = sign_block_note(BlockNote(ORIGIN, BLOCK, POSITION), log_key(0))
    with pytest.raises(MalformedError):
        open_block_note(
            sign_checkpoint(Checkpoint(ORIGIN, 3, bytes(32)), log_key(0)), [log_key(0).verifier()]
        )
    assert open_block_note(signed, [log_key(0).verifier()]) == (
        BlockNote(ORIGIN, BLOCK, POSITION),
        (log_key(0).verifier(),),
    )


def test_open_needs_a_log_key_of_the_origin() -> None:
    signed = sign_block_note(BlockNote(ORIGIN, BLOCK), log_key(0))
    with pytest.raises(InvalidSignature):
        open_block_note(signed, [log_key(1).verifier()])
    other = Signer.from_seed("other.example/log", b"\x01" * 32)
    with pytest.raises(ValueError):
        sign_block_note(BlockNote(ORIGIN, BLOCK), other)
    # Another log's key signing this log's block text vouches for nothing.
    with pytest.raises(MalformedError, match="no signature by a log key"):
        open_block_note(sign_note(GOLDEN, [other]), [other.verifier()])
    tampered = signed.replace(f"\n{ORIGIN}\n", "\ncluster.example/log2\n", 1)
    with pytest.raises(InvalidSignature):
        open_block_note(tampered, [log_key(0).verifier()])


def signed(n: int, block: Block = BLOCK, position: bytes | None = POSITION) -> str:
    return sign_block_note(BlockNote(ORIGIN, block, position), log_key(n))


def test_vouchers_are_distinct_log_keys_signing_the_same_block_and_position() -> None:
    assert verify_block_vouchers(
        ORIGIN, BLOCK, POSITION, [signed(0), signed(1)], POLICY
    ) == Vouching((log_key(0).vkey, log_key(1).vkey), ())
    with pytest.raises(BlockNotConfirmed) as one:
        verify_block_vouchers(ORIGIN, BLOCK, POSITION, [signed(0), signed(0)], POLICY)
    assert one.value.vouchers == (log_key(0).vkey,) and one.value.needed == 2
    # A note without a position vouches for the block but not for a position.
    with pytest.raises(BlockNotConfirmed):
        verify_block_vouchers(
            ORIGIN, BLOCK, POSITION, [signed(0), signed(1, position=None)], POLICY
        )
    assert (
        len(
            verify_block_vouchers(
                ORIGIN, BLOCK, None, [signed(0), signed(1, position=None)], POLICY
            ).vouchers
        )
        == 2
    )


def test_a_replica_signing_another_block_or_position_is_a_conflict() -> None:
    # Replica 0 alone vouches for the served block: short of a quorum, the
    # dissent may be the truth.
    other_time = Block(*[102 + 1 if f == "time" else getattr(BLOCK, f) for f in BLOCK.__slots__])  # type: ignore[attr-defined]
    with pytest.raises(BlockConflict) as conflict:
        verify_block_vouchers(ORIGIN, BLOCK, POSITION, [signed(0), signed(1, other_time)], POLICY)
    assert (conflict.value.height, conflict.value.what, conflict.value.signer) == (
        3,
        "block hash",
        log_key(1).vkey,
    )
    assert (conflict.value.served, conflict.value.signed) == (
        block_hash(BLOCK),
        block_hash(other_time),
    )
    with pytest.raises(BlockConflict) as conflict:
        verify_block_vouchers(
            ORIGIN, BLOCK, POSITION, [signed(0), signed(1, position=b"\x00" * 16)], POLICY
        )
    assert (conflict.value.what, conflict.value.signed) == ("position", b"\x00" * 16)
    # Without a position to check, another position is not a conflict.
    verify_block_vouchers(
        ORIGIN, BLOCK, None, [signed(0), signed(1, position=b"\x00" * 16)], POLICY
    )


# -- deciding by quorum: who vouches, who dissents

OTHER = replace(BLOCK, time=BLOCK.time + 1)  # another block at the same height
THIRD = replace(BLOCK, time=BLOCK.time + 2)
OTHER_POSITION = b"\x00" * 16
# Four replicas, the witnesses' quorum two of three: room for two against two.
FOUR = parse_policy(
    "".join(f"log {log_key(n).vkey}\n" for n in range(4))
    + "".join(f"witness w{n} {witness_key(n).vkey}\n" for n in range(3))
    + "group replicas 2 w0 w1 w2\nquorum replicas\n"
)


def test_a_quorum_vouches_for_a_block_one_replica_dissents_from() -> None:
    dissent = signed(1, OTHER)
    # The same dissenting note twice (two addresses of one replica) is one dissent.
    vouching = verify_block_vouchers(
        ORIGIN, BLOCK, POSITION, [signed(0), dissent, signed(2), dissent], POLICY
    )
    assert vouching.vouchers == (log_key(0).vkey, log_key(2).vkey)
    (conflict,) = vouching.dissents
    assert (conflict.height, conflict.what, conflict.signer, conflict.note) == (
        3,
        "block hash",
        log_key(1).vkey,
        dissent,
    )
    assert (conflict.served, conflict.signed) == (block_hash(BLOCK), block_hash(OTHER))


def test_a_quorum_vouches_for_a_position_one_replica_dissents_from() -> None:
    dissent = signed(1, position=OTHER_POSITION)
    vouching = verify_block_vouchers(
        ORIGIN, BLOCK, POSITION, [signed(0), dissent, signed(2)], POLICY
    )
    assert vouching.vouchers == (log_key(0).vkey, log_key(2).vkey)
    (conflict,) = vouching.dissents
    assert (conflict.what, conflict.signer, conflict.note) == ("position", log_key(1).vkey, dissent)
    assert (conflict.served, conflict.signed) == (POSITION, OTHER_POSITION)


def test_a_dissent_against_a_block_short_of_a_quorum_is_a_conflict() -> None:
    # One replica for the served block, one against: either may be the liar.
    for dissent in (signed(1, OTHER), signed(1, position=OTHER_POSITION)):
        with pytest.raises(BlockConflict) as conflict:
            verify_block_vouchers(ORIGIN, BLOCK, POSITION, [signed(0), dissent], POLICY)
        assert (conflict.value.signer, conflict.value.note) == (log_key(1).vkey, dissent)


def test_a_quorum_against_the_served_block_is_the_conflict_raised() -> None:
    # Replica 0 dissents first, for a third block; replicas 1 and 2 agree on
    # another: theirs is the conflict raised, as a quorum stands behind it.
    notes = [signed(0, THIRD), signed(1, OTHER), signed(2, OTHER)]
    with pytest.raises(BlockConflict) as conflict:
        verify_block_vouchers(ORIGIN, BLOCK, POSITION, notes, POLICY)
    assert (conflict.value.signed, conflict.value.signer) == (block_hash(OTHER), log_key(1).vkey)


def test_an_equivocating_key_counts_for_neither_side() -> None:
    # Replica 0 signs the served block and another one at the same height:
    # with replica 1 alone left to vouch, two are not reached.
    for lie in (signed(0, OTHER), signed(0, position=OTHER_POSITION)):
        with pytest.raises(BlockConflict) as conflict:
            verify_block_vouchers(ORIGIN, BLOCK, POSITION, [signed(0), lie, signed(1)], POLICY)
        assert (conflict.value.signer, conflict.value.note) == (log_key(0).vkey, lie)
    # With replica 2 vouching too, the block is accepted without replica 0,
    # and its other note is a dissent.
    lie = signed(0, OTHER)
    vouching = verify_block_vouchers(
        ORIGIN, BLOCK, POSITION, [signed(0), lie, signed(1), signed(2)], POLICY
    )
    assert vouching.vouchers == (log_key(1).vkey, log_key(2).vkey)
    assert [(c.signer, c.note) for c in vouching.dissents] == [(log_key(0).vkey, lie)]
    # Nor does it count for the other side: with replica 3 signing that one,
    # it stays one short of a quorum, and the served block (replicas 1 and 2) is accepted.
    vouching = verify_block_vouchers(
        ORIGIN, BLOCK, POSITION, [signed(0), lie, signed(1), signed(2), signed(3, OTHER)], FOUR
    )
    assert vouching.vouchers == (log_key(1).vkey, log_key(2).vkey)
    assert {c.signer for c in vouching.dissents} == {log_key(0).vkey, log_key(3).vkey}


@pytest.mark.parametrize("what", ["block hash", "position"])
def test_when_both_sides_reach_a_quorum_nothing_is_decided(what: str) -> None:
    def against(n: int) -> str:
        return signed(n, OTHER) if what == "block hash" else signed(n, position=OTHER_POSITION)

    # A quorum of one witness: one replica on each side.
    one = parse_policy(
        "".join(f"log {log_key(n).vkey}\n" for n in range(2))
        + f"witness w0 {witness_key(0).vkey}\nquorum w0\n"
    )
    with pytest.raises(BlockConflict) as conflict:
        verify_block_vouchers(ORIGIN, BLOCK, POSITION, [signed(0), against(1)], one)
    assert (conflict.value.what, conflict.value.note) == (what, against(1))
    # Two of three witnesses, four replicas: two on each side.
    notes = [signed(0), signed(1), against(2), against(3)]
    with pytest.raises(BlockConflict) as conflict:
        verify_block_vouchers(ORIGIN, BLOCK, POSITION, notes, FOUR)
    assert (conflict.value.what, conflict.value.note) == (what, against(2))


def test_a_tally_says_which_replicas_sign_each_side_of_a_conflict() -> None:
    other_time = Block(*[103 if f == "time" else getattr(BLOCK, f) for f in BLOCK.__slots__])  # type: ignore[attr-defined]
    outsider = Signer.from_seed(ORIGIN, hashlib.sha256(b"not in the policy").digest())
    notes = [
        signed(0),
        signed(1, other_time),
        signed(2),
        signed(0),  # the same replica behind a second address
        signed(1, position=None),
        sign_block_note(BlockNote(ORIGIN, other_time, POSITION), outsider),
        signed(2, Block(*[4 if f == "height" else getattr(BLOCK, f) for f in BLOCK.__slots__])),  # type: ignore[attr-defined]
        "not a note",
    ]
    tally = tally_block_notes(ORIGIN, 3, notes, POLICY)
    assert [(t.block_hash, t.position, t.signers) for t in tally] == [
        (block_hash(BLOCK), POSITION, (log_key(0).vkey, log_key(2).vkey)),
        (block_hash(other_time), POSITION, (log_key(1).vkey,)),
        (block_hash(BLOCK), None, (log_key(1).vkey,)),
    ]
    assert tally[0].notes == (signed(0), signed(2)) and tally[1].notes == (notes[1],)


def test_a_policy_without_witnesses_asks_one_log_key() -> None:
    policy = parse_policy(f"log {log_key(0).vkey}\nquorum none\n")
    assert verify_block_vouchers(ORIGIN, BLOCK, POSITION, [signed(0)], policy).vouchers == (
        log_key(0).vkey,
    )
    with pytest.raises(BlockNotConfirmed):
        verify_block_vouchers(ORIGIN, BLOCK, POSITION, [signed(1)], policy)


# -- quorum_size


def policy_of(groups: str, witnesses: int) -> Policy:
    return parse_policy(
        "".join(f"witness w{n} {witness_key(n).vkey}\n" for n in range(witnesses)) + groups
    )


def fewest(policy: Policy) -> int:
    """The reference: the smallest set of witnesses meeting the quorum, by brute force."""
    names = [w.name for w in policy.witnesses]
    groups = {g.name: g for g in policy.groups}
    for k in range(len(names) + 1):
        if any(witnessed(policy.quorum, groups, set(c), {}) for c in combinations(names, k)):
            return k
    raise AssertionError("no set of witnesses meets the quorum")


@pytest.mark.parametrize(
    ("groups", "witnesses", "expected"),
    [
        ("quorum none\n", 3, 0),
        ("quorum w1\n", 3, 1),
        ("group g 2 w0 w1 w2\nquorum g\n", 3, 2),
        ("group g all w0 w1 w2\nquorum g\n", 3, 3),
        ("group g any w0 w1 w2\nquorum g\n", 3, 1),
        ("group a 2 w0 w1 w2\ngroup b 1 w3 w4\ngroup q all a b\nquorum q\n", 5, 3),
        ("group a 2 w0 w1 w2\ngroup b 3 w3 w4 w5\ngroup q 1 a b\nquorum q\n", 6, 2),
    ],
)
def test_quorum_size_is_exact_for_groups_that_share_no_witness(
    groups: str, witnesses: int, expected: int
) -> None:
    policy = policy_of(groups, witnesses)
    assert quorum_size(policy) == expected
    if expected:
        assert fewest(policy) == expected


@pytest.mark.parametrize(
    ("groups", "witnesses"),
    [
        ("group a 2 w0 w1\ngroup b 2 w1 w2\ngroup q all a b\nquorum q\n", 3),
        (
            "group a 2 w0 w1\ngroup b 2 w0 w1\ngroup c 1 w2 w3 w4 w5\ngroup q all a b c\nquorum q\n",
            6,
        ),
    ],
)
def test_quorum_size_never_asks_fewer_than_needed_nor_more_than_there_are(
    groups: str, witnesses: int
) -> None:
    policy = policy_of(groups, witnesses)
    assert fewest(policy) <= quorum_size(policy) <= witnesses


def test_quorum_size_handles_deeply_shared_groups() -> None:
    # Each group names the two before it: 2^60 paths, memoized to 60 steps.
    groups = [PolicyGroup("g0", 1, ("w0", "w1")), PolicyGroup("g1", 2, ("w0", "g0"))]
    groups += [PolicyGroup(f"g{i}", 1, (f"g{i - 2}", f"g{i - 1}")) for i in range(2, 60)]
    policy = Policy(
        (),
        tuple(PolicyWitness(f"w{n}", witness_key(n).verifier()) for n in range(2)),
        tuple(groups),
        "g59",
    )
    assert 1 <= quorum_size(policy) <= 2
