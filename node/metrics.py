"""Prometheus metrics of one node, in a registry of its own (so that several
in-process nodes, as in tests, do not collide), optionally served over HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["NodeMetrics"]


class NodeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.submissions = Counter(
            "carbonledger_submissions", "Envelopes submitted, by outcome (accepted, duplicate, rejected).",
            ["outcome"], registry=self.registry,
        )  # fmt: skip
        self.pushbacks = Counter(
            "carbonledger_pushbacks", "Submissions refused because the queue was full.", registry=self.registry
        )
        self.batch_size = Histogram(
            "carbonledger_commit_batch_size", "Entries per group commit.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048), registry=self.registry,
        )  # fmt: skip
        self.commit_latency = Histogram(
            "carbonledger_commit_latency_seconds", "Time to make one group durable.", registry=self.registry
        )
        self.queue_depth = Gauge(
            "carbonledger_queue_depth", "Submissions admitted and not yet answered.", registry=self.registry
        )
        self.tree_size = Gauge("carbonledger_tree_size", "Entries in the log.", registry=self.registry)
        self._http: Any = None

    def watch_event_cache(self, stats: Callable[[], Any], max_refs: int) -> None:
        """Report the event cache's ``stats()`` (a
        :class:`node.event_cache.CacheStats`) at every scrape, and its bound."""
        self.registry.register(_EventCacheCollector(stats, max_refs))

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` on ``addr:port`` (0 picks a port); return the port."""
        self._http, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return int(self._http.server_port)

    @property
    def port(self) -> int | None:
        """The port ``/metrics`` is served on, None if it is not."""
        return int(self._http.server_port) if self._http is not None else None

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


class _EventCacheCollector(Collector):
    """The event cache's counts, read when scraped: it keeps them under its
    own lock, and a second set of counters would be a second truth."""

    def __init__(self, stats: Callable[[], Any], max_refs: int) -> None:
        self._stats = stats
        self._max_refs = max_refs

    def collect(self) -> Iterator[Metric]:
        s = self._stats()
        prefix = "carbonledger_event_cache"
        yield GaugeMetricFamily(f"{prefix}_entries", "Entries whose derived events are kept.", value=s.entries)
        yield GaugeMetricFamily(f"{prefix}_refs", "Refs held by the kept events (about 100 bytes each).", value=s.refs)
        yield GaugeMetricFamily(f"{prefix}_max_refs", "Most refs the kept events may hold.", value=self._max_refs)
        for name, value, text in (
            ("hits", s.hits, "Answers from kept events."),
            ("derived", s.derived, "Downstream walks run to derive an entry's events."),
            ("shared", s.shared, "Readers that waited for another reader's walk of the same entry."),
            ("evicted", s.evicted, "Kept entries dropped to stay within the bound."),
        ):
            yield CounterMetricFamily(f"{prefix}_{name}", text, value=value)
