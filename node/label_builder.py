"""The node's carbon label builder: state and entries in, a label file out.

:func:`build_label` reads the state machine's view of a footprint (its
attestations, the retirements behind its claims, its deprecation and the
deprecations that made it stale, its components), fetches those entries and a
tlog-proof of each at ONE tree size, and formats the label of
:mod:`client.label`. Facts recorded after that tree size are left out, so a
label for an older size says what was provable then. :func:`label_builder` is
the node's ``label_builder`` hook around it.
"""

from __future__ import annotations

from collections.abc import Callable

from client.label import (
    LABEL_MEDIA_TYPE,
    MAX_LABEL_DEPTH,
    MAX_LABEL_ENTRIES,
    MAX_LABEL_SIZE,
    LabelEntry,
    LabelNode,
    format_label,
)
from ledger.errors import NotFound, TooLarge
from ledger.kv import KV
from ledger.log import Ledger
from ledger.state.queries import get_footprint
from ledger.state.ranges import covering
from ledger.tlog_proof import TlogProof
from node.labels import LabelBuilder

__all__ = ["build_label", "label_builder", "witnessed_label_builder"]


class _Builder:
    def __init__(self, ledger: Ledger, kv: KV, size: int, checkpoint_note: str | None) -> None:
        self.ledger = ledger
        self.kv = kv
        self.size = size
        # The checkpoint every proof is against: the log's own signed note,
        # or one that also carries witness cosignatures.
        self.checkpoint_note = checkpoint_note or ledger.checkpoint(size)
        # A footprint may sit twice in a tree (a DAG of suppliers): fetch and
        # prove each entry once.
        self.entries: dict[int, LabelEntry] = {}
        # What the label file will hold, counted as it is built: a shared
        # component is written out at each place it is used, so a small DAG
        # can make a label exponentially large. Building stops at the
        # verifier's limits, before that is formatted.
        self.placed = 0
        self.bytes = 0

    def entry(self, index: int) -> LabelEntry:
        got = self.entries.get(index)
        if got is None:
            proof = TlogProof(index, tuple(self.ledger.inclusion_proof(index, self.size)), self.checkpoint_note)
            got = self.entries[index] = LabelEntry(self.ledger.entry(index), proof)
        return got

    def retirements(self, kind: str, ranges: tuple[tuple[int, int], ...]) -> list[int]:
        found: set[int] = set()
        for start, end in ranges:
            for seg in covering(self.kv, kind, start, end):
                if "r" in seg.value:
                    found.add(int(seg.value["r"]))
        return sorted(found)

    def place(self, index: int) -> LabelEntry:
        """The entry at ``index``, counted once more against the label's limits."""
        got = self.entry(index)
        self.placed += 1
        # Base64 of the entry, and the proof: its hashes and the checkpoint.
        self.bytes += (len(got.entry) + 2) // 3 * 4 + 45 * len(got.proof.proof) + len(got.proof.checkpoint_note) + 64
        if self.placed > MAX_LABEL_ENTRIES:
            raise TooLarge("label", f"its component tree holds more than {MAX_LABEL_ENTRIES} entries")
        if self.bytes > MAX_LABEL_SIZE:
            raise TooLarge("label", f"its component tree takes more than {MAX_LABEL_SIZE} bytes")
        return got

    def node(self, pf_id: str, depth: int) -> LabelNode:
        if depth > MAX_LABEL_DEPTH:
            raise TooLarge("label", f"its component tree is deeper than {MAX_LABEL_DEPTH} levels, at {pf_id}")
        info = get_footprint(self.kv, pf_id)
        if info.published >= self.size:
            raise NotFound("footprint", f"{pf_id} at tree size {self.size}")
        attestations = [a.index for a in info.attestations if a.index < self.size]
        retirements = self.retirements("gec", info.gec_claims) + self.retirements(
            "ccer", info.ccer_claims
        )
        # The deprecations upstream, computed from the upstream graph as of
        # this snapshot (nothing stores them); those at or past the label's
        # size are left out below, with the footprint's own.
        deprecations = {m.index for m in info.stale_marks}
        if info.deprecated is not None:
            deprecations.add(info.deprecated)
        return LabelNode(
            footprint=self.place(info.published),
            attestations=tuple(self.place(i) for i in attestations),
            retirements=tuple(self.place(i) for i in retirements if i < self.size),
            deprecations=tuple(self.place(i) for i in sorted(deprecations) if i < self.size),
            components=tuple(self.node(c.pf_id, depth + 1) for c in info.components),
        )


def build_label(
    ledger: Ledger, footprint_id: str, tree_size: int | None = None, *, checkpoint_note: str | None = None
) -> bytes:
    """The label file of ``footprint_id``, every proof against ``tree_size``
    (default: the current size). Raises NotFound for an unknown footprint or
    one published at or after ``tree_size``, and TooLarge for one whose label
    would pass the limits a verifier takes (:data:`MAX_LABEL_ENTRIES`,
    :data:`MAX_LABEL_SIZE`, :data:`MAX_LABEL_DEPTH`).

    ``checkpoint_note`` replaces the log's own checkpoint note for that size,
    e.g. with one carrying witness cosignatures; it must be for ``tree_size``
    (a label verifier rejects proofs that do not match their checkpoint).
    """
    size = ledger.size if tree_size is None else tree_size
    if not 0 < size <= ledger.size:
        raise NotFound("tree size", size)
    # The state snapshot is taken after the size is read, so it holds every
    # entry below ``size``; anything newer is filtered out by index.
    with ledger.state() as kv:
        node = _Builder(ledger, kv, size, checkpoint_note).node(footprint_id.lower(), 0)
    label = format_label(node)
    if len(label) > MAX_LABEL_SIZE:  # the estimate above was short
        raise TooLarge("label", f"it takes {len(label)} bytes, more than {MAX_LABEL_SIZE}")
    return label


def label_builder(ledger: Ledger, footprint_id: str, tree_size: int) -> tuple[bytes, str]:
    """The node's ``label_builder`` hook (see :mod:`node.labels`)."""
    return build_label(ledger, footprint_id, tree_size), LABEL_MEDIA_TYPE


CosignedSource = Callable[[int], tuple[int, str] | None]


def witnessed_label_builder(cosigned: CosignedSource) -> LabelBuilder:
    """A ``label_builder`` hook whose labels carry witness cosignatures.

    ``cosigned(size)`` gives the newest witnessed checkpoint at or below
    ``size`` as ``(its size, note)``. The label is built at that size, so a
    buyer's k-of-n tlog-policy can check it offline; a footprint newer than
    every witnessed checkpoint gets a label with the log's signature only.
    """

    def build(ledger: Ledger, footprint_id: str, tree_size: int) -> tuple[bytes, str]:
        found = cosigned(tree_size)
        if found is not None:
            size, note = found
            try:
                return build_label(ledger, footprint_id, size, checkpoint_note=note), LABEL_MEDIA_TYPE
            except NotFound:
                pass  # Published after the newest witnessed size.
        return build_label(ledger, footprint_id, tree_size), LABEL_MEDIA_TYPE

    return build
