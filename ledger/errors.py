"""The ledger's error types: one base, a few meaningful subclasses.

Every failure the ledger reports to a caller is a :class:`LedgerError`. Parsers
raise :class:`MalformedError` (never ``ValueError`` or ``binascii.Error``);
verifiers raise a :class:`VerificationError` subclass carrying its evidence; the
state machine raises :class:`StateRuleError` subclasses naming the rule. The
node maps these classes to gRPC status codes in one place and the client maps
the codes back, so keep the set small and the attributes stable.
"""

from __future__ import annotations

__all__ = [
    "LedgerError",
    "MalformedError",
    "VerificationError",
    "InvalidSignature",
    "RootMismatch",
    "InvalidProof",
    "InconsistencyError",
    "QuorumNotMet",
    "BlockConflict",
    "BlockNotConfirmed",
    "StateRuleError",
    "PermissionDenied",
    "NotFound",
    "TooLarge",
    "Pushback",
    "StorageError",
    "StorageWriteFailed",
    "AuditDiscrepancy",
]


class LedgerError(Exception):
    """Base class of every error the ledger raises on purpose."""


class MalformedError(LedgerError):
    """Input that does not parse: wrong syntax, wrong size, non-canonical form.

    ``what`` names the thing being parsed or the field (``"checkpoint"``,
    ``"pcf.declaredUnitOfMeasurement"``); ``reason`` says what is wrong with it.
    """

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"malformed {what}: {reason}")
        self.what = what
        self.reason = reason


class VerificationError(LedgerError):
    """Well-formed input that fails a cryptographic or structural check."""


class InvalidSignature(VerificationError):
    """A signature by key ``name`` (with 4-byte ``keyid``) does not verify, or
    no signature by a trusted key is present."""

    def __init__(self, name: str, keyid: bytes | None = None, detail: str = "") -> None:
        kid = keyid.hex() if keyid is not None else "?"
        msg = f"invalid or missing signature by {name} (key id {kid})"
        super().__init__(f"{msg}: {detail}" if detail else msg)
        self.name = name
        self.keyid = keyid
        self.detail = detail


class RootMismatch(VerificationError):
    """A proof recomputes a root hash other than the expected one."""

    def __init__(self, expected: bytes, calculated: bytes) -> None:
        super().__init__(
            f"root mismatch: expected {expected.hex()}, calculated {calculated.hex()}"
        )
        self.expected = expected
        self.calculated = calculated


class InvalidProof(VerificationError):
    """A proof whose shape does not fit its parameters (wrong length, wrong
    sizes, a hash that is not 32 bytes)."""


class InconsistencyError(VerificationError):
    """Two views of a log that cannot both be true: evidence of a fork or of a
    rewritten history. ``evidence`` holds what proves it (checkpoints, proofs)."""

    def __init__(self, message: str, evidence: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.evidence = dict(evidence or {})


class QuorumNotMet(VerificationError):
    """A checkpoint lacks the cosignatures a tlog-policy requires."""


class BlockConflict(InconsistencyError):
    """A replica signed a block note (ledger/block_note.py) at ``height`` whose
    ``what`` (``"block hash"`` or ``"position"``) differs from the ``served``
    one: the blocks or positions of two replicas cannot both be true. The
    signed ``note`` of replica ``signer`` is the evidence."""

    def __init__(self, height: int, what: str, served: bytes, signed: bytes, signer: str, note: str) -> None:
        super().__init__(
            f"conflict at block {height}: the {what} served is {served.hex()}, "
            f"replica {signer} signed {signed.hex()}",
            {"height": height, "what": what, "served": served, "signed": signed, "signer": signer, "note": note},
        )
        self.height = height
        self.what = what
        self.served = served
        self.signed = signed
        self.signer = signer
        self.note = note


class BlockNotConfirmed(QuorumNotMet):
    """Fewer distinct replicas than the policy's quorum asks for vouch for
    block ``height`` (``vouchers``: the log keys that did; ``needed``: how
    many must). Not evidence of anything: ask again once more replicas have
    reached that height."""

    def __init__(self, height: int, vouchers: tuple[str, ...], needed: int) -> None:
        super().__init__(
            f"block {height} is vouched for by {len(vouchers)} replica(s) "
            f"({', '.join(vouchers) or 'none'}); the policy's quorum needs {needed}"
        )
        self.height = height
        self.vouchers = vouchers
        self.needed = needed


class StateRuleError(LedgerError):
    """The state machine refused an operation. ``rule`` is a stable snake_case
    identifier of the broken rule; ``field`` names the offending field, if any.
    """

    def __init__(self, rule: str, detail: str, field: str | None = None) -> None:
        where = f" ({field})" if field else ""
        super().__init__(f"{rule}{where}: {detail}")
        self.rule = rule
        self.detail = detail
        self.field = field


class PermissionDenied(StateRuleError):
    """The envelope is not signed by a current key of the acting organization,
    or that organization lacks the role the operation needs."""


class NotFound(LedgerError):
    """A lookup of something that does not exist: ``kind`` and ``key``."""

    def __init__(self, kind: str, key: object) -> None:
        super().__init__(f"{kind} not found: {key}")
        self.kind = kind
        self.key = key


class TooLarge(LedgerError):
    """A result would pass a limit of its format (``what``, e.g. a label over
    its entry or byte budget): it cannot be made, however often asked."""

    def __init__(self, what: str, detail: str) -> None:
        super().__init__(f"{what} too large: {detail}")
        self.what = what
        self.detail = detail


class Pushback(LedgerError):
    """Overload: the caller should retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StorageError(LedgerError):
    """The store cannot be opened or used (wrong format, wrong origin, I/O)."""


class StorageWriteFailed(StorageError):
    """A write transaction failed in the store (the disk is full, an I/O
    error): nothing of it was written, and the ledger is as it was before.
    Later writes may succeed once the cause is gone. ``reason`` is the
    store's own words ("No space left on device")."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"write to {path} failed, nothing written: {reason}")
        self.path = path
        self.reason = reason


class AuditDiscrepancy(StorageError):
    """An audit found stored data that does not match what it recomputed.
    ``location`` names where (``"entry 42"``, ``"block 7"``)."""

    def __init__(self, location: str, detail: str) -> None:
        super().__init__(f"{location}: {detail}")
        self.location = location
        self.detail = detail
