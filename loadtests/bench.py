"""The performance harness: figures and ratios against this machine's limit.

Run ``python -m loadtests.bench`` (``--quick`` for a small run). In one run
it measures and prints:

1. **the limit**: raw Ed25519 verification of 200-byte messages, on 1 and 2
   threads, with ``cryptography`` (OpenSSL) and PyNaCl (libsodium). Every
   signed entry costs at least one verification, so the fastest 2-thread rate
   bounds what any ingest path can do on this machine;
2. **ingest, in-process**: durably committed signed entries/s through the
   node's batch path (:class:`node.committer.GroupCommitter` and a
   :class:`ledger.log.Ledger` on LMDB, fsync'd groups), on a realistic mix of
   operations (GEC issue/transfer/retire, CCER transfer/cancel, footprint
   publications with components and claims, attestations; the workload of
   ``loadtests.bench_state``), submitted one envelope per call like RPCs, in
   order, with a bounded window in flight;
3. **ingest, gRPC on loopback**: the same path behind a real gRPC server in
   this process, driven by concurrent ``grpc.aio`` clients in a child
   process, each an independent holder submitting its own operations one at
   a time (``loadtests._scenario``); beside it, the floor: the same clients
   against a bare ``grpc.aio`` server whose ``Submit`` answers at once (its
   calls/s and server CPU per call, what gRPC alone costs here);
4. **label verification**: offline :func:`client.label.verify_label` of a
   3-level supply chain (steel -> door -> car) with attestations and GEC/CCER
   claims, as a ratio to the raw verifications it needs;
5. **proof serving**: inclusion proofs/s and p99 latency at 10^4, 10^5, 10^6
   entries, ours (stored tiles, also as the tlog-proof a node serves) beside
   pymerkle's SqliteTree in the same run, on the same challenges. Ours answers
   20,000 challenges per size on a freshly opened ledger, the sizes taking
   turns of 500 (:func:`loadtests._harness.time_interleaved`). Both choices
   are about the p99 ratio the target judges. Timed one size after another,
   the p99s of this shared machine moved by 1.5x from run to run with the
   same code, more than the sizes differ. And the p99 of 2,000 calls is their
   20th slowest: at 10^6 about one proof in five of the first 2,000 takes a
   page fault mapping its tile (at 10^4 none do after the first few calls),
   so it timed the one-time mapping of the ledger, not a proof. pymerkle
   answers its first 2,000, as in ``loadtests.bench_merkle``;
6. **a 10^6-entry node**: the realistic workload ingested through the batch
   path in a child process set up as ``carbonledger serve`` sets up its own
   (``node.memory``: allocator thresholds, the store's mapped-page budget;
   the frames are read from a file as they are submitted, so the child holds
   the workload's window, not the workload), its sustained rate, CPU and
   peak RSS, ledger bytes
   on disk per entry; then, on that ledger, a node started in a child
   process (time to open the ledger and answer its first RPC, no replay of
   the log), ``carbonledger serve`` launched five times (time from launch to
   its first answer: interpreter, imports, opening, binding), and one
   ``carbonledger serve`` answering random tlog-proofs and entries (its peak
   RSS). Peak RSS is the kernel's VmHWM of the node's process; the split of
   the resident set into anonymous memory and file-backed pages (libraries,
   LMDB's map of the ledger) is sampled every 0.1 s. ``--big-dir`` keeps
   the ledger (and its build figures) for later runs.

``--only`` runs some of these (``--only big-ingest``: the 10^6 ingest of
section 6 alone, its rate, CPU and peak RSS; ``--frames`` keeps the
generated entries for the next run). Ratios are against figures of the same
run; the targets of issue 5 are printed as PASS/FAIL lines. Results also go
to ``loadtests/results/bench.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import random
import resource
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Self

from loadtests._harness import (
    Bounded,
    Check,
    LatencyStats,
    cpu_seconds,
    format_rate,
    format_ratio,
    format_table,
    format_us,
    machine_info,
    ratio,
    time_each,
    time_interleaved,
    write_json,
)

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
RESULTS_PATH = ROOT / "loadtests" / "results" / "bench.json"

# Issue 5's targets.
INGEST_TARGET = 0.5  # in-process ingest / fastest 2-thread raw verification
PROOF_GROWTH_LIMIT = 1.5  # proof p99 at the largest size / at the smallest
RSS_LIMIT_MB = 300.0
STARTUP_LIMIT_S = 1.0

MESSAGE_BYTES = 200

#: What ``--only`` may name: sections 1-6, or of section 6 the ingest alone.
SECTIONS = ("limit", "ingest", "grpc", "labels", "proofs", "big", "big-ingest")


# -- configuration --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Config:
    quick: bool
    limit_seconds: float
    ingest_ops: int
    ingest_window: int
    grpc_holders: int
    grpc_ops: int
    label_bound: Bounded
    proof_sizes: tuple[int, ...]
    proofs: Bounded
    big: int
    big_dir: Path | None
    frames: Path | None
    sections: tuple[str, ...]
    workdir: Path | None
    json_path: Path
    seed: int


def parse_args(argv: Sequence[str] | None) -> Config:
    p = argparse.ArgumentParser(prog="python -m loadtests.bench", description=(__doc__ or "").split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes and short runs, for a smoke run")
    p.add_argument("--ingest-ops", type=int, help="operations for in-process ingest (default 30000, quick 2000)")
    p.add_argument("--window", type=int, default=2000, help="submissions in flight, in-process (default 2000)")
    p.add_argument("--grpc-ops", type=int, help="submissions over gRPC (default 20000, quick 1000)")
    p.add_argument("--grpc-holders", type=int, help="concurrent gRPC clients (default 128, quick 16)")
    p.add_argument("--proof-sizes", type=_sizes, help="tree sizes for proofs (default 10000,100000,1000000)")
    p.add_argument("--proofs", type=int, help="proof challenges per size (default 20000, quick 200)")
    p.add_argument("--big", type=_size, help="entries of the node-scale ledger (default 1000000, quick 5000; 0 skips)")
    p.add_argument("--big-dir", type=Path, help="node directory for the node-scale ledger: built there and kept, "
                   "or reused (with its recorded build figures) if an earlier run built it")
    p.add_argument("--frames", type=Path, help="file of the node-scale workload's entries: generated there and "
                   "kept, or reused if it exists")
    p.add_argument("--only", type=_sections, default=SECTIONS[:-1],
                   help=f"comma-separated sections to run, of {','.join(SECTIONS)} (default: all; big-ingest "
                   "is the ingest of big without serving)")
    p.add_argument("--workdir", type=Path, help="where temporary ledgers go (default: system temp)")
    p.add_argument("--json", type=Path, default=RESULTS_PATH, help=f"results file (default {RESULTS_PATH})")
    p.add_argument("--seed", type=int, default=20240601)
    a = p.parse_args(argv)
    q = bool(a.quick)
    return Config(
        quick=q,
        limit_seconds=0.3 if q else 2.0,
        ingest_ops=a.ingest_ops or (2_000 if q else 30_000),
        ingest_window=a.window,
        grpc_holders=a.grpc_holders or (16 if q else 128),
        grpc_ops=a.grpc_ops or (1_000 if q else 20_000),
        label_bound=Bounded(20 if q else 500, 2.0 if q else 10.0),
        proof_sizes=tuple(sorted(set(a.proof_sizes or ((1_000, 10_000) if q else (10_000, 100_000, 1_000_000))))),
        # 20,000 challenges: see section 5 of the module's docstring.
        proofs=Bounded(a.proofs or (200 if q else 20_000), 3.0 if q else 20.0),
        big=(5_000 if q else 1_000_000) if a.big is None else a.big,
        big_dir=a.big_dir,
        frames=a.frames,
        sections=a.only,
        workdir=a.workdir,
        json_path=a.json,
        seed=a.seed,
    )


def _size(text: str) -> int:
    try:
        return int(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}") from None


def _sections(text: str) -> tuple[str, ...]:
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = sorted(set(names) - set(SECTIONS))
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"sections are {', '.join(SECTIONS)}; not {', '.join(unknown) or 'none'}")
    return names


def _sizes(text: str) -> tuple[int, ...]:
    sizes = tuple(_size(s) for s in text.split(",") if s.strip())
    if not sizes or min(sizes) < 2:
        raise argparse.ArgumentTypeError("sizes must be at least 2")
    return sizes


def _log(msg: str) -> None:
    # Progress goes to stderr so that stdout is the report alone.
    print(msg, file=sys.stderr, flush=True)


def memory_mb(pid: int | str = "self") -> dict[str, float]:
    """A process's memory now, from /proc/PID/status (empty elsewhere):
    ``VmHWM`` its peak resident set, ``VmRSS`` the resident set now, split
    into ``RssAnon`` (heap, stacks) and ``RssFile`` (file-backed pages:
    libraries, and LMDB's memory map of the ledger)."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return out


def peak_rss_mb() -> float:
    """This process's peak resident set size, as the kernel counts it for
    this process's own address space (VmHWM).

    Not ``getrusage().ru_maxrss`` where VmHWM exists: the kernel carries
    ru_maxrss across fork and exec, so a child started by a large parent
    reports the parent's peak (a child of a 511 MB process reported 511 MB
    of ru_maxrss and 12 MB of VmHWM), which is how the serving node's
    "589 MB" came about.
    """
    hwm = memory_mb().get("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def signature_pool() -> Iterator[Any]:
    """The node's signature pool, as ``carbonledger serve`` sizes it (one
    worker per CPU), started and warm before the clock starts: a node starts
    its workers at start-up, not on its first submission."""
    from node.sigpool import SignaturePool

    pool = SignaturePool(len(os.sched_getaffinity(0)))
    try:
        if not pool.wait_ready(60):
            raise BenchError("the node's signature workers did not start within 60 s")
        yield pool
    finally:
        pool.close()


class MemorySampler:
    """Samples a process's memory every ``interval`` seconds in a thread, to
    tell what the resident set was made of at its largest (VmHWM gives the
    peak, not its split). Use as a context manager; read :meth:`result`."""

    def __init__(self, pid: int | str = "self", interval: float = 0.1) -> None:
        self._pid = pid
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)
        self.at_peak: dict[str, float] = {}
        self.max_anon_mb = 0.0

    def _run(self) -> None:
        while True:
            now = memory_mb(self._pid)
            if now.get("VmRSS", 0.0) > self.at_peak.get("VmRSS", -1.0):
                self.at_peak = now
            self.max_anon_mb = max(self.max_anon_mb, now.get("RssAnon", 0.0))
            if self._stop.wait(self._interval):
                return

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def result(self) -> dict[str, Any]:
        """The sample with the largest resident set (its anonymous and
        file-backed parts), and the largest anonymous part seen."""
        return {"sampled_peak_mb": self.at_peak, "max_anon_mb": self.max_anon_mb}


# -- 1. the limit: raw Ed25519 verification --------------------------------


def _signed_messages(count: int = 256) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    from ledger.keys import Signer

    signer = Signer.from_seed("bench", bytes(range(32)))
    rng = random.Random(1)
    msgs = [bytes(rng.getrandbits(8) for _ in range(MESSAGE_BYTES)) for _ in range(count)]
    return signer.public_key, [(m, signer.sign(m)) for m in msgs]


def _verify_loop(lib: str, pub: bytes, pairs: list[tuple[bytes, bytes]]) -> Callable[[float], int]:
    """A function that verifies until a deadline and returns how many it did."""
    if lib == "cryptography":
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        key = Ed25519PublicKey.from_public_bytes(pub)

        def run(deadline: float) -> int:
            n, clock, verify = 0, time.perf_counter, key.verify
            while clock() < deadline:
                for m, s in pairs:
                    verify(s, m)
                n += len(pairs)
            return n

        return run
    from nacl.bindings import crypto_sign_open

    def run_nacl(deadline: float) -> int:
        n, clock = 0, time.perf_counter
        while clock() < deadline:
            for m, s in pairs:
                crypto_sign_open(s + m, pub)
            n += len(pairs)
        return n

    return run_nacl


def verify_rate(lib: str, threads: int, seconds: float) -> float:
    """Verifications/s of 200-byte messages by ``threads`` threads of ``lib``."""
    pub, pairs = _signed_messages()
    run = _verify_loop(lib, pub, pairs)
    run(time.perf_counter() + min(0.1, seconds / 4))  # warm up
    counts = [0] * threads
    barrier = threading.Barrier(threads + 1)
    holder: dict[str, float] = {}

    def worker(i: int) -> None:
        barrier.wait()
        counts[i] = run(holder["deadline"])

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    start = time.perf_counter()
    holder["deadline"] = start + seconds
    barrier.wait()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - start)


def measure_limit(seconds: float) -> dict[str, float]:
    out = {}
    for lib in ("cryptography", "pynacl"):
        for threads in (1, 2):
            out[f"{lib}/{threads}"] = verify_rate(lib, threads, seconds)
    return out


def fastest(limit: dict[str, float], threads: int) -> tuple[str, float]:
    lib = max(("cryptography", "pynacl"), key=lambda lib: limit[f"{lib}/{threads}"])
    return lib, limit[f"{lib}/{threads}"]


# -- 2. ingest in-process ----------------------------------------------------


@dataclass
class IngestResult:
    entries: int
    seconds: float
    groups: int
    latency: LatencyStats | None = None
    by_kind: dict[str, int] = field(default_factory=dict)
    #: CPU time of this process (all its threads) and of the node's
    #: signature workers over the run, where the node runs in this process.
    cpu_seconds: float | None = None
    #: The signature workers' part of ``cpu_seconds``.
    worker_cpu_seconds: float | None = None

    @property
    def rate(self) -> float:
        return self.entries / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "latency"}
        d["entries_per_s"] = self.rate
        d["mean_group"] = self.entries / self.groups if self.groups else None
        d["entries_per_cpu_s"] = self.entries / self.cpu_seconds if self.cpu_seconds else None
        d["latency"] = self.latency.as_dict() if self.latency else None
        return d


class BenchError(Exception):
    """A correctness check failed: the figures of this run mean nothing."""


def workload_entries(n: int) -> list[bytes]:
    """``n`` realistic signed operations, valid in order at the workload's time."""
    from loadtests.bench_state import Workload

    return [e for _, e in Workload(n).build()]


def open_fixed_clock_ledger(path: Path, **options: Any) -> Any:
    """An LMDB ledger whose block time is the workload's fixed time
    (``options`` as for ``Ledger.open``)."""
    import hashlib

    from ledger.keys import Signer
    from ledger.state import StateMachine
    from loadtests.bench_state import _FixedClockLedger

    signer = Signer.from_seed("bench.log", hashlib.sha256(b"bench.log").digest())
    return _FixedClockLedger.open(path, signer=signer, machine=StateMachine(), **options)


async def submit_in_order(
    committer: Any, entries: Iterator[bytes] | Sequence[bytes], window: int, *, keep: bool = True
) -> list[tuple[Any, float]]:
    """Submit ``entries`` one call each, in order, at most ``window`` in flight.

    Every submission is admitted when its task first runs, and tasks first
    run in creation order, so the committer sequences them in this order.
    Returns each ``(receipt, latency)`` in order (nothing unless ``keep``:
    a million receipts would dominate the memory being measured); raises on
    a rejection.
    """
    results: list[tuple[Any, float] | None] = []
    free = asyncio.Semaphore(window)
    tasks: list[asyncio.Task[None]] = []
    clock = time.perf_counter

    async def one(i: int, entry: bytes) -> None:
        t0 = clock()
        try:
            receipt, _ = await committer.submit(entry)
            if keep:
                results[i] = (receipt, clock() - t0)
        finally:
            free.release()

    for i, entry in enumerate(entries):
        await free.acquire()
        if keep:
            results.append(None)
        tasks.append(asyncio.create_task(one(i, entry)))
        if len(tasks) >= 4 * window:  # keep the list of tasks short
            done = [t for t in tasks if t.done()]
            for t in done:
                t.result()
            tasks = [t for t in tasks if not t.done()]
    await asyncio.gather(*tasks)
    return [r for r in results if r is not None]


def measure_ingest_inprocess(entries: Sequence[bytes], workdir: Path, window: int) -> IngestResult:
    """Entries/s through GroupCommitter + LMDB Ledger, every ack after its
    fsync, with the node's signature workers."""
    from node import event_loop
    from node.committer import GroupCommitter

    ledger = open_fixed_clock_ledger(workdir / "ingest")
    try:
        height = ledger.head.height

        async def run(pool: Any) -> tuple[float, float, float, list[tuple[Any, float]]]:
            committer = GroupCommitter(ledger, max_pending=window, max_batch=2_000, signature_pool=pool)
            await committer.start()
            try:
                start, cpu, workers = time.perf_counter(), time.process_time(), cpu_seconds(pool.pids())
                out = await submit_in_order(committer, entries, window)
                seconds = time.perf_counter() - start
                return seconds, time.process_time() - cpu, cpu_seconds(pool.pids()) - workers, out
            finally:
                await committer.close()

        with signature_pool() as pool:
            seconds, cpu_s, worker_cpu_s, out = event_loop.run(run(pool))
        if ledger.size != len(entries) or any(r.duplicate for r, _ in out):
            raise BenchError(f"in-process ingest: {ledger.size} entries in the log, {len(entries)} submitted")
        latency = LatencyStats.of([t for _, t in out])
        return IngestResult(
            len(entries), seconds, ledger.head.height - height, latency,
            cpu_seconds=cpu_s + worker_cpu_s, worker_cpu_seconds=worker_cpu_s,
        )  # fmt: skip
    finally:
        ledger.close()


# -- 3. ingest over gRPC -----------------------------------------------------


class NodeThread:
    """A node serving ``ledger`` on 127.0.0.1:0 from an event loop in a thread."""

    def __init__(self, ledger: Any, **kwargs: Any) -> None:
        from node import event_loop
        from node.server import create_server

        self.loop = event_loop.new_event_loop()  # the loop `carbonledger serve` runs on
        self._thread = threading.Thread(target=self.loop.run_forever, name="node-loop", daemon=True)
        self._thread.start()

        async def build() -> tuple[Any, int]:
            server, port = create_server("127.0.0.1:0", ledger, **kwargs)
            await server.start()
            return server, port

        self.server, self.port = self.run(build())
        self.target = f"127.0.0.1:{self.port}"

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.run(self.server.stop(2.0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


def measure_ingest_grpc(holders: int, total: int, workdir: Path) -> IngestResult:
    """Submissions/s over gRPC on loopback: ``holders`` concurrent clients, each
    submitting its own operations one at a time (``Submit``, one envelope).

    The node runs in this process; the clients run in a child process, as
    they would on other machines, so they do not share the node's GIL (they
    do share this machine's cores). Every envelope is signed before the
    clock starts: the clients' signing is not the node's work.
    """
    from ledger.keys import Signer
    from ledger.log import Ledger
    from ledger.state import StateMachine
    from loadtests._scenario import Network

    net = Network(holders)
    ledger = Ledger.open(workdir / "grpc", signer=Signer.generate("bench.grpc/log"), machine=StateMachine())
    ledger.submit([op.entry for op in net.setup_ops()])
    first = ledger.size
    height = ledger.head.height
    node = NodeThread(ledger)
    per_holder = max(1, total // holders)
    try:
        out = _child(["grpc-clients", node.target, str(holders), str(per_holder)])
    finally:
        node.stop()
    n = per_holder * holders
    try:
        if ledger.size - first != n or out["acknowledged"] != n:
            raise BenchError(f"gRPC ingest: {ledger.size - first} entries appended, {out['acknowledged']} acknowledged")
        groups = ledger.head.height - height
    finally:
        ledger.close()
    return IngestResult(n, out["seconds"], groups, LatencyStats(**out["latency"]), out["kinds"])


def measure_grpc_floor(holders: int, total: int) -> dict[str, Any]:
    """What a ``Submit`` call costs with no node behind it: a bare
    ``grpc.aio`` server on the node's event loop whose ``Submit`` answers at
    once, driven by the same client child as the gRPC ingest. Its calls/s
    and its CPU per call (this process: the server's threads, and nothing
    else runs while the child drives it) are the floor any gRPC ingest pays
    on this machine, before a byte is parsed."""
    from loadtests.bare_server import bare_grpc_server
    from node import event_loop

    loop = event_loop.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="bare-grpc", daemon=True)
    thread.start()

    async def start() -> tuple[Any, int]:
        server = bare_grpc_server()
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    server, port = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    per_holder = max(1, total // holders)
    try:
        cpu = time.process_time()
        out = _child(["grpc-clients", f"127.0.0.1:{port}", str(holders), str(per_holder)])
        cpu = time.process_time() - cpu
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(1.0), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
    n = per_holder * holders
    if out["acknowledged"] != n:
        raise BenchError(f"bare gRPC: {out['acknowledged']} of {n} calls answered")
    return {"calls": n, "calls_per_s": n / out["seconds"], "server_cpu_per_call_s": cpu / n,
            "latency": out["latency"]}  # fmt: skip


def _grpc_clients(target: str, holders: int, per_holder: int) -> dict[str, Any]:
    """Child: sign each holder's operations, then submit them concurrently,
    each holder one call at a time, over a few channels."""
    import grpc
    from carbonledger.v1 import log_pb2, log_pb2_grpc

    from loadtests._scenario import Network

    net = Network(holders)
    streams = [net.stream(h) for h in net.holders]
    ops = [[s.next() for _ in range(per_holder)] for s in streams]
    kinds: dict[str, int] = {}
    for lane in ops:
        for op in lane:
            kinds[op.kind] = kinds.get(op.kind, 0) + 1

    async def client(stub: Any, lane: list[Any], latencies: list[float]) -> None:
        for op in lane:
            t0 = time.perf_counter()
            await stub.Submit(log_pb2.SubmitRequest(envelope=op.entry), timeout=60)
            latencies.append(time.perf_counter() - t0)

    async def run() -> tuple[float, list[float]]:
        latencies: list[float] = []
        # A few channels, as several client machines would have.
        channels = [grpc.aio.insecure_channel(target) for _ in range(4)]
        try:
            stubs = [log_pb2_grpc.LogStub(c) for c in channels]
            await asyncio.gather(*(c.channel_ready() for c in channels))
            start = time.perf_counter()
            await asyncio.gather(*(client(stubs[i % 4], lane, latencies) for i, lane in enumerate(ops)))
            return time.perf_counter() - start, latencies
        finally:
            for c in channels:
                await c.close()

    seconds, latencies = asyncio.run(run())
    return {"seconds": seconds, "acknowledged": len(latencies), "latency": LatencyStats.of(latencies).as_dict(), "kinds": kinds}


# -- 4. label verification ---------------------------------------------------


def build_label_chain(workdir: Path) -> tuple[bytes, Any, int]:
    """A steel -> door -> car chain on an LMDB ledger: each maker retires GEC and
    claims it, the car maker also cancels CCER and claims it; VER1 attests
    all three footprints, VER2 the car too. Returns the car's label, the
    policy and how many signatures verifying it takes."""
    from client.label import parse_label
    from ledger.keys import Signer
    from ledger.log import Ledger
    from ledger.policy import parse_policy
    from ledger.state import StateMachine
    from loadtests._scenario import Network, attest_op, pact_document
    from node.label_builder import build_label

    net = Network(3)
    steel_maker, door_maker, car_maker = (net.stream(h) for h in net.holders)
    ledger = Ledger.open(workdir / "labels", signer=Signer.generate("bench.labels/log"), machine=StateMachine())
    try:
        ops = [op.entry for op in net.setup_ops()]
        ids = {}
        for name, maker, upstream in (("steel", steel_maker, None), ("door", door_maker, "steel"), ("car", car_maker, "door")):
            ops.append(maker.retire().entry)
            if name == "car":
                ops.append(maker.cancel().entry)
            pf_id = ids[name] = f"00000000-0000-4000-8000-00000000000{len(ids) + 1}"
            claims = {
                "gec": [{"start": s, "end": e} for s, e in maker.retired_gec],
                "ccer": [{"start": s, "end": e} for s, e in maker.retired_ccer],
            }
            components = [{"pfId": ids[upstream], "quantity": "2", "unit": "kilogram"}] if upstream else []
            pcf = {"steel": "2.0", "door": "10", "car": "50"}[name]
            publish = net.op("pcf.publish", maker.holder, {
                "footprint": pact_document(pf_id, maker.holder, pcf), "components": components, "claims": claims,
            }).entry  # fmt: skip
            ops.append(publish)
            ops.append(attest_op(net, "VER1", pf_id, publish).entry)
            if name == "car":
                ops.append(attest_op(net, "VER2", pf_id, publish).entry)
        results = ledger.submit(ops)
        bad = [r for r in results if isinstance(r, Exception)]
        if bad:
            raise BenchError(f"label chain rejected: {bad[0]!r}")
        label = build_label(ledger, ids["car"])
        policy = parse_policy(f"log {ledger.vkey}\nquorum none\n")
    finally:
        ledger.close()

    def signatures(node: Any) -> int:
        from ledger.envelope import parse_envelope

        entries = [node.footprint, *node.attestations, *node.retirements, *node.deprecations]
        return sum(len(parse_envelope(e.entry).signatures) for e in entries) + sum(signatures(c) for c in node.components)

    # One checkpoint signature (all proofs are against one tree) plus every
    # envelope signature in the tree.
    return label, policy, 1 + signatures(parse_label(label))


def measure_labels(workdir: Path, bound: Bounded) -> dict[str, Any]:
    from client.label import verify_label

    label, policy, needed = build_label_chain(workdir)
    stats, results = time_each(lambda _: verify_label(label, policy, require_attestation=True), range(bound.max_calls), bound)
    report = results[0][1]
    depth, node = 0, report
    while node.components:
        depth, node = depth + 1, node.components[0].label
    if depth != 2 or report.renewable_mwh <= 0 or report.offsets_tco2e <= 0 or len(report.verified_by) != 2:
        raise BenchError("label chain did not verify as a 3-level chain with claims and attestations")
    return {"label_bytes": len(label), "signatures": needed, "latency": stats.as_dict(), "per_second": stats.per_second}


# -- 5. proof serving --------------------------------------------------------


def measure_proofs(cfg: Config, workdir: Path, rng: random.Random) -> dict[str, dict[str, Any]]:
    """Inclusion proofs at each of ``cfg.proof_sizes``: ours, raw and as a
    served tlog-proof, timed in turns across the sizes (:func:`time_interleaved`)
    so that their ratio is not the machine's drift between sizes; then pymerkle
    SqliteTree (its first pass on a freshly opened tree), one size after
    another, as a reference. Every size's ledger is opened afresh before its
    proofs are timed, so the first page faults of its map are counted in."""
    from ledger import merkle
    from ledger.tlog_proof import parse_tlog_proof
    from loadtests.bench_merkle import (
        OursLmdb,
        PymerkleSqlite,
        make_entries,
        reference_leaf_hash,
        reference_roots,
    )

    out: dict[str, dict[str, Any]] = {str(n): {} for n in cfg.proof_sizes}
    entries = {n: make_entries(n) for n in cfg.proof_sizes}
    roots = {n: reference_roots(entries[n], {n})[n] for n in cfg.proof_sizes}
    indexes = {n: [rng.randrange(n) for _ in range(cfg.proofs.max_calls)] for n in cfg.proof_sizes}

    def build(make: Any, n: int, tmp: str) -> Any:
        subject = make(Path(tmp))
        for lo in range(0, n, 10_000):
            subject.append_batch(entries[n][lo : lo + 10_000])
        subject.reopen()
        if subject.root() != roots[n]:
            raise BenchError(f"{subject.label}: root at {n} differs from the RFC 9162 reference")
        return subject

    def check_raw(subject: Any, n: int, proofs: list[tuple[int, Any]]) -> None:
        for i, proof in proofs[:: max(1, len(proofs) // 20)]:
            subject.verify_inclusion(proof, entries[n][i], i, n, roots[n])

    def check_tlog(n: int, texts: list[tuple[int, str]]) -> None:
        for i, text in texts[:: max(1, len(texts) // 20)]:
            p = parse_tlog_proof(text)
            merkle.verify_inclusion(reference_leaf_hash(entries[n][i]), i, n, list(p.proof), roots[n])

    with contextlib.ExitStack() as stack:
        ours: dict[int, Any] = {}
        for n in cfg.proof_sizes:
            _log(f"5. proofs: building ours at N={n:,} ...")
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_proofs_", dir=workdir))
            ours[n] = build(OursLmdb, n, tmp)
            stack.callback(ours[n].close)
        _log("5. proofs: ours, sizes in turns ...")
        raw = time_interleaved(
            {str(n): (partial(s.inclusion, size=n), indexes[n]) for n, s in ours.items()}, cfg.proofs
        )
        for subject in ours.values():
            subject.reopen()
        served = time_interleaved(
            {str(n): (partial(s._ledger.tlog_proof, size=n), indexes[n]) for n, s in ours.items()}, cfg.proofs
        )
        for n, subject in ours.items():
            stats, proofs = raw[str(n)]
            check_raw(subject, n, proofs)
            out[str(n)]["ours_lmdb"] = stats.as_dict()
            stats, texts = served[str(n)]
            check_tlog(n, texts)
            out[str(n)]["ours_tlog_proof"] = stats.as_dict()
    if _have("pymerkle"):
        for n in cfg.proof_sizes:
            _log(f"5. proofs: pymerkle SqliteTree at N={n:,} ...")
            with tempfile.TemporaryDirectory(prefix="bench_proofs_", dir=workdir) as tmp:
                subject = build(PymerkleSqlite, n, tmp)
                try:
                    # Its first 2,000 challenges, as loadtests.bench_merkle's
                    # fresh-instance figure: pymerkle caches subtree roots as
                    # it answers, so a longer pass would time its cache.
                    fresh = Bounded(min(cfg.proofs.max_calls, 2_000), cfg.proofs.max_seconds)
                    stats, proofs = time_each(partial(subject.inclusion, size=n), indexes[n], fresh)
                    check_raw(subject, n, proofs)
                    out[str(n)][subject.key] = stats.as_dict()
                finally:
                    subject.close()
    return out


def _have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# -- 6. a node on a 10^6-entry ledger (child processes) ----------------------


def _write_frames(path: Path, entries: Iterator[bytes]) -> int:
    n = 0
    with path.open("wb") as f:
        for e in entries:
            f.write(struct.pack(">I", len(e)))
            f.write(e)
            n += 1
    return n


def _read_frames(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while head := f.read(4):
            (length,) = struct.unpack(">I", head)
            yield f.read(length)


def _generate(path: Path, n: int) -> None:
    """Child: write ``n`` workload entries to ``path`` (the workload keeps what
    it generated; a process of its own keeps that out of the node's RSS)."""
    from loadtests.bench_state import Workload

    class Streaming(Workload):
        def __init__(self, n_ops: int) -> None:
            super().__init__(n_ops)
            self.count = 0

        def add(self, op: str, org: str, body: dict[str, Any]) -> bytes:
            from ledger.records.build import signed_op
            from loadtests.bench_state import T0

            entry = signed_op(op, org, T0, body, [self.key(org)], nonce=str(self.count))
            self.count += 1
            self.entries.append((op, entry))
            return entry

    w = Streaming(n)

    def entries() -> Iterator[bytes]:
        w.setup()
        while True:
            for _, e in w.entries:
                yield e
            w.entries.clear()
            if w.count >= n:
                return
            for _ in range(1000):
                if w.count >= n:
                    break
                w.step()

    _write_frames(path, (e for i, e in zip(range(n), entries())))


def _build(frames: Path, ledger_dir: Path, window: int) -> dict[str, Any]:
    """Child: ingest the frames through the node's batch path, in a process
    set up as ``carbonledger serve`` sets up its own (allocator thresholds,
    the store's mapped-page budget); report rate and memory (peak, and its
    split at the largest sample)."""
    from node import event_loop
    from node.committer import GroupCommitter
    from node.memory import NODE_MAPPED_BUDGET, tune_allocator

    allocator_tuned = tune_allocator()
    before = memory_mb()
    ledger = open_fixed_clock_ledger(ledger_dir, mapped_budget=NODE_MAPPED_BUDGET)
    try:

        async def run(pool: Any) -> tuple[float, float]:
            committer = GroupCommitter(ledger, max_pending=window, max_batch=2_000, signature_pool=pool)
            await committer.start()
            try:
                start, cpu = time.perf_counter(), time.process_time() + cpu_seconds(pool.pids())
                await submit_in_order(committer, _read_frames(frames), window, keep=False)
                return time.perf_counter() - start, time.process_time() + cpu_seconds(pool.pids()) - cpu
            finally:
                await committer.close()

        with signature_pool() as pool, MemorySampler() as sampler:
            seconds, cpu_s = event_loop.run(run(pool))
            workers_peak = [memory_mb(pid).get("VmHWM", 0.0) for pid in pool.pids()]
        # CPU time (every thread's, and the signature workers') is the rate's
        # figure on a shared machine: other processes' load slows the wall clock.
        return {
            "entries": ledger.size, "seconds": seconds, "entries_per_s": ledger.size / seconds,
            "cpu_s": cpu_s, "entries_per_cpu_s": ledger.size / cpu_s, "window": window,
            "peak_rss_mb": peak_rss_mb(), **sampler.result(), "rss_before_open_mb": before,
            "rss_at_end_mb": memory_mb(), "allocator_tuned": allocator_tuned,
            "signature_workers_peak_rss_mb": workers_peak,
        }  # fmt: skip
    finally:
        ledger.close()


def _open_bench_ledger(ledger_dir: Path) -> Any:
    import hashlib

    from ledger.keys import Signer
    from ledger.log import Ledger
    from ledger.state import StateMachine

    signer = Signer.from_seed("bench.log", hashlib.sha256(b"bench.log").digest())
    return Ledger.open(ledger_dir, signer=signer, machine=StateMachine())


def _serve(ledger_dir: Path, proofs: int) -> dict[str, Any]:
    """Child: start a node on the ledger in this process, time it from opening
    the ledger to its first answer, then serve proofs over gRPC."""
    t0 = time.perf_counter()
    import grpc
    from carbonledger.v1 import log_pb2, log_pb2_grpc

    # What opening and serving need is imported before the clock starts.
    for module in ("ledger.log", "ledger.state", "node.server"):
        importlib.import_module(module)
    imported = time.perf_counter()
    ledger = _open_bench_ledger(ledger_dir)
    opened = time.perf_counter()
    node = NodeThread(ledger)
    channel = grpc.insecure_channel(node.target)
    stub = log_pb2_grpc.LogStub(channel)
    size = stub.GetCheckpoint(log_pb2.GetCheckpointRequest(), timeout=30).tree_size
    answered = time.perf_counter()
    rng = random.Random(5)
    latencies = []
    for _ in range(proofs):
        i = rng.randrange(size)
        s = time.perf_counter()
        stub.GetTlogProof(log_pb2.GetTlogProofRequest(index=i), timeout=30)
        latencies.append(time.perf_counter() - s)
    channel.close()
    node.stop()
    ledger.close()
    return {
        "tree_size": size,
        "imports_s": imported - t0,
        "open_s": opened - imported,
        "open_and_first_rpc_s": answered - imported,
        "grpc_tlog_proof": LatencyStats.of(latencies).as_dict(),
        "peak_rss_mb": peak_rss_mb(),
        "rss_at_end_mb": memory_mb(),
    }


def _child(args: list[str], timeout: float = 3600) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "loadtests.bench", "--child", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise BenchError(f"child {args[0]} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


class ServeProcess:
    """``carbonledger serve`` on a node directory, in a process of its own:
    the node as an operator runs it. ``started_s`` is the time from launching
    it to its first answered RPC: interpreter, imports, opening the ledger,
    binding, answering."""

    def __init__(self, node_dir: Path) -> None:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        start = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "node.main", "serve", str(node_dir), "--listen", "127.0.0.1:0", "--log-level", "warning"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        try:
            # The node prints its address once it listens (port 0 picks one);
            # polling a port instead would measure gRPC's reconnect backoff.
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            if " listening on " not in line:
                raise BenchError(f"carbonledger serve did not start: {line!r}")
            self.target = line.rsplit(" ", 1)[1].strip()
            self.channel = grpc.insecure_channel(self.target)
            reply = health_pb2_grpc.HealthStub(self.channel).Check(health_pb2.HealthCheckRequest(), timeout=60)
            if reply.status != health_pb2.HealthCheckResponse.SERVING:
                raise BenchError("carbonledger serve answered NOT_SERVING")
            self.started_s = time.perf_counter() - start
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if getattr(self, "channel", None) is not None:
            self.channel.close()
        self.proc.terminate()
        self.proc.wait(30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def serve_process_startup(node_dir: Path, runs: int = 5) -> list[float]:
    """Seconds from launching ``carbonledger serve`` to its first answered
    health check, for ``runs`` launches."""
    times = []
    for _ in range(runs):
        node = ServeProcess(node_dir)
        node.stop()
        times.append(node.started_s)
    return times


def measure_serving_node(node_dir: Path, reads: int) -> dict[str, Any]:
    """A ``carbonledger serve`` process answering ``reads`` random tlog-proofs
    and as many random entries, one client: its peak RSS (VmHWM) and what
    its resident set was made of at the largest sample."""
    from carbonledger.v1 import log_pb2, log_pb2_grpc

    node = ServeProcess(node_dir)
    try:
        started = memory_mb(node.proc.pid)
        stub = log_pb2_grpc.LogStub(node.channel)
        size = stub.GetCheckpoint(log_pb2.GetCheckpointRequest(), timeout=30).tree_size
        rng = random.Random(11)
        with MemorySampler(node.proc.pid) as sampler:
            t = time.perf_counter()
            for _ in range(reads):
                stub.GetTlogProof(log_pb2.GetTlogProofRequest(index=rng.randrange(size)), timeout=30)
                stub.GetEntry(log_pb2.GetEntryRequest(index=rng.randrange(size)), timeout=30)
            seconds = time.perf_counter() - t
        end = memory_mb(node.proc.pid)
    finally:
        node.stop()
    return {
        "tree_size": size, "reads": reads, "reads_per_s": 2 * reads / seconds,
        "peak_rss_mb": end.get("VmHWM", 0.0), **sampler.result(),
        "rss_started_mb": started, "rss_at_end_mb": end,
    }  # fmt: skip


def disk_bytes(path: Path) -> int:
    """Bytes allocated on disk under ``path`` (LMDB files may be sparse)."""
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def build_big(n: int, node_dir: Path, window: int, frames: Path | None = None) -> dict[str, Any]:
    """Generate ``n`` entries and ingest them into ``node_dir``/ledger (a node
    directory: the ledger and its key); the build's figures are also kept
    in ``node_dir``/build.json, so that a later run can reuse the ledger.
    The entries are generated into ``frames`` and kept there, or taken from
    it if it exists; without ``frames``, into a file removed afterwards."""
    import hashlib

    from ledger.keys import Signer

    if (node_dir / "ledger").exists():
        raise BenchError(f"{node_dir} holds a ledger but no build.json (an interrupted build?): remove it")
    node_dir.mkdir(parents=True, exist_ok=True)
    keep = frames is not None
    if frames is None:
        frames = node_dir / "big.frames"
    t = time.perf_counter()
    if not (keep and frames.is_file()):
        _child(["generate", str(frames), str(n)])
    generated = time.perf_counter() - t
    build = _child(["build", str(frames), str(node_dir / "ledger"), str(window)])
    if not keep:
        frames.unlink()
    if build["entries"] != n:
        raise BenchError(f"{frames} holds {build['entries']:,} entries, not {n:,}: use another --frames")
    signer = Signer.from_seed("bench.log", hashlib.sha256(b"bench.log").digest())
    (node_dir / "node.key").write_text(signer.skey + "\n")
    build["generate_s"] = generated
    (node_dir / "build.json").write_text(json.dumps(build))
    return build


def measure_big(
    n: int, workdir: Path, window: int, big_dir: Path | None = None, reads: int = 2_000, startup_runs: int = 5,
    frames: Path | None = None, with_serving: bool = True,
) -> dict[str, Any]:
    """The node-scale figures. With ``big_dir``, a ledger built there by an
    earlier run (same ``n``) is reused and its build figures are those that
    run recorded; otherwise the ledger is built there (or in ``workdir``).
    Without ``with_serving``, the build's figures alone."""
    node_dir = big_dir if big_dir is not None else workdir / "node"
    recorded = node_dir / "build.json"
    reused = big_dir is not None and recorded.is_file() and (node_dir / "ledger").is_dir()
    build = json.loads(recorded.read_text()) if reused else build_big(n, node_dir, window, frames)
    if build["entries"] != n:
        raise BenchError(f"{node_dir} holds {build['entries']:,} entries, not {n:,}: use another --big-dir")
    if not with_serving:
        return {"entries": build["entries"], "reused_build": reused, "generate_s": build["generate_s"], "build": build}
    serve = _child(["serve", str(node_dir / "ledger"), "1000"])
    startup = serve_process_startup(node_dir, startup_runs)
    serving = measure_serving_node(node_dir, reads)
    size = disk_bytes(node_dir / "ledger")
    return {
        "entries": build["entries"],
        "reused_build": reused,
        "generate_s": build["generate_s"],
        "build": build,
        "serve": serve,
        "serving_node": serving,
        "serve_process_startup_s": sorted(startup)[len(startup) // 2],
        "serve_process_startup_runs_s": startup,
        "disk_bytes": size,
        "disk_bytes_per_entry": size / max(1, build["entries"]),
    }


# -- report --------------------------------------------------------------------


def versions() -> dict[str, str]:
    out = {}
    for dist in ("cryptography", "pynacl", "lmdb", "grpcio", "pymerkle"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "missing"
    return out


def _workers_share(ing: dict[str, Any]) -> str:
    """The signature workers' part of an ingest's CPU time, as a percentage."""
    if not ing.get("cpu_seconds") or ing.get("worker_cpu_seconds") is None:
        return ""
    return f"{100 * ing['worker_cpu_seconds'] / ing['cpu_seconds']:.0f}% workers"


def report(cfg: Config, r: dict[str, Any]) -> list[Check]:
    """Print the table of the sections in ``r`` and return their targets."""
    limit = r.get("limit")
    rows: list[list[str]] = []
    lib2, best2 = fastest(limit, 2) if limit else ("-", None)
    lib1, best1 = fastest(limit, 1) if limit else ("-", None)
    against = f"of {lib2} 2-thread" if limit else ""
    if limit:
        rows += [
            [f"raw Ed25519 verify, {lib}, {t} thread{'s' if t > 1 else ''}", format_rate(limit[f"{lib}/{t}"]), "verif/s",
             format_ratio(ratio(limit[f"{lib}/{t}"], best2)), f"of {lib2} 2-thread"]
            for lib in ("cryptography", "pynacl") for t in (1, 2)
        ]  # fmt: skip
    ing, grpc_ = r.get("ingest_inprocess"), r.get("ingest_grpc")
    if ing:
        rows += [
            ["ingest in-process (GroupCommitter + LMDB)", format_rate(ing["entries_per_s"]), "entries/s",
             format_ratio(ratio(ing["entries_per_s"], best2)), against],
            ["  per CPU-second, node + signature workers", format_rate(ing.get("entries_per_cpu_s")), "entries/s",
             _workers_share(ing), f"{cfg.ingest_window} submissions in flight"],
            ["  mean group / p99 ack latency", f"{ing['mean_group']:.0f}", "entries", format_us(ing["latency"]["p99"]), "us"],
        ]  # fmt: skip
    if grpc_:
        rows += [
            ["ingest over gRPC (loopback, Submit)", format_rate(grpc_["entries_per_s"]), "entries/s",
             format_ratio(ratio(grpc_["entries_per_s"], best2)), against],
            ["  mean group / p99 call latency", f"{grpc_['mean_group']:.0f}", "entries", format_us(grpc_["latency"]["p99"]), "us"],
        ]  # fmt: skip
    floor = r.get("grpc_floor")
    if floor:
        rows += [
            ["bare gRPC Submit, answered at once", format_rate(floor["calls_per_s"]), "calls/s",
             format_ratio(ratio(grpc_["entries_per_s"], floor["calls_per_s"]) if grpc_ else None),
             "gRPC ingest of this"],
            ["  server CPU per call / p99 call latency", format_us(floor["server_cpu_per_call_s"]), "us",
             format_us(floor["latency"]["p99"]), "us"],
        ]  # fmt: skip
    lab = r.get("labels")
    if lab:
        raw_per_label = best1 / lab["signatures"] if best1 is not None else None
        rows += [
            [f"label verify, 3 levels ({lab['signatures']} signatures, {lab['label_bytes']:,} B)",
             format_rate(lab["per_second"]), "labels/s", format_ratio(ratio(lab["per_second"], raw_per_label)),
             f"of {format_rate(raw_per_label)}/s raw ({lib1} 1-thread)"],
        ]  # fmt: skip
    for size, pr in r.get("proofs", {}).items():
        ours, pm, tl = pr["ours_lmdb"], pr.get("pymerkle_sqlite"), pr["ours_tlog_proof"]
        rows.append([f"inclusion proofs, N={int(size):,}: ours", format_rate(ours["per_second"]), "proofs/s",
                     format_us(ours["p99"]), "us p99"])  # fmt: skip
        if pm is None:
            rows.append(["  pymerkle SqliteTree", "-", "", "", "not installed: pip install -e .[bench]"])
        else:
            rows.append(["  pymerkle SqliteTree (fresh)", format_rate(pm["per_second"]), "proofs/s", format_us(pm["p99"]),
                         f"us p99; ours {format_ratio(ratio(ours['per_second'], pm['per_second']))}"])  # fmt: skip
        rows.append(["  ours served as tlog-proof", format_rate(tl["per_second"]), "proofs/s", format_us(tl["p99"]), "us p99"])
    big = r.get("big")
    serving = big is not None and "serve" in big
    if big:
        b = big["build"]
        reused = " (build recorded by an earlier run)" if big.get("reused_build") else ""

        def split(peak: dict[str, float]) -> str:
            return f"{peak.get('RssAnon', 0):.0f} + {peak.get('RssFile', 0):.0f}"

        # Builds recorded before the CPU time was taken have none.
        cpu = f"{format_rate(b['entries_per_cpu_s'])}" if "entries_per_cpu_s" in b else "-"
        rows += [
            [f"node at N={big['entries']:,}: ingest, sustained{reused}", format_rate(b["entries_per_s"]), "entries/s",
             format_ratio(ratio(b["entries_per_s"], best2)), against],
            ["  per CPU-second, node + signature workers", cpu, "entries/s", "", f"{b.get('window', '-')} submissions in flight"],
        ]  # fmt: skip
        if b.get("signature_workers_peak_rss_mb"):
            workers = b["signature_workers_peak_rss_mb"]
            rows.append(["  signature workers' peak RSS, each", " / ".join(f"{w:.0f}" for w in workers), "MB", "",
                         "separate processes, not in the node's figure below"])
        if serving:
            s, sn = big["serve"], big["serving_node"]
            startups = ", ".join(f"{t * 1000:.0f}" for t in big["serve_process_startup_runs_s"])
            rows += [
                ["  peak RSS (VmHWM) ingesting / serving", f"{b['peak_rss_mb']:.0f}", "MB", f"{sn['peak_rss_mb']:.0f}",
                 f"MB (carbonledger serve, {sn['reads']:,} proofs + {sn['reads']:,} entries)"],
                ["  at the largest sample: anon + file-backed", split(b["sampled_peak_mb"]), "MB",
                 split(sn["sampled_peak_mb"]), "MB (file-backed: libraries and LMDB's map)"],
                ["  at start: anon + file-backed", split(b["rss_before_open_mb"]), "MB", split(sn["rss_started_mb"]),
                 "MB (ingest: before opening the ledger; serving: at its first answer)"],
                ["  ledger on disk", f"{big['disk_bytes_per_entry']:.0f}", "B/entry", f"{big['disk_bytes'] / 2**20:,.0f}", "MiB"],
                ["  startup: open + first RPC, in-process", f"{s['open_and_first_rpc_s'] * 1000:.0f}", "ms",
                 f"{big['serve_process_startup_s'] * 1000:.0f}", f"ms whole serve process, median of {startups}"],
                ["  gRPC tlog-proof p99 (in-process node)", format_us(s["grpc_tlog_proof"]["p99"]), "us",
                 format_rate(s["grpc_tlog_proof"]["per_second"]), "proofs/s, 1 client"],
            ]  # fmt: skip
        else:
            rows += [
                ["  peak RSS (VmHWM) ingesting", f"{b['peak_rss_mb']:.0f}", "MB", "", ""],
                ["  at the largest sample: anon + file-backed", split(b["sampled_peak_mb"]), "MB", "",
                 "(file-backed: libraries and LMDB's map)"],
                ["  at start: anon + file-backed", split(b["rss_before_open_mb"]), "MB", "", "(before opening the ledger)"],
            ]  # fmt: skip
    print(format_table(["figure", "value", "unit", "ratio/p99", "against"], rows))
    checks = []
    if ing and limit:  # the target is a ratio to the limit
        checks.append(Check(f"ingest in-process >= {INGEST_TARGET}x {lib2} 2-thread verification", ratio(ing["entries_per_s"], best2), INGEST_TARGET, True))
    if r.get("proofs"):
        sizes = sorted(r["proofs"], key=int)
        small, large = r["proofs"][sizes[0]], r["proofs"][sizes[-1]]
        checks += [
            Check(f"proof p99 growth N={int(sizes[0]):,} -> {int(sizes[-1]):,} (raw)", ratio(large["ours_lmdb"]["p99"], small["ours_lmdb"]["p99"]), PROOF_GROWTH_LIMIT, False),
            Check(f"proof p99 growth N={int(sizes[0]):,} -> {int(sizes[-1]):,} (tlog-proof)", ratio(large["ours_tlog_proof"]["p99"], small["ours_tlog_proof"]["p99"]), PROOF_GROWTH_LIMIT, False),
        ]  # fmt: skip
    if big:
        n = f"{big['entries']:,}"
        if serving:
            checks.append(Check(f"peak RSS, node serving N={n} / {RSS_LIMIT_MB:g} MB", big["serving_node"]["peak_rss_mb"] / RSS_LIMIT_MB, 1.0, False))
        checks.append(Check(f"peak RSS, node ingesting to N={n} / {RSS_LIMIT_MB:g} MB", big["build"]["peak_rss_mb"] / RSS_LIMIT_MB, 1.0, False))
        if serving:
            checks.append(Check(f"startup (open + first RPC) / {STARTUP_LIMIT_S:g} s", big["serve"]["open_and_first_rpc_s"] / STARTUP_LIMIT_S, 1.0, False))
            checks.append(Check(f"startup (whole carbonledger serve process) / {STARTUP_LIMIT_S:g} s", big["serve_process_startup_s"] / STARTUP_LIMIT_S, 1.0, False))
    print()
    for c in checks:
        print(c.line())
    print("(gRPC under Locust: python -m loadtests.run_locust)")
    return checks


def run_all(cfg: Config, workdir: Path) -> dict[str, Any]:
    rng = random.Random(cfg.seed)
    r: dict[str, Any] = {}
    run = set(cfg.sections)
    if "limit" in run:
        _log("1. raw verification ...")
        r["limit"] = measure_limit(cfg.limit_seconds)
    if "ingest" in run:
        _log(f"2. ingest in-process, {cfg.ingest_ops:,} operations, {cfg.ingest_window:,} in flight ...")
        entries = workload_entries(cfg.ingest_ops)
        r["ingest_inprocess"] = measure_ingest_inprocess(entries, workdir, cfg.ingest_window).as_dict()
        del entries
    if "grpc" in run:
        _log(f"3. ingest over gRPC, {cfg.grpc_ops:,} submissions by {cfg.grpc_holders} clients ...")
        r["ingest_grpc"] = measure_ingest_grpc(cfg.grpc_holders, cfg.grpc_ops, workdir).as_dict()
        r["grpc_floor"] = measure_grpc_floor(cfg.grpc_holders, cfg.grpc_ops)
    if "labels" in run:
        _log("4. label verification ...")
        r["labels"] = measure_labels(workdir, cfg.label_bound)
    if "proofs" in run:
        r["proofs"] = measure_proofs(cfg, workdir, rng)
    if cfg.big and run & {"big", "big-ingest"}:
        serve = "big" in run
        _log(f"6. a node on {cfg.big:,} entries (generate, ingest{', serve' if serve else ''}), "
             f"{cfg.ingest_window:,} in flight ...")  # fmt: skip
        r["big"] = measure_big(
            cfg.big, workdir, cfg.ingest_window, cfg.big_dir, reads=200 if cfg.quick else 2_000, frames=cfg.frames,
            with_serving=serve,
        )  # fmt: skip
    return r


def child_main(args: list[str]) -> int:
    what = args[0]
    if what == "generate":
        _generate(Path(args[1]), int(args[2]))
        print(json.dumps({"ok": True}))
    elif what == "build":
        print(json.dumps(_build(Path(args[1]), Path(args[2]), int(args[3]))))
    elif what == "grpc-clients":
        print(json.dumps(_grpc_clients(args[1], int(args[2]), int(args[3]))))
    elif what == "serve":
        print(json.dumps(_serve(Path(args[1]), int(args[2]))))
    else:
        raise SystemExit(f"unknown child {what}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        return child_main(argv[1:])
    cfg = parse_args(argv)
    load_before = os.getloadavg()
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="bench_", dir=cfg.workdir) as tmp:
            results = run_all(cfg, Path(tmp))
    except BenchError as exc:
        print(f"CORRECTNESS FAILURE, figures discarded: {exc}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - started
    load = {"before": load_before, "after": os.getloadavg()}
    info = machine_info()
    print(f"loadtests.bench: {info['cpus']} CPUs, Python {info['python']}, "
          + ", ".join(f"{k} {v}" for k, v in versions().items()))  # fmt: skip
    print("load average (1/5/15 min) before: {:.2f} {:.2f} {:.2f}, after: {:.2f} {:.2f} {:.2f}".format(*load["before"], *load["after"]))
    checks = report(cfg, results)
    busy = max(load["before"][0], load["after"][0])
    if busy > (os.cpu_count() or 1) / 2:
        print(f"WARNING: the machine was busy (1-min load average up to {busy:.1f}); figures include time lost to other processes.")
    print(f"\ntotal run time {elapsed:.0f} s")
    write_json(cfg.json_path, {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "machine": info, "versions": versions(), "load_average": load, "run_seconds": elapsed,
        "results": results, "targets": [c.as_dict() for c in checks],
    })  # fmt: skip
    print(f"results written to {cfg.json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
