"""Real processes for the cluster tests: etcd members and carbonledger nodes
on loopback ports, in temporary directories, each stopped by its own pid.

etcd comes from Debian's ``etcd-server`` package; :func:`require_etcd`
installs it with apt-get when it is missing and we are root, and skips the
test otherwise.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

import aetcd
import grpc
import pytest
from carbonledger.v1 import cluster_pb2, cluster_pb2_grpc

from tests.test_node_support import key

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]

ORIGIN = "cluster.test.example/log"

__all__ = ["ORIGIN", "EtcdCluster", "NodeCluster", "free_ports", "require_etcd"]


def require_etcd() -> str:
    path = shutil.which("etcd")
    detail = "not root, so it cannot be installed here"
    if path is None and os.geteuid() == 0:
        done = subprocess.run("apt-get update -qq && apt-get install -y -qq etcd-server", shell=True,
                              capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
        path = shutil.which("etcd")
        detail = f"apt-get exited {done.returncode}: {done.stderr[-500:]}"
    if path is None:
        # The fault tests are part of the suite: a missing etcd fails them
        # loudly instead of skipping them unnoticed.
        pytest.fail(f"etcd (Debian etcd-server) is not installed; {detail}")
    return path


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


class EtcdCluster:
    """``n`` etcd members on loopback; ``kill(i)`` and ``start(i)`` one."""

    def __init__(self, base: Path, n: int = 3) -> None:
        self.binary = require_etcd()
        self.base = base
        ports = free_ports(2 * n)
        self.client_ports, self.peer_ports = ports[:n], ports[n:]
        self.names = [f"m{i}" for i in range(n)]
        self.initial = ",".join(f"{m}=http://127.0.0.1:{p}" for m, p in zip(self.names, self.peer_ports))
        self.token = f"cl-{os.getpid()}-{time.time_ns()}"
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * n
        for i in range(n):
            self.start(i)
        self.wait_healthy()

    @property
    def endpoints(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.client_ports)

    def start(self, i: int) -> None:
        c, p = self.client_ports[i], self.peer_ports[i]
        log = open(self.base / f"etcd-{self.names[i]}.log", "ab")  # noqa: SIM115 - the child keeps it
        self.procs[i] = subprocess.Popen(
            [self.binary, "--name", self.names[i], "--data-dir", str(self.base / f"etcd-{self.names[i]}"),
             "--listen-client-urls", f"http://127.0.0.1:{c}", "--advertise-client-urls", f"http://127.0.0.1:{c}",
             "--listen-peer-urls", f"http://127.0.0.1:{p}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{p}",
             "--initial-cluster", self.initial, "--initial-cluster-state", "new",
             "--initial-cluster-token", self.token, "--heartbeat-interval", "50", "--election-timeout", "500",
             "--logger", "zap", "--log-level", "warn"],
            stdout=log, stderr=log,
        )  # fmt: skip

    def kill(self, i: int) -> None:
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        self.procs[i] = None

    def _run(self, fn: Callable[[aetcd.Client], Awaitable[T]]) -> T:
        async def go() -> T:
            host, port = self.endpoints.split(",")[0].rsplit(":", 1)
            async with aetcd.Client(host, int(port), timeout=3) as client:
                return await fn(client)

        return asyncio.run(asyncio.wait_for(go(), 10))

    def wait_healthy(self, timeout: float = 30) -> None:
        """Until a write through every live member succeeds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self._run(lambda c: c.put(b"/health", b"ok"))
                return
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.2)
        raise RuntimeError("etcd cluster did not become healthy")

    def keys(self, prefix: str) -> list[str]:
        async def get(client: aetcd.Client) -> list[str]:
            return [kv.key.decode() for kv in await client.get_prefix(prefix.encode(), keys_only=True)]

        return self._run(get)

    def stop(self) -> None:
        for i in range(len(self.procs)):
            self.kill(i)


def carbonledger(*args: str) -> list[str]:
    return [sys.executable, "-m", "node.main", *args]


class NodeCluster:
    """``n`` carbonledger nodes replicating through ``etcd``; every node
    witnesses the others, and a 2-of-3 policy names them all."""

    def __init__(self, base: Path, etcd: EtcdCluster, n: int = 3, *, lease_ttl: int = 30,
                 compact_interval: float = 1.0, start: Sequence[int] | None = None,
                 tiles: Sequence[int] = ()) -> None:  # fmt: skip
        self.base, self.etcd, self.n = base, etcd, n
        self.lease_ttl, self.compact_interval = lease_ttl, compact_interval
        auth = base / "auth.key"
        auth.write_text(key("AUTH").skey + "\n")
        self.dirs = [base / f"node{i}" for i in range(n)]
        for i, d in enumerate(self.dirs):
            out = subprocess.run(
                carbonledger("init", str(d), "--origin", ORIGIN, "--authority-key", str(auth), "--authority-id", "AUTH",
                             "--cluster", "--witness-name", f"witness-{i}"),
                cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert out.returncode == 0, out.stderr
        self.ports = free_ports(n)
        self.targets = [f"127.0.0.1:{p}" for p in self.ports]
        #: Nodes serving c2sp.org/tlog-tiles: node -> base URL.
        self.tiles = {i: f"http://127.0.0.1:{p}" for i, p in zip(tiles, free_ports(len(tiles)), strict=True)}
        policy = "".join(f"log {(d / 'node.vkey').read_text().strip()}\n" for d in self.dirs)
        policy += "".join(f"witness w{i} {(d / 'witness.vkey').read_text().strip()}\n" for i, d in enumerate(self.dirs))
        policy += f"group all-nodes 2 {' '.join(f'w{i}' for i in range(n))}\nquorum all-nodes\n"
        self.policy_text = policy
        (base / "cluster.policy").write_text(policy)
        self.procs: list[subprocess.Popen[str] | None] = [None] * n
        for i in start if start is not None else range(n):
            self.start(i)

    def start(self, i: int) -> None:
        peers = [a for j, t in enumerate(self.targets) if j != i for a in ("--peer", t)]
        tiles = ["--tiles-http", self.tiles[i].removeprefix("http://")] if i in self.tiles else []
        log = open(self.base / f"node{i}.log", "a")  # noqa: SIM115 - the child keeps it
        self.procs[i] = subprocess.Popen(
            carbonledger("serve", str(self.dirs[i]), "--listen", self.targets[i], "--grace", "3",
                         "--etcd", self.etcd.endpoints, "--node-id", f"node{i}", *peers,
                         "--policy", str(self.base / "cluster.policy"), "--witness-key", str(self.dirs[i] / "witness.key"),
                         "--etcd-lease-ttl", str(self.lease_ttl), "--compact-interval", str(self.compact_interval),
                         *tiles),
            cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True,
        )  # fmt: skip
        proc = self.procs[i]
        assert proc is not None and proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on" in line, (self.base / f"node{i}.log").read_text()[-3000:]

    def kill(self, i: int, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            proc.wait(30)
        self.procs[i] = None

    def status(self, i: int, timeout: float = 5) -> cluster_pb2.ClusterStatus:
        with grpc.insecure_channel(self.targets[i]) as ch:
            return cluster_pb2_grpc.PeerStub(ch).GetClusterStatus(cluster_pb2.GetClusterStatusRequest(), timeout=timeout)

    def wait_converged(self, nodes: Sequence[int], min_size: int = 0, timeout: float = 60) -> cluster_pb2.ClusterStatus:
        """Wait until ``nodes`` have the same tree (size and root), at least ``min_size``."""
        deadline = time.monotonic() + timeout
        last: list[cluster_pb2.ClusterStatus] = []
        while time.monotonic() < deadline:
            try:
                last = [self.status(i) for i in nodes]
                sizes = {(s.tree_size, s.root_hash) for s in last}
                if len(sizes) == 1 and last[0].tree_size >= min_size:
                    return last[0]
            except grpc.RpcError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"nodes {list(nodes)} did not converge: {[(s.tree_size, s.root_hash.hex()[:12]) for s in last]}")

    def stop(self) -> None:
        for i in range(self.n):
            self.kill(i, signal.SIGTERM)
