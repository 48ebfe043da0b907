"""``carbonledger backup``: a copy taken beside a node under load is a
prefix of its log that audits and serves; a copy that fails, or would
overwrite something, leaves nothing behind."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from client.cli import main
from client.sdk import LedgerClient
from ledger.keys import Signer
from ledger.log import Ledger
from ledger.state import StateMachine
from tests.test_node_process import ROOT, Registrations, Serve, carbonledger, init_node
from tests.test_node_support import Net, key, open_ledger


def _leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if ".partial-" in p.name]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_backup_taken_under_load_audits_and_a_node_serves_it(tmp_path: Path) -> None:
    node_dir = init_node(tmp_path)
    serve = Serve(node_dir)
    net = Net()
    backup_dir = tmp_path / "backup"
    load = Registrations(serve.target, net, workers=4, timeout=10, retries=3)
    try:
        load.wait_for(40, timeout=30)
        # The node goes on committing while the copy is taken and audited.
        out = subprocess.run(carbonledger("backup", str(node_dir / "ledger"), str(backup_dir), "--json"),
                             cwd=ROOT, check=False, capture_output=True, text=True, timeout=120)  # fmt: skip
    finally:
        load.stop()
        assert serve.stop() == 0
    assert load.failures == 0
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    size = report["entries"]
    assert report["ok"] and report["origin"] == "test.example/log" and size >= 40
    assert sorted(p.name for p in backup_dir.iterdir()) == ["data.mdb"]
    assert _leftovers(tmp_path) == []
    signer = Signer.from_key((node_dir / "node.key").read_text().strip())
    with Ledger.open(node_dir / "ledger", signer=signer, machine=StateMachine()) as source:
        # A prefix of the live log: the same root at the backup's size.
        assert size <= source.size
        assert source.root(size).hex() == report["root"]
    # Restored as a node directory's ledger, it serves from that size on.
    restored = tmp_path / "restored"
    restored.mkdir()
    for name in ("node.key", "node.vkey", "genesis.dsse"):
        shutil.copy2(node_dir / name, restored / name)
    backup_dir.rename(restored / "ledger")
    serve = Serve(restored)
    try:
        with LedgerClient(serve.target, timeout=10) as client:
            origin, tree_size, root = client.checkpoint().split("\n")[:3]
            assert (origin, int(tree_size), base64.b64decode(root).hex()) == ("test.example/log", size, report["root"])
            for index, envelope in load.acked:
                if index < size:
                    assert client.entry(index) == envelope
            assert client.submit(net.register("STEEL")).index == size
    finally:
        assert serve.stop() == 0


def _small_ledger(path: Path) -> None:
    with open_ledger(path) as led:
        led.append(Net().setup())


def test_a_copy_that_does_not_audit_is_not_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _small_ledger(tmp_path / "ledger")
    dest = tmp_path / "backup"
    # Pinned to a key that did not sign its checkpoints.
    assert main(["backup", str(tmp_path / "ledger"), str(dest), "--vkey", key("OTHER").vkey, "--quiet"]) == 1
    assert "BACKUP FAILED: the copy does not audit" in capsys.readouterr().out
    assert not dest.exists() and _leftovers(tmp_path) == []
    # With the right key it is kept, into an empty directory made beforehand.
    dest.mkdir()
    assert main(["backup", str(tmp_path / "ledger"), str(dest), "--vkey", key("LOG").vkey, "--quiet"]) == 0
    assert f"backup ok: {dest}: " in capsys.readouterr().out
    with open_ledger(dest) as copy, open_ledger(tmp_path / "ledger") as source:
        assert (copy.size, copy.root(), copy.head.state_digest) == (source.size, source.root(), source.head.state_digest)


def test_a_backup_never_overwrites_and_names_what_is_wrong(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _small_ledger(tmp_path / "ledger")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("keep me")
    cases = [
        ([str(tmp_path / "ledger"), str(taken)], f"{taken} already exists and is not an empty directory"),
        ([str(tmp_path / "ledger"), str(taken / "notes.txt")], "already exists and is not an empty directory"),
        ([str(tmp_path / "ledger"), str(tmp_path / "ledger")], "already exists and is not an empty directory"),
        ([str(tmp_path / "nowhere"), str(tmp_path / "b")], f"{tmp_path / 'nowhere'} holds no ledger"),
        ([str(tmp_path / "ledger"), str(tmp_path / "no" / "b")], f"{tmp_path / 'no'} is not a directory"),
    ]
    for argv, message in cases:
        assert main(["backup", *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (argv, err)
    assert (taken / "notes.txt").read_text() == "keep me"
    assert not (tmp_path / "b").exists() and _leftovers(tmp_path) == []
