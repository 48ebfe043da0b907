"""State keys and values: one place that fixes their bytes.

Values are canonical JSON (sorted keys, no spaces, UTF-8), holding only
ints, strings, lists, dicts and null, so the same state always has the same
bytes and the state digest is reproducible. Keys are ASCII paths whose
numeric parts are 16 lower-case hex digits, so that key order is numeric
order and a prefix scan walks serial numbers or entry indexes in sequence.

Key families (``{n}`` = 16 hex digits):

========================  ====================================================
``g/genesis``             the genesis entry
``o/{org}``               organization: name, roles, current and past keys
``k/{vkey}``              which org a key belongs to (keys are never reused)
``f/{pf}``                footprint record (lower-case UUID)
``fd/{up}/{down}``        reverse component edge, for staleness
``fo/{org}/{pf}``         footprints by owner
``a/{kind}/next``         next free serial of an asset kind (gec, ccer)
``ab/{kind}/{batch}``     batch record
``as/{kind}/{end}``       batch id by end serial (serial -> batch lookup)
``sg/{kind}/{end}``       unit segment [s, end): owner, status, retirement, claim
``ao/{org}/{kind}/{end}`` the same segment, indexed by owner (holdings)
``ar/{kind}/{index}``     retirement / cancellation made by entry ``index``
``ah/{kind}/{batch}/{index}/{start}``  unit history of a batch
``gp/{project}``          GEC project; ``gpp/{project}/{end}`` its issued periods;
                          ``gpb/{project}/{batch}`` its batches
``cp/{project}``          CCER project; ``cpp/{project}/{end}`` its report periods
``cr/{report}``           CCER emission-reduction report
========================  ====================================================
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["enc", "dec", "n16", "key"]


# Built once: json.dumps/json.loads re-check their arguments on every call,
# which is a measurable share of applying a small operation.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_DECODER = json.JSONDecoder()


def enc(value: Any) -> bytes:
    """Canonical bytes of a JSON-able state value."""
    return _ENCODER.encode(value).encode()


def dec(data: bytes) -> Any:
    """Decode a state value written by :func:`enc`."""
    return _DECODER.decode(data.decode())


def n16(n: int) -> str:
    """A non-negative integer as 16 hex digits, so that key order is numeric order."""
    return f"{n:016x}"


def key(*parts: str) -> bytes:
    """Join path parts into a state key."""
    return "/".join(parts).encode()
