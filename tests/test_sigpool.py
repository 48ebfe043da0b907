"""Signature checks in worker processes (node.sigpool): the workers' verdicts
are exactly in-process verification's, a killed worker costs no verdict,
and a committer using the pool accepts and rejects what it did without."""

from __future__ import annotations

import asyncio
import os
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.envelope import Envelope, EnvelopeSignature, encode_envelope, parse_envelope
from ledger.errors import PermissionDenied
from ledger.records.build import org_spec, signed_op
from node import sigpool
from node.committer import GroupCommitter
from node.sigpool import SignaturePool, verify_entries
from tests.test_node_support import Net, key, open_ledger

SUPPLIER, AUDITOR = key("SUPPLIER"), key("AUDITOR")


def _flip_last_signature(entry: bytes) -> bytes:
    env = parse_envelope(entry)
    *rest, last = env.signatures
    flipped = EnvelopeSignature(last.keyid, bytes([last.sig[0] ^ 1]) + last.sig[1:])
    return encode_envelope(Envelope(env.payload_type, env.payload, (*rest, flipped)))


def _entries() -> list[bytes]:
    net = Net()
    body = org_spec("NEW", "New Co.", ["supplier"], [key("NEW")])
    two = signed_op("org.register", "AUTH", net.now, body, [SUPPLIER, AUDITOR])
    return [
        two,  # both verify
        _flip_last_signature(two),  # the first only
        _flip_last_signature(signed_op("org.register", "AUTH", net.now, body, [SUPPLIER])),  # none
        b"not json",
        b"{}",
        b"",
    ]


@pytest.fixture
def pool() -> Iterator[SignaturePool]:
    p = SignaturePool(2)
    assert p.wait_ready(60)
    yield p
    p.close()


def _no_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make verification in this process fail the test: what follows must be
    answered by the workers."""

    def refuse(entries: object) -> list[object]:
        raise AssertionError("verified in-process, not by a worker")

    monkeypatch.setattr(sigpool, "verify_entries", refuse)


def test_workers_answer_as_in_process_verification(pool: SignaturePool, monkeypatch: pytest.MonkeyPatch) -> None:
    entries = _entries()
    expected = verify_entries(entries)
    assert expected == [frozenset({SUPPLIER.vkey, AUDITOR.vkey}), frozenset({SUPPLIER.vkey}), frozenset(), None, None, None]
    _no_fallback(monkeypatch)
    assert pool.verify(entries) == expected
    assert pool.verify([]) == []
    # Both workers, and chunks in flight on both at once.
    first, second = pool.submit(entries[:3]), pool.submit(entries[3:])
    assert second() + first() == expected[3:] + expected[:3]


def test_a_killed_worker_costs_no_verdict_and_is_restarted(pool: SignaturePool, monkeypatch: pytest.MonkeyPatch) -> None:
    entries = _entries()
    expected = verify_entries(entries)
    monkeypatch.setattr(sigpool, "RESTART_INTERVAL", 0.0)
    killed = pool.pids()
    assert len(killed) == 2
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    for pid in killed:
        os.waitpid(pid, 0)
    # Each slot finds its worker dead and answers from this process.
    assert pool.verify(entries) == expected
    assert pool.verify(entries) == expected
    assert pool.pids() == []
    # The next chunks restart the workers, and are verified here while
    # the new workers boot; once up, the workers answer.
    assert pool.verify(entries) == expected
    assert pool.verify(entries) == expected
    assert pool.wait_ready(60)
    _no_fallback(monkeypatch)
    assert pool.verify(entries) == expected
    assert pool.verify(entries) == expected
    restarted = pool.pids()
    assert len(restarted) == 2 and not set(restarted) & set(killed)


def test_a_closed_pool_verifies_in_process(pool: SignaturePool) -> None:
    entries = _entries()
    workers = pool.pids()
    pool.close()
    assert pool.verify(entries) == verify_entries(entries)
    assert pool.pids() == []
    for pid in workers:  # the workers were told to stop and have exited
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def test_chunks_do_not_wait_for_a_worker_to_boot(monkeypatch: pytest.MonkeyPatch) -> None:
    # A worker whose interpreter is slow to come up (here: stopped before
    # it could say it is ready) must not hold a chunk: it is verified here.
    pool = SignaturePool(1)
    try:
        (pid,) = pool.pids()
        os.kill(pid, signal.SIGSTOP)
        entries = _entries()
        expected = verify_entries(entries)
        assert not pool.wait_ready(0.2)
        assert pool.verify(entries) == expected
        os.kill(pid, signal.SIGCONT)
        assert pool.wait_ready(60)
        _no_fallback(monkeypatch)
        assert pool.verify(entries) == expected
        assert pool.pids() == [pid]
    finally:
        pool.close()


@pytest.mark.parametrize("when", ["before it is up", "mid-request"])
def test_a_worker_whose_node_went_away_exits_quietly(when: str) -> None:
    # A pool closed at once, or a node that died mid-request: the worker
    # must end without a traceback on the node's stderr.
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "node.sigpool"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    if when == "before it is up":
        proc.stdout.close()  # the worker's first write, its ready byte, fails
        proc.stdin.close()
    else:
        assert proc.stdout.read(1) == b"R"
        proc.stdin.write(struct.pack(">I", 2))  # two entries promised, half of one sent
        proc.stdin.write(struct.pack(">I", 10) + b"abc")
        proc.stdin.close()
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert proc.wait(60) == 0
    assert err == b""
    proc.stderr.close()
    if not proc.stdout.closed:
        proc.stdout.close()


def test_pool_needs_a_process() -> None:
    with pytest.raises(ValueError, match="at least one process"):
        SignaturePool(0)


def test_committer_with_the_pool_accepts_and_rejects_as_without(
    tmp_path: Path, pool: SignaturePool, monkeypatch: pytest.MonkeyPatch
) -> None:
    net = Net()
    good = net.setup()
    mallory = net.op("org.register", "AUTH", org_spec("M", "M", ["supplier"], [key("M")]), signer=key("MALLORY"))
    forged = _flip_last_signature(net.op("org.register", "AUTH", org_spec("F", "F", ["supplier"], [key("F")])))
    _no_fallback(monkeypatch)
    led = open_ledger(tmp_path / "ledger")
    try:

        async def run() -> list[object]:
            committer = GroupCommitter(led, signature_pool=pool, prepare_threads=1)
            await committer.start()
            try:
                return await committer.submit_many([*good, mallory, forged])
            finally:
                await committer.close()

        outcomes = [result for result, _ in asyncio.run(run())]
    finally:
        size = led.size
        led.close()
    assert size == len(good)
    assert [getattr(r, "index", None) for r in outcomes[: len(good)]] == list(range(len(good)))
    assert isinstance(outcomes[-2], PermissionDenied) and outcomes[-2].rule == "not_signed_by_org"
    assert isinstance(outcomes[-1], PermissionDenied) and outcomes[-1].rule == "no_valid_signature"
