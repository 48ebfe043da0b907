"""Group commit under concurrency, back-pressure, deadlines and shutdown."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from client.errors import DeadlineExceeded, Unavailable
from client.sdk import LedgerClient
from ledger.errors import LedgerError, NotFound, Pushback
from ledger.log import Ledger
from ledger.records.build import org_spec
from node.committer import GroupCommitter
from tests.test_node_support import Net, RunningNode, key, open_ledger


def registrations(net: Net, n: int, prefix: str = "ORG") -> list[bytes]:
    return [
        net.op("org.register", "AUTH", org_spec(f"{prefix}{i:04d}", f"Org {i}", ["supplier"], [key(f"{prefix}{i}")]))
        for i in range(n)
    ]


def slow_down(led: Ledger, seconds: float) -> threading.Event:
    """Make every ledger.submit take ``seconds`` longer; the event is set when one starts."""
    started = threading.Event()
    real = led.submit

    def submit(*args: Any, **kwargs: Any) -> Any:
        started.set()
        time.sleep(seconds)
        return real(*args, **kwargs)

    led.submit = submit  # type: ignore[method-assign]
    return started


@pytest.fixture
def led(tmp_path: Path) -> Iterator[Ledger]:
    ledger = open_ledger(tmp_path / "ledger")
    ledger.append(Net().setup()[:1])
    yield ledger
    ledger.close()


def test_concurrent_submitters_get_distinct_durable_indexes(led: Ledger) -> None:
    node = RunningNode(led)
    try:
        envelopes = registrations(Net(), 240)
        with LedgerClient(node.target, timeout=30) as client, ThreadPoolExecutor(24) as pool:
            results = list(pool.map(client.submit, envelopes))
            again = list(pool.map(client.submit, envelopes[:24]))
    finally:
        node.stop()
    indexes = [r.index for r in results]
    assert sorted(indexes) == list(range(1, 241))
    assert all(led.entry(r.index) == e for r, e in zip(results, envelopes))
    assert [(r.index, r.duplicate) for r in again] == [(r.index, True) for r in results[:24]]
    assert led.size == 241


def test_concurrent_submissions_are_grouped_into_few_transactions(led: Ledger) -> None:
    slow_down(led, 0.3)

    async def run() -> list[Any]:
        committer = GroupCommitter(led, max_batch=1000)
        await committer.start()
        try:
            return await asyncio.gather(*(committer.submit(e) for e in registrations(Net(), 60)))
        finally:
            await committer.close()

    height = led.head.height
    results = asyncio.run(run())
    assert sorted(r.index for r, _ in results) == list(range(1, 61))
    # 60 concurrent submissions: a few groups, not 60 transactions.
    assert led.head.height - height <= 4


def test_full_queue_pushes_back_with_a_retry_hint(led: Ledger) -> None:
    slow_down(led, 0.4)
    node = RunningNode(led, max_pending=3)
    try:
        envelopes = registrations(Net(), 12)
        with LedgerClient(node.target, timeout=30, retries=0) as client, ThreadPoolExecutor(12) as pool:

            def attempt(e: bytes) -> Any:
                try:
                    return client.submit(e)
                except Pushback as exc:
                    return exc

            outcomes = list(pool.map(attempt, envelopes))
    finally:
        node.stop()
    refused = [o for o in outcomes if isinstance(o, Pushback)]
    accepted = [o for o in outcomes if not isinstance(o, Pushback)]
    assert refused and accepted
    assert all(0 < p.retry_after <= 5 for p in refused)
    assert led.size == 1 + len(accepted)


def test_sdk_retries_pushback_until_accepted(led: Ledger) -> None:
    slow_down(led, 0.1)
    node = RunningNode(led, max_pending=2)
    try:
        with LedgerClient(node.target, timeout=30, retries=20, backoff=0.05) as client, ThreadPoolExecutor(8) as pool:
            results = list(pool.map(client.submit, registrations(Net(), 8)))
    finally:
        node.stop()
    assert sorted(r.index for r in results) == list(range(1, 9))


def test_a_caller_whose_deadline_passed_is_left_out(led: Ledger) -> None:
    started = slow_down(led, 1.0)
    node = RunningNode(led)
    first, late = registrations(Net(), 2)
    try:
        with LedgerClient(node.target, timeout=10, retries=0) as client, ThreadPoolExecutor(1) as pool:
            pending = pool.submit(client.submit, first)
            assert started.wait(5)
            with pytest.raises(DeadlineExceeded):
                client.submit(late, timeout=0.2)
            assert pending.result().index == 1
            time.sleep(0.2)
    finally:
        node.stop()
    assert led.size == 2
    with pytest.raises(NotFound):
        led.index_of(late)


def test_graceful_shutdown_answers_the_batch_in_flight(led: Ledger) -> None:
    started = slow_down(led, 0.5)
    node = RunningNode(led)
    envelope = registrations(Net(), 1)[0]
    with LedgerClient(node.target, timeout=10, retries=0) as client, ThreadPoolExecutor(1) as pool:
        pending = pool.submit(client.submit, envelope)
        assert started.wait(5)
        node.stop(grace=5)
        assert pending.result(10).index == 1
        with pytest.raises(Unavailable):
            client.checkpoint()
    assert led.entry(1) == envelope


def test_shutdown_without_grace_still_makes_the_batch_durable(led: Ledger) -> None:
    started = slow_down(led, 0.5)
    node = RunningNode(led)
    envelope = registrations(Net(), 1)[0]
    with LedgerClient(node.target, timeout=10, retries=0) as client, ThreadPoolExecutor(1) as pool:
        pending = pool.submit(client.submit, envelope)
        assert started.wait(5)
        node.stop(grace=0)
        with pytest.raises(LedgerError):
            pending.result(10)  # the caller was cut off ...
    assert led.index_of(envelope) == 1  # ... but its entry is in the log
