"""The state machine: a pure function of (state, entry) that accepts or rejects.

:meth:`StateMachine.apply` runs, in order: (1) parse the DSSE envelope and its
payload; (2) verify signatures unless the caller already did; (3) check the
payload's time against the block time; (4) check that the acting org exists
and that a current key of it signed; (5) check that the same signed operation
was not applied before, in any envelope; (6) run the operation's handler,
which checks its rules and only then writes. No clock, no randomness, and no
iteration over unordered collections: replaying the same entries with the same
contexts makes the same writes in the same order.

Step (1), and (2) when asked, need no state: :meth:`StateMachine.prepare` does
them on its own, so a node can run them in its parallel stage beside signature
verification and hand the sequencer a :class:`Prepared` instead of bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from ledger.envelope import Envelope, parse_envelope, verified_keys
from ledger.errors import MalformedError, PermissionDenied, StateRuleError
from ledger.kv import KV
from ledger.records.ops import PAYLOAD_TYPE, Operation, parse_operation
from ledger.state import ccer, footprints, gec, orgs
from ledger.state._tx import Applied, ApplyContext, Tx

__all__ = ["MACHINE_ID", "MAX_CLOCK_SKEW", "MAX_OP_AGE", "Prepared", "StateMachine"]

#: The id the log records for ledgers created with this state machine.
#: v2: a segment rewrite no longer deletes a key it writes again, so the
#: write list, and with it every block's state digest, differs from v1's.
#: v3: an operation is applied once (the replay guard below), a CCER report
#: may not credit generation already sold or retired as GEC, a new footprint
#: version is checked for cycles against every product line it continues,
#: GEC units expire at their validity end, and no batch runs past MAX_SERIAL.
#: v4: a footprint published on a stale component is stale from the start.
#: v5: staleness is no longer written: a deprecation stores no marks on the
#: footprints downstream and a publish inherits none, footprint records lose
#: their "stale" field, and the queries compute it from the upstream graph;
#: an org's past keys leave its record for records of their own
#: (``kp/{org}/{n}``), and rotations no longer stop at 256 past keys; a new
#: version indexes itself under each predecessor (``fv/{pf}/{later}``).
#: This code cannot replay an older ledger's digests, so it refuses to open one
#: (``unknown state machine 'carbonledger/v4'``) rather than fail its audit.
MACHINE_ID = "carbonledger/v5"
#: How far (seconds) an operation's own time may run ahead of the block time.
MAX_CLOCK_SKEW = 300
#: How old (seconds) an operation may be when it is sequenced. Bounds how long
#: a signed but unsubmitted operation stays usable.
MAX_OP_AGE = 7 * 86400

Handler = Callable[[Tx], None]
_HANDLERS: dict[str, Handler] = {**orgs.HANDLERS, **footprints.HANDLERS, **gec.HANDLERS, **ccer.HANDLERS}


@dataclass(frozen=True, slots=True)
class Prepared:
    """An entry after the stateless steps: its parsed envelope and operation.

    ``verified`` holds the keyids whose signatures :meth:`StateMachine.prepare`
    checked, or ``None`` if it was not asked to check them. Build one only
    with :meth:`StateMachine.prepare`.
    """

    entry_digest: str  # SHA-256 of the entry bytes, hex
    replay_key: bytes  # the replay guard's record of this operation (see _replay_key)
    envelope: Envelope
    op: Operation
    verified: frozenset[str] | None = None


class StateMachine:
    """The carbon ledger's rules. Stateless itself: all state lives in the KV."""

    machine_id = MACHINE_ID

    def context(self, *, index: int, time: int) -> ApplyContext:
        """The :class:`ApplyContext` for the entry at ``index`` in a block at ``time``."""
        return ApplyContext(index, time)  # positional: a third cheaper than keywords

    def prepare(self, entry: bytes, *, verify: bool = False) -> Prepared:
        """Step (1), and step (2) if ``verify``: everything that needs no state.

        Parses the DSSE envelope and validates its payload; raises
        MalformedError as :meth:`apply` would. Safe to call from any thread,
        in any order: it reads and writes nothing shared.
        """
        env = parse_envelope(entry)
        if env.payload_type != PAYLOAD_TYPE:
            raise MalformedError("payloadType", f"expected {PAYLOAD_TYPE}")
        op = parse_operation(env.payload)
        return Prepared(
            hashlib.sha256(entry).hexdigest(),
            _replay_key(op.time, env.payload),
            env,
            op,
            verified_keys(env) if verify else None,
        )

    def apply(
        self,
        kv: KV,
        entry: bytes | Prepared,
        ctx: ApplyContext,
        verified: frozenset[str] | None = None,
    ) -> Applied:
        """Check ``entry`` against the state in ``kv`` and write its changes to ``kv``.

        ``entry`` is the DSSE envelope bytes, or what :meth:`prepare` made of
        them (the result is the same either way). ``verified`` is the set of
        keyids whose signatures the caller already checked
        (:func:`ledger.envelope.verified_keys`); if ``None``, a Prepared's own
        ``verified`` is used, and failing that the signatures are verified here.
        Raises MalformedError, PermissionDenied or StateRuleError (each naming
        the field and rule) to reject; a rejected entry writes nothing.
        """
        # (1) Parse, unless prepare() already did.
        prepared = entry if isinstance(entry, Prepared) else self.prepare(entry)
        op = prepared.op
        # (2) Signatures.
        if verified is None:
            verified = prepared.verified
        if verified is None:
            verified = verified_keys(prepared.envelope)
        if not verified:
            raise PermissionDenied("no_valid_signature", "no signature verifies", "signatures")
        # (3) Time.
        if op.time > ctx.time + MAX_CLOCK_SKEW:
            raise StateRuleError("time_in_future", "operation time is ahead of the block time", "time")
        if op.time < ctx.time - MAX_OP_AGE:
            raise StateRuleError("time_too_old", "operation is too old to sequence", "time")
        tx = Tx(kv, ctx, op, prepared.entry_digest)
        if op.op == "genesis":
            orgs.apply_genesis(tx, verified)
            return Applied(op.op, tuple(tx.events))
        # (4) Acting org and key.
        tx.org = _authorize(tx, op, verified)
        # (5) Not applied before, in any envelope.
        seen = prepared.replay_key
        earlier = kv.get(seen)
        if earlier is not None:
            raise StateRuleError(
                "operation_replayed", f"this signed operation was applied at entry {int(earlier)}", "payload"
            )
        # (6) The operation's own rules.
        _HANDLERS[op.op](tx)
        if ctx.index % _FORGET_EVERY == 0:
            _forget_expired(kv, ctx.time - MAX_OP_AGE)
        kv.put(seen, str(ctx.index).encode())
        return Applied(op.op, tuple(tx.events))


# The replay guard. The log skips an entry whose bytes it already holds, but
# the same signed payload travels in many envelopes: JSON spelled otherwise,
# signatures added or dropped. Each applied operation's payload digest is kept
# under its own time, for as long as that time lets it be sequenced
# (MAX_OP_AGE): past that the time check refuses it anyway, so older records
# are dropped (the block time never goes back). An org that means to sign the
# same operation twice sets a different ``nonce``. Old records are dropped
# by every _FORGET_EVERY-th entry index, not each entry: a walk costs more
# than the few records that wait for it.
_SEEN = b"rp/"
_FORGET_EVERY = 64


def _replay_key(op_time: int, payload: bytes) -> bytes:
    """``rp/{time}/{SHA-256 of the payload, hex}``: made in prepare's
    parallel stage, since it needs no state."""
    return b"%s%016x/%s" % (_SEEN, op_time, hashlib.sha256(payload).hexdigest().encode())


def _forget_expired(kv: KV, oldest_time: int) -> None:
    """Drop the replay records of operations older than ``oldest_time``."""
    cutoff = b"%s%016x" % (_SEEN, max(oldest_time, 0))
    stale = []
    for k, _ in kv.scan(_SEEN):
        if k >= cutoff:
            break
        stale.append(k)
    for k in stale:
        kv.delete(k)


def _authorize(tx: Tx, op: Operation, verified: frozenset[str]) -> dict[str, object]:
    # Read-only and shared: the acting org's record is read by every entry it
    # signs, and handlers only look at tx.org (see Tx.read).
    org = tx.read("o", op.org)
    if org is None:
        # Only genesis and later entries register orgs, so before genesis
        # every org is unknown: one read on the usual path, not two.
        if tx.kv.get(b"g/genesis") is None:
            raise StateRuleError("no_genesis", "the first entry must be genesis", "op")
        raise PermissionDenied("unknown_org", f"no organization {op.org}", "org")
    for k in org["keys"]:
        if k["key"] in verified:
            return org  # type: ignore[no-any-return]
    raise PermissionDenied("not_signed_by_org", f"no valid signature by a current key of {op.org}", "signatures")
