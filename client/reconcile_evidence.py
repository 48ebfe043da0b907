"""Checking the evidence in a node's reconciliation answer against a tlog-policy.

``carbonledger reconcile --policy`` does not take the node's word for the
checkpoint and the proving entries it names. Three checks, in order:

(1) The checkpoint the answer holds against is signed by a log the policy
    trusts and cosigned by its witness quorum, and is of the tree size the
    answer names (and of the size asked for, if one was):
    :func:`verify_answer_checkpoint`.
(2) Each proving entry is in that very tree: the entry's bytes, hashed as a
    leaf, reach the checkpoint's root with the node's inclusion proof
    (:func:`verify_proving_entry`). The tlog-proof it returns, written by
    ``--proofs``, carries that proof and the checkpoint of (1), so it
    verifies offline under the same policy.
(3) Each proving entry is an operation on the mismatch's units
    (:func:`check_entry_touches`): a transfer, retirement (GEC 核销),
    cancellation (CCER 注销) or footprint claim of the mismatch's asset whose
    serial range meets the mismatch's units; or an issue of the asset (of the
    mismatch's batch, when it names one); or, for GEC, the CCER project
    registration that froze them. An issue or a registration names no serials
    (the ledger allocates them, or freezes what the project still holds), so
    for those the check stops at the asset and batch.

What passing proves: the checkpoint is the log's (and its witnesses') and
each entry the node cites is in it and acts on the units in question. What it
cannot prove: that the node compared the books correctly or completely. That
an entry is the *last* change of those units, or that units the node calls
matching are held as the books say, is the node's reading of the log; a
check of that needs the whole unit history (or a signed commitment to the
state, which the checkpoint does not carry). A clean answer with ``verified``
is therefore a signed checkpoint the node answered against, kept as the
evidence of when and of what tree the exchange asked, not a proof of
agreement.

Every failure raises :class:`AnswerNotVerified` naming the check and, for
(2) and (3), the entry index.
"""

from __future__ import annotations

from collections.abc import Sequence

from ledger.checkpoint import Checkpoint
from ledger.envelope import parse_envelope
from ledger.errors import LedgerError, MalformedError, VerificationError
from ledger.merkle import leaf_hash, verify_inclusion
from ledger.policy import Policy, verify_checkpoint_policy
from ledger.records.ops import (
    PAYLOAD_TYPE,
    CcerCancelBody,
    CcerIssueBody,
    GecIssueBody,
    GecRetireBody,
    PcfPublishBody,
    TransferBody,
    parse_operation,
)
from ledger.tlog_proof import TlogProof, format_tlog_proof

__all__ = [
    "CHECK_CHECKPOINT",
    "CHECK_INCLUSION",
    "CHECK_UNITS",
    "AnswerNotVerified",
    "check_entry_touches",
    "check_index",
    "verify_answer_checkpoint",
    "verify_proving_entry",
]

#: The checks :class:`AnswerNotVerified` names, one per step of the module doc.
CHECK_CHECKPOINT = "checkpoint"
CHECK_INCLUSION = "inclusion"
CHECK_UNITS = "units"

#: The assets a mismatch may be of.
_ASSETS = ("gec", "ccer")
#: The operation that retires (GEC 核销) or cancels (CCER 注销) units, per asset.
_RETIREMENTS = (("gec.retire", "gec"), ("ccer.cancel", "ccer"))


class AnswerNotVerified(VerificationError):
    """A reconciliation answer whose evidence failed ``check`` (one of the
    ``CHECK_*`` names), at proving entry ``index`` (None for the checkpoint);
    ``detail`` says what failed. Nothing of the answer may be relied on."""

    def __init__(self, check: str, detail: str, index: int | None = None) -> None:
        where = f"proving entry {index}: " if index is not None else ""
        super().__init__(f"the node's answer does not verify: {where}{check}: {detail}")
        self.check = check
        self.detail = detail
        self.index = index


def _why(exc: LedgerError) -> str:
    if isinstance(exc, MalformedError):
        return f"malformed {exc.what}: {exc.reason}"
    return str(exc)


def verify_answer_checkpoint(note: str, tree_size: int, policy: Policy, *, asked_size: int = 0) -> Checkpoint:
    """Step (1): the answer's checkpoint ``note``, for the answer's
    ``tree_size``, meets ``policy``; ``asked_size`` (0: the latest) is the
    size the caller asked for. Returns the checkpoint."""
    try:
        cp = verify_checkpoint_policy(note, policy)
    except (MalformedError, VerificationError) as exc:
        raise AnswerNotVerified(CHECK_CHECKPOINT, _why(exc)) from None
    if cp.size != tree_size:
        raise AnswerNotVerified(
            CHECK_CHECKPOINT, f"the checkpoint is of tree size {cp.size}, the answer says {tree_size}"
        )
    if asked_size and tree_size != asked_size:
        raise AnswerNotVerified(CHECK_CHECKPOINT, f"asked for tree size {asked_size}, answered at {tree_size}")
    return cp


def check_index(index: int, checkpoint: Checkpoint) -> None:
    """The first part of step (2), which a caller may run before it fetches
    anything: proving entry ``index`` is in the tree of ``checkpoint``."""
    if not 0 <= index < checkpoint.size:
        raise AnswerNotVerified(CHECK_INCLUSION, f"not below the checkpoint's tree size {checkpoint.size}", index)


def verify_proving_entry(
    index: int, entry: bytes, hashes: Sequence[bytes], checkpoint: Checkpoint, note: str
) -> str:
    """Step (2): ``entry`` (its bytes as the node serves them) is at
    ``index`` in the tree of ``checkpoint`` (verified by step (1), whose
    signed text is ``note``), by the inclusion proof ``hashes``.

    Returns the C2SP tlog-proof of the entry against ``note``.
    """
    check_index(index, checkpoint)
    try:
        # (2a) The leaf is the hash of the bytes received; (2b) the proof
        # from it must reach the verified root.
        verify_inclusion(leaf_hash(entry), index, checkpoint.size, list(hashes), checkpoint.root_hash)
        return format_tlog_proof(TlogProof(index, tuple(hashes), note))
    except (MalformedError, VerificationError) as exc:
        raise AnswerNotVerified(CHECK_INCLUSION, _why(exc), index) from None


def check_entry_touches(index: int, entry: bytes, *, asset: str, batch: str, start: int, end: int) -> str:
    """Step (3): ``entry`` is an operation on units of ``asset``: of serials
    ``[start, end)`` when ``end > start`` (a mismatch of a range; otherwise
    of a total), and of ``batch`` when it is not empty and the entry names
    a batch. Returns the operation's name (``gec.transfer``...)."""
    try:
        env = parse_envelope(entry)
        if env.payload_type != PAYLOAD_TYPE:
            raise MalformedError("envelope payloadType", f"expected {PAYLOAD_TYPE}")
        op = parse_operation(env.payload)
    except MalformedError as exc:
        raise AnswerNotVerified(CHECK_UNITS, f"not an operation entry: {_why(exc)}", index) from None
    name, body = op.op, op.body
    # The asset is the node's word, and it names an attribute of the claims
    # below: anything else would escape as AttributeError, not exit 4.
    if asset not in _ASSETS:
        raise AnswerNotVerified(CHECK_UNITS, f"the mismatch names no asset (gec or ccer) but {asset!r}", index)
    ranges: list[tuple[int, int]] | None = None  # None: the entry names no serials
    named_batch: str | None = None
    moves = name == f"{asset}.transfer" or (name, asset) in _RETIREMENTS
    if moves and isinstance(body, (TransferBody, GecRetireBody, CcerCancelBody)):
        ranges = [(body.start, body.end)]
    elif name == "pcf.publish" and isinstance(body, PcfPublishBody) and getattr(body.claims, asset):
        ranges = [(r.start, r.end) for r in getattr(body.claims, asset)]
    elif name == f"{asset}.issue" and isinstance(body, (GecIssueBody, CcerIssueBody)):
        named_batch = body.batchId
    elif (name, asset) == ("ccer.register_project", "gec"):
        pass  # It froze the project's untraded GEC, which it does not list.
    else:
        raise AnswerNotVerified(CHECK_UNITS, f"is a {name} entry, which changes no {asset} units", index)
    if ranges is not None and end > start and not any(s < end and start < e for s, e in ranges):
        named = ", ".join(f"{asset}:{s}-{e}" for s, e in ranges)
        raise AnswerNotVerified(CHECK_UNITS, f"{name} of {named} does not touch {asset}:{start}-{end}", index)
    if named_batch is not None and batch and named_batch != batch:
        raise AnswerNotVerified(CHECK_UNITS, f"{name} of batch {named_batch}, not of batch {batch}", index)
    return name
