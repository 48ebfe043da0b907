"""MemoryKV, Overlay and Journal: put/get/delete/scan semantics against a plain dict.

The reference model is a dict whose scan is "sort every key, keep those with
the prefix at or after the start": slow and obviously right.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.kv import EMPTY_STATE_DIGEST, KV, Journal, MemoryKV, Overlay, fold_state_digest


def model_scan(
    model: dict[bytes, bytes], prefix: bytes, start: bytes | None = None
) -> list[tuple[bytes, bytes]]:
    lo = start if start is not None and start > prefix else prefix
    return [(k, model[k]) for k in sorted(model) if k.startswith(prefix) and k >= lo]


def run_ops(kv: KV, model: dict[bytes, bytes], ops: list[tuple[str, bytes, bytes]]) -> None:
    """Apply ``ops`` to ``kv`` and to the reference ``model``, checking reads as they go."""
    for kind, k, v in ops:
        if kind == "put":
            kv.put(k, v)
            model[k] = v
        else:
            kv.delete(k)
            model.pop(k, None)
        assert kv.get(k) == model.get(k)


# Short keys over a tiny alphabet, so prefixes, starts and keys collide often.
keys = st.binary(min_size=0, max_size=4).map(lambda b: bytes(x % 3 + 0x61 for x in b))
values = st.binary(min_size=0, max_size=3)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), keys, values),
        st.tuples(st.just("delete"), keys, st.just(b"")),
    ),
    max_size=80,
)


def test_scan_orders_and_bounds() -> None:
    kv = MemoryKV()
    for k in [b"b/2", b"a/1", b"b/1", b"b", b"c", b"b/10"]:
        kv.put(k, k.upper())
    assert [k for k, _ in kv.scan(b"b/")] == [b"b/1", b"b/10", b"b/2"]
    assert [k for k, _ in kv.scan(b"b/", b"b/10")] == [b"b/10", b"b/2"]
    # A start below the prefix is clamped to the prefix.
    assert [k for k, _ in kv.scan(b"b/", b"a")] == [b"b/1", b"b/10", b"b/2"]
    assert list(kv.scan(b"d")) == []
    assert list(kv.scan(b"b/", b"b/3")) == []


def test_put_overwrites_and_delete_is_idempotent() -> None:
    kv = MemoryKV()
    kv.put(b"k", b"1")
    kv.put(b"k", b"2")
    assert kv.get(b"k") == b"2"
    assert kv.items() == [(b"k", b"2")]
    kv.delete(b"k")
    kv.delete(b"k")
    kv.delete(b"never")
    assert kv.get(b"k") is None
    assert kv.items() == []


def test_put_copies_value() -> None:
    kv = MemoryKV()
    buf = bytearray(b"abc")
    kv.put(b"k", buf)  # type: ignore[arg-type]
    buf[0] = 0
    assert kv.get(b"k") == b"abc"


def test_scan_while_writing_skips_deleted_and_never_repeats() -> None:
    kv = MemoryKV()
    for i in range(100):
        kv.put(b"p/%03d" % i, b"v")
    seen = []
    for k, _ in kv.scan(b"p/"):
        seen.append(k)
        n = int(k[2:])
        kv.delete(b"p/%03d" % (n + 1))  # delete the next key: it must not appear
        kv.put(k, b"w")  # rewrite the current key: no effect on the walk
    assert seen == [b"p/%03d" % i for i in range(0, 100, 2)]
    assert seen == sorted(set(seen))


def test_scan_while_writing_sees_keys_inserted_ahead() -> None:
    kv = MemoryKV()
    for i in range(0, 3000, 2):  # enough keys for several sorted blocks
        kv.put(b"p/%04d" % i, b"v")
    seen = []
    for k, _ in kv.scan(b"p/"):
        seen.append(k)
        n = int(k[2:])
        if n % 2 == 0 and n + 1 < 3000:
            kv.put(b"p/%04d" % (n + 1), b"w")  # inserted just ahead: it is walked
        kv.put(b"p/%04d" % (n - 1), b"x")  # behind the cursor: never walked
    assert seen == [b"p/%04d" % i for i in range(3000)]


def test_overlay_reads_own_writes_and_commits() -> None:
    base = MemoryKV()
    base.put(b"a/1", b"base1")
    base.put(b"a/2", b"base2")
    base.put(b"a/3", b"base3")
    ov = Overlay(base)
    ov.put(b"a/2", b"new2")
    ov.delete(b"a/3")
    ov.put(b"a/0", b"new0")
    assert ov.get(b"a/3") is None
    assert list(ov.scan(b"a/")) == [(b"a/0", b"new0"), (b"a/1", b"base1"), (b"a/2", b"new2")]
    # The base is untouched until commit.
    assert base.get(b"a/2") == b"base2"
    assert ov.writes == [(b"a/2", b"new2"), (b"a/3", None), (b"a/0", b"new0")]
    ov.commit_into(base)
    assert base.items() == [(b"a/0", b"new0"), (b"a/1", b"base1"), (b"a/2", b"new2")]


def test_state_digest_distinguishes_delete_from_empty_value() -> None:
    assert fold_state_digest(EMPTY_STATE_DIGEST, [(b"k", None)]) != fold_state_digest(
        EMPTY_STATE_DIGEST, [(b"k", b"")]
    )
    # Length prefixes keep key/value boundaries apart.
    assert fold_state_digest(EMPTY_STATE_DIGEST, [(b"ab", b"c")]) != fold_state_digest(
        EMPTY_STATE_DIGEST, [(b"a", b"bc")]
    )


@settings(max_examples=300, deadline=None)
@given(ops=ops, prefix=keys, start=st.one_of(st.none(), keys))
def test_memory_kv_matches_dict(
    ops: list[tuple[str, bytes, bytes]], prefix: bytes, start: bytes | None
) -> None:
    kv = MemoryKV()
    model: dict[bytes, bytes] = {}
    run_ops(kv, model, ops)
    assert kv.items() == sorted(model.items())
    assert list(kv.scan(prefix, start)) == model_scan(model, prefix, start)


@settings(max_examples=300, deadline=None)
@given(base_ops=ops, overlay_ops=ops, prefix=keys, start=st.one_of(st.none(), keys))
def test_overlay_matches_dict(
    base_ops: list[tuple[str, bytes, bytes]],
    overlay_ops: list[tuple[str, bytes, bytes]],
    prefix: bytes,
    start: bytes | None,
) -> None:
    base = MemoryKV()
    model: dict[bytes, bytes] = {}
    run_ops(base, model, base_ops)
    before = base.items()
    ov = Overlay(base)
    run_ops(ov, model, overlay_ops)
    assert list(ov.scan(prefix, start)) == model_scan(model, prefix, start)
    # Nothing reached the base before commit; after it, base equals the model.
    assert base.items() == before
    ov.commit_into(base)
    assert base.items() == sorted(model.items())


@settings(max_examples=300, deadline=None)
@given(base_ops=ops, kept=ops, undone=ops, prefix=keys, start=st.one_of(st.none(), keys))
def test_journal_writes_through_and_rolls_back(
    base_ops: list[tuple[str, bytes, bytes]],
    kept: list[tuple[str, bytes, bytes]],
    undone: list[tuple[str, bytes, bytes]],
    prefix: bytes,
    start: bytes | None,
) -> None:
    base = MemoryKV()
    model: dict[bytes, bytes] = {}
    run_ops(base, model, base_ops)
    initial = base.items()
    journal = Journal(base)
    run_ops(journal, model, kept)
    expected_writes = [(k, v if kind == "put" else None) for kind, k, v in kept]
    # Writes reach the base at once.
    assert base.items() == sorted(model.items())
    assert list(journal.scan(prefix, start)) == model_scan(model, prefix, start)
    # Writes after a savepoint, rolled back, leave the base byte-identical
    # and the write list as it was at the savepoint.
    savepoint = journal.savepoint()
    run_ops(journal, dict(model), undone)
    journal.rollback(savepoint)
    assert base.items() == sorted(model.items())
    assert journal.writes == expected_writes
    journal.rollback(0)
    assert base.items() == initial and journal.writes == []
