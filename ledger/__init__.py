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
from ledger.checkpoint import (
    Checkpoint,
    cosign_checkpoint,
    format_checkpoint,
    parse_checkpoint,
    sign_checkpoint,
    verify_checkpoint,
    verify_cosignature,
)
from ledger.envelope import (
    Envelope,
    encode_envelope,
    parse_envelope,
    sign_envelope,
    verified_keys,
    verify_envelope,
)
from ledger.keys import Signer, Verifier
from ledger.merkle import verify_consistency, verify_inclusion
from ledger.note import open_note, sign_note
from ledger.policy import Policy, format_policy, parse_policy, verify_checkpoint_policy
from ledger.tlog_proof import TlogProof, format_tlog_proof, parse_tlog_proof, verify_tlog_proof

if TYPE_CHECKING:
    from ledger.log import Ledger, Receipt

__all__ = [
    "Ledger",
    "Receipt",
    "Signer",
    "Verifier",
    "Checkpoint",
    "format_checkpoint",
    "parse_checkpoint",
    "sign_checkpoint",
    "verify_checkpoint",
    "cosign_checkpoint",
    "verify_cosignature",
    "Envelope",
    "encode_envelope",
    "parse_envelope",
    "sign_envelope",
    "verified_keys",
    "verify_envelope",
    "open_note",
    "sign_note",
    "Policy",
    "parse_policy",
    "format_policy",
    "verify_checkpoint_policy",
    "TlogProof",
    "format_tlog_proof",
    "parse_tlog_proof",
    "verify_tlog_proof",
    "verify_inclusion",
    "verify_consistency",
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
