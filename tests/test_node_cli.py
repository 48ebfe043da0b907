"""``carbonledger init`` and ``serve`` refuse bad arguments and unreadable
files with one line naming them and exit 2, before anything is created or
bound (the running cases are in test_node_process)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.cli import build_parser, main
from tests.test_node_support import key


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    # serve configures the "carbonledger" logger for the process; put it back
    # for the tests that run after these in the same interpreter.
    logger = logging.getLogger("carbonledger")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


@pytest.fixture
def node_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    auth = tmp_path / "auth.key"
    auth.write_text(key("AUTH").skey + "\n")
    directory = tmp_path / "node"
    assert main(["init", str(directory), "--origin", "test.example/log", "--authority-key", str(auth)]) == 0
    capsys.readouterr()
    return directory


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--listen", "127.0.0.1:99999", "argument --listen: '127.0.0.1:99999' is not HOST:PORT with a port from 0 to 65535"),
    ("--listen", "7400", "argument --listen: '7400' is not HOST:PORT"),
    ("--listen", "localhost:", "argument --listen: 'localhost:' is not HOST:PORT"),
    ("--metrics-port", "70000", "argument --metrics-port: 70000 is not a port (0 to 65535)"),
    ("--witness-http", "127.0.0.1:http", "argument --witness-http: '127.0.0.1:http' is not HOST:PORT"),
])  # fmt: skip
def test_serve_refuses_an_address_it_would_not_listen_on_as_given(
    node_dir: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, message: str
) -> None:
    # grpc listens on a random port when given one it cannot use (99999).
    # The parser alone: a regression must fail here, not start serving.
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["serve", str(node_dir), option, value])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(("args", "message"), [
    (["--tls-cert", "{tmp}/none.pem", "--tls-key", "{tmp}/none.pem"], "cannot read --tls-cert {tmp}/none.pem: No such file or directory"),
    (["--policy", "{tmp}/none.policy"], "cannot read --policy {tmp}/none.policy: No such file or directory"),
    (["--witness-key", "{tmp}"], "cannot read key file {tmp}: Is a directory"),
])  # fmt: skip
def test_serve_names_a_file_it_cannot_read(
    node_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    argv = ["serve", str(node_dir), "--listen", "127.0.0.1:0", *(a.format(tmp=tmp_path) for a in args)]
    assert main(argv) == 2
    assert capsys.readouterr().err == f"carbonledger: {message.format(tmp=tmp_path)}\n"


def test_init_names_an_authority_key_it_cannot_read_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "node"
    argv = ["init", str(directory), "--origin", "x.example/log", "--authority-key", str(tmp_path / "none.key")]
    assert main(argv) == 2
    assert capsys.readouterr().err == f"carbonledger: cannot read key file {tmp_path}/none.key: No such file or directory\n"
    assert not directory.exists()


def test_serve_refuses_a_node_key_that_is_not_private(node_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (node_dir / "node.key").write_text((node_dir / "node.vkey").read_text())
    assert main(["serve", str(node_dir), "--listen", "127.0.0.1:0"]) == 2
    assert capsys.readouterr().err == f"carbonledger: {node_dir}/node.key: not a private key\n"
