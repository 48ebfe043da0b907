"""carbonledger core: a verifiable log and the carbon state machine. Pure, no network.

The names below are the public surface. ``Ledger`` (which needs LMDB) is
imported lazily, so that offline verification, which needs only the pure
modules and ``cryptography``, never loads the storage engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ledger.errors import (
    AuditDiscrepancy,
    InconsistencyError,
    InvalidProof,
    InvalidSignature,
    LedgerError,
    MalformedError,
    NotFound,
    PermissionDenied,
    Pushback,
    QuorumNotMet,
    RootMismatch,
    StateRuleError,
    StorageError,
    VerificationError,
)
from ledger.keys import Signer, Verifier

if TYPE_CHECKING:
    from ledger.log import Ledger, Receipt

__all__ = [
    "Ledger",
    "Receipt",
    "Signer",
    "Verifier",
    "LedgerError",
    "MalformedError",
    "VerificationError",
    "InvalidSignature",
    "RootMismatch",
    "InvalidProof",
    "InconsistencyError",
    "QuorumNotMet",
    "StateRuleError",
    "PermissionDenied",
    "NotFound",
    "Pushback",
    "StorageError",
    "AuditDiscrepancy",
]


def __getattr__(name: str) -> Any:
    if name in ("Ledger", "Receipt"):
        from ledger import log

        return getattr(log, name)
    raise AttributeError(f"module 'ledger' has no attribute {name!r}")
