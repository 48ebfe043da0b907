"""Architecture tests: the layering of shared/ARCHITECTURE.md section 2."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "ledger": ("node", "client", "grpc", "carbonledger"),
    "client": ("node",),
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, module in imported_modules(path):
            if module.split(".")[0] in forbidden:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return bad


def test_ledger_and_client_respect_the_layering() -> None:
    for package, forbidden in FORBIDDEN.items():
        assert violations(package, forbidden) == []


def test_the_scanner_sees_forbidden_imports(tmp_path: Path) -> None:
    # Guard against a scanner that passes because it sees nothing.
    bad = tmp_path / "bad.py"
    bad.write_text("import grpc\nfrom node.server import x\nif True:\n    import client.cli\n")
    assert [m for _, m in imported_modules(bad)] == ["grpc", "node.server", "client.cli"]


def test_offline_verification_needs_no_lmdb() -> None:
    """A buyer's verifier imports only ledger's pure modules and cryptography."""
    code = (
        "import sys; sys.modules['lmdb'] = None; sys.modules['grpc'] = None\n"
        "import ledger\n"
        "from ledger import Signer, Verifier\n"
        "from ledger.tlog_proof import verify_tlog_proof\n"
        "from ledger.policy import parse_policy\n"
        "from ledger.envelope import parse_envelope\n"
        "assert 'lmdb' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
