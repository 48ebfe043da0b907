"""State keys and values: one place that fixes their bytes.

Values are canonical JSON (sorted keys, no spaces, UTF-8), holding only
ints, strings, lists, dicts and null, so the same state always has the same
bytes and the state digest is reproducible. Keys are ASCII paths whose
numeric parts are 16 lower-case hex digits, so that key order is numeric
order and a prefix scan walks serial numbers or entry indexes in sequence.

Key families (``{n}`` = 16 hex digits):

========================  ====================================================
``g/genesis``             the genesis entry
``o/{org}``               organization: name, roles, current keys, past-key count
``kp/{org}/{n}``          the org's n-th removed key: rotated or revoked, when
``k/{vkey}``              which org a key belongs to (keys are never reused)
``f/{pf}``                footprint record (lower-case UUID)
``fd/{up}/{down}``        reverse component edge: who a deprecation made stale
``fv/{pf}/{later}``       a later version naming ``pf`` among its predecessors
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
``rp/{time}/{digest}``    entry index of the applied operation whose signed
                          payload has SHA-256 ``digest`` (hex) and time
                          ``{time}``; kept while that time may be sequenced
========================  ====================================================
"""

from __future__ import annotations

import json
import weakref
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

__all__ = [
    "SHARED",
    "DecodeCache",
    "dec",
    "dec_first",
    "dec_shared",
    "dec_tail",
    "drop_caches",
    "enc",
    "encode_string",
    "key",
    "n16",
    "share",
]


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
    if type(value) is int:  # index records (fo/, fd/, fv/, a/next): no encoder needed
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


def dec_tail(text: str, first: str) -> dict[str, Any] | None:
    """The top-level fields of the object ``text`` (as :func:`enc` wrote
    it, decoded to str) from key ``first`` to its last key, or None when
    they cannot be told apart from the rest; then decode it all.

    A large record read for a few of its last fields (a footprint read as
    an upstream component) costs a fraction of a full decode. Sound because
    enc writes keys in sorted order with no whitespace, and a JSON string
    never holds an unescaped quote, so ``,"first":`` occurs only as a key;
    the last occurrence is the top-level key unless a nested object after
    it has the same key, and then the object parsed from there closes
    before the end of ``text`` and None is returned.
    """
    pos = text.rfind(f',"{first}":')
    if pos < 0:
        return None
    tail = "{" + text[pos + 1 :]
    try:
        value, end = _SCAN(tail, 0)
    except (StopIteration, ValueError):
        return None
    return value if end == len(tail) and type(value) is dict else None


def dec_first(text: str, first: str) -> tuple[Any, int] | None:
    """The value of the object ``text``'s first key if that key is
    ``first``, with the offset just past the value; None otherwise.

    With :func:`dec_tail`, lets a writer change a record's first field
    without a full decode: ``enc`` of the changed record is
    ``'{"first":' + enc(new value) + text[offset:]``, because enc writes a
    record's fields in key order, each encoded on its own.
    """
    head = f'{{"{first}":'
    if not text.startswith(head):
        return None
    try:
        return _SCAN(text, len(head))  # type: ignore[no-any-return]
    except (StopIteration, ValueError):
        return None


class DecodeCache:
    """Decoded state values by their bytes, bounded by those bytes.

    Keyed by content, so a hit is right whatever happened to the state
    since, including a rolled-back entry; values are shared between callers
    and never changed. Two generations: when the young one's budget is
    spent it becomes the old one (the previous old one is dropped), and a
    hit in the old generation moves back to the young one, so values in
    steady use, such as org records, are never dropped.

    The bound is on what is charged: each value's encoded length plus
    :data:`ENTRY_COST`, at most ``max_bytes`` per generation, so at most
    ``2 * max_bytes`` in all. A decoded JSON value takes a few times its
    encoded length (4 to 8 times for the small dicts of state records), so
    a cache holds roughly ten times ``max_bytes`` of memory at its largest.
    A value charged more than ``max_bytes`` is not kept.

    Threads may race on a cache (readers scan state beside the writer):
    dict operations are atomic under the GIL, and a lost update only loses
    a value or charges a generation slightly wrong until it turns over.
    """

    __slots__ = ("__weakref__", "_old", "_old_bytes", "_young", "_young_bytes", "max_bytes")

    #: Charged per value besides its encoded bytes: the key's object and
    #: the dict slots, so that many tiny values are bounded too.
    ENTRY_COST = 64

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        self.max_bytes = max_bytes
        self._young: dict[bytes, Any] = {}
        self._old: dict[bytes, Any] = {}
        self._young_bytes = 0
        self._old_bytes = 0
        _CACHES.add(self)

    def get(self, data: bytes) -> Any | None:
        """The value cached for ``data``, or None."""
        value = self._young.get(data)
        if value is None:
            value = self._old.get(data)
            if value is not None:
                self.put(data, value)
        return value

    def put(self, data: bytes, value: Any) -> None:
        """Cache ``value`` as the decoding of ``data``; never change it afterwards."""
        cost = len(data) + self.ENTRY_COST
        if self._young_bytes + cost > self.max_bytes:
            if cost > self.max_bytes:
                return
            # Swapped, not copied: the young generation becomes the old one.
            self._old, self._old_bytes = self._young, self._young_bytes
            self._young, self._young_bytes = {}, 0
        self._young[data] = value
        self._young_bytes += cost

    def clear(self) -> None:
        self._young, self._old = {}, {}
        self._young_bytes = self._old_bytes = 0

    @property
    def charged(self) -> int:
        """Bytes charged to the values held now: at most ``2 * max_bytes``."""
        return self._young_bytes + self._old_bytes

    def __len__(self) -> int:
        return len(self._young) + len(self._old)

    def items(self) -> list[tuple[bytes, Any]]:
        """Every cached (bytes, value), the old generation's first (a value
        in both appears twice)."""
        return [*self._old.items(), *self._young.items()]


#: Every cache, for :func:`drop_caches`; weakly, so a dropped one goes.
_CACHES: weakref.WeakSet[DecodeCache] = weakref.WeakSet()


def drop_caches() -> None:
    """Empty every decode cache. Never needed for correctness (they are keyed
    by content); benchmarks call it so that one run does not warm the next."""
    for cache in _CACHES:
        cache.clear()


#: Decoded values for handlers that only read them (org records on every
#: entry, batch and project records, upstream footprints). The hot set is a
#: few dozen org records and the batches being moved; footprints are read
#: again only when attested or used as a component, often long after. A
#: state record is about 450 bytes encoded (2 KiB decoded), so this keeps
#: the last 500 to 1,000 records, some 2 MiB at most. A larger cache saves
#: no time: bounded at 4,096 records a generation (16 MiB), it decoded a
#: third fewer values, and applying 200,000 entries of the bench workload
#: took the same CPU time within noise.
SHARED = DecodeCache(256 << 10)


def dec_shared(data: bytes) -> Any:
    """Like :func:`dec`, but the value may be shared with other callers:
    read it, never change it (copy first)."""
    value = SHARED.get(data)
    if value is None:
        value = dec(data)
        SHARED.put(data, value)
    return value


def share(data: bytes, value: Any) -> None:
    """Record ``value`` as what :func:`dec_shared` returns for ``data``.

    Requires ``data == enc(value)`` and a value made of dicts, lists, strs,
    ints and None only (what :func:`dec` makes), never changed afterwards. A
    writer that hands over the value it just encoded saves the next reader
    the decode.
    """
    SHARED.put(data, value)


def n16(n: int) -> str:
    """A non-negative integer as 16 hex digits, so that key order is numeric order."""
    return f"{n:016x}"


def key(*parts: str) -> bytes:
    """Join path parts into a state key."""
    return "/".join(parts).encode()
