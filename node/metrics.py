"""Prometheus metrics of one node, in a registry of its own (so that several
in-process nodes, as in tests, do not collide), optionally served over HTTP."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

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
