"""The committed generated code of the wire contract is up to date."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "proto" / "carbonledger" / "v1"
GENERATED = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def _load_generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("proto_generate", ROOT / "proto" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_code_matches_the_proto_files(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    _load_generator().generate(tmp_path)
    fresh = tmp_path / "carbonledger" / "v1"
    protos = sorted(p.stem for p in PACKAGE.glob("*.proto"))
    assert protos, "no .proto files found"
    expected = {f"{stem}{suffix}" for stem in protos for suffix in GENERATED}
    committed = {p.name for p in PACKAGE.iterdir() if p.name.endswith(GENERATED)}
    assert committed == expected, "generated files missing or stale; run: python proto/generate.py"
    stale = [name for name in sorted(expected) if (fresh / name).read_bytes() != (PACKAGE / name).read_bytes()]
    assert stale == [], f"out of date: {stale}; run: python proto/generate.py"


def test_the_contract_imports_as_carbonledger_v1() -> None:
    from carbonledger.v1 import events_pb2, log_pb2_grpc, query_pb2_grpc, reconcile_pb2_grpc

    assert events_pb2.DESCRIPTOR.package == "carbonledger.v1"
    for module in (log_pb2_grpc, query_pb2_grpc, reconcile_pb2_grpc):
        assert any(name.endswith("Servicer") for name in dir(module))
