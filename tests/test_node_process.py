"""A real ``carbonledger serve`` process: init, serve, submit, SIGTERM; and
SIGKILL under concurrent submissions loses no acknowledged entry."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.errors import NotFound, Unavailable
from client.sdk import LedgerClient
from ledger.checkpoint import parse_checkpoint
from ledger.keys import Signer
from ledger.log import Ledger
from ledger.note import parse_note
from ledger.records.build import org_spec
from ledger.state import StateMachine
from ledger.tlog_tiles import verify_entry_from_tiles
from tests.test_node_support import Net, key

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def carbonledger(*args: str) -> list[str]:
    return [sys.executable, "-m", "node.main", *args]


def init_node(tmp_path: Path) -> Path:
    auth_key = tmp_path / "auth.key"
    auth_key.write_text(key("AUTH").skey + "\n")
    directory = tmp_path / "node"
    out = subprocess.run(
        carbonledger("init", str(directory), "--origin", "test.example/log", "--authority-key", str(auth_key),
                     "--authority-id", "AUTH", "--json"),
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert (directory / "node.key").stat().st_mode & 0o777 == 0o600
    return directory


class Serve:
    def __init__(self, directory: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            carbonledger("serve", str(directory), "--listen", "127.0.0.1:0", "--grace", "5", *extra),
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert "listening on" in line, self.proc.stderr.read() if self.proc.stderr else line
        self.target = line.rsplit(" ", 1)[1].strip()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(30)


@pytest.fixture
def node_dir(tmp_path: Path) -> Iterator[Path]:
    yield init_node(tmp_path)


@pytest.mark.timeout(120)  # a line the node never prints must not block for the suite's 600 s
def test_init_serve_submit_and_stop(node_dir: Path) -> None:
    serve = Serve(node_dir, "--metrics-port", "0", "--event-cache-refs", "5000")
    try:
        # A port picked for /metrics is printed, as the gRPC one is.
        assert serve.proc.stdout is not None
        metrics = serve.proc.stdout.readline().split(" on ", 1)[1].strip()
        scraped = urllib.request.urlopen(metrics, timeout=10).read().decode()
        assert "carbonledger_tree_size" in scraped
        assert "carbonledger_event_cache_max_refs 5000.0" in scraped.splitlines()
        net = Net()
        with LedgerClient(serve.target, timeout=10) as client:
            assert client.checkpoint().startswith("test.example/log\n1\n")
            assert client.org("AUTH").keys[0].vkey == key("AUTH").vkey
            receipt = client.submit(net.register("STEEL"))
            assert receipt.index == 1 and not receipt.duplicate
            assert client.org("STEEL").roles == ["supplier"]
    finally:
        assert serve.stop(signal.SIGTERM) == 0
    assert serve.proc.stderr is not None
    logs = serve.proc.stderr.read()
    assert '"event": "stopped"' in logs
    # Refusing to initialise over an existing node.
    again = subprocess.run(carbonledger("init", str(node_dir), "--origin", "x.example/log"), cwd=ROOT,
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert again.returncode == 2 and "already holds a node" in again.stderr


@pytest.mark.timeout(120)
def test_serve_with_tiles_http_serves_the_log_as_tlog_tiles(node_dir: Path) -> None:
    serve = Serve(node_dir, "--tiles-http", "127.0.0.1:0")
    try:
        assert serve.proc.stdout is not None
        line = serve.proc.stdout.readline()
        assert line.startswith("tlog-tiles on http://127.0.0.1:"), line
        checkpoint_url = line.split(" on ", 1)[1].strip()
        base = checkpoint_url.removesuffix("/checkpoint")
        net = Net()
        with LedgerClient(serve.target, timeout=10) as client:
            entry = net.register("STEEL")
            index = client.submit(entry).index
            note = urllib.request.urlopen(checkpoint_url, timeout=10).read().decode()
            assert note == client.checkpoint()
        cp = parse_checkpoint(parse_note(note).text)

        def fetch(path: str) -> bytes:
            with urllib.request.urlopen(f"{base}/{path}", timeout=10) as resp:
                return bytes(resp.read())

        assert verify_entry_from_tiles(fetch, cp.size, cp.root_hash, index) == entry
    finally:
        assert serve.stop(signal.SIGTERM) == 0


def test_a_second_node_on_the_same_directory_or_port_exits_with_the_reason(node_dir: Path, tmp_path: Path) -> None:
    serve = Serve(node_dir)
    try:
        # Same directory, another port: its head would go stale as soon as
        # either node commits; refused before it listens.
        second = subprocess.run(carbonledger("serve", str(node_dir), "--listen", "127.0.0.1:0"), cwd=ROOT,
                                check=False, capture_output=True, text=True, timeout=60)  # fmt: skip
        assert second.returncode == 2
        assert f"is already open for writing by process {serve.proc.pid}" in second.stderr
        # Another directory, the same port: the address and the OS's reason.
        (tmp_path / "other").mkdir()
        other = init_node(tmp_path / "other")
        third = subprocess.run(carbonledger("serve", str(other), "--listen", serve.target), cwd=ROOT,
                               check=False, capture_output=True, text=True, timeout=60)  # fmt: skip
        assert third.returncode == 2
        assert f"carbonledger: cannot listen for gRPC on {serve.target}: Address already in use" in third.stderr
        assert "Traceback" not in second.stderr + third.stderr
        # The first node is untouched and serves on.
        with LedgerClient(serve.target, timeout=10) as client:
            assert client.submit(Net().register("STEEL")).index == 1
    finally:
        assert serve.stop(signal.SIGTERM) == 0


def test_a_full_disk_is_unavailable_writes_nothing_and_passes(node_dir: Path) -> None:
    serve = Serve(node_dir)
    net = Net()
    try:
        # No file of the node may grow any more (RLIMIT_FSIZE's soft limit,
        # so that it can be lifted again): to LMDB this is a full disk, its
        # writes past the end of its file fail (EFBIG; the node ignores
        # SIGXFSZ, which would otherwise kill it).
        hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
        data = node_dir / "ledger" / "data.mdb"
        resource.prlimit(serve.proc.pid, resource.RLIMIT_FSIZE, (data.stat().st_size, hard))
        with LedgerClient(serve.target, timeout=10, retries=0) as client:
            for n in range(2_000):  # until a commit needs the file to grow
                envelope = net.op("org.register", "AUTH", org_spec(f"F{n}", "Org", ["supplier"], [key(f"F{n}")]))
                size = int(client.checkpoint().split("\n")[1])
                try:
                    assert client.submit(envelope).index == size
                except Unavailable as exc:
                    refused = exc
                    break
            else:
                pytest.fail("the ledger never needed its file to grow")
            assert "the node cannot store entries now (" in str(refused)
            assert "nothing was written" in str(refused) and str(node_dir) not in str(refused)
            # Nothing of the refused entry is in the log; reads go on.
            assert int(client.checkpoint().split("\n")[1]) == size
            with pytest.raises(NotFound):
                client.org(f"F{n}")
            # Room again: the same submission is accepted at that index.
            resource.prlimit(serve.proc.pid, resource.RLIMIT_FSIZE, (hard, hard))
            assert client.submit(envelope).index == size
            assert client.org(f"F{n}").roles == ["supplier"]
    finally:
        assert serve.stop(signal.SIGTERM) == 0
    audit = subprocess.run(carbonledger("audit", str(node_dir / "ledger")), cwd=ROOT, check=False,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert audit.returncode == 0 and f"audit ok: test.example/log: {size + 1} entries" in audit.stdout


class Registrations:
    """Threads registering new organizations on a node as fast as it
    acknowledges them. ``acked`` holds (index, envelope) of every
    acknowledged one; a thread stops at its first failed submission and
    counts it in ``failures``."""

    def __init__(self, target: str, net: Net, *, workers: int = 6, timeout: float = 5, retries: int = 0) -> None:
        self.acked: list[tuple[int, bytes]] = []
        self.failures = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._submitter, args=(target, net, w, timeout, retries)) for w in range(workers)
        ]
        for t in self._threads:
            t.start()

    def _submitter(self, target: str, net: Net, worker: int, timeout: float, retries: int) -> None:
        with LedgerClient(target, timeout=timeout, retries=retries) as client:
            n = 0
            while not self._stop.is_set():
                spec = org_spec(f"W{worker}N{n}", "Org", ["supplier"], [key(f"W{worker}N{n}")])
                envelope = net.op("org.register", "AUTH", spec)
                n += 1
                try:
                    receipt = client.submit(envelope)
                except Exception:
                    with self._lock:
                        self.failures += 1
                    return
                with self._lock:
                    self.acked.append((receipt.index, envelope))

    def wait_for(self, count: int, timeout: float) -> None:
        deadline = time.time() + timeout
        while len(self.acked) < count and time.time() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)


def test_sigkill_under_load_keeps_every_acknowledged_entry(node_dir: Path) -> None:
    serve = Serve(node_dir)
    load = Registrations(serve.target, Net())
    load.wait_for(60, timeout=10)
    os.kill(serve.proc.pid, signal.SIGKILL)
    serve.proc.wait(10)
    load.stop()
    acked = load.acked
    assert len(acked) >= 60
    signer = Signer.from_key((node_dir / "node.key").read_text().strip())
    with Ledger.open(node_dir / "ledger", signer=signer, machine=StateMachine()) as led:
        for index, envelope in acked:
            assert led.entry(index) == envelope
        size = led.size
    # The node serves again from where it stopped.
    serve = Serve(node_dir)
    try:
        with LedgerClient(serve.target, timeout=10) as client:
            assert client.checkpoint().split("\n")[1] == str(size)
            index, envelope = acked[0]
            assert client.submit(envelope).index == index
    finally:
        assert serve.stop() == 0
