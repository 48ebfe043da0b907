"""The per-entry context handed to every operation handler.

A :class:`Tx` bundles what a handler may touch: the KV (in the log, the
batch's Journal), the entry's index and block time, the parsed operation, the acting
organization's record, and the list of events to report. Handlers check first
and write after, so a rejected entry leaves even a plain MemoryKV unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ledger.errors import PermissionDenied, StateRuleError
from ledger.kv import KV
from ledger.records.ops import Operation
from ledger.state._codec import dec, dec_shared, enc, share

__all__ = ["ApplyContext", "Event", "Applied", "Tx"]


@dataclass(frozen=True, slots=True)
class ApplyContext:
    """Where the entry goes: its log index and the block time (unix seconds)
    chosen by the sequencer. The only clock the state machine knows."""

    index: int
    time: int


@dataclass(frozen=True, slots=True)
class Event:
    """Something subscribers want to hear about. ``kind`` is e.g.
    ``footprint.deprecated``; ``subject`` the footprint id, org id or serial range
    (``gec:100-200``); ``refs`` related ids (accounts touched, downstream ids)."""

    kind: str
    subject: str
    refs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Applied:
    """An accepted entry: its operation type and the events it caused."""

    op: str
    events: tuple[Event, ...]


@dataclass(slots=True)
class Tx:
    kv: KV
    ctx: ApplyContext
    op: Operation
    entry_digest: str
    org: dict[str, Any] | None = None  # the acting org's record, once authorized; read only
    events: list[Event] = field(default_factory=list)

    # --- reading and writing state values -------------------------------------
    # Keys are built inline as :func:`ledger.state._codec.key` builds them:
    # these run several times per entry.

    def get(self, *parts: str) -> Any | None:
        """The value at ``parts``, freshly decoded: the caller may change it."""
        raw = self.kv.get("/".join(parts).encode())
        return None if raw is None else dec(raw)

    def read(self, *parts: str) -> Any | None:
        """The value at ``parts`` for reading only: it may be shared with
        other readers (see :func:`dec_shared`), so never change it."""
        raw = self.kv.get("/".join(parts).encode())
        return None if raw is None else dec_shared(raw)

    def exists(self, *parts: str) -> bool:
        return self.kv.get("/".join(parts).encode()) is not None

    def put(self, value: Any, *parts: str) -> None:
        self.kv.put("/".join(parts).encode(), enc(value))

    def put_shared(self, value: Any, *parts: str, raw: bytes | None = None) -> None:
        """Like :meth:`put`, and hand ``value`` to later :meth:`read` calls
        (see :func:`share`): never change it, or anything in it, afterwards.
        For records that are read again soon, such as footprints. ``raw``,
        if given, must be ``enc(value)``, formatted by a faster route."""
        if raw is None:
            raw = enc(value)
        self.kv.put("/".join(parts).encode(), raw)
        share(raw, value)

    def emit(self, kind: str, subject: str, *refs: str) -> None:
        self.events.append(Event(kind, subject, refs))  # *refs is a tuple already

    # --- rules shared by several handlers ---------------------------------------

    def require_role(self, role: str) -> None:
        assert self.org is not None
        if role not in self.org["roles"]:
            raise PermissionDenied(
                "missing_role", f"org {self.op.org} lacks role {role}", "org"
            )

    def require_org(self, org_id: str, field_name: str) -> dict[str, Any]:
        """The org's record as a shallow copy: reassign its lists, never
        change them in place (they are shared)."""
        org = self.read("o", org_id)
        if org is None:
            raise StateRuleError("org_not_found", f"no organization {org_id}", field_name)
        return dict(org)

    def require_org_exists(self, org_id: str, field_name: str) -> None:
        if not self.exists("o", org_id):
            raise StateRuleError("org_not_found", f"no organization {org_id}", field_name)
