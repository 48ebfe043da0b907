"""Crash consistency: SIGKILL in the middle of appending loses nothing acknowledged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from ledger.audit import audit_store
from ledger.log import Ledger
from ledger.storage import LmdbStore
from tests.crash_writer import SIGNER

ROOT = Path(__file__).resolve().parents[1]


def run_and_kill(path: Path, round_no: int, acks_before_kill: int) -> dict[int, bytes]:
    """Start the writer, read its acknowledgements, SIGKILL it mid-stream."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.crash_writer", str(path), str(round_no)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    acked: dict[int, bytes] = {}
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            index, entry = line.decode().rstrip("\n").split(" ", 1)
            acked[int(index)] = entry.encode()
            if len(acked) >= acks_before_kill:
                break
        else:
            raise AssertionError(f"writer exited early with {proc.wait()}")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        # Lines already written by the writer were acknowledged too.
        for line in proc.stdout.read().decode().splitlines():
            if " " in line:
                index, entry = line.split(" ", 1)
                acked[int(index)] = entry.encode()
    return acked


def test_sigkill_mid_append_keeps_every_acknowledged_entry(tmp_path: Path) -> None:
    path = tmp_path / "ledger"
    acked: dict[int, bytes] = {}
    for round_no, kill_after in enumerate((300, 1200, 2500)):
        acked.update(run_and_kill(path, round_no, kill_after))
        store = LmdbStore(path)
        try:
            report = audit_store(store, verifier=SIGNER.verifier())
        finally:
            store.close()
        assert report.entries >= max(acked) + 1
        with Ledger.open(path, signer=SIGNER) as led:
            for index, entry in acked.items():
                assert led.entry(index) == entry
