"""The tlog-tiles read path over HTTP, beside the HTTP floor of the same run.

``python -m loadtests.bench_tiles`` builds an LMDB ledger (10^5 entries by
default), serves it with ``carbonledger serve``'s tlog-tiles endpoint
(:mod:`node.tiles_http`) in a child process, on the node's event loop, and
beside it, in the same process, a bare aiohttp route that answers every
``/tile/...`` path at once with 8,192 fixed bytes: what any Python HTTP server
costs on this machine before reading a tile. Keep-alive clients in threads of
this process fetch random full tiles (level 0, and level 1 at 10^5 entries
and up) and random entry bundles from each in turns, and it prints
responses/s, latency and the server process's CPU per response, with the
ratio to the floor. Every response's length is checked, and a sample of each
kind against the ledger: a bench that serves wrong tiles fails, it does not
report.

The server's CPU covers both apps (one process); a turn lasts ``--seconds``
and only one app is asked at a time, so the CPU of a turn is that app's.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtests._harness import LatencyStats, cpu_seconds, format_table, machine_info

__all__ = ["main"]

_FLOOR_BODY = bytes(8192)
_SIGNER_SEED = hashlib.sha256(b"bench.tiles").digest()
ORIGIN = "bench.tiles.example/log"


class BenchError(Exception):
    """A response was wrong: the figures of this run mean nothing."""


def _signer() -> Any:
    from ledger.keys import Signer

    return Signer.from_seed(ORIGIN, _SIGNER_SEED)


def build(path: Path, entries: int, entry_bytes: int = 300) -> None:
    """An LMDB ledger of ``entries`` distinct entries of ``entry_bytes``."""
    from ledger.log import Ledger

    with Ledger.open(path, signer=_signer(), created_time=0) as led:
        pad = b"." * max(entry_bytes - 20, 0)
        for start in range(0, entries, 10_000):
            led.append(
                [b"bench tile entry %09d " % i + pad for i in range(start, min(start + 10_000, entries))]
            )


# -- the server process ----------------------------------------------------


def _serve(ledger_dir: Path) -> None:
    """Child: serve the ledger's tiles and the floor, print both ports, run until SIGTERM."""
    from aiohttp import web

    from ledger.log import Ledger
    from node import event_loop
    from node.http_site import HttpSite
    from node.tiles_http import TilesHttpServer

    async def floor(request: web.Request) -> web.Response:
        return web.Response(body=_FLOOR_BODY, content_type="application/octet-stream",
                            headers={"Cache-Control": "public, max-age=31536000, immutable"})  # fmt: skip

    async def run() -> None:
        import asyncio

        app = web.Application()
        app.router.add_get("/tile/{rest:.+}", floor)
        with Ledger.open(ledger_dir, signer=_signer()) as led:
            tiles = TilesHttpServer(led, "127.0.0.1", 0)
            bare = HttpSite(app, "the floor", "127.0.0.1", 0)
            await tiles.start()
            await bare.start()
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGTERM, stop.set)
            print(f"ports {tiles.port} {bare.port}", flush=True)
            await stop.wait()
            await tiles.stop()
            await bare.stop()

    event_loop.run(run(), event_loop.DEFAULT)


class ServerProcess:
    def __init__(self, ledger_dir: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "loadtests.bench_tiles", "--serve", str(ledger_dir)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if len(line) != 3 or line[0] != "ports":
            self.stop()
            raise BenchError(f"the tiles server did not start: {line}")
        self.tiles_port, self.floor_port = int(line[1]), int(line[2])

    def cpu(self) -> float:
        return cpu_seconds([self.proc.pid])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)


# -- clients -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Turn:
    latencies: LatencyStats
    seconds: float
    server_cpu: float

    @property
    def rate(self) -> float:
        return self.latencies.count / self.seconds

    @property
    def cpu_us(self) -> float:
        return self.server_cpu / self.latencies.count * 1e6


def run_turn(
    port: int, paths: Callable[[random.Random], str], check: Callable[[str, bytes], None], clients: int,
    seconds: float, server: ServerProcess,
) -> Turn:  # fmt: skip
    """``clients`` keep-alive connections fetching ``paths(rng)`` for ``seconds``."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    start_line = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client(i: int) -> None:
        rng = random.Random(i)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = latencies[i]
        clock = time.perf_counter
        try:
            start_line.wait()
            while clock() < deadline[0]:
                path = paths(rng)
                t0 = clock()
                conn.request("GET", "/" + path, headers={"Accept-Encoding": "identity"})
                resp = conn.getresponse()
                body = resp.read()
                mine.append(clock() - t0)
                if resp.status != 200:
                    raise BenchError(f"{path}: HTTP {resp.status} {body[:200]!r}")
                check(path, body)
        except Exception as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(f"{type(exc).__name__}: {exc}")
            start_line.abort()
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    cpu0 = server.cpu()
    deadline[0] = time.perf_counter() + seconds
    t0 = time.perf_counter()
    try:
        start_line.wait()
    except threading.BrokenBarrierError:
        pass
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu = server.cpu() - cpu0
    if errors:
        raise BenchError(errors[0])
    return Turn(LatencyStats.of([x for lane in latencies for x in lane]), wall, cpu)


def measure(ledger_dir: Path, entries: int, clients: int, seconds: float, turns: int) -> dict[str, Any]:
    from ledger.log import Ledger
    from ledger.tlog_tiles import TileRef, parse_tile_path

    full0 = entries // 256
    full1 = entries // 65_536
    if full0 == 0:
        raise BenchError("at least 256 entries are needed for a full tile")
    kinds: dict[str, Callable[[random.Random], str]] = {
        "hash tile, level 0": lambda rng: TileRef(0, rng.randrange(full0)).path,
        "entry bundle": lambda rng: TileRef(None, rng.randrange(full0)).path,
    }
    if full1:
        kinds["hash tile, level 1"] = lambda rng: TileRef(1, rng.randrange(full1)).path
    # What each kind must be: the right length always, the ledger's bytes
    # for the paths sampled (the ledger is read in this process first).
    with Ledger.open(ledger_dir, signer=_signer()) as led:
        expected: dict[str, bytes] = {}
        for kind, paths in kinds.items():
            for seed in range(4):
                ref = parse_tile_path(paths(random.Random(seed)))
                expected[ref.path] = (
                    led.entry_bundle(ref.index) if ref.level is None else led.hash_tile(ref.level, ref.index)
                )
        bundle_bytes = len(led.entry_bundle(0))

    def check_tile(path: str, body: bytes) -> None:
        want = expected.get(path)
        size = bundle_bytes if path.startswith("tile/entries/") else 8192
        if len(body) != size or (want is not None and body != want):
            raise BenchError(f"{path}: {len(body)} bytes, not the ledger's tile")

    def check_floor(path: str, body: bytes) -> None:
        if body != _FLOOR_BODY:
            raise BenchError(f"the floor answered {len(body)} bytes")

    server = ServerProcess(ledger_dir)
    results: dict[str, Any] = {}
    try:
        floor_turns: list[Turn] = []
        kind_turns: dict[str, list[Turn]] = {k: [] for k in kinds}
        for _ in range(turns):  # in turns, so that a busy minute hits both
            floor_turns.append(
                run_turn(
                    server.floor_port, kinds["hash tile, level 0"], check_floor, clients, seconds, server
                )
            )
            for kind, paths in kinds.items():
                kind_turns[kind].append(
                    run_turn(server.tiles_port, paths, check_tile, clients, seconds, server)
                )
    finally:
        server.stop()

    def best(ts: Sequence[Turn]) -> Turn:
        return max(ts, key=lambda t: t.rate)

    floor = best(floor_turns)
    results["floor"] = _row(floor, floor)
    for kind, ts in kind_turns.items():
        results[kind] = _row(best(ts), floor)
    return results


def _row(turn: Turn, floor: Turn) -> dict[str, Any]:
    return {
        "per_second": turn.rate,
        "ratio_to_floor": turn.rate / floor.rate,
        "p50_us": turn.latencies.p50 * 1e6,
        "p99_us": turn.latencies.p99 * 1e6,
        "server_cpu_us": turn.cpu_us,
        "responses": turn.latencies.count,
    }


def report(results: dict[str, Any], entries: int, clients: int) -> str:
    rows = [
        [
            name if name != "floor" else "floor: bare aiohttp, 8,192 fixed bytes",
            f"{r['per_second']:,.0f}",
            f"{r['ratio_to_floor']:.2f}x",
            f"{r['server_cpu_us']:,.0f}",
            f"{r['p50_us']:,.0f}",
            f"{r['p99_us']:,.0f}",
        ]
        for name, r in results.items()
    ]
    head = f"tlog-tiles over HTTP: {entries:,} entries, {clients} keep-alive clients, best turn of each"
    return (
        head
        + "\n"
        + format_table(["resource", "responses/s", "x floor", "server us/resp", "p50 us", "p99 us"], rows)
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench_tiles", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one turn")
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--serve", metavar="LEDGER_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        _serve(Path(args.serve))
        return 0
    print(f"machine: {machine_info()}, load average {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-tiles-") as tmp:
        ledger_dir = Path(tmp) / "ledger"
        t0 = time.perf_counter()
        build(ledger_dir, args.entries)
        print(f"built {args.entries:,} entries in {time.perf_counter() - t0:.1f} s", flush=True)
        try:
            results = measure(ledger_dir, args.entries, args.clients, args.seconds, args.turns)
        except BenchError as exc:
            print(f"bench_tiles: {exc}", file=sys.stderr)
            return 1
    print(report(results, args.entries, args.clients))
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
