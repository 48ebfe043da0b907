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
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

__all__ = ["dec", "dec_shared", "drop_caches", "enc", "encode_string", "key", "n16", "new_cache", "share"]


# Built once: json.dumps/json.loads re-check their arguments on every call,
# which is a measurable share of applying a small operation.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_DECODER = json.JSONDecoder()
# The C encoder behind _ENCODER, called directly: same bytes, without the
# Python wrappers of JSONEncoder.encode (a third of the cost of a small value).
# Circular-reference markers are off: state values are trees built here.
_C_ENCODE = (
    c_make_encoder(None, None, encode_basestring, None, ":", ",", True, False, True)
    if c_make_encoder is not None
    else None
)
_SCAN = _DECODER.scan_once  # type: ignore[attr-defined]
#: A str as a JSON string literal, exactly as :func:`enc` writes strings
#: (quotes and escapes, non-ASCII kept as is).
encode_string: Any = encode_basestring


def enc(value: Any) -> bytes:
    """Canonical bytes of a JSON-able state value: sorted keys, no spaces, UTF-8."""
    if type(value) is int:  # index records (fo/, fd/, a/next): no encoder needed
        return str(value).encode()
    if _C_ENCODE is None:  # pragma: no cover - CPython always has the C encoder
        return _ENCODER.encode(value).encode()
    return "".join(_C_ENCODE(value, 0)).encode()


def dec(data: bytes) -> Any:
    """Decode a state value written by :func:`enc` (a fresh object, the
    caller's to change)."""
    text = data.decode()
    # scan_once is the C scanner behind JSONDecoder.decode, without its two
    # whitespace regexes (enc never writes whitespace). Corrupt state raises
    # ValueError, as json.loads would: it is not a reason to reject an entry.
    try:
        value, end = _SCAN(text, 0)
    except StopIteration:
        raise json.JSONDecodeError("Expecting value", text, 0) from None
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return value


# Decoded values by their bytes, for values a handler only reads (org records
# on every entry, batch records, upstream footprints). Keyed by content, so a
# hit is right whatever happened to the state since, including a rolled-back
# entry. Two generations bound it: when the young one is full it becomes the
# old one (the previous old one is dropped), and a hit in the old generation
# moves back to the young one, so values in steady use, such as org records,
# are never dropped.
_SHARED: dict[bytes, Any] = {}
_SHARED_OLD: dict[bytes, Any] = {}
_SHARED_MAX = 1 << 12  # per generation; a decoded footprint record takes ~4 KiB: tens of MiB at most
_CACHES: list[dict[bytes, Any]] = [_SHARED, _SHARED_OLD]


def new_cache() -> dict[bytes, Any]:
    """A content-keyed cache that :func:`drop_caches` also empties."""
    cache: dict[bytes, Any] = {}
    _CACHES.append(cache)
    return cache


def drop_caches() -> None:
    """Empty every decode cache. Never needed for correctness (they are keyed
    by content); benchmarks call it so that one run does not warm the next."""
    for cache in _CACHES:
        cache.clear()


def dec_shared(data: bytes) -> Any:
    """Like :func:`dec`, but the value may be shared with other callers:
    read it, never change it (copy first)."""
    value = _SHARED.get(data)
    if value is None:
        value = _SHARED_OLD.get(data)
        if value is None:
            value = dec(data)
        share(data, value)
    return value


def share(data: bytes, value: Any) -> None:
    """Record ``value`` as what :func:`dec_shared` returns for ``data``.

    Requires ``data == enc(value)`` and a value made of dicts, lists, strs,
    ints and None only (what :func:`dec` makes), never changed afterwards. A
    writer that hands over the value it just encoded saves the next reader
    the decode.
    """
    if len(_SHARED) >= _SHARED_MAX:
        _SHARED_OLD.clear()
        _SHARED_OLD.update(_SHARED)
        _SHARED.clear()
    _SHARED[data] = value


def n16(n: int) -> str:
    """A non-negative integer as 16 hex digits, so that key order is numeric order."""
    return f"{n:016x}"


def key(*parts: str) -> bytes:
    """Join path parts into a state key."""
    return "/".join(parts).encode()
