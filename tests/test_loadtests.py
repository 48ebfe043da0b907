"""The load-test harness must not rot: every measurement of ``loadtests.bench``
runs here on tiny sizes (its own correctness checks included), and the
Locust file imports. Nothing here asserts on wall-clock time."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from loadtests import bench
from loadtests._harness import Bounded, time_interleaved

ROOT = Path(__file__).resolve().parents[1]


def test_bench_measurements_on_tiny_sizes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = bench.parse_args(["--quick", "--proofs", "20", "--proof-sizes", "300,600", "--big", "0"])
    results = {
        "limit": bench.measure_limit(0.05),
        "ingest_inprocess": bench.measure_ingest_inprocess(bench.workload_entries(300), tmp_path, window=64).as_dict(),
        "ingest_grpc": bench.measure_ingest_grpc(4, 40, tmp_path).as_dict(),
        "grpc_floor": bench.measure_grpc_floor(4, 40),
        "labels": bench.measure_labels(tmp_path, Bounded(2, 5.0)),
        "proofs": bench.measure_proofs(cfg, tmp_path, random.Random(1)),
    }
    assert set(results["limit"]) == {"cryptography/1", "cryptography/2", "pynacl/1", "pynacl/2"}
    assert results["ingest_inprocess"]["entries"] == 300
    assert results["ingest_grpc"]["entries"] == 40
    assert results["grpc_floor"]["calls"] == 40 and results["grpc_floor"]["server_cpu_per_call_s"] > 0
    assert results["labels"]["signatures"] == 12
    assert set(results["proofs"]) == {"300", "600"}
    for size in results["proofs"].values():
        assert {"ours_lmdb", "ours_tlog_proof"} <= set(size)
        assert size["ours_lmdb"]["count"] == size["ours_tlog_proof"]["count"] == 20
    checks = bench.report(cfg, results)
    assert "bare gRPC Submit" in capsys.readouterr().out
    assert [c.name.split()[0] for c in checks] == ["ingest", "proof", "proof"]


def test_time_interleaved_takes_turns_and_keeps_each_subjects_bound() -> None:
    order: list[tuple[str, int]] = []

    def call(name: str) -> Any:
        return lambda arg: order.append((name, arg)) or arg * 2

    out = time_interleaved(
        {"a": (call("a"), range(7)), "b": (call("b"), range(100, 103))}, Bounded(5, 60.0), chunk=2
    )
    # Turns of two calls; "b" runs out of arguments, "a" stops at its bound.
    assert order == [("a", 0), ("a", 1), ("b", 100), ("b", 101), ("a", 2), ("a", 3), ("b", 102), ("a", 4)]
    assert out["a"][0].count == 5 and out["b"][0].count == 3
    assert out["a"][1] == [(i, 2 * i) for i in range(5)]
    assert not out["a"][0].capped and not out["b"][0].capped
    # A subject over its time bound is stopped after its turn and marked capped.
    slow = time_interleaved({"s": (lambda arg: time.sleep(0.002), range(50))}, Bounded(50, 0.001), chunk=3)
    assert slow["s"][0].count == 3 and slow["s"][0].capped


@pytest.mark.slow
def test_bench_node_scale_children(tmp_path: Path) -> None:
    big = bench.measure_big(400, tmp_path, window=64, big_dir=tmp_path / "node", reads=20, startup_runs=2)
    assert big["entries"] == 400 == big["serve"]["tree_size"] == big["serving_node"]["tree_size"]
    assert big["disk_bytes_per_entry"] > 0 and big["serve"]["peak_rss_mb"] > 0
    assert not big["reused_build"] and len(big["serve_process_startup_runs_s"]) == 2
    serving = big["serving_node"]
    if serving["rss_at_end_mb"]:  # /proc exists
        assert serving["peak_rss_mb"] >= serving["sampled_peak_mb"]["VmRSS"] > 0
        assert {"RssAnon", "RssFile"} <= set(big["build"]["sampled_peak_mb"])
    again = bench.measure_big(400, tmp_path, window=64, big_dir=tmp_path / "node", reads=20, startup_runs=1)
    assert again["reused_build"] and again["build"] == big["build"]
    with pytest.raises(bench.BenchError, match="holds 400 entries"):
        bench.measure_big(500, tmp_path, window=64, big_dir=tmp_path / "node", reads=20, startup_runs=1)


@pytest.mark.slow
def test_bench_big_ingest_alone_keeps_and_reuses_its_frames(tmp_path: Path) -> None:
    frames = tmp_path / "workload.frames"
    first = bench.measure_big(300, tmp_path / "a", window=32, frames=frames, with_serving=False)
    assert frames.is_file() and "serve" not in first
    assert first["build"]["entries"] == 300 and first["build"]["window"] == 32
    assert first["build"]["entries_per_cpu_s"] > 0
    generated = frames.stat().st_mtime_ns
    second = bench.measure_big(300, tmp_path / "b", window=32, frames=frames, with_serving=False)
    assert frames.stat().st_mtime_ns == generated and second["build"]["entries"] == 300
    checks = bench.report(bench.parse_args(["--only", "big-ingest", "--big", "300"]), {"big": second})
    assert [c.name for c in checks] == ["peak RSS, node ingesting to N=300 / 300 MB"]
    with pytest.raises(bench.BenchError, match="holds 300 entries, not 400"):
        bench.measure_big(400, tmp_path / "c", window=32, frames=frames, with_serving=False)


def test_bench_only_names_sections() -> None:
    assert bench.parse_args(["--only", "ingest,big-ingest"]).sections == ("ingest", "big-ingest")
    assert "big-ingest" not in bench.parse_args([]).sections
    with pytest.raises(SystemExit):
        bench.parse_args(["--only", "ingest,nope"])
    # Without the limit, the ingest target (a ratio to it) is not judged.
    ingest = {"entries_per_s": 100.0, "entries_per_cpu_s": 90.0, "mean_group": 10.0, "latency": {"p99": 0.1}}
    assert bench.report(bench.parse_args(["--only", "ingest"]), {"ingest_inprocess": ingest}) == []


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="VmHWM is Linux's")
def test_peak_rss_of_a_child_is_its_own() -> None:
    """ru_maxrss is inherited across fork and exec; the peak the bench
    reports for its children (VmHWM) is not."""
    code = (
        "import subprocess, sys; big = bytearray(300 << 20); big[::4096] = bytes(len(big) // 4096); "
        "print(subprocess.run([sys.executable, '-c', 'from loadtests.bench import peak_rss_mb; "
        "print(peak_rss_mb())'], capture_output=True, text=True, check=True).stdout)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    assert 0 < float(proc.stdout.strip()) < 200


def test_bench_quick_arguments() -> None:
    cfg = bench.parse_args(["--quick"])
    assert cfg.proof_sizes == (1_000, 10_000) and cfg.big == 5_000
    full = bench.parse_args([])
    assert full.proof_sizes == (10_000, 100_000, 1_000_000) and full.big == 1_000_000


def test_locustfile_imports() -> None:
    # In a child process: importing it patches gRPC for gevent, which this
    # test process must not be.
    from loadtests.run_locust import BARE_USER_CLASSES

    code = (
        "import loadtests.locustfile as f; "
        "users = [f.HolderUser, f.SupplierUser, f.VerifierUser, f.BuyerUser, f.ExchangeUser]; "
        "print(sorted(getattr(u, 'fixed_count', 0) or u.weight for u in users)); "
        "print(sum(getattr(u, 'fixed_count', 0) for u in users)); "
        f"print(sum(getattr(getattr(f, name), 'fixed_count', 0) for name in {list(BARE_USER_CLASSES)!r}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    *counts, fixed, bare_fixed = proc.stdout.split()
    assert " ".join(counts) == "[1, 3, 4, 4, 6]"
    # run_locust spreads --rate over the users that are not fixed ones, in
    # both modes (--bare runs only the classes that submit).
    from loadtests.run_locust import BARE_FIXED_USERS, FIXED_USERS

    assert int(fixed) == FIXED_USERS
    assert int(bare_fixed) == BARE_FIXED_USERS


def test_bare_server_answers_submit_at_once_and_nothing_else() -> None:
    """The ceiling's server (run_locust --bare): a process that answers
    Submit with the next index, implements nothing else, and stops on SIGTERM."""
    import signal

    import grpc
    from carbonledger.v1 import log_pb2, log_pb2_grpc

    from loadtests.run_locust import _free_port, bare_seed, start_bare_server

    port = _free_port()
    server = start_bare_server(port)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = log_pb2_grpc.LogStub(channel)
            got = [stub.Submit(log_pb2.SubmitRequest(envelope=b"not even an envelope"), timeout=30).index for _ in range(3)]
            assert got == [0, 1, 2]
            with pytest.raises(grpc.RpcError) as info:
                stub.GetCheckpoint(log_pb2.GetCheckpointRequest(), timeout=30)
            assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0
    seed = bare_seed(3)
    assert len(seed["holders"]) == len(set(seed["holders"])) == 3 and seed["seed_entries"] == 0


def test_bench_tiles_on_a_tiny_ledger_checks_what_it_is_served(tmp_path: Path) -> None:
    from loadtests import bench_tiles

    bench_tiles.build(tmp_path / "l", 600)
    results = bench_tiles.measure(tmp_path / "l", 600, clients=2, seconds=0.2, turns=1)
    assert set(results) == {"floor", "hash tile, level 0", "entry bundle"}
    for row in results.values():
        assert row["responses"] > 0 and row["server_cpu_us"] >= 0
    assert results["floor"]["ratio_to_floor"] == 1.0
    # A server that does not answer what the ledger holds fails the run.
    with pytest.raises(bench_tiles.BenchError, match=r"tile/0/002: HTTP 404"):
        bench_tiles.measure(tmp_path / "l", 256 * 3, clients=1, seconds=0.2, turns=1)
