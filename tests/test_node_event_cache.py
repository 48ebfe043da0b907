"""A deprecation's events are derived once per ledger and shared by its
subscribers (node/event_cache.py), over gRPC against real in-process nodes.

The downstream walks are counted by wrapping the real
``ledger.state.queries.made_stale_by``; only walks without a limit are
counted, since a Submit receipt's walk (``with_stale_events``) has one and is
not shared.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from client.sdk import LedgerClient
from ledger.errors import LedgerError
from ledger.state import queries
from node import events
from node.event_cache import EventCache
from node.events import events_for_entry
from tests.test_node_support import Net, RunningNode, open_ledger, pf_uuid

KG = {"quantity": "1", "unit": "kilogram"}
Row = tuple[int, str, str, str, str, tuple[str, ...]]


class Walks:
    """Counts the unbounded calls of the real ``made_stale_by``; ``before(n)``
    runs before the n-th one walks (to hold it or to make it fail)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, before: Callable[[int], None] | None = None) -> None:
        self._real = queries.made_stale_by
        self._lock = threading.Lock()
        self._before = before
        self.calls: list[tuple[str, int]] = []
        monkeypatch.setattr(queries, "made_stale_by", self)

    def __call__(self, kv: Any, root: str, index: int, *, limit: int | None = None) -> tuple[tuple[str, str], ...]:
        if limit is None:
            with self._lock:
                self.calls.append((root, index))
                n = len(self.calls)
            if self._before is not None:
                self._before(n)
        return self._real(kv, root, index, limit=limit)


@pytest.fixture(autouse=True)
def _small_events(monkeypatch: pytest.MonkeyPatch) -> None:
    # A few hundred stale footprints then make several events, so that their
    # order across events is compared too (the node runs in this process).
    monkeypatch.setattr(events, "MAX_STALE_PER_EVENT", 100)


@contextmanager
def running(path: Path, **kwargs: Any) -> Iterator[RunningNode]:
    led = open_ledger(path)
    node = RunningNode(led, **kwargs)
    try:
        yield node
    finally:
        node.stop()
        led.close()


def _cache(node: RunningNode) -> EventCache:
    cache = node.server.event_cache
    assert cache is not None
    return cache


def _on(name: str) -> list[dict[str, str]]:
    return [{"pfId": pf_uuid(name), **KG}]


def _publish_graph(client: LedgerClient, net: Net, root: str, users: int, assemblies: int = 0) -> None:
    """``root`` (STEEL's), ``users`` footprints of PARTS on it, and
    ``assemblies`` footprints of STEEL on the first of those users."""
    client.submit(net.publish("STEEL", root, "1"))
    first = [net.publish("PARTS", f"{root}-user-{i}", "2", components=_on(root)) for i in range(users)]
    second = [net.publish("STEEL", f"{root}-asm-{i}", "5", components=_on(f"{root}-user-{i}")) for i in range(assemblies)]
    for batch in (first, second):
        if batch:
            results = client.submit_batch(batch)
            assert not [r for r in results if isinstance(r, Exception)]


def _row(e: Any) -> Row:
    return (e.index, e.kind, e.op, e.org, e.subject, tuple(e.refs))


def _uncached(node: RunningNode, index: int) -> list[Row]:
    """What events_for_entry gives, read here, past any cache."""
    with node.ledger.state() as kv:
        return [_row(e) for e in events_for_entry(kv, index, node.ledger.entry(index))]


def _entry_events(target: str, from_index: int, index: int, count: int) -> list[Row]:
    """The first ``count`` events of the entry at ``index`` that a new
    subscriber from ``from_index`` hears."""
    out: list[Row] = []
    with LedgerClient(target, timeout=10) as client:
        stream = client.subscribe(from_index, timeout=30)
        try:
            for ev in stream:
                if ev.index > index:
                    break
                if ev.index == index:
                    out.append(_row(ev))
                    if len(out) == count:
                        break
        finally:
            stream.close()
    return out


def _wait_until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    """Until ``cond()`` or ``timeout``; the caller's asserts tell which."""
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.01)


def _in_threads(n: int, fn: Callable[[], Any]) -> list[Any]:
    """``fn()`` in ``n`` threads released together; each result or exception."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait(10)
        try:
            results[i] = fn()
        except LedgerError as exc:  # what the SDK raises for a failed call
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_subscribers_across_a_deprecation_share_one_walk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with running(tmp_path / "ledger") as node, LedgerClient(node.target, timeout=10) as client:
        net = Net()
        for e in net.setup():
            client.submit(e)
        _publish_graph(client, net, "steel", 280, assemblies=20)
        walks = Walks(monkeypatch)
        live_from = node.ledger.size
        # Two subscribers from the log's end, started before the deprecation
        # is submitted (live, unless one connects after it commits: it reads
        # the same entry either way).
        live: list[list[Row]] = []
        threads = [
            threading.Thread(target=lambda: live.append(_entry_events(node.target, live_from, live_from, 5)))
            for _ in range(2)
        ]
        for t in threads:
            t.start()
        dep = client.submit(net.deprecate("STEEL", "steel"))
        assert dep.index == live_from
        for t in threads:
            t.join(60)
        # A third, resuming from the deprecation once the others are done.
        resumed = _entry_events(node.target, dep.index, dep.index, 5)
        assert walks.calls == [(pf_uuid("steel"), dep.index)]
        expected = _uncached(node, dep.index)
        # The entry, the deprecation, then 300 stale footprints in three
        # events of 100 (with their owners), in the walk's order.
        assert [k for _, k, *_ in expected] == ["entry", "footprint.deprecated", *["footprint.stale"] * 3]
        assert sum(len(r[5]) for r in expected if r[1] == "footprint.stale") == 300 + 4
        assert live == [expected, expected]
        assert resumed == expected
        stats = _cache(node).stats()
        assert (stats.entries, stats.derived, stats.hits + stats.shared) == (1, 1, 2)
        # The same counts at a metrics scrape.
        sample = node.server.metrics.registry.get_sample_value
        assert sample("carbonledger_event_cache_entries") == 1
        assert sample("carbonledger_event_cache_refs") == stats.refs > 300
        assert sample("carbonledger_event_cache_derived_total") == 1
        assert sample("carbonledger_event_cache_hits_total") + sample("carbonledger_event_cache_shared_total") == 2
        assert sample("carbonledger_event_cache_evicted_total") == 0


def test_concurrent_first_readers_wait_for_one_walk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readers = 4
    with running(tmp_path / "ledger") as node, LedgerClient(node.target, timeout=10) as client:
        net = Net()
        for e in net.setup():
            client.submit(e)
        _publish_graph(client, net, "steel", 250)
        dep = client.submit(net.publish("STEEL", "steel-v2", "1", preceding=["steel"]))  # a new version
        expected = _uncached(node, dep.index)
        cache = _cache(node)
        # The first walk goes on once the other readers wait for it, so that
        # all of them are first readers, whatever the threads' timing.
        walks = Walks(monkeypatch, before=lambda n: _wait_until(lambda: cache.stats().shared >= readers - 1))
        got = _in_threads(readers, lambda: _entry_events(node.target, dep.index, dep.index, len(expected)))
        assert got == [expected] * readers
        assert walks.calls == [(pf_uuid("steel"), dep.index)]
        assert (cache.stats().derived, cache.stats().shared) == (1, readers - 1)


def test_the_bound_evicts_the_least_recently_used_and_it_is_derived_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each deprecation's events hold 150 footprints and 2 owner refs: room
    # for two of them. A stream reads on to the end of the log, so each
    # read below derives (or finds) the events of every deprecation from
    # the one it asks for to the last.
    with running(tmp_path / "ledger", event_cache_refs=310) as node, LedgerClient(node.target, timeout=10) as client:
        net = Net()
        for e in net.setup():
            client.submit(e)
        _publish_graph(client, net, "steel", 150)
        _publish_graph(client, net, "copper", 150)
        steel = client.submit(net.deprecate("STEEL", "steel")).index
        copper = client.submit(net.deprecate("STEEL", "copper")).index
        walks = Walks(monkeypatch)
        cache = _cache(node)
        expected: dict[int, list[Row]] = {}

        def read(index: int) -> list[Row]:
            if index not in expected:
                expected[index] = _uncached(node, index)
                assert walks.calls.pop()[1] == index  # this test's own walk: not the node's
            return _entry_events(node.target, index, index, len(expected[index]))

        def walked() -> list[str]:
            roots = {pf_uuid(n): n for n in ("steel", "copper", "zinc")}
            return [roots[root] for root, _ in walks.calls]

        assert read(copper) == expected[copper]
        assert read(steel) == expected[steel]  # then finds copper's: used last
        assert walked() == ["copper", "steel"]
        assert (cache.stats().entries, cache.stats().refs, cache.stats().hits) == (2, 304, 1)
        _publish_graph(client, net, "zinc", 150)
        zinc = client.submit(net.deprecate("STEEL", "zinc")).index
        assert read(zinc) == expected[zinc]  # pushes out steel's, the least recently used
        assert (cache.stats().entries, cache.stats().refs, cache.stats().evicted) == (2, 304, 1)
        assert read(copper) == expected[copper]  # copper's and zinc's are kept
        assert walked() == ["copper", "steel", "zinc"]
        # The 151 publications between them never went through the cache.
        assert (cache.stats().derived, cache.stats().hits) == (3, 3)
        # Steel's, evicted, are derived again, and come out the same.
        assert read(steel) == expected[steel]
        assert walked()[3] == "steel"


def test_two_ledgers_in_one_process_never_share_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with running(tmp_path / "a") as a, running(tmp_path / "b") as b:
        walks = Walks(monkeypatch)
        deps = {}
        for node, root in ((a, "steel"), (b, "copper")):
            with LedgerClient(node.target, timeout=10) as client:
                net = Net()
                for e in net.setup():
                    client.submit(e)
                _publish_graph(client, net, root, 120)
                deps[root] = client.submit(net.deprecate("STEEL", root)).index
        assert deps["steel"] == deps["copper"]  # the same index in both logs
        index = deps["steel"]
        expected_a, expected_b = _uncached(a, index), _uncached(b, index)
        assert expected_a != expected_b
        walks.calls.clear()
        for _ in range(2):
            assert _entry_events(a.target, index, index, len(expected_a)) == expected_a
            assert _entry_events(b.target, index, index, len(expected_b)) == expected_b
        assert sorted(walks.calls) == sorted([(pf_uuid("steel"), index), (pf_uuid("copper"), index)])


def test_a_walk_that_fails_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with running(tmp_path / "ledger") as node, LedgerClient(node.target, timeout=10) as client:
        net = Net()
        for e in net.setup():
            client.submit(e)
        _publish_graph(client, net, "steel", 200)
        dep = client.submit(net.deprecate("STEEL", "steel"))
        expected = _uncached(node, dep.index)
        cache = _cache(node)

        def fail_the_first(n: int) -> None:
            if n == 1:
                # Fail once the other reader waits for this walk: it must
                # not take the failure as its answer, nor wait for ever.
                _wait_until(lambda: cache.stats().shared >= 1)
                raise LedgerError("injected: the read failed")

        walks = Walks(monkeypatch, before=fail_the_first)
        got = _in_threads(2, lambda: _entry_events(node.target, dep.index, dep.index, len(expected)))
        failed = [r for r in got if isinstance(r, Exception)]
        # The node reports no detail of an unexpected failure.
        assert len(failed) == 1 and isinstance(failed[0], LedgerError) and "INTERNAL" in str(failed[0])
        assert [r for r in got if not isinstance(r, Exception)] == [expected]
        # The waiting reader derived it again, and that result is kept.
        assert _entry_events(node.target, dep.index, dep.index, len(expected)) == expected
        assert walks.calls == [(pf_uuid("steel"), dep.index)] * 2
        assert (cache.stats().derived, cache.stats().hits) == (2, 1)
