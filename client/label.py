"""Carbon labels: the label file format and its offline verification.

A label (shared/ARCHITECTURE.md section 6) is one JSON file, media type
:data:`LABEL_MEDIA_TYPE`, that a buyer verifies with a C2SP tlog-policy and no
network. Every ledger entry in it travels as its exact bytes (base64) beside a
C2SP tlog-proof of its inclusion::

    {"mediaType": "application/vnd.carbonledger.label+json", "version": 1,
     "footprint":    {"entry": <b64 DSSE envelope>, "proof": <tlog-proof text>},
     "attestations": [<entry>...],   # pcf.attest by verification bodies
     "retirements":  [<entry>...],   # gec.retire / ccer.cancel behind the claims
     "deprecations": [<entry>...],   # entries that deprecated this footprint or
                                     # one upstream of it (staleness evidence)
     "components":   [<node>...]}    # the upstream labels, in the order the
                                     # footprint references them

A ``<node>`` has the same five fields without the two header fields. The file
is compact JSON with sorted keys; :func:`parse_label` accepts only that
canonical encoding, so the bytes verified are the bytes formatted. All proofs
in one label are against one tree (same origin, size and root): the node
builds the whole label at one tree size. Each proof carries its own copy of
the checkpoint note, verified once per distinct copy; copies may differ in
their cosignatures, and the report says which witnesses cosigned every proof
and which only some (:class:`CheckpointInfo`).

What :func:`verify_label` proves, and what it cannot
----------------------------------------------------
Each entry is included in a log that the policy trusts, at the label's tree
size, under a checkpoint signed by the log's key and cosigned by the policy's
witness quorum. Each entry's DSSE signatures verify under the keys named in its
envelope. Whether those keys belong to the organization the entry names is
state that an offline verifier cannot see; the log's state machine appends an
entry only when a current key of that organization signed it and the
operation's rules held (footprint components Active, claims backed by units
retired by the owner inside the reference period and never claimed before).
Those facts therefore rest on the log and its witnesses, which is what the
policy says the buyer trusts. The links between entries (attestation ->
footprint bytes, component -> upstream footprint, claim -> retirement) are
checked here, from the entries themselves.

A label proves facts as of its tree size. It cannot prove freshness: a
builder can leave out later attestations or deprecations, so ``stale`` and
``deprecated`` are true only when the label carries the evidence.

Nor can it prove currency, even as of its own tree size. A deprecation or a
newer version is an entry like any other; its absence from a label shows
only that the builder did not include one. Proving "no entry below size N
deprecates this footprint" would take every entry below N, or a signed
commitment to the state (a map of footprint -> status with non-membership
proofs) that the checkpoint does not carry: the log signs only its entries'
Merkle root. A label's ``deprecated = False`` is therefore no evidence of
currency, and the only check of currency is online, asking a node (whose
answer the buyer then trusts). What a label can show is the opposite:
:func:`check_not_deprecated` fails one that carries the deprecation of its
footprint or of one upstream of it.

A tlog-proof may carry an ``extra`` line of opaque data. C2SP tlog-proof
says applications MUST NOT implicitly trust it: no log or witness signature
covers it, so anyone passing the label on can add or change it. Labels give
it no meaning, and the verifier never uses it; it does report every one
(:attr:`LabelReport.proof_extras`), so that data riding along in a label is
seen rather than passed on unnoticed.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from ledger._b64 import b64decode, b64encode
from ledger._json import canonical_dumps, strict_loads
from ledger.checkpoint import Checkpoint
from ledger.envelope import MAX_ENVELOPE_SIZE, parse_envelope, verified_keys
from ledger.errors import (
    InvalidProof,
    InvalidSignature,
    LedgerError,
    MalformedError,
    VerificationError,
)
from ledger.keys import Verifier
from ledger.merkle import leaf_hash, verify_inclusion
from ledger.note import parse_note
from ledger.policy import Policy, verify_checkpoint_policy
from ledger.records.ops import (
    PAYLOAD_TYPE,
    CcerCancelBody,
    GecRetireBody,
    Operation,
    PcfAttestBody,
    PcfDeprecateBody,
    PcfPublishBody,
    parse_operation,
)
from ledger.records.pact import FootprintSummary
from ledger.tlog_proof import MAX_TLOG_PROOF_SIZE, TlogProof, format_tlog_proof, parse_tlog_proof

__all__ = [
    "LABEL_MEDIA_TYPE",
    "LABEL_VERSION",
    "MAX_LABEL_DEPTH",
    "MAX_LABEL_ENTRIES",
    "MAX_LABEL_LIST",
    "MAX_LABEL_SIZE",
    "Attester",
    "BrokenLink",
    "CheckpointInfo",
    "ComponentReport",
    "LabelEntry",
    "LabelNode",
    "LabelReport",
    "MissingAttestation",
    "NotCurrent",
    "ProofExtra",
    "RetirementInfo",
    "UnexpectedFootprint",
    "check_footprint_id",
    "check_not_deprecated",
    "format_label",
    "parse_label",
    "verify_label",
]

#: The media type of a label file (and of the node's GetLabel answer).
LABEL_MEDIA_TYPE = "application/vnd.carbonledger.label+json"
#: Value of the label's ``version`` field.
LABEL_VERSION = 1
#: Largest label file accepted, in bytes (the node's gRPC messages are 8 MiB).
MAX_LABEL_SIZE = 4 << 20
#: Deepest component nesting accepted (the top footprint is depth 0).
MAX_LABEL_DEPTH = 16
#: Most ledger entries in one label file, counted over the whole tree.
MAX_LABEL_ENTRIES = 4096
#: Most items in one list of one node.
MAX_LABEL_LIST = 256

_NODE_FIELDS = frozenset({"footprint", "attestations", "retirements", "deprecations", "components"})
_TOP_FIELDS = _NODE_FIELDS | {"mediaType", "version"}
_ENTRY_FIELDS = frozenset({"entry", "proof"})
_RETIRE_KIND = {"gec.retire": "gec", "ccer.cancel": "ccer"}
T = TypeVar("T")


class BrokenLink(VerificationError):
    """Two entries of a label that do not fit together. ``where`` names the
    first broken link (``"component 2 (<id>)"``, ``"claim gec[0]"``) and
    ``reason`` says what is wrong."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


class MissingAttestation(BrokenLink):
    """A footprint has no verification-body attestation and one was required."""


class UnexpectedFootprint(VerificationError):
    """The label verified, but it is the label of footprint ``found``, not of
    the ``expected`` one: a valid label of another product."""

    def __init__(self, expected: str, found: str, product: str) -> None:
        super().__init__(
            f"label is of footprint {found} ({product}), not of the expected {expected}"
        )
        self.expected = expected
        self.found = found


class NotCurrent(VerificationError):
    """Currency was required and the label proves the opposite: it carries
    the deprecation (or newer version) of ``footprint_id``, the label's own
    footprint or one upstream of it (``reason`` says which)."""

    def __init__(self, footprint_id: str, reason: str) -> None:
        super().__init__(f"footprint {footprint_id} is not current: {reason}")
        self.footprint_id = footprint_id
        self.reason = reason


# --- the format ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LabelEntry:
    """One ledger entry: its exact ``entry`` bytes and a tlog-proof of them."""

    entry: bytes
    proof: TlogProof


@dataclass(frozen=True, slots=True)
class LabelNode:
    """The label of one footprint; ``components`` are its upstream labels."""

    footprint: LabelEntry
    attestations: tuple[LabelEntry, ...] = ()
    retirements: tuple[LabelEntry, ...] = ()
    deprecations: tuple[LabelEntry, ...] = ()
    components: tuple[LabelNode, ...] = ()


def _entry_json(e: LabelEntry) -> dict[str, str]:
    return {"entry": b64encode(e.entry), "proof": format_tlog_proof(e.proof)}


def _node_json(node: LabelNode) -> dict[str, Any]:
    return {
        "footprint": _entry_json(node.footprint),
        "attestations": [_entry_json(e) for e in node.attestations],
        "retirements": [_entry_json(e) for e in node.retirements],
        "deprecations": [_entry_json(e) for e in node.deprecations],
        "components": [_node_json(c) for c in node.components],
    }


def format_label(node: LabelNode) -> bytes:
    """The canonical label file of ``node``: compact JSON, sorted keys, ASCII."""
    doc = {"mediaType": LABEL_MEDIA_TYPE, "version": LABEL_VERSION, **_node_json(node)}
    return canonical_dumps(doc)


class _Parser:
    def __init__(self) -> None:
        self.entries = 0

    def fields(self, obj: object, want: frozenset[str], what: str) -> dict[str, Any]:
        if not isinstance(obj, dict):
            raise MalformedError(what, "must be a JSON object")
        if set(obj) != want:
            raise MalformedError(what, f"fields must be exactly {sorted(want)}, got {sorted(obj)}")
        return obj

    def entry(self, obj: object, what: str) -> LabelEntry:
        self.entries += 1
        if self.entries > MAX_LABEL_ENTRIES:
            raise MalformedError("label", f"more than {MAX_LABEL_ENTRIES} entries")
        e = self.fields(obj, _ENTRY_FIELDS, what)
        if not isinstance(e["entry"], str):
            raise MalformedError(f"{what}.entry", "must be a JSON string")
        if not isinstance(e["proof"], str):
            raise MalformedError(f"{what}.proof", "must be a JSON string")
        if len(e["proof"]) > MAX_TLOG_PROOF_SIZE:
            raise MalformedError(f"{what}.proof", f"longer than {MAX_TLOG_PROOF_SIZE} characters")
        entry = b64decode(e["entry"], what=f"{what}.entry", max_len=MAX_ENVELOPE_SIZE)
        try:
            proof = parse_tlog_proof(e["proof"])
        except MalformedError as exc:
            raise MalformedError(f"{what}.proof", str(exc)) from None
        return LabelEntry(entry, proof)

    def entries_list(self, obj: object, what: str) -> tuple[LabelEntry, ...]:
        if not isinstance(obj, list):
            raise MalformedError(what, "must be a JSON array")
        if len(obj) > MAX_LABEL_LIST:
            raise MalformedError(what, f"more than {MAX_LABEL_LIST} items")
        return tuple(self.entry(item, f"{what}[{i}]") for i, item in enumerate(obj))

    def node(self, obj: dict[str, Any], what: str, depth: int) -> LabelNode:
        if depth > MAX_LABEL_DEPTH:
            raise MalformedError(what, f"components nested deeper than {MAX_LABEL_DEPTH}")
        comps = obj["components"]
        if not isinstance(comps, list):
            raise MalformedError(f"{what}.components", "must be a JSON array")
        if len(comps) > MAX_LABEL_LIST:
            raise MalformedError(f"{what}.components", f"more than {MAX_LABEL_LIST} items")
        prefix = f"{what}." if what else ""
        return LabelNode(
            footprint=self.entry(obj["footprint"], f"{prefix}footprint"),
            attestations=self.entries_list(obj["attestations"], f"{prefix}attestations"),
            retirements=self.entries_list(obj["retirements"], f"{prefix}retirements"),
            deprecations=self.entries_list(obj["deprecations"], f"{prefix}deprecations"),
            components=tuple(
                self.node(
                    self.fields(c, _NODE_FIELDS, f"{prefix}components[{i}]"),
                    f"{prefix}components[{i}]",
                    depth + 1,
                )
                for i, c in enumerate(comps)
            ),
        )


def parse_label(data: bytes) -> LabelNode:
    """Parse a label file strictly.

    Raises :class:`MalformedError` naming the field for: input over
    :data:`MAX_LABEL_SIZE` bytes, not UTF-8 JSON, duplicate keys, missing or
    extra fields, a wrong media type or version, non-canonical base64, a
    tlog-proof that does not parse, lists, nesting or entry counts over their
    caps, or an encoding other than the canonical one of :func:`format_label`.
    Nothing is verified here.
    """
    doc = strict_loads(data, what="label", max_bytes=MAX_LABEL_SIZE)
    parser = _Parser()
    top = parser.fields(doc, _TOP_FIELDS, "label")
    if top["mediaType"] != LABEL_MEDIA_TYPE:
        raise MalformedError("label.mediaType", f"must be {LABEL_MEDIA_TYPE}")
    if type(top["version"]) is not int or top["version"] != LABEL_VERSION:
        raise MalformedError("label.version", f"must be {LABEL_VERSION}")
    node = parser.node(top, "", 0)
    if format_label(node) != data:
        raise MalformedError("label", "not in canonical form (compact JSON, sorted keys, ASCII)")
    return node


# --- the report ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckpointInfo:
    """The tree every proof of the label is against, and the policy
    witnesses whose cosignatures verified.

    Every proof is against this one tree, but each carries its own copy of
    the checkpoint note, and the copies may carry different cosignatures
    (each met the policy's quorum on its own). ``witnesses`` are the ones
    whose cosignature verified on the checkpoint of every one of the
    label's ``proofs``; ``witness_proofs`` gives, for each witness that
    cosigned any, on how many proofs it did (in policy order)."""

    origin: str
    size: int
    root_hash: bytes
    witnesses: tuple[str, ...]
    proofs: int = 0
    witness_proofs: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Attester:
    """A verification body's attestation (entry ``index``) of the footprint."""

    org: str
    assurance: str
    coverage: str
    standard_name: str
    statement: str
    index: int
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RetirementInfo:
    """A retirement (GEC 核销) or cancellation (CCER 注销) behind a claim."""

    kind: str
    index: int
    start: int
    end: int
    by: str
    beneficiary: str
    period_start: int
    period_end: int


@dataclass(frozen=True, slots=True)
class ProofExtra:
    """The C2SP tlog-proof ``extra`` data carried by the proof of one entry
    (``where`` in the label, entry ``index``): not authenticated, and not
    used by the verifier; reported so that it is not carried silently."""

    where: str
    index: int
    data: bytes


@dataclass(frozen=True, slots=True)
class ComponentReport:
    """An upstream footprint as referenced (``quantity`` of its ``unit`` per
    declared unit) and what its own label proved."""

    footprint_id: str
    quantity: str
    unit: str
    label: LabelReport


@dataclass(frozen=True, slots=True)
class LabelReport:
    """What a verified label proved about one footprint (see the module doc
    for what "proved" means). ``pcf`` is PACT ``pcfExcludingBiogenicUptake``
    in kgCO2e per ``declared_unit_amount`` ``declared_unit``; renewable
    electricity is the GEC units claimed (1 unit = 1 MWh) and offsets the
    CCER units claimed (1 unit = 1 tCO2e). ``deprecated`` and ``stale``
    are True when the label carries the evidence; False means only that it
    carries none, never that the footprint is current. ``proof_extras``
    lists the unauthenticated extra data of this footprint's own proofs
    (its components' are in their reports)."""

    footprint_id: str
    product_name: str
    product_ids: tuple[str, ...]
    company_name: str
    pcf: str
    declared_unit: str
    declared_unit_amount: str
    owner: str
    owner_keys: tuple[str, ...]
    entry_index: int
    entry_digest: str
    verified_by: tuple[Attester, ...]
    renewable_mwh: int
    offsets_tco2e: int
    gec_claims: tuple[tuple[int, int], ...]
    ccer_claims: tuple[tuple[int, int], ...]
    retirements: tuple[RetirementInfo, ...]
    checkpoint: CheckpointInfo
    deprecated: bool
    stale: bool
    components: tuple[ComponentReport, ...]
    proof_extras: tuple[ProofExtra, ...] = ()

    def summary(self) -> str:
        """A readable summary: product, PCF, verifiers, renewable MWh,
        offsets, the log checkpoint, and the component tree."""
        cp = self.checkpoint
        witnessed = _cosigned(cp)
        lines = [
            f"Product:      {self.product_name} ({', '.join(self.product_ids)})",
            f"Footprint:    {self.footprint_id} by {self.owner} ({self.company_name})",
            f"PCF:          {self.pcf} kgCO2e per {self.declared_unit_amount} {self.declared_unit}",
            f"Verified by:  {_verifiers(self) or 'no verification body (not attested)'}",
            f"Renewable:    {self.renewable_mwh} MWh (GEC retired by {self.owner})",
            f"Offsets:      {self.offsets_tco2e} tCO2e (CCER cancelled by {self.owner})",
            f"Status:       {_status(self)}",
            f"Log:          {cp.origin} at tree size {cp.size}{witnessed}",
            *_extras(self),
            "Components:",
            *_tree(self, "  "),
            "Proven: every entry is in the log your policy trusts, and its signatures verify;",
            "the log accepted each entry only when signed by a current key of the named org.",
        ]
        return "\n".join(lines) + "\n"


def _cosigned(cp: CheckpointInfo) -> str:
    """Who cosigned, as verified: the witnesses on every proof, then those
    on only some, with how many (the proofs' notes may differ)."""
    every = [w for w, n in cp.witness_proofs if n == cp.proofs]
    some = [f"{w} on {n} of {cp.proofs} proofs" for w, n in cp.witness_proofs if n < cp.proofs]
    if not some:
        return f", cosigned by {', '.join(every)}" if every else ""
    if not every:
        return f", cosigned by {', '.join(some)}"
    return f", cosigned by {', '.join(every)} on every proof; {', '.join(some)}"


def _verifiers(r: LabelReport) -> str:
    return "; ".join(
        f"{a.org} ({a.assurance} assurance, {a.coverage}, {a.standard_name})" for a in r.verified_by
    )


def _status(r: LabelReport) -> str:
    if r.deprecated:
        return "DEPRECATED (a newer version or withdrawal is in the log)"
    if r.stale:
        return "STALE (an upstream footprint was deprecated)"
    # Not "current": a label cannot show that no deprecation exists (see the
    # module doc), and a buyer must not read the absence of one as currency.
    return (
        "no deprecation or newer version is included in this label; a label cannot\n"
        "              prove there is none, so check the ledger for currency"
    )


_EXTRAS_SHOWN = 10


def _all_extras(r: LabelReport) -> list[ProofExtra]:
    return [*r.proof_extras, *(x for c in r.components for x in _all_extras(c.label))]


def _extras(r: LabelReport) -> list[str]:
    """Lines naming every proof in the tree that carries extra data."""
    found = _all_extras(r)
    if not found:
        return []
    lines = [
        f"Extra data:   {len(found)} proof(s) carry tlog-proof extra data; no signature covers it",
        "              and this verifier did not use it:",
    ]
    # A label may hold thousands of proofs: the summary names the first few,
    # the report (and --json) holds them all.
    for x in found[:_EXTRAS_SHOWN]:
        shown = b64encode(x.data)
        shown = shown if len(shown) <= 44 else shown[:40] + "..."
        lines.append(f"                {x.where} (entry {x.index}): {len(x.data)} bytes, {shown}")
    if len(found) > _EXTRAS_SHOWN:
        lines.append(f"                and {len(found) - _EXTRAS_SHOWN} more")
    return lines


def _tree(r: LabelReport, indent: str) -> list[str]:
    flags = " [deprecated]" if r.deprecated else " [stale]" if r.stale else ""
    who = (
        ", verified by " + ", ".join(a.org for a in r.verified_by)
        if r.verified_by
        else ", not attested"
    )
    extra = ""
    if r.renewable_mwh or r.offsets_tco2e:
        extra = f", {r.renewable_mwh} MWh renewable, {r.offsets_tco2e} tCO2e offset"
    out = [
        f"{indent}{r.product_name}: {r.pcf} kgCO2e/{r.declared_unit_amount} {r.declared_unit}{who}{extra}{flags}"
    ]
    for c in r.components:
        out.append(f"{indent}  x {c.quantity} {c.unit} of:")
        out.extend(_tree(c.label, indent + "    "))
    return out


# --- verification --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Opened:
    index: int
    digest: str
    op: Operation
    keys: tuple[str, ...]


def _key_name(keyid: str) -> str:
    """The key name in an envelope signature's keyid (a verifier key text),
    or the keyid itself, cut short, if it is not one."""
    try:
        return Verifier.from_vkey(keyid).name
    except MalformedError:
        return keyid[:64]


def _located(exc: LedgerError, where: str) -> LedgerError:
    """The same error, its message prefixed with where in the label it arose,
    keeping its type (callers catch QuorumNotMet, InvalidSignature...)."""
    if isinstance(exc, MalformedError):
        return MalformedError(f"{where}: {exc.what}", exc.reason)
    exc.args = (f"{where}: {exc}",)
    exc.where = where  # type: ignore[attr-defined]
    return exc


def _ranges(ranges: tuple[tuple[int, int], ...]) -> str:
    return ", ".join(f"[{s}, {e})" for s, e in ranges)


class _LabelVerifier:
    def __init__(self, policy: Policy, require_attestation: bool) -> None:
        self.policy = policy
        self.require_attestation = require_attestation
        self.notes: dict[str, Checkpoint] = {}
        self.tree: Checkpoint | None = None
        # Per distinct checkpoint note: the policy witnesses that cosigned
        # it, and how many proofs carry it. Notes of one tree may differ in
        # their cosignatures, so the report counts them all, not the first.
        self.note_witnesses: dict[str, tuple[str, ...]] = {}
        self.note_proofs: dict[str, int] = {}

    # (2) One tree, verified once per distinct note; then each inclusion.
    def prove(self, item: LabelEntry, where: str) -> None:
        note = item.proof.checkpoint_note
        cp = self.notes.get(note)
        if cp is None:
            try:
                cp = verify_checkpoint_policy(note, self.policy)
            except LedgerError as exc:
                raise _located(exc, f"{where} checkpoint") from None
            if self.tree is None:
                self.tree = cp
            elif (cp.origin, cp.size) != (
                self.tree.origin,
                self.tree.size,
            ) or not hmac.compare_digest(cp.root_hash, self.tree.root_hash):
                raise BrokenLink(
                    f"{where} checkpoint",
                    f"proof is against {cp.origin} size {cp.size}, the label's other proofs "
                    f"against {self.tree.origin} size {self.tree.size}",
                )
            self.notes[note] = cp
            self.note_witnesses[note] = self._witnesses(note)
        self.note_proofs[note] = self.note_proofs.get(note, 0) + 1
        try:
            if item.proof.index >= cp.size:
                raise InvalidProof(f"index {item.proof.index} is not below tree size {cp.size}")
            verify_inclusion(
                leaf_hash(item.entry),
                item.proof.index,
                cp.size,
                list(item.proof.proof),
                cp.root_hash,
            )
        except VerificationError as exc:
            raise _located(exc, f"{where} inclusion") from None

    def checkpoint_info(self) -> CheckpointInfo:
        """The tree, and the witnesses over every proof verified so far."""
        assert self.tree is not None
        total = sum(self.note_proofs.values())
        counts = []
        for w in self.policy.witnesses:
            n = sum(k for note, k in self.note_proofs.items() if w.name in self.note_witnesses[note])
            if n:
                counts.append((w.name, n))
        return CheckpointInfo(
            self.tree.origin,
            self.tree.size,
            self.tree.root_hash,
            tuple(name for name, n in counts if n == total),
            total,
            tuple(counts),
        )

    def _witnesses(self, note: str) -> tuple[str, ...]:
        # verify_checkpoint_policy checked every present cosignature by a
        # policy witness, so presence is enough here.
        present = {(s.name, s.keyid) for s in parse_note(note).signatures}
        return tuple(
            w.name for w in self.policy.witnesses if (w.verifier.name, w.verifier.keyid) in present
        )

    # (3) The DSSE envelope, every signature in it, and the payload.
    def open(self, item: LabelEntry, where: str, ops: tuple[str, ...]) -> _Opened:
        try:
            env = parse_envelope(item.entry)
            if env.payload_type != PAYLOAD_TYPE:
                raise MalformedError("payloadType", f"expected {PAYLOAD_TYPE}")
            op = parse_operation(env.payload)
        except MalformedError as exc:
            raise _located(exc, where) from None
        # The ledger's rule: an entry stands on the signatures that verify
        # (one by a current key of the acting org is what the state machine
        # asks), and one that does not verify beside them is ignored. Refusing
        # the whole entry for it would let anyone who can add a junk signature
        # to an entry of theirs break every label that includes it.
        good = verified_keys(env)
        if not good:
            names = ", ".join(_key_name(sig.keyid) for sig in env.signatures)
            raise _located(InvalidSignature(names, None, "no signature of the envelope verifies"), where)
        if op.op not in ops:
            raise BrokenLink(where, f"is a {op.op} entry, expected {' or '.join(ops)}")
        return _Opened(
            item.proof.index,
            hashlib.sha256(item.entry).hexdigest(),
            op,
            tuple(s.keyid for s in env.signatures if s.keyid in good),
        )

    def node(self, node: LabelNode, path: str, depth: int) -> tuple[LabelReport, dict[str, str]]:
        """Verify one footprint's label; return its report and the owners of
        every footprint in its tree (for the deprecation links)."""
        at = f"{path}: " if path else ""
        named = [("footprint entry", node.footprint)]
        named += [(f"attestation {i + 1}", e) for i, e in enumerate(node.attestations)]
        named += [(f"retirement {i + 1}", e) for i, e in enumerate(node.retirements)]
        named += [(f"deprecation {i + 1}", e) for i, e in enumerate(node.deprecations)]
        # (2) Inclusion of every entry of this node, each entry once.
        for name, e in named:
            self.prove(e, at + name)
        seen: dict[int, str] = {}
        for name, e in named:
            if e.proof.index in seen:
                raise BrokenLink(
                    at + name, f"repeats entry {e.proof.index} ({seen[e.proof.index]})"
                )
            seen[e.proof.index] = name
        # (3) Envelopes, signatures, payloads.
        fp = self.open(node.footprint, at + "footprint entry", ("pcf.publish",))
        atts = [
            self.open(e, f"{at}attestation {i + 1}", ("pcf.attest",))
            for i, e in enumerate(node.attestations)
        ]
        rets = [
            self.open(e, f"{at}retirement {i + 1}", tuple(_RETIRE_KIND))
            for i, e in enumerate(node.retirements)
        ]
        deps = [
            self.open(e, f"{at}deprecation {i + 1}", ("pcf.deprecate", "pcf.publish"))
            for i, e in enumerate(node.deprecations)
        ]
        body = _body(fp, PcfPublishBody)
        summary = fp.op.footprint
        assert summary is not None
        # (4) The links, in the order of the fields.
        verified_by = _attesters(fp, summary, atts, at)
        if self.require_attestation and not verified_by:
            raise MissingAttestation(
                path or "footprint", f"{summary.id} has no verification-body attestation (required)"
            )
        claims = {
            "gec": tuple((c.start, c.end) for c in body.claims.gec),
            "ccer": tuple((c.start, c.end) for c in body.claims.ccer),
        }
        retirements = _retirements(fp.op.org, summary, claims, rets, at)
        components, owners = self._components(body, node, path, depth)
        owners[summary.id] = fp.op.org
        deprecated, stale = _deprecations(summary.id, owners, deps, at)
        stale = stale or any(c.label.stale or c.label.deprecated for c in components)
        doc = body.footprint
        report = LabelReport(
            footprint_id=summary.id,
            product_name=summary.product_name,
            product_ids=tuple(doc.productIds),
            company_name=doc.companyName,
            pcf=summary.pcf,
            declared_unit=summary.unit,
            declared_unit_amount=summary.unit_amount,
            owner=fp.op.org,
            owner_keys=fp.keys,
            entry_index=fp.index,
            entry_digest=fp.digest,
            verified_by=verified_by,
            renewable_mwh=sum(e - s for s, e in claims["gec"]),
            offsets_tco2e=sum(e - s for s, e in claims["ccer"]),
            gec_claims=claims["gec"],
            ccer_claims=claims["ccer"],
            retirements=retirements,
            # The witnesses over the proofs verified so far; verify_label
            # puts the whole label's in every report at the end.
            checkpoint=self.checkpoint_info(),
            deprecated=deprecated,
            stale=stale,
            components=components,
            proof_extras=tuple(
                ProofExtra(at + name, e.proof.index, e.proof.extra)
                for name, e in named
                if e.proof.extra is not None
            ),
        )
        return report, owners

    def _components(
        self, body: PcfPublishBody, node: LabelNode, path: str, depth: int
    ) -> tuple[tuple[ComponentReport, ...], dict[str, str]]:
        """Each component label, verified depth first, is of the footprint
        referenced at its position, declared in the unit referenced."""
        if len(node.components) != len(body.components):
            raise BrokenLink(
                path or "footprint",
                f"footprint references {len(body.components)} components, "
                f"the label holds {len(node.components)}",
            )
        owners: dict[str, str] = {}
        out: list[ComponentReport] = []
        for i, (ref, child) in enumerate(zip(body.components, node.components, strict=True)):
            ref_id = ref.pfId.lower()
            where = f"{path + ' > ' if path else ''}component {i + 1} ({ref_id})"
            report, sub_owners = self.node(child, where, depth + 1)
            if report.footprint_id != ref_id:
                raise BrokenLink(
                    where,
                    f"footprint id differs from the one referenced (label holds {report.footprint_id})",
                )
            if report.declared_unit != ref.unit:
                raise BrokenLink(
                    where, f"referenced per {ref.unit}, declared per {report.declared_unit}"
                )
            owners.update(sub_owners)
            out.append(ComponentReport(ref_id, ref.quantity, ref.unit, report))
        return tuple(out), owners


def _body(opened: _Opened, model: type[T]) -> T:
    # open() checked the op name, and parse_operation maps each op to one model.
    body = opened.op.body
    assert isinstance(body, model)
    return body


def _attesters(
    fp: _Opened, summary: FootprintSummary, atts: list[_Opened], at: str
) -> tuple[Attester, ...]:
    """Each attestation names this footprint and the digest of its exact
    entry bytes, by an org other than the owner, one per verifier."""
    out: list[Attester] = []
    for i, a in enumerate(atts):
        where, ab = f"{at}attestation {i + 1}", _body(a, PcfAttestBody)
        if ab.pfId.lower() != summary.id:
            raise BrokenLink(where, f"attests footprint {ab.pfId.lower()}, not {summary.id}")
        if not hmac.compare_digest(ab.footprintDigest, fp.digest):
            raise BrokenLink(
                where, "attests other footprint bytes (footprintDigest is not the entry's SHA-256)"
            )
        if a.op.org == fp.op.org:
            raise BrokenLink(where, f"attested by the footprint's own owner {fp.op.org}")
        if any(v.org == a.op.org for v in out):
            raise BrokenLink(where, f"second attestation by {a.op.org}")
        out.append(
            Attester(
                a.op.org, ab.assurance, ab.coverage, ab.standardName, ab.statement, a.index, a.keys
            )
        )
    return tuple(out)


def _retirements(
    owner: str,
    summary: FootprintSummary,
    claims: dict[str, tuple[tuple[int, int], ...]],
    rets: list[_Opened],
    at: str,
) -> tuple[RetirementInfo, ...]:
    """Retirements are the owner's, inside the reference period; together
    they cover every claimed range, and each backs some claim."""
    out: list[RetirementInfo] = []
    for i, r in enumerate(rets):
        where = f"{at}retirement {i + 1}"
        rb = _body(r, GecRetireBody) if r.op.op == "gec.retire" else _body(r, CcerCancelBody)
        if r.op.org != owner:
            raise BrokenLink(where, f"retired by {r.op.org}, not by the footprint's owner {owner}")
        if not (summary.ref_start <= rb.periodStart and rb.periodEnd <= summary.ref_end):
            raise BrokenLink(
                where, "retirement period is not inside the footprint's reference period"
            )
        kind = _RETIRE_KIND[r.op.op]
        out.append(
            RetirementInfo(
                kind,
                r.index,
                rb.start,
                rb.end,
                r.op.org,
                rb.beneficiary,
                rb.periodStart,
                rb.periodEnd,
            )
        )
    for kind, ranges in claims.items():
        covers = sorted((r.start, r.end) for r in out if r.kind == kind)
        for i, (s, e) in enumerate(ranges):
            gap = _first_gap(s, e, covers)
            if gap is not None:
                raise BrokenLink(
                    f"{at}claim {kind}[{i}] [{s}, {e})",
                    f"units [{gap[0]}, {gap[1]}) are not covered by a retirement entry in the label",
                )
    for i, ret in enumerate(out):
        if not any(s < ret.end and ret.start < e for s, e in claims[ret.kind]):
            raise BrokenLink(
                f"{at}retirement {i + 1}", f"backs no {ret.kind} claim of this footprint"
            )
    return tuple(out)


def _deprecations(
    pf_id: str, owners: dict[str, str], deps: list[_Opened], at: str
) -> tuple[bool, bool]:
    """Each deprecation (a pcf.deprecate, or a new version's pcf.publish)
    touches this footprint or one upstream of it, and was made by that
    footprint's owner. Returns (this footprint deprecated, an upstream one)."""
    deprecated = stale = False
    for i, d in enumerate(deps):
        where = f"{at}deprecation {i + 1}"
        if d.op.op == "pcf.deprecate":
            targets = [_body(d, PcfDeprecateBody).pfId.lower()]
        else:
            assert d.op.footprint is not None
            targets = list(d.op.footprint.preceding)
        hit = [t for t in targets if t in owners]
        if not hit:
            raise BrokenLink(where, "deprecates no footprint of this label")
        for t in hit:
            if owners[t] != d.op.org:
                raise BrokenLink(where, f"made by {d.op.org}, not by {t}'s owner {owners[t]}")
            if t == pf_id:
                deprecated = True
            else:
                stale = True
    return deprecated, stale


def _first_gap(start: int, end: int, covers: list[tuple[int, int]]) -> tuple[int, int] | None:
    """The first sub-range of ``[start, end)`` that no range in ``covers``
    (sorted) holds, or None."""
    at = start
    for s, e in covers:
        if s > at:
            break
        at = max(at, e)
        if at >= end:
            return None
    nxt = min((s for s, _ in covers if s > at), default=end)
    return (at, min(nxt, end))


def check_footprint_id(report: LabelReport, pf_id: str) -> None:
    """Raise :class:`UnexpectedFootprint` unless ``report`` is the label of
    PACT footprint ``pf_id`` (a UUID, compared case-insensitively). A valid
    label of another product proves nothing about the one the buyer holds."""
    expected = pf_id.lower()
    if report.footprint_id != expected:
        raise UnexpectedFootprint(expected, report.footprint_id, report.product_name)


def check_not_deprecated(report: LabelReport) -> None:
    """Raise :class:`NotCurrent` when the label carries the evidence that its
    footprint, or one upstream of it, was deprecated (its report says
    DEPRECATED or STALE). Passing proves nothing about currency (see the
    module doc): a label need not include a deprecation that exists."""
    if report.deprecated:
        raise NotCurrent(
            report.footprint_id, "the label carries its deprecation or a newer version of it"
        )
    if report.stale:
        upstream = _first_deprecated(report)
        raise NotCurrent(
            report.footprint_id,
            "the label carries the deprecation of an upstream footprint"
            + (f" ({upstream})" if upstream else ""),
        )


def _first_deprecated(report: LabelReport) -> str | None:
    """The id of the first footprint in ``report``'s component tree, depth
    first, whose own label carries its deprecation; None if the evidence sits
    only in a downstream footprint's deprecations."""
    for c in report.components:
        if c.label.deprecated:
            return c.footprint_id
        found = _first_deprecated(c.label)
        if found is not None:
            return found
    return None


def verify_label(label: bytes, policy: Policy, *, require_attestation: bool = False) -> LabelReport:
    """Verify a label file offline against a tlog-policy; return what it proved.

    (1) Parse the file strictly. Then, for each footprint's label, top first
    and components depth first in reference order: (2) verify every entry's
    tlog-proof (the checkpoint's log signature and witness quorum once per
    checkpoint, then the entry's inclusion), all against one tree; (3) parse
    each entry's DSSE envelope and payload and verify every signature in it;
    (4) check the links: attestations name this footprint and its entry digest,
    retirements are the owner's and cover every claimed GEC/CCER range,
    component labels are the footprints referenced, deprecations touch this
    footprint's tree. With ``require_attestation``, every footprint in the
    tree must carry a verification body's attestation.

    Fails closed: raises :class:`MalformedError`, or a
    :class:`VerificationError` subclass (:class:`BrokenLink`,
    :class:`MissingAttestation`, ``InvalidSignature``, ``QuorumNotMet``,
    ``RootMismatch``, ``InvalidProof``) whose message names the first broken
    link.
    """
    # (1) Parse.
    node = parse_label(label)
    verifier = _LabelVerifier(policy, require_attestation)
    report, _ = verifier.node(node, "", 0)
    # A report is made once its own subtree is verified, before the rest of
    # the label's proofs are counted: give every one the whole label's.
    return _with_checkpoint(report, verifier.checkpoint_info())


def _with_checkpoint(report: LabelReport, cp: CheckpointInfo) -> LabelReport:
    components = tuple(replace(c, label=_with_checkpoint(c.label, cp)) for c in report.components)
    return replace(report, checkpoint=cp, components=components)
