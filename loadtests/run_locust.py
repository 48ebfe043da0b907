"""Run the Locust scenario headless against a fresh node, then check the ledger.

``python -m loadtests.run_locust [--users 200] [--rate 2100] [--spawn-rate 50] [--duration 60]``

1. ``carbonledger init`` a node directory in a temp dir, and ``carbonledger
   serve`` it on a free loopback port (a subprocess, as in production);
2. seed the scenario's organizations and units through the gRPC API, signed
   by the authority key ``init`` generated (``loadtests._scenario``);
3. run ``locust -f loadtests/locustfile.py --headless`` for the duration,
   with CSV and HTML reports in ``loadtests/results/`` (``locust_*.csv``,
   ``locust.html``); the holder and supplier users share ``--rate``
   submissions a second (a little over the target by default, so that a
   node that keeps up shows it; ``--rate 0``: back to back, the most the
   node and Locust manage together);
4. stop the node, then check that every acknowledged submission (the users
   record each ``index sha256``) is in the ledger at that index with those
   bytes, and that ``carbonledger audit`` of the ledger is clean;
5. print the figures against issue 5's target: at least 2,000 submissions/s
   sustained, p99 under 100 ms, zero failed requests.

Exit status 0 only when both checks pass (the target is reported, not enforced).

``--bare`` measures the ceiling instead: the same Locust users that submit
(holders, suppliers, verifiers) against ``loadtests.bare_server``, a gRPC
server in its own process that answers ``Submit`` at once, parsing and
storing nothing. What Locust reaches there, with its own CPU beside it, is
the most any node can show under this scenario on this machine.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtests._harness import child_pids, cpu_seconds

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "loadtests" / "results"
ORIGIN = "load.carbonledger.example/log"

SUBMIT_TARGET = 2_000.0  # submissions/s
P99_TARGET_MS = 100.0
#: Users of the locustfile that do not submit at the paced rate: verifiers,
#: buyers and the exchange (their ``fixed_count``).
FIXED_USERS = 4 + 4 + 1
#: The user classes run against the bare server, and how many of them do not
#: submit at the paced rate (the verifiers): buyers and the exchange call
#: RPCs the bare server does not implement.
BARE_USER_CLASSES = ("HolderUser", "SupplierUser", "VerifierUser")
BARE_FIXED_USERS = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bin(name: str) -> str:
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name


def start_node(node_dir: Path, port: int, extra: Sequence[str] = ()) -> subprocess.Popen[str]:
    return start_server(["node.main", "serve", str(node_dir), "--listen", f"127.0.0.1:{port}", *extra])


def start_bare_server(port: int) -> subprocess.Popen[str]:
    return start_server(["loadtests.bare_server", "--listen", f"127.0.0.1:{port}"])


def stop_server(proc: subprocess.Popen[str]) -> None:
    """SIGTERM, as an operator stops a node; killed if it has not exited in 30 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_server(module_args: Sequence[str]) -> subprocess.Popen[str]:
    """``python -m MODULE ARGS...``, once it prints that it is listening."""
    proc = subprocess.Popen(
        [sys.executable, "-m", *module_args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    deadline = time.time() + 60
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            raise SystemExit(f"{module_args[0]} exited before listening")
        if "listening on" in line:
            return proc
    proc.kill()
    raise SystemExit(f"{module_args[0]} did not start listening within 60 s")


def seed(target: str, node_dir: Path, holders: int) -> dict[str, Any]:
    """Register the scenario's organizations and hand out their units."""
    from client.sdk import LedgerClient
    from ledger.keys import Signer
    from loadtests._scenario import Network

    init = json.loads((node_dir / "init.json").read_text())
    authority = Signer.from_key((node_dir / "authority.key").read_text().strip())
    salt = f"load-{os.getpid()}-{time.time_ns()}"
    net = Network(holders, authority=authority, authority_id=init["authority"], salt=salt)
    ops = net.setup_ops()
    with LedgerClient(target, timeout=120) as client:
        for lo in range(0, len(ops), 500):
            results = client.submit_batch([op.entry for op in ops[lo : lo + 500]])
            bad = [r for r in results if isinstance(r, Exception)]
            if bad:
                raise SystemExit(f"seeding was rejected: {bad[0]!r}")
    return {"holders": net.holders, "salt": salt, "log_vkey": init["vkey"], "seed_entries": len(ops)}


def run_locust(args: argparse.Namespace, target: str, seed_file: Path, acks_dir: Path) -> int:
    prefix = RESULTS / ("locust_bare" if args.bare else "locust")
    fixed = BARE_FIXED_USERS if args.bare else FIXED_USERS
    per_user = args.rate / max(1, args.users - fixed)
    env = {
        **os.environ, "LOAD_SEED": str(seed_file), "LOAD_ACKS_DIR": str(acks_dir), "LOAD_USER_RATE": f"{per_user:g}",
    }  # fmt: skip
    cmd = [
        _bin("locust"), "-f", str(ROOT / "loadtests" / "locustfile.py"), "--headless",
        "--users", str(args.users), "--spawn-rate", str(args.spawn_rate), "--run-time", f"{args.duration}s",
        "--host", target, "--csv", str(prefix), "--html", f"{prefix}.html",
        "--only-summary", "--stop-timeout", "10", "--exit-code-on-error", "0",
    ]  # fmt: skip
    if args.processes != 1:
        cmd += ["--processes", str(args.processes)]
    if args.bare:
        cmd += BARE_USER_CLASSES
    return subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode


def node_cpu_seconds(pid: int) -> float:
    """CPU seconds so far of the node process and of its live children (its
    signature workers, node.sigpool)."""
    return cpu_seconds([pid, *child_pids(pid)])


def children_cpu() -> float:
    """CPU seconds of every child process waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def check_acks(node_dir: Path, acks_dir: Path) -> tuple[int, list[str]]:
    """Every acknowledged (index, digest) must be that entry of the ledger."""
    from ledger.keys import Signer
    from ledger.log import Ledger
    from ledger.state import StateMachine

    signer = Signer.from_key((node_dir / "node.key").read_text().strip())
    problems: list[str] = []
    count = 0
    with Ledger.open(node_dir / "ledger", signer=signer, machine=StateMachine()) as ledger:
        for path in sorted(acks_dir.glob("acks-*.txt")):
            for line in path.read_text().splitlines():
                index_text, digest = line.split()
                index = int(index_text)
                count += 1
                try:
                    got = hashlib.sha256(ledger.entry(index)).hexdigest()
                except Exception as exc:  # noqa: BLE001 - reported below
                    problems.append(f"entry {index}: {exc}")
                    continue
                if got != digest:
                    problems.append(f"entry {index}: digest {got} is not the acknowledged {digest}")
    return count, problems


def audit(node_dir: Path) -> tuple[bool, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "node.main", "audit", str(node_dir / "ledger"), "--quiet"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip()


def read_stats(prefix: str = "locust") -> dict[str, dict[str, str]]:
    with (RESULTS / f"{prefix}_stats.csv").open() as f:
        return {row["Name"]: row for row in csv.DictReader(f)}


def print_requests(stats: dict[str, dict[str, str]]) -> None:
    for name in ("Submit", "GetLabel", "verify_label", "Reconcile", "Aggregated"):
        row = stats.get(name)
        if row:
            print(
                f"{name:14} {int(row['Request Count']):>8} requests  {int(row['Failure Count']):>5} failed  "
                f"{float(row['Requests/s']):>8.1f}/s  p50 {row['50%']:>5} ms  p99 {row['99%']:>5} ms"
            )


def print_targets(stats: dict[str, dict[str, str]]) -> None:
    """Issue 5's Locust targets, PASS or FAIL, from Locust's stats."""
    submit = stats.get("Submit", {})
    rate = float(submit.get("Requests/s", 0) or 0)
    p99 = float(submit.get("99%", "inf") or "inf")
    failures = int(stats.get("Aggregated", {}).get("Failure Count", 1) or 0)
    for ok, text in (
        (rate >= SUBMIT_TARGET, f"submissions/s {rate:,.0f} (>= {SUBMIT_TARGET:,.0f})"),
        (p99 < P99_TARGET_MS, f"Submit p99 {p99:g} ms (< {P99_TARGET_MS:g} ms)"),
        (failures == 0, f"failed requests {failures} (= 0)"),
    ):
        print(f"{'PASS' if ok else 'FAIL'}  {text}")


def bare_seed(holders: int) -> dict[str, Any]:
    """The seed file of a bare run: the holders' names only. The bare server
    checks nothing, so no organization is registered and no unit issued; the
    users sign their operations as they would for a node."""
    from loadtests._scenario import Network

    salt = f"bare-{os.getpid()}-{time.time_ns()}"
    return {"holders": Network(holders, salt=salt).holders, "salt": salt, "log_vkey": "", "seed_entries": 0}


def run_bare(args: argparse.Namespace) -> int:
    """Locust's submitting users against :mod:`loadtests.bare_server`."""
    tmp = Path(tempfile.mkdtemp(prefix="locust_bare_"))
    acks_dir = tmp / "acks"
    seed_file = tmp / "seed.json"
    seed_file.write_text(json.dumps(bare_seed(args.holders or args.users)))
    port = _free_port()
    target = f"127.0.0.1:{port}"
    server = start_bare_server(port)
    try:
        pace = f"{args.rate:,.0f} submissions/s offered" if args.rate > 0 else "back to back"
        print(f"bare server {target} (answers Submit at once; no node): {args.users} users"
              f" ({', '.join(BARE_USER_CLASSES)}) for {args.duration} s, {pace}", flush=True)  # fmt: skip
        server_cpu, locust_cpu, started = cpu_seconds([server.pid]), children_cpu(), time.monotonic()
        rc = run_locust(args, target, seed_file, acks_dir)
        elapsed = time.monotonic() - started
        server_cpu, locust_cpu = cpu_seconds([server.pid]) - server_cpu, children_cpu() - locust_cpu
    finally:
        stop_server(server)
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    stats = read_stats("locust_bare")
    submitted = int(stats.get("Submit", {}).get("Request Count", 0) or 0)
    print()
    print(f"locust exit status {rc}")
    print_requests(stats)
    print(
        f"CPU over {elapsed:.0f} s (2 cores = 200%): bare server {server_cpu / elapsed:.0%} "
        f"({server_cpu / max(submitted, 1) * 1e6:.0f} us per Submit), Locust {locust_cpu / elapsed:.0%} "
        f"({locust_cpu / max(submitted, 1) * 1e6:.0f} us per Submit), load average {os.getloadavg()[0]:.1f}"
    )
    print("the ceiling: issue 5's targets against a server that does no work")
    print_targets(stats)
    print(f"reports: {RESULTS / 'locust_bare_stats.csv'}, {RESULTS / 'locust_bare.html'}")
    return 0 if rc == 0 and submitted > 0 else 1


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtests.run_locust", description=(__doc__ or "").split("\n")[0])
    p.add_argument("--users", type=int, default=200)
    p.add_argument("--rate", type=float, default=2_100,
                   help="submissions/s shared by the holder and supplier users (default 2100; 0: back to back)")
    p.add_argument("--spawn-rate", type=float, default=50)
    p.add_argument("--duration", type=int, default=60, help="seconds of load (default 60)")
    p.add_argument("--holders", type=int, help="organizations seeded for holder and supplier users (default: users)")
    p.add_argument("--processes", type=int, default=1, help="Locust worker processes (-1: one per CPU)")
    p.add_argument("--keep", action="store_true", help="keep the node directory")
    p.add_argument("--node-arg", action="append", default=[], metavar="ARG",
                   help="an extra argument for carbonledger serve (repeatable), e.g. --node-arg=--verify-processes=0")
    p.add_argument("--bare", action="store_true",
                   help="the ceiling: the submitting users against a server that answers Submit at once, no node")
    args = p.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.bare:
        return run_bare(args)
    tmp = Path(tempfile.mkdtemp(prefix="locust_node_"))
    node_dir, acks_dir = tmp / "node", tmp / "acks"
    init = subprocess.run(
        [sys.executable, "-m", "node.main", "init", str(node_dir), "--origin", ORIGIN, "--json"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    (node_dir / "init.json").write_text(init.stdout)
    port = _free_port()
    target = f"127.0.0.1:{port}"
    node = start_node(node_dir, port, args.node_arg)
    try:
        info = seed(target, node_dir, args.holders or args.users)
        seed_file = tmp / "seed.json"
        seed_file.write_text(json.dumps(info))
        print(f"node {target} seeded with {info['seed_entries']} entries, {len(info['holders'])} holders", flush=True)
        pace = f"{args.rate:,.0f} submissions/s offered" if args.rate > 0 else "back to back"
        print(f"{args.users} users for {args.duration} s, {pace}", flush=True)
        node_cpu, locust_cpu, started = node_cpu_seconds(node.pid), children_cpu(), time.monotonic()
        rc = run_locust(args, target, seed_file, acks_dir)
        # The node's and Locust's CPU over the run (Locust's processes have
        # exited; the node is still up), to tell which side was the limit.
        elapsed = time.monotonic() - started
        node_cpu, locust_cpu = node_cpu_seconds(node.pid) - node_cpu, children_cpu() - locust_cpu
    finally:
        stop_server(node)
    acked, problems = check_acks(node_dir, acks_dir)
    audit_ok, audit_text = audit(node_dir)
    stats = read_stats()
    print()
    print(f"locust exit status {rc}")
    print_requests(stats)
    print(
        f"CPU over {elapsed:.0f} s (2 cores = 200%): node and its signature workers {node_cpu / elapsed:.0%} "
        f"({node_cpu / max(acked, 1) * 1e6:.0f} us per acknowledged entry), "
        f"Locust {locust_cpu / elapsed:.0%}, load average {os.getloadavg()[0]:.1f}"
    )
    print(f"acknowledged entries checked in the ledger: {acked}, problems: {len(problems)}")
    for line in problems[:10]:
        print(f"  {line}")
    print(f"audit: {'clean' if audit_ok else 'FAILED'}: {audit_text.splitlines()[-1] if audit_text else ''}")
    print_targets(stats)
    print(f"reports: {RESULTS / 'locust_stats.csv'}, {RESULTS / 'locust.html'}")
    if not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"node directory kept: {node_dir}")
    return 0 if (not problems and audit_ok and acked > 0) else 1


if __name__ == "__main__":
    sys.exit(main())
