"""MemoryKV's lazily sorted key families: a family that no scan has walked
is sorted in by the first scan that could see it, and until then deletes
and scans behave exactly as for sorted keys."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.kv import Journal, MemoryKV

# Keys in a few families (buckets) of two bytes and a slash, like state keys.
keys = st.tuples(st.sampled_from([b"ah/", b"ao/", b"sg/", b"f/", b"a/"]), st.binary(max_size=3)).map(
    lambda t: t[0] + bytes(x % 4 + 0x30 for x in t[1])
)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("put"), keys),
        st.tuples(st.just("delete"), keys),
        st.tuples(st.just("scan"), st.sampled_from([b"", b"a", b"ah/", b"ao/1", b"sg/", b"f/", b"s"])),
    ),
    max_size=60,
)


@settings(max_examples=400, deadline=None)
@given(steps)
def test_lazy_families_scan_as_a_sorted_map(ops: list[tuple[str, bytes]]) -> None:
    kv = MemoryKV()
    model: dict[bytes, bytes] = {}
    for i, (kind, arg) in enumerate(ops):
        if kind == "put":
            kv.put(arg, b"%d" % i)
            model[arg] = b"%d" % i
        elif kind == "delete":
            kv.delete(arg)
            model.pop(arg, None)
        else:
            assert list(kv.scan(arg)) == [(k, model[k]) for k in sorted(model) if k.startswith(arg)]
    assert kv.items() == sorted(model.items())


def test_a_scan_over_several_families_sees_a_family_created_while_it_runs() -> None:
    kv = MemoryKV()
    kv.put(b"a/1", b"v")
    kv.put(b"z/1", b"v")
    seen = []
    for k, _ in kv.scan(b""):
        seen.append(k)
        if k == b"a/1":
            kv.put(b"m/1", b"new")  # a new, lazy family ahead of the cursor
    assert seen == [b"a/1", b"m/1", b"z/1"]


def test_rolling_back_new_keys_of_a_lazy_family_leaves_no_trace() -> None:
    kv = MemoryKV()
    for i in range(50):
        kv.put(b"ah/%03d" % i, b"v")
    journal = Journal(kv)
    savepoint = journal.savepoint()
    for i in range(50, 60):
        journal.put(b"ah/%03d" % i, b"w")
    journal.put(b"ah/%03d" % 10, b"changed")
    journal.rollback(savepoint)
    assert [k for k, _ in kv.scan(b"ah/")] == [b"ah/%03d" % i for i in range(50)]
    assert kv.get(b"ah/010") == b"v"
