"""Events derived from entries and state (node/events.py): the footprint.stale
event of a deprecation, for subscribers and for the submitter's receipt."""

from __future__ import annotations

import pytest

from ledger.state.queries import get_footprint, made_stale_by
from node import events
from node.events import LedgerEvent, events_for_entry, with_stale_events
from tests.test_state_world import World, pf_uuid

KG = {"quantity": "1", "unit": "kilogram"}


def _on(*names: str) -> list[dict[str, str]]:
    return [{"pfId": pf_uuid(name), **KG} for name in names]


def _stale_events(w: World, index: int) -> list[LedgerEvent]:
    entry = w.entries[index - w.entries[0][1]][0]
    return [e for e in events_for_entry(w.kv, index, entry) if e.kind == "footprint.stale"]


def test_a_deprecation_reports_the_footprints_that_existed_then_owners() -> None:
    w = World()
    w.publish("STEEL", "steel", "1")
    w.publish("PARTS", "door", "2", components=_on("steel"))
    w.publish("CARS", "car", "9", components=_on("door"))
    w.publish("PARTS", "frame", "2", components=_on("steel"))
    w.publish("CARS", "van", "9", components=_on("door", "frame"))  # two paths: listed once
    applied = w.publish("STEEL", "steel-v2", "1", preceding=["steel"])
    index = w.index - 1
    # Breadth first from steel, each footprint's users in key order: the
    # door and the frame, then the users of whichever of them sorts first.
    first = sorted([pf_uuid("door"), pf_uuid("frame")])
    if first[0] == pf_uuid("door"):
        second = sorted([pf_uuid("car"), pf_uuid("van")])
    else:
        second = [pf_uuid("van"), pf_uuid("car")]
    ids = (*first, *second)
    owner = {pf_uuid("door"): "PARTS", pf_uuid("frame"): "PARTS", pf_uuid("car"): "CARS", pf_uuid("van"): "CARS"}
    owners = tuple(dict.fromkeys(owner[pf] for pf in ids))
    live = _stale_events(w, index)
    assert [(e.subject, e.refs) for e in live] == [(pf_uuid("steel"), ids + owners)]
    # The submitter's receipt: the same footprints, no owners, right after
    # the deprecation, as the state machine used to emit them.
    receipt = with_stale_events(w.kv, index, applied.events)
    assert [(e.kind, e.subject, e.refs) for e in receipt if e.kind.startswith("footprint.")] == [
        ("footprint.published", pf_uuid("steel-v2"), ("STEEL",)),
        ("footprint.deprecated", pf_uuid("steel"), (pf_uuid("steel-v2"),)),
        ("footprint.stale", pf_uuid("steel"), ids),
    ]
    # Footprints published later on the stale door are stale too, but this
    # deprecation did not make them so: a subscriber resuming from this
    # index later hears exactly what a live one heard.
    w.publish("CARS", "truck", "9", components=_on("door"))
    w.publish("PARTS", "hinge", "2", components=_on("steel-v2"))
    assert get_footprint(w.kv, pf_uuid("truck")).stale
    assert _stale_events(w, index) == live
    assert with_stale_events(w.kv, index, applied.events) == receipt


def test_a_deprecation_nothing_uses_has_no_stale_event() -> None:
    w = World()
    w.publish("STEEL", "steel", "1")
    applied = w.publish("STEEL", "steel-v2", "1", preceding=["steel"])
    index = w.index - 1
    # Published after the deprecation on the new version: not made stale.
    w.publish("PARTS", "door", "2", components=_on("steel-v2"))
    assert _stale_events(w, index) == []
    assert [e.kind for e in with_stale_events(w.kv, index, applied.events)] == [e.kind for e in applied.events]
    kinds = [e.kind for e in events_for_entry(w.kv, index, w.entries[index - w.entries[0][1]][0])]
    assert kinds == ["entry", "footprint.deprecated"]


def test_many_footprints_made_stale_are_told_in_bounded_events(monkeypatch: pytest.MonkeyPatch) -> None:
    # One event naming them all would be one stream message past gRPC's
    # size limit with about 200,000, where every resuming subscriber would
    # fail for good. Each event names a bounded number, then their owners.
    monkeypatch.setattr(events, "MAX_STALE_PER_EVENT", 2)
    monkeypatch.setattr(events, "MAX_STALE_EVENTS_PER_RECEIPT", 2)
    w = World()
    w.publish("STEEL", "steel", "1")
    owners = {"a": "PARTS", "b": "CARS", "c": "PARTS", "d": "PARTS", "e": "CARS"}
    for name, org in owners.items():
        w.publish(org, name, "2", components=_on("steel"))
    applied = w.publish("STEEL", "steel-v2", "1", preceding=["steel"])
    index = w.index - 1
    ids = sorted(pf_uuid(n) for n in owners)  # steel's users, in key order
    owner_of = {pf_uuid(n): org for n, org in owners.items()}
    live = _stale_events(w, index)
    chunks = [ids[0:2], ids[2:4], ids[4:5]]
    assert [e.refs for e in live] == [
        (*chunk, *dict.fromkeys(owner_of[pf] for pf in chunk)) for chunk in chunks
    ]
    assert {e.subject for e in live} == {pf_uuid("steel")}
    # The receipt: the first two events' footprints, no owners.
    receipt = [e.refs for e in with_stale_events(w.kv, index, applied.events) if e.kind == "footprint.stale"]
    assert receipt == [tuple(ids[0:2]), tuple(ids[2:4])]
    # The receipt's walk stops at what it carries, in the same order.
    whole = made_stale_by(w.kv, pf_uuid("steel"), index)
    assert made_stale_by(w.kv, pf_uuid("steel"), index, limit=3) == whole[:3] and len(whole) == 5
