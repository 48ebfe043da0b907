"""The state's decode caches: bounded by the bytes they hold, and keeping
the values in steady use."""

from __future__ import annotations

import random

import pytest

from ledger.state import _codec, ranges
from ledger.state._codec import DecodeCache, dec, enc


def value_bytes(i: int, size: int) -> bytes:
    return enc({"i": i, "pad": "x" * size})


def test_decode_cache_bound_is_honoured_for_any_mix_of_sizes() -> None:
    cache = DecodeCache(4096)
    rng = random.Random(3)
    for i in range(5_000):
        data = value_bytes(i, rng.choice([0, 1, 10, 100, 1_000, 3_000]))
        cache.put(data, dec(data))
        assert cache.charged <= 2 * cache.max_bytes
        held = cache.items()
        assert sum(len(d) + DecodeCache.ENTRY_COST for d, _ in held) == cache.charged
    # Tiny values are bounded by their count too (the per-value charge).
    assert len(cache) <= 2 * 4096 // DecodeCache.ENTRY_COST


def test_decode_cache_keeps_a_value_in_steady_use() -> None:
    cache = DecodeCache(2048)
    hot = value_bytes(-1, 50)
    cache.put(hot, dec(hot))
    kept = cache.get(hot)
    for i in range(2_000):
        data = value_bytes(i, 100)
        cache.put(data, dec(data))
        if i % 5 == 0:  # read every few entries, like an org record
            assert cache.get(hot) is kept
    assert cache.get(value_bytes(0, 100)) is None  # the cold ones went


def test_decode_cache_does_not_keep_a_value_over_its_budget() -> None:
    cache = DecodeCache(1024)
    small = value_bytes(1, 10)
    cache.put(small, dec(small))
    cache.put(value_bytes(2, 2_000), {"big": True})
    assert cache.get(value_bytes(2, 2_000)) is None
    assert cache.get(small) == dec(small)


def test_drop_caches_empties_the_state_caches() -> None:
    for cache, data in ((_codec.SHARED, enc({"a": 1})), (ranges._SEGMENTS, b'{"b":"B1","o":"X","s":0,"st":"held"}')):
        assert isinstance(cache, DecodeCache)
        cache.put(data, dec(data))
        assert cache.get(data) is not None
    _codec.drop_caches()
    assert len(_codec.SHARED) == len(ranges._SEGMENTS) == 0 and _codec.SHARED.charged == 0


def test_state_caches_are_small() -> None:
    # Issue 5: the node's memory is budgeted; these two held 26 MB when
    # they were bounded by count.
    assert _codec.SHARED.max_bytes + ranges._SEGMENTS.max_bytes <= 1 << 20


def test_a_budget_must_be_positive() -> None:
    with pytest.raises(ValueError):
        DecodeCache(0)
