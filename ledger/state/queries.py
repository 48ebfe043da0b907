"""Read-only queries over the state KV, for the node and clients.

Every answer is a frozen dataclass, and every fact in it carries the entry
index that proves it (``registered``, ``published``, ``index``...), so that a
node can serve the entry with an inclusion proof beside the answer. Lookups of
things that do not exist raise :class:`NotFound`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ledger.errors import MalformedError, NotFound, StateRuleError, TooLarge
from ledger.kv import KV
from ledger.state import footprints
from ledger.state._codec import dec, key, n16
from ledger.state.ranges import HELD, RETIRED, covering

__all__ = [
    "ExpiredBatches",
    "KeyInfo",
    "MAX_LISTED_PAST_KEYS",
    "OrgInfo",
    "Attestation",
    "ComponentRef",
    "StaleMark",
    "FootprintInfo",
    "Holding",
    "HoldingsPage",
    "UnitRun",
    "UnitEvent",
    "Retirement",
    "UnitInfo",
    "BatchInfo",
    "Supply",
    "EXPIRED",
    "get_org",
    "get_footprint",
    "stale_marks",
    "deprecated_at",
    "footprint_versions",
    "downstream_of",
    "made_stale_by",
    "get_holdings",
    "unit_runs",
    "account_runs",
    "unit_history",
    "unit_history_since",
    "get_unit",
    "get_retirement",
    "get_batch",
    "batch_supply",
    "get_record",
]

KINDS = ("gec", "ccer")

#: The status the queries give held units of a batch past its validity end at
#: the time asked about. It is never stored (see ``ledger.state.ranges``): the
#: state machine refuses to move or retire such units, so a holder or an
#: exchange reading them as "held" would count certificates it cannot use.
#: Reconciliation reports them with the same status.
EXPIRED = "expired"


def _get(kv: KV, what: str, *parts: str) -> Any:
    raw = kv.get(key(*parts))
    if raw is None:
        raise NotFound(what, parts[-1])
    return dec(raw)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise MalformedError("kind", f"must be one of {KINDS}")


# --- organizations ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyInfo:
    vkey: str
    status: str  # "current", "rotated" or "revoked"
    added: int
    removed: int | None


#: Past keys an :class:`OrgInfo` lists: the most recently removed. An org
#: may rotate without limit, and a page of orgs must stay small.
MAX_LISTED_PAST_KEYS = 64


@dataclass(frozen=True, slots=True)
class OrgInfo:
    id: str
    name: str
    roles: tuple[str, ...]
    # Current first, then past keys in order of removal: the last
    # MAX_LISTED_PAST_KEYS of them (``past_keys`` says how many there are).
    keys: tuple[KeyInfo, ...]
    registered: int
    registered_by: str
    past_keys: int = 0


def get_org(kv: KV, org_id: str) -> OrgInfo:
    rec = _get(kv, "organization", "o", org_id)
    keys = [KeyInfo(k["key"], "current", k["added"], None) for k in rec["keys"]]
    total = rec["pastKeys"]
    prefix = key("kp", org_id, "")
    for _, raw in kv.scan(prefix, prefix + n16(max(total - MAX_LISTED_PAST_KEYS, 0)).encode()):
        k = dec(raw)
        keys.append(KeyInfo(k["key"], k["status"], k["added"], k["removed"]))
    return OrgInfo(org_id, rec["name"], tuple(rec["roles"]), tuple(keys), rec["registered"], rec["by"], total)


# --- footprints ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attestation:
    verifier: str
    index: int
    assurance: str
    coverage: str
    standard_name: str


@dataclass(frozen=True, slots=True)
class ComponentRef:
    pf_id: str
    quantity: str
    unit: str


@dataclass(frozen=True, slots=True)
class StaleMark:
    """Why a footprint is stale: ``root``, somewhere in its upstream graph,
    was deprecated. Computed when asked (see :func:`stale_marks`), never
    stored."""

    upstream: str  # the direct component through which ``root`` is reached
    root: str  # the deprecated footprint
    index: int  # the entry that deprecated ``root``


@dataclass(frozen=True, slots=True)
class FootprintInfo:
    id: str
    owner: str
    status: str
    stale: bool
    stale_marks: tuple[StaleMark, ...]
    # True when the upstream graph is larger than the staleness walk reads
    # (MAX_UPSTREAM_WALK footprints): the marks are those found within it,
    # and one not found may lie beyond.
    stale_incomplete: bool
    # How many upstream footprints the staleness walk read: what answering
    # cost, for callers that bound the work of one request.
    upstream_read: int
    product_name: str
    unit: str
    unit_amount: str
    pcf: str
    reference_start: int
    reference_end: int
    published: int
    entry_digest: str
    preceding: tuple[str, ...]
    successor: str | None
    deprecated: int | None
    lineage: str
    components: tuple[ComponentRef, ...]
    gec_claims: tuple[tuple[int, int], ...]
    ccer_claims: tuple[tuple[int, int], ...]
    attestations: tuple[Attestation, ...]


def get_footprint(kv: KV, pf_id: str) -> FootprintInfo:
    """Footprint ``pf_id`` as of ``kv``, its staleness included (see
    :func:`stale_marks`; past its bound, ``stale_incomplete`` says so)."""
    pf_id = pf_id.lower()
    r = _get(kv, "footprint", "f", pf_id)
    marks, complete, read = _stale_marks(kv, r)
    return FootprintInfo(
        id=pf_id,
        owner=r["owner"],
        status=r["status"],
        stale=bool(marks),
        stale_marks=marks,
        stale_incomplete=not complete,
        upstream_read=read,
        product_name=r["product"],
        unit=r["unit"],
        unit_amount=r["unitAmount"],
        pcf=r["pcf"],
        reference_start=r["refStart"],
        reference_end=r["refEnd"],
        published=r["published"],
        entry_digest=r["digest"],
        preceding=tuple(r["preceding"]),
        successor=r["successor"],
        deprecated=r["deprecated"],
        lineage=r["lineage"],
        components=tuple(ComponentRef(c["pf"], c["quantity"], c["unit"]) for c in r["components"]),
        gec_claims=tuple((s, e) for s, e in r["claims"]["gec"]),
        ccer_claims=tuple((s, e) for s, e in r["claims"]["ccer"]),
        attestations=tuple(
            Attestation(a["verifier"], a["index"], a["assurance"], a["coverage"], a["standardName"])
            for a in r["attestations"]
        ),
    )


def stale_marks(kv: KV, pf_id: str) -> tuple[StaleMark, ...]:
    """Why footprint ``pf_id`` is stale as of ``kv``: one mark per deprecated
    footprint in its upstream graph, however far up, oldest deprecation
    first (ties in the order found); empty if it is not stale.

    The state machine writes no staleness: components never change after
    publish, so the upstream graph a footprint had when it was published is
    the one it has now, and whether any footprint in it is deprecated is
    read from their records. A deprecation after the state ``kv`` is a
    snapshot of is not in it, so a snapshot answers as of its own size.

    Breadth first from the footprint's components in their stored order;
    each upstream footprint is credited to the direct component through
    which the walk first reaches it: of the components nearest to it, the
    first in stored order. Reads each upstream footprint once, and at most
    ``footprints.MAX_UPSTREAM_WALK`` of them. A re-version walked the same
    graph when it was published and was refused past that bound; a first
    version was not walked, and a graph past the bound raises TooLarge here
    (:func:`get_footprint` answers with the marks it found and
    ``stale_incomplete`` instead, so that one such footprint does not fail
    a page of an owner's footprints).
    """
    pf_id = pf_id.lower()
    marks, complete, _ = _stale_marks(kv, _get(kv, "footprint", "f", pf_id))
    if not complete:
        limit = footprints.MAX_UPSTREAM_WALK
        raise TooLarge("footprint", f"{pf_id} has more than {limit} footprints upstream to check for staleness")
    return marks


def _stale_marks(kv: KV, rec: dict[str, Any]) -> tuple[tuple[StaleMark, ...], bool, int]:
    """The marks found within the walk's bound, whether the walk reached
    the whole upstream graph, and how many footprints it read."""
    # Read at each call, as the state machine's walks read it.
    limit = footprints.MAX_UPSTREAM_WALK
    seen: set[str] = set()
    queue: deque[tuple[str, str]] = deque()  # (upstream footprint, the component it is reached through)
    complete = True

    def found(pf: str, via: str) -> None:
        nonlocal complete
        if pf in seen:
            return
        if len(seen) == limit:
            complete = False  # beyond the bound: not read
            return
        seen.add(pf)
        queue.append((pf, via))

    for c in rec["components"]:
        found(c["pf"], c["pf"])
    marks: list[StaleMark] = []
    while queue:
        pf, via = queue.popleft()
        up = _get(kv, "footprint", "f", pf)
        if up["deprecated"] is not None:
            marks.append(StaleMark(via, pf, up["deprecated"]))
        for c in up["components"]:
            found(c["pf"], via)
    marks.sort(key=lambda m: m.index)  # stable: ties keep the walk's order
    return tuple(marks), complete, len(seen)


def deprecated_at(kv: KV, pf_id: str) -> int | None:
    """The index of the entry that deprecated footprint ``pf_id``, or None
    while it is Active. One read, no staleness walk."""
    deprecated: int | None = _get(kv, "footprint", "f", pf_id.lower())["deprecated"]
    return deprecated


def footprint_versions(kv: KV, pf_id: str) -> tuple[str, ...]:
    """Every version of the footprint's product, in order of publication:
    its predecessors and later versions, however far, through PACT merges
    (a version naming several predecessors) and splits (several versions
    naming one). At most ``footprints.MAX_UPSTREAM_WALK`` are read; past
    that, TooLarge."""
    first = pf_id.lower()
    limit = footprints.MAX_UPSTREAM_WALK
    found: dict[str, int] = {}  # id -> published index
    queue = deque([first])
    seen = {first}
    while queue:
        pf = queue.popleft()
        rec = _get(kv, "footprint", "f", pf)
        found[pf] = rec["published"]
        prefix = key("fv", pf, "")
        later = [k[len(prefix) :].decode() for k, _ in kv.scan(prefix)]
        for other in (*rec["preceding"], *later):
            if other not in seen:
                if len(seen) == limit:
                    raise TooLarge("footprint", f"{first} has more than {limit} versions")
                seen.add(other)
                queue.append(other)
    return tuple(sorted(found, key=found.__getitem__))


def downstream_of(kv: KV, pf_id: str) -> tuple[str, ...]:
    """The footprints that list ``pf_id`` as a direct component."""
    prefix = key("fd", pf_id.lower()) + b"/"
    return tuple(k[len(prefix) :].decode() for k, _ in kv.scan(prefix))


def made_stale_by(kv: KV, root: str, index: int, *, limit: int | None = None) -> tuple[tuple[str, str], ...]:
    """``(footprint id, owner)`` of each footprint that the deprecation of
    ``root`` by the entry at ``index`` made stale: those downstream of it,
    however far, that were published before ``index``. One published later
    on a stale component was stale from its start; the deprecation changed
    nothing for it. Breadth first from ``root``, each footprint's direct
    downstream in key order.

    Reads the whole downstream graph, which nothing bounds (a popular
    upstream footprint has many users): this serves event derivation, off
    the sequencer's path, and never the state machine. A footprint reached
    only through later ones is later too (its components existed when it
    was published), so the walk stops at those. With ``limit``, the first
    ``limit`` of them in that order, and the walk stops there.
    """
    out: list[tuple[str, str]] = []
    queue, seen = deque([root]), {root}
    while queue:
        prefix = key("fd", queue.popleft()) + b"/"
        for k, _ in kv.scan(prefix):
            down = k[len(prefix) :].decode()
            if down in seen:
                continue
            seen.add(down)
            rec = _get(kv, "footprint", "f", down)
            if rec["published"] < index:
                out.append((down, rec["owner"]))
                if len(out) == limit:
                    return tuple(out)
                queue.append(down)
    return tuple(out)


# --- units ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Holding:
    kind: str
    batch: str
    start: int
    end: int
    status: str  # "held", "expired", "frozen" or "retired"
    retired_by_entry: int | None
    claimed_by: str | None


@dataclass(frozen=True, slots=True)
class HoldingsPage:
    holdings: tuple[Holding, ...]
    next_page_token: str | None


def get_holdings(
    kv: KV, account: str, *, time: int, page_token: str | None = None, limit: int = 100
) -> HoldingsPage:
    """An account's unit ranges (CCER then GEC, each in serial order: the
    order of their keys), ``limit`` per page, with their status at ``time``
    (the ledger's: see ``ledger.log.time_at``): held units of a batch past
    its validity end are :data:`EXPIRED`.

    ``page_token`` is the ``next_page_token`` of the previous page: the kind
    and end serial of the last range returned. A page starts strictly after
    that serial, so no unit is listed on two pages of one listing, and a
    unit held from the first page to the last is listed once, whatever
    moved between the pages.
    """
    if not 1 <= limit <= 1000:
        raise MalformedError("limit", "must be between 1 and 1000")
    prefix = key("ao", account) + b"/"
    start = prefix
    resume_kind, resume_at = "", 0
    if page_token is not None:
        kind, _, end_hex = page_token.partition(":")
        if kind not in KINDS or len(end_hex) != 16 or any(c not in "0123456789abcdef" for c in end_hex):
            raise MalformedError("page_token", "not a token this server issued")
        start = prefix + f"{kind}/{end_hex}".encode() + b"\x00"
        resume_kind, resume_at = kind, int(end_hex, 16)
    out: list[Holding] = []
    token: str | None = None
    last_kind = last_end = ""  # set by the first pair; read only once out is full
    expired = ExpiredBatches(kv, time)
    for k, raw in kv.scan(prefix, start):
        kind, _, end_hex = k[len(prefix) :].decode().partition("/")
        if len(out) == limit:
            token = f"{last_kind}:{last_end}"
            break
        v = dec(raw)
        first = v["s"]
        if kind == resume_kind and first < resume_at:
            # The range grew across the token since the last page (units
            # next to it came to the account, or changed status to match, and
            # the segments merged): its units before the token were on that
            # page already. Only the first range after the token can hold
            # the serial before it, and that range ends after the token, so
            # the clipped range is not empty. Serials are numbered per kind
            # (a batch is a run of them), so ranges of another kind than the
            # token's are never clipped.
            first = resume_at
        status = EXPIRED if v["st"] == HELD and expired(kind, v["b"]) else v["st"]
        out.append(Holding(kind, v["b"], first, int(end_hex, 16), status, v.get("r"), v.get("c")))
        last_kind, last_end = kind, end_hex
    return HoldingsPage(tuple(out), token)


@dataclass(frozen=True, slots=True)
class UnitRun:
    """A stored segment: units ``[start, end)`` of one batch sharing one owner
    and status (maximal: its neighbors differ in some field)."""

    kind: str
    batch: str
    start: int
    end: int
    owner: str
    status: str  # "held", "frozen" or "retired"


def _run(kind: str, end_hex: bytes, raw: bytes) -> UnitRun:
    v = dec(raw)
    return UnitRun(kind, v["b"], v["s"], int(end_hex, 16), v["o"], v["st"])


def unit_runs(kv: KV, kind: str, start: int, end: int) -> Iterator[UnitRun]:
    """The segments holding any unit of ``[start, end)``, in serial order and
    not clipped; units between them were never issued. One seek, then one
    read per segment."""
    _check_kind(kind)
    prefix = key("sg", kind) + b"/"
    for k, raw in kv.scan(prefix, prefix + n16(start + 1).encode()):
        run = _run(kind, k[len(prefix) :], raw)
        if run.start >= end:
            return
        yield run


def account_runs(kv: KV, account: str, kind: str) -> Iterator[UnitRun]:
    """The segments of ``kind`` that ``account`` owns, of every status, in
    serial order: one prefix scan of the owner index."""
    _check_kind(kind)
    prefix = key("ao", account, kind) + b"/"
    for k, raw in kv.scan(prefix):
        yield _run(kind, k[len(prefix) :], raw)


@dataclass(frozen=True, slots=True)
class UnitEvent:
    index: int  # the entry that did it
    op: str  # issue, transfer, retire, freeze, claim
    kind: str
    batch: str
    start: int
    end: int
    detail: tuple[tuple[str, str], ...]  # e.g. (("from", A), ("to", B))


def _batches_overlapping(kv: KV, kind: str, start: int, end: int) -> list[str]:
    prefix = key("as", kind) + b"/"
    out: list[str] = []
    for _k, raw in kv.scan(prefix, prefix + n16(start + 1).encode()):
        batch = dec(raw)
        if _get(kv, "batch", "ab", kind, batch)["start"] >= end:
            break
        out.append(batch)
    return out


def unit_history(kv: KV, kind: str, start: int, end: int) -> tuple[UnitEvent, ...]:
    """Everything that happened to any unit of ``[start, end)``, in log order."""
    _check_kind(kind)
    events: list[UnitEvent] = []
    for batch in _batches_overlapping(kv, kind, start, end):
        prefix = key("ah", kind, batch) + b"/"
        for k, raw in kv.scan(prefix):
            v = dec(raw)
            if v["s"] < end and start < v["e"]:
                idx = int(k[len(prefix) :].split(b"/")[0], 16)
                detail = tuple(sorted((a, str(b)) for a, b in v.items() if a not in ("op", "s", "e")))
                events.append(UnitEvent(idx, v["op"], kind, batch, v["s"], v["e"], detail))
    events.sort(key=lambda e: (e.index, e.start))
    return tuple(events)


def unit_history_since(kv: KV, kind: str, from_index: int) -> tuple[UnitEvent, ...]:
    """Everything that happened to units of ``kind`` in entries
    ``from_index`` and later, in log order: one seek per batch, then only
    the records returned are read."""
    _check_kind(kind)
    if from_index < 0:
        raise MalformedError("from_index", "must not be negative")
    events: list[UnitEvent] = []
    batches = key("as", kind) + b"/"
    for _k, batch_raw in kv.scan(batches):
        batch = dec(batch_raw)
        prefix = key("ah", kind, batch) + b"/"
        for k, raw in kv.scan(prefix, prefix + n16(from_index).encode()):
            v = dec(raw)
            idx = int(k[len(prefix) :].split(b"/")[0], 16)
            detail = tuple(sorted((a, str(b)) for a, b in v.items() if a not in ("op", "s", "e")))
            events.append(UnitEvent(idx, v["op"], kind, batch, v["s"], v["e"], detail))
    events.sort(key=lambda e: (e.index, e.start))
    return tuple(events)


@dataclass(frozen=True, slots=True)
class Retirement:
    kind: str
    index: int  # the retiring (GEC) or cancelling (CCER) entry
    by: str
    beneficiary: str
    purpose: str | None
    period_start: int
    period_end: int
    start: int
    end: int


def get_retirement(kv: KV, kind: str, index: int) -> Retirement:
    _check_kind(kind)
    r = _get(kv, "retirement", "ar", kind, n16(index))
    return Retirement(
        kind, index, r["by"], r["beneficiary"], r.get("purpose"), r["periodStart"], r["periodEnd"], r["s"], r["e"]
    )


@dataclass(frozen=True, slots=True)
class UnitInfo:
    kind: str
    serial: int
    batch: str
    owner: str
    status: str  # "held", "expired", "frozen" or "retired"
    retirement: Retirement | None  # which entry retired it
    claimed_by: str | None  # which footprint claims it


def get_unit(kv: KV, kind: str, serial: int, *, time: int) -> UnitInfo:
    """One unit: who holds it, in what status at ``time`` (the ledger's: see
    ``ledger.log.time_at``; a held unit of a batch past its validity end is
    :data:`EXPIRED`), which entry retired it, which footprint claims it."""
    _check_kind(kind)
    try:
        seg = covering(kv, kind, serial, serial + 1)[0]
    except StateRuleError:
        raise NotFound("unit", f"{kind}:{serial}") from None
    v = seg.value
    ret = get_retirement(kv, kind, int(v["r"])) if v["st"] == RETIRED else None
    status = EXPIRED if v["st"] == HELD and get_batch(kv, kind, v["b"]).expired_at(time) else v["st"]
    return UnitInfo(kind, serial, v["b"], v["o"], status, ret, v.get("c"))


@dataclass(frozen=True, slots=True)
class BatchInfo:
    kind: str
    id: str
    project: str
    start: int
    end: int
    period_start: int
    period_end: int
    validity_end: int | None
    issued: int
    issued_to: str
    report: str | None

    def expired_at(self, time: int) -> bool:
        """Whether the batch's units are past their validity end at ``time``:
        from the validity end on, the measure by which the state machine
        refuses to move them (``ledger.state.units.check_movable``)."""
        return self.validity_end is not None and self.validity_end <= time


def get_batch(kv: KV, kind: str, batch_id: str) -> BatchInfo:
    _check_kind(kind)
    b = _get(kv, "batch", "ab", kind, batch_id)
    return BatchInfo(
        kind, batch_id, b["project"], b["start"], b["end"], b["periodStart"], b["periodEnd"],
        b["validityEnd"], b["issued"], b["to"], b.get("report"),
    )  # fmt: skip


class ExpiredBatches:
    """``(kind, batch) -> bool``: whether the batch is past its validity end
    at ``time``, each batch read once (an account's ranges of one batch are
    many, and a batch's record is one read)."""

    def __init__(self, kv: KV, time: int) -> None:
        self._kv = kv
        self._time = time
        self._known: dict[tuple[str, str], bool] = {}

    def __call__(self, kind: str, batch: str) -> bool:
        got = self._known.get((kind, batch))
        if got is None:
            got = self._known[(kind, batch)] = get_batch(self._kv, kind, batch).expired_at(self._time)
        return got


@dataclass(frozen=True, slots=True)
class Supply:
    """Unit counts of one batch at a time: issued = held + retired + frozen + expired."""

    issued: int
    held: int
    retired: int
    frozen: int
    expired: int


def batch_supply(kv: KV, kind: str, batch_id: str, time: int) -> Supply:
    """Count a batch's units by status at ``time`` (held units count as
    expired from the batch's validity end on). Scans the batch's segments only."""
    b = get_batch(kv, kind, batch_id)
    counts = {"held": 0, "retired": 0, "frozen": 0, EXPIRED: 0}
    expired = b.expired_at(time)
    for seg in covering(kv, kind, b.start, b.end):
        n = min(seg.end, b.end) - max(seg.start, b.start)
        status = seg.status
        if status == HELD and expired:
            status = EXPIRED
        counts[status] += n
    return Supply(b.end - b.start, counts["held"], counts["retired"], counts["frozen"], counts[EXPIRED])


_RECORDS = {"gec_project": "gp", "ccer_project": "cp", "ccer_report": "cr"}


def get_record(kv: KV, kind: str, record_id: str) -> dict[str, Any]:
    """A GEC project, CCER project or CCER report as stored (a fresh dict)."""
    if kind not in _RECORDS:
        raise MalformedError("kind", f"must be one of {sorted(_RECORDS)}")
    return dict(_get(kv, kind.replace("_", " "), _RECORDS[kind], record_id))
