"""Regenerate the Python code of the wire contract.

    python proto/generate.py            # writes beside the .proto files
    python proto/generate.py --out DIR  # writes DIR/carbonledger/v1/...

The generated ``*_pb2.py``, ``*_pb2_grpc.py`` and ``*.pyi`` files are
committed; ``tests/test_proto_generated.py`` regenerates them into a temporary
directory and fails if they differ. ``proto/`` is the import root, so the code
imports as ``carbonledger.v1``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = Path("carbonledger") / "v1"


def proto_files() -> list[Path]:
    return sorted((HERE / PACKAGE).glob("*.proto"))


def include_dirs() -> list[str]:
    """The import roots: ours, protobuf's well-known types (shipped with
    grpcio-tools) and google/rpc (shipped with googleapis-common-protos)."""
    import google.rpc
    import grpc_tools

    grpc_tools_protos = Path(grpc_tools.__file__).parent / "_proto"
    google_rpc_root = Path(next(iter(google.rpc.__path__))).parent.parent
    return [str(HERE), str(grpc_tools_protos), str(google_rpc_root)]


def generate(out: Path) -> None:
    """Write the generated modules for every .proto file under ``out``."""
    from grpc_tools import protoc

    out.mkdir(parents=True, exist_ok=True)
    (out / PACKAGE).mkdir(parents=True, exist_ok=True)
    args = ["grpc_tools.protoc"]
    args += [f"-I{d}" for d in include_dirs()]
    args += [f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}"]
    args += [str(p.relative_to(HERE)) for p in proto_files()]
    code = protoc.main(args)
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output root (default: proto/)")
    args = parser.parse_args(argv)
    generate(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
