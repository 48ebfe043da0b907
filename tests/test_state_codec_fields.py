"""Reading a record's last fields and splicing its first one
(:func:`dec_tail`, :func:`dec_first`) agree with a full decode and encode,
including for values built to fool a search for the key."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.state._codec import dec, dec_first, dec_tail, enc
from ledger.state.footprints import encode_published
from ledger.state.units import encode_retirement

KEYS = ["a", "attestations", "digest", "pcf", "status", "unit", "z"]
# Strings that look like the keys searched for, quoted as JSON would be.
TRICKY = [',"pcf":', '],"status":', '{"attestations":', "\\", '"', "é", "中"]

scalars = st.one_of(
    st.none(),
    st.integers(-(2**40), 2**40),
    st.text(max_size=8),
    st.sampled_from(TRICKY),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(KEYS), inner, max_size=4),
    ),
    max_leaves=12,
)
records = st.dictionaries(st.sampled_from(KEYS), values, max_size=len(KEYS))


def expected_tail(record: dict[str, Any], first: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k >= first}


@settings(max_examples=400, deadline=None)
@given(records, st.sampled_from(KEYS))
def test_dec_tail_is_the_full_decode_from_the_key_on_or_none(record: dict[str, Any], first: str) -> None:
    text = enc(record).decode()
    tail = dec_tail(text, first)
    if tail is not None:
        assert first in record
        assert tail == expected_tail(record, first)
        assert list(tail) == sorted(tail)


@settings(max_examples=200, deadline=None)
@given(records)
def test_dec_tail_finds_a_top_level_key_after_flat_fields(record: dict[str, Any]) -> None:
    # The footprint's case: the key and every later one hold scalars.
    record = {k: v for k, v in record.items() if k < "pcf"}
    record.update(pcf="10", status="Active", unit="kilogram")
    text = enc(record).decode()
    if min(record) != "pcf":  # a first key has no comma before it
        assert dec_tail(text, "pcf") == expected_tail(record, "pcf")


@settings(max_examples=400, deadline=None)
@given(records, values)
def test_dec_first_splices_to_the_bytes_enc_makes(record: dict[str, Any], new: Any) -> None:
    data = enc(record)
    text = data.decode()
    found = dec_first(text, "a")
    if not record or min(record) != "a":
        assert found is None
        return
    assert found is not None
    value, end = found
    assert value == record["a"]
    spliced = b'{"a":' + enc(new) + data[len(text[:end].encode()) :]
    assert spliced == enc({**record, "a": new})
    assert dec(spliced) == {**record, "a": new}


def test_dec_tail_refuses_a_nested_key_found_last() -> None:
    text = enc({"pcf": "1", "x": [{"pcf": "2", "q": 1}]}).decode()
    assert dec_tail(text, "pcf") is None
    assert dec_tail(enc({"a": 1, "pcf": "1"}).decode(), "pcf") == {"pcf": "1"}
    assert dec_tail(enc({"a": 1}).decode(), "pcf") is None


texts = st.one_of(st.text(max_size=12), st.sampled_from(TRICKY))
ints = st.integers(0, 2**62)
pairs = st.lists(st.lists(ints, min_size=2, max_size=2), max_size=3)
published = st.fixed_dictionaries(
    {
        "owner": texts,
        "status": texts,
        "unit": texts,
        "unitAmount": texts,
        "pcf": texts,
        "refStart": ints,
        "refEnd": ints,
        "product": texts,
        "published": ints,
        "digest": texts,
        "preceding": st.lists(texts, max_size=3),
        "successor": st.none(),
        "deprecated": st.none(),
        "lineage": texts,
        "components": st.lists(
            st.fixed_dictionaries({"pf": texts, "quantity": texts, "unit": texts}), max_size=3
        ),
        "claims": st.fixed_dictionaries({"gec": pairs, "ccer": pairs}),
        "attestations": st.just([]),
    }
)


@settings(max_examples=300, deadline=None)
@given(published)
def test_a_published_footprint_is_formatted_as_enc_writes_it(record: dict[str, Any]) -> None:
    assert encode_published(record) == enc(record)


@settings(max_examples=300, deadline=None)
@given(published, st.sampled_from(["attestations", "successor", "claims", "components", "product", "published", "extra"]), values)
def test_any_other_shape_of_footprint_record_is_still_enc(record: dict[str, Any], field: str, odd: Any) -> None:
    record = {**record, field: odd}
    assert encode_published(record) == enc(record)


retirements = st.fixed_dictionaries(
    {"beneficiary": texts, "by": texts, "e": ints, "periodEnd": ints, "periodStart": ints, "s": ints},
    optional={"purpose": texts},
)


@settings(max_examples=300, deadline=None)
@given(retirements, st.one_of(st.none(), st.tuples(st.sampled_from(["purpose", "s", "by", "x"]), values)))
def test_a_retirement_is_formatted_as_enc_writes_it(record: dict[str, Any], odd: tuple[str, Any] | None) -> None:
    if odd is not None:
        record = {**record, odd[0]: odd[1]}
    assert encode_retirement(record) == enc(record)
