"""Core answers (frozen dataclasses of ``ledger.state.queries``) to protobuf.

``list_orgs`` and ``list_footprints`` page over the state's documented key
families (``o/{org}``, ``fo/{org}/{pf}``, see ``ledger/state/_codec.py``)
because ``ledger.state.queries`` has no listing functions yet; they belong
there and should move when it grows them.
"""

from __future__ import annotations

from carbonledger.v1 import query_pb2, reconcile_pb2

from ledger.kv import KV
from ledger.state import queries
from node.reconcile import Mismatch

__all__ = [
    "batch",
    "footprint",
    "holding",
    "list_footprints",
    "list_orgs",
    "mismatch",
    "org",
    "retirement",
    "unit",
    "unit_event",
]


def org(info: queries.OrgInfo) -> query_pb2.Org:
    return query_pb2.Org(
        id=info.id,
        name=info.name,
        roles=list(info.roles),
        keys=[query_pb2.Key(vkey=k.vkey, status=k.status, added=k.added, removed=k.removed) for k in info.keys],
        registered=info.registered,
        registered_by=info.registered_by,
        past_keys=info.past_keys,
    )


def footprint(f: queries.FootprintInfo) -> query_pb2.Footprint:
    return query_pb2.Footprint(
        id=f.id,
        owner=f.owner,
        status=f.status,
        stale=f.stale,
        stale_incomplete=f.stale_incomplete,
        stale_marks=[query_pb2.StaleMark(upstream=m.upstream, root=m.root, index=m.index) for m in f.stale_marks],
        product_name=f.product_name,
        unit=f.unit,
        unit_amount=f.unit_amount,
        pcf=f.pcf,
        reference_start=f.reference_start,
        reference_end=f.reference_end,
        published=f.published,
        entry_digest=f.entry_digest,
        preceding=list(f.preceding),
        successor=f.successor,
        deprecated=f.deprecated,
        lineage=f.lineage,
        components=[
            query_pb2.Component(footprint_id=c.pf_id, quantity=c.quantity, unit=c.unit) for c in f.components
        ],
        gec_claims=[query_pb2.UnitRange(start=s, end=e) for s, e in f.gec_claims],
        ccer_claims=[query_pb2.UnitRange(start=s, end=e) for s, e in f.ccer_claims],
        attestations=[
            query_pb2.Attestation(
                verifier=a.verifier, index=a.index, assurance=a.assurance, coverage=a.coverage,
                standard_name=a.standard_name,
            )  # fmt: skip
            for a in f.attestations
        ],
    )


def holding(account: str, h: queries.Holding) -> query_pb2.Holding:
    return query_pb2.Holding(
        account=account, kind=h.kind, batch=h.batch, start=h.start, end=h.end, status=h.status,
        retired_by_entry=h.retired_by_entry, claimed_by=h.claimed_by,
    )  # fmt: skip


def unit_event(e: queries.UnitEvent) -> query_pb2.UnitEvent:
    return query_pb2.UnitEvent(
        index=e.index, op=e.op, kind=e.kind, batch=e.batch, start=e.start, end=e.end, detail=dict(e.detail)
    )


def retirement(r: queries.Retirement) -> query_pb2.Retirement:
    return query_pb2.Retirement(
        kind=r.kind, index=r.index, by=r.by, beneficiary=r.beneficiary, purpose=r.purpose,
        period_start=r.period_start, period_end=r.period_end, start=r.start, end=r.end,
    )  # fmt: skip


def unit(u: queries.UnitInfo) -> query_pb2.Unit:
    return query_pb2.Unit(
        kind=u.kind, serial=u.serial, batch=u.batch, owner=u.owner, status=u.status,
        retirement=retirement(u.retirement) if u.retirement is not None else None, claimed_by=u.claimed_by,
    )  # fmt: skip


def batch(b: queries.BatchInfo) -> query_pb2.Batch:
    return query_pb2.Batch(
        kind=b.kind, id=b.id, project=b.project, start=b.start, end=b.end, period_start=b.period_start,
        period_end=b.period_end, validity_end=b.validity_end, issued=b.issued, issued_to=b.issued_to,
        report=b.report,
    )  # fmt: skip


def mismatch(m: Mismatch) -> reconcile_pb2.Mismatch:
    return reconcile_pb2.Mismatch(
        kind=reconcile_pb2.Mismatch.Kind.Value(m.kind), account=m.account, asset=m.asset, batch=m.batch,
        start=m.start, end=m.end, books_amount=m.books_amount, ledger_amount=m.ledger_amount,
        detail=m.detail, proving_indexes=list(m.proving_indexes), row=m.row,
    )  # fmt: skip


def _after(prefix: bytes, after: str | None) -> bytes:
    # The first key strictly after prefix + after.
    return prefix if after is None else prefix + after.encode() + b"\x00"


def list_orgs(kv: KV, role: str, after: str | None, limit: int) -> tuple[list[queries.OrgInfo], str | None]:
    """Orgs in id order after ``after``, holding ``role`` if given; and the
    id to resume after, if there may be more."""
    prefix = b"o/"
    out: list[queries.OrgInfo] = []
    for k, _ in kv.scan(prefix, _after(prefix, after)):
        info = queries.get_org(kv, k[len(prefix) :].decode())
        if role and role not in info.roles:
            continue
        if len(out) == limit:
            return out, out[-1].id
        out.append(info)
    return out, None


#: Upstream footprints one page of footprints may read for staleness: each
#: footprint's walk reads up to MAX_UPSTREAM_WALK, and a page of a thousand
#: deep ones would hold a read thread for minutes. A page that reaches it
#: ends early, with a token; it always holds at least one footprint.
MAX_PAGE_UPSTREAM_READS = 20_000


def list_footprints(
    kv: KV, owner: str, after: str | None, limit: int
) -> tuple[list[queries.FootprintInfo], str | None]:
    """``owner``'s footprints in id order after ``after``; and the resume id.

    The page ends early once its footprints' staleness walks have read
    :data:`MAX_PAGE_UPSTREAM_READS` upstream footprints."""
    prefix = f"fo/{owner}/".encode()
    out: list[queries.FootprintInfo] = []
    read = 0
    for k, _ in kv.scan(prefix, _after(prefix, after)):
        if len(out) == limit or read >= MAX_PAGE_UPSTREAM_READS:
            return out, out[-1].id
        info = queries.get_footprint(kv, k[len(prefix) :].decode())
        read += info.upstream_read
        out.append(info)
    return out, None
