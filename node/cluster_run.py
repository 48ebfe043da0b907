"""``make run-cluster``: three etcd members and three replicating nodes on
loopback, for trying the cluster by hand. Ctrl-C stops everything it started.

    python -m node.cluster_run DIR     # state in DIR (kept between runs)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ORIGIN = "cluster.carbonledger.example/log"
N = 3


def _ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def main(argv: list[str]) -> int:
    base = Path(argv[0] if argv else "var/cluster").resolve()
    etcd = shutil.which("etcd")
    if etcd is None:
        print("etcd is missing: apt-get install -y etcd-server", file=sys.stderr)
        return 2
    base.mkdir(parents=True, exist_ok=True)
    ports = _ports(3 * N)
    client, peer, grpc_ports = ports[:N], ports[N : 2 * N], ports[2 * N :]
    endpoints = ",".join(f"127.0.0.1:{p}" for p in client)
    initial = ",".join(f"m{i}=http://127.0.0.1:{peer[i]}" for i in range(N))
    procs: list[subprocess.Popen[bytes]] = []
    fresh = not (base / "node0").exists()
    try:
        for i in range(N):
            # Ports change between runs, so etcd starts from a fresh data dir;
            # the nodes keep their ledgers and catch up from each other.
            shutil.rmtree(base / f"etcd{i}", ignore_errors=True)
            procs.append(subprocess.Popen(
                [etcd, "--name", f"m{i}", "--data-dir", str(base / f"etcd{i}"),
                 "--listen-client-urls", f"http://127.0.0.1:{client[i]}",
                 "--advertise-client-urls", f"http://127.0.0.1:{client[i]}",
                 "--listen-peer-urls", f"http://127.0.0.1:{peer[i]}",
                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer[i]}",
                 "--initial-cluster", initial, "--initial-cluster-state", "new", "--log-level", "warn",
                 "--logger", "zap"],
                stdout=open(base / f"etcd{i}.log", "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115 - the child keeps it
            ))  # fmt: skip
        cli = [sys.executable, "-m", "node.main"]
        if fresh:
            for i in range(N):
                extra = ["--authority-key", str(base / "node0" / "authority.key")] if i else []
                subprocess.run([*cli, "init", str(base / f"node{i}"), "--origin", ORIGIN, "--cluster",
                                "--witness-name", f"witness-{i}", *extra], check=True, capture_output=True)  # fmt: skip
            policy = "".join(f"log {(base / f'node{i}' / 'node.vkey').read_text().strip()}\n" for i in range(N))
            policy += "".join(f"witness w{i} {(base / f'node{i}' / 'witness.vkey').read_text().strip()}\n" for i in range(N))
            policy += "group nodes 2 w0 w1 w2\nquorum nodes\n"
            (base / "cluster.policy").write_text(policy)
        if fresh:
            time.sleep(1.0)
        targets = [f"127.0.0.1:{p}" for p in grpc_ports]
        for i in range(N):
            peers = [a for j in range(N) if j != i for a in ("--peer", targets[j])]
            procs.append(subprocess.Popen(
                [*cli, "serve", str(base / f"node{i}"), "--listen", targets[i], "--etcd", endpoints,
                 "--node-id", f"node{i}", *peers, "--policy", str(base / "cluster.policy"),
                 "--witness-key", str(base / f"node{i}" / "witness.key"),
                 *(["--witness-http", "127.0.0.1:0"] if i == 0 else [])],
                stdout=subprocess.PIPE, stderr=open(base / f"node{i}.log", "a"), text=True,  # noqa: SIM115
            ))  # fmt: skip
            out = procs[-1].stdout
            assert out is not None
            print(out.readline().strip(), flush=True)
            if i == 0:
                print(out.readline().strip(), flush=True)
        print(f"""
etcd members: {endpoints}
nodes:        {' '.join(targets)}   (state and logs in {base})
policy:       {base / 'cluster.policy'}  (2 of 3 node witnesses)

Try:
  CARBONLEDGER_NODE={targets[1]} carbonledger --help   # client verbs take --node; any node takes
                                                        # writes, and all apply the same order
  grpcurl -plaintext {targets[2]} carbonledger.v1.Peer/GetClusterStatus
  grpcurl -plaintext -d '{{"min_cosignatures": 2}}' {targets[0]} carbonledger.v1.Peer/GetCosignedCheckpoint
Kill a node or an etcd member (kill -9 <pid>) and watch the others go on.
Ctrl-C stops everything.""", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave orphans
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main(sys.argv[1:]))
