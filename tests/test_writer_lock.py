"""One writer per ledger directory: a second Ledger.open on a directory in
use is refused with LedgerInUse, in this process or another, and nothing it
could have written is lost; the lock goes with its holder however it ends;
readers of the store are not locked out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ledger.keys import Signer
from ledger.log import Ledger
from ledger.state import StateMachine
from ledger.storage import LedgerInUse
from tests.test_node_support import Net, open_ledger

ROOT = Path(__file__).resolve().parents[1]


def test_second_open_in_this_process_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    path = tmp_path / "l"
    first = open_ledger(path)
    first.append(Net().setup())
    size = first.size
    with pytest.raises(LedgerInUse, match=rf"ledger at {path} is already open for writing by process \d+") as info:
        open_ledger(path)
    assert info.value.path == path
    # The refused open changed nothing: the first ledger goes on appending.
    net = Net()
    first.append([net.gec_project()])
    assert first.size == size + 1
    first.close()
    with open_ledger(path) as again:
        assert again.size == size + 1


_HOLDER = """
import sys, time
from ledger.log import Ledger
from ledger.state import StateMachine
from tests.test_node_support import Net, key
led = Ledger.open(sys.argv[1], signer=key("LOG"), machine=StateMachine())
led.append(Net().setup())
print(led.size, flush=True)
time.sleep(60)
"""


def test_another_process_holding_the_directory_is_named_and_its_death_frees_it(tmp_path: Path) -> None:
    path = tmp_path / "l"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        size = int(holder.stdout.readline())
        with pytest.raises(LedgerInUse) as info:
            open_ledger(path)
        assert info.value.holder == holder.pid
    finally:
        # SIGKILL: no clean-up runs in the holder; the kernel drops its lock.
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    with open_ledger(path) as led:
        assert led.size == size > 0


def test_readers_of_the_store_run_beside_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "l"
    with open_ledger(path) as led:
        led.append(Net().setup())
        audit = subprocess.run(
            [sys.executable, "-m", "node.main", "audit", str(path), "--json"],
            check=False, cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert audit.returncode == 0, audit.stderr
        assert json.loads(audit.stdout)["entries"] == led.size


def test_the_lock_file_names_the_holder_for_an_operator(tmp_path: Path) -> None:
    with open_ledger(tmp_path / "l"):
        assert (tmp_path / "l" / "writer.lock").read_text() == f"{os.getpid()}\n"


def test_the_lock_is_taken_before_the_ledger_is_read(tmp_path: Path) -> None:
    # A refused open fails before reading the ledger: another log key gets
    # LedgerInUse, not a signer mismatch, while the directory is in use.
    path = tmp_path / "l"
    with open_ledger(path), pytest.raises(LedgerInUse):
        Ledger.open(path, signer=Signer.generate("other"), machine=StateMachine())
