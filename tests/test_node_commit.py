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
from node.sigpool import SignaturePool
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


def test_a_preparation_thread_takes_every_queued_chunk_in_one_round_trip(led: Ledger) -> None:
    # Under RPC load each event-loop pass admits a few envelopes, each pass
    # its own chunk. While the one thread is busy, chunks queue up; it must
    # then send them all to the signature pool together, not one at a time.
    pool = SignaturePool(1)
    calls: list[int] = []
    first_sent, go_on = threading.Event(), threading.Event()
    real_submit = pool.submit

    def submit(entries: list[bytes]) -> Any:
        calls.append(len(entries))
        if len(calls) == 1:
            first_sent.set()
            go_on.wait(10)
        return real_submit(entries)

    pool.submit = submit  # type: ignore[method-assign]
    envelopes = registrations(Net(), 6)

    async def run() -> list[Any]:
        committer = GroupCommitter(led, prepare_threads=1, signature_pool=pool)
        await committer.start()
        try:
            first = asyncio.ensure_future(committer.submit(envelopes[0]))
            await asyncio.get_running_loop().run_in_executor(None, first_sent.wait, 10)
            rest = []
            for e in envelopes[1:]:  # one event-loop pass, so one chunk, each
                rest.append(asyncio.ensure_future(committer.submit(e)))
                await asyncio.sleep(0)
            await until(lambda: committer._chunks.qsize() == len(rest))
            go_on.set()
            return await asyncio.gather(first, *rest)
        finally:
            await committer.close()

    try:
        results = asyncio.run(run())
    finally:
        pool.close()
    assert calls == [1, 5]
    assert sorted(r.index for r, _ in results) == list(range(1, 7))


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


# -- the in-flight bounds ----------------------------------------------------


async def until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


def test_committer_window_holds_under_a_flood(led: Ledger) -> None:
    """A flood many times the window: the committer never holds more than
    ``max_pending``, refuses the rest with a retry hint, and every
    submission it acknowledged is in the log at the index it was given."""
    slow_down(led, 0.02)
    envelopes = registrations(Net(), 400)
    most = 0

    async def run() -> tuple[list[Any], list[Pushback]]:
        nonlocal most
        committer = GroupCommitter(led, max_pending=25, max_batch=10)
        real_admit = committer._admit

        def admit(n: int, nbytes: int) -> None:
            nonlocal most
            real_admit(n, nbytes)
            most = max(most, committer.pending)

        committer._admit = admit  # type: ignore[method-assign]
        await committer.start()
        try:
            outcomes = await asyncio.gather(*(committer.submit(e) for e in envelopes), return_exceptions=True)
        finally:
            await committer.close()
        return [o for o in outcomes if not isinstance(o, Pushback)], [o for o in outcomes if isinstance(o, Pushback)]

    accepted, refused = asyncio.run(run())
    assert most == 25
    assert len(accepted) == 25 and len(refused) == 375  # all arrived at once: the window, then pushback
    assert all(0 < p.retry_after <= 5 for p in refused)
    assert led.size == 1 + len(accepted)
    for (receipt, _size), envelope in zip(accepted, envelopes[:25]):
        assert led.entry(receipt.index) == envelope and not receipt.duplicate


def test_committer_window_back_pressure_loses_nothing(led: Ledger) -> None:
    """Clients that retry after their hint all get in, each exactly once."""
    slow_down(led, 0.01)
    envelopes = registrations(Net(), 150)

    async def run() -> tuple[list[Any], int]:
        committer = GroupCommitter(led, max_pending=8, max_batch=4)
        refusals = 0
        await committer.start()

        async def client(envelope: bytes) -> Any:
            nonlocal refusals
            while True:
                try:
                    return await committer.submit(envelope)
                except Pushback as exc:
                    refusals += 1
                    await asyncio.sleep(min(exc.retry_after, 0.02))

        try:
            return await asyncio.gather(*(client(e) for e in envelopes)), refusals
        finally:
            await committer.close()

    results, refusals = asyncio.run(run())
    assert refusals > 0
    assert sorted(r.index for r, _ in results) == list(range(1, 151))
    assert all(led.entry(r.index) == e for (r, _), e in zip(results, envelopes))
    assert led.size == 151


def test_committer_counts_a_caller_that_went_away_until_it_is_passed_over(led: Ledger) -> None:
    """A caller's deadline does not free its room: its envelope is still
    held (and prepared) until the head of the order passes it, so a flood of
    callers that time out cannot grow the queue past the window."""
    started = slow_down(led, 0.5)
    first, *late = registrations(Net(), 6)

    async def run() -> None:
        committer = GroupCommitter(led, max_pending=5)
        await committer.start()
        try:
            group = asyncio.ensure_future(committer.submit(first))
            while not started.is_set():
                await asyncio.sleep(0.005)
            for envelope in late[:4]:
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(committer.submit(envelope), 0.01)
            assert committer.pending == 5
            with pytest.raises(Pushback):
                await committer.submit(late[4])
            receipt, _ = await group
            assert receipt.index == 1
            # Once the group is done, the head passes the four that went away.
            await until(lambda: committer.pending == 0)
            assert committer.pending_bytes == 0
            assert (await committer.submit(late[4]))[0].index == 2
        finally:
            await committer.close()

    asyncio.run(run())
    assert led.size == 3
    for envelope in late[:4]:
        with pytest.raises(NotFound):
            led.index_of(envelope)


def test_committer_frees_the_room_of_a_rejected_envelope_when_it_answers(led: Ledger) -> None:
    started = slow_down(led, 0.5)
    first, second = registrations(Net(), 2)

    async def run() -> None:
        committer = GroupCommitter(led, max_pending=2)
        await committer.start()
        try:
            group = asyncio.ensure_future(committer.submit(first))
            while not started.is_set():
                await asyncio.sleep(0.005)
            with pytest.raises(LedgerError):
                await committer.submit(b"not an envelope")
            # Answered while the group still commits, and no longer held.
            assert not group.done() and committer.pending == 1
            assert (await committer.submit(second))[0].index == 2
            await group
        finally:
            await committer.close()

    asyncio.run(run())


def test_committer_bounds_the_bytes_held(led: Ledger) -> None:
    """``max_pending_bytes`` bounds the envelope bytes held whatever their
    count; an envelope larger than the whole budget still gets into an
    empty committer rather than never."""
    started = slow_down(led, 0.3)
    envelopes = registrations(Net(), 8)
    budget = 3 * max(map(len, envelopes))

    async def run() -> None:
        committer = GroupCommitter(led, max_pending=100, max_pending_bytes=budget)
        await committer.start()
        try:
            outcomes = await asyncio.gather(*(committer.submit(e) for e in envelopes), return_exceptions=True)
            refused = [o for o in outcomes if isinstance(o, Pushback)]
            assert len(refused) == len(envelopes) - 3
            await until(lambda: committer.pending == 0)
            assert committer.pending_bytes == 0
            # Alone, an envelope over the budget is admitted (and here
            # rejected: it is no envelope at all).
            started.clear()
            with pytest.raises(LedgerError):
                await committer.submit(b"x" * (budget + 1))
            # Behind a held one, it is refused.
            group = asyncio.ensure_future(committer.submit(envelopes[3]))
            while not started.is_set():
                await asyncio.sleep(0.005)
            with pytest.raises(Pushback):
                await committer.submit(b"x" * (budget + 1))
            await group
        finally:
            await committer.close()

    asyncio.run(run())
    assert led.size == 5


def test_committer_bounds_must_be_positive(led: Ledger) -> None:
    with pytest.raises(ValueError):
        GroupCommitter(led, max_pending_bytes=0)
