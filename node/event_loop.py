"""The node's event loop: uvloop where it is installed, else asyncio's own.

The event loop is a large share of the node's one GIL under RPC load (the
README's Benchmarks), and uvloop runs the same asyncio code on libuv with
its scheduling in C. Measured on this 2-core machine, the node in-process,
interleaved runs: gRPC ingest (``loadtests.bench --only grpc``, 128
clients) 1,792 and 1,788 submissions/s against 1,544 and 1,573/s, and node
CPU per ``GetCheckpoint`` call about a fifth lower. grpc.aio, aiohttp (the
witness endpoint) and aetcd run on it unchanged.

``serve --event-loop asyncio`` (or :data:`ASYNCIO`) keeps the standard loop,
should a platform or library ever disagree with uvloop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["ASYNCIO", "DEFAULT", "UVLOOP", "available", "new_event_loop", "run"]

T = TypeVar("T")

UVLOOP = "uvloop"
ASYNCIO = "asyncio"

_uvloop: Any
try:
    import uvloop as _uvloop
except ImportError:  # pragma: no cover - a dependency everywhere but Windows
    _uvloop = None

#: What a node runs on unless told otherwise.
DEFAULT = UVLOOP if _uvloop is not None else ASYNCIO


def available() -> list[str]:
    """The loops this interpreter can run, the default first."""
    return [UVLOOP, ASYNCIO] if _uvloop is not None else [ASYNCIO]


def new_event_loop(kind: str = DEFAULT) -> asyncio.AbstractEventLoop:
    """A new event loop of ``kind`` (:data:`UVLOOP` or :data:`ASYNCIO`)."""
    if kind == UVLOOP:
        if _uvloop is None:
            raise ValueError("uvloop is not installed")
        loop: asyncio.AbstractEventLoop = _uvloop.new_event_loop()
        return loop
    if kind == ASYNCIO:
        return asyncio.new_event_loop()
    raise ValueError(f"unknown event loop {kind!r} (one of {', '.join(available())})")


def run(main: Coroutine[Any, Any, T], kind: str = DEFAULT) -> T:
    """:func:`asyncio.run` on a loop of ``kind``."""
    with asyncio.Runner(loop_factory=lambda: new_event_loop(kind)) as runner:
        return runner.run(main)
