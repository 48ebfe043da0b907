"""Strict JSON in, canonical JSON out: the one JSON parser of the core.

Everything the ledger stores or verifies arrives as bytes, and two readers
must never disagree about what those bytes say. So the parser refuses what
JSON parsers usually let through and resolve differently: duplicate object
keys, ``NaN``/``Infinity``, a byte order mark, non-UTF-8 text, and (when asked)
floats, whose rounding differs between languages.
"""

from __future__ import annotations

import json
from typing import Any

from ledger.errors import MalformedError

__all__ = ["canonical_dumps", "strict_loads"]


class _StrictDecoder(json.JSONDecoder):
    """A decoder whose hooks name ``what`` in their errors."""

    def __init__(self, what: str, *, allow_floats: bool, name_by_key: bool) -> None:
        def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for key, value in pairs:
                if key in out:
                    raise MalformedError(key if name_by_key else what, f"duplicate JSON key {key!r}")
                out[key] = value
            return out

        def no_constant(name: str) -> Any:
            raise MalformedError(what, f"JSON constant {name} is not allowed")

        def no_float(text: str) -> Any:
            raise MalformedError(what, f"JSON number {text!r} is not an integer; decimals are strings")

        super().__init__(
            object_pairs_hook=no_duplicates,
            parse_constant=no_constant,
            parse_float=None if allow_floats else no_float,
        )


# Decoders keep no state between calls, so one per (what, floats) serves
# every thread; building one per call would dominate small documents.
_DECODERS: dict[tuple[str, bool, bool], _StrictDecoder] = {}


def strict_loads(
    data: bytes, *, what: str, max_bytes: int, allow_floats: bool = True, name_by_key: bool = False
) -> Any:
    """Parse ``data`` (UTF-8 JSON, at most ``max_bytes``) or raise
    :class:`MalformedError` naming ``what`` (or, for a duplicate key when
    ``name_by_key``, naming the key: the field a payload's reader looks for)."""
    if not isinstance(data, (bytes, bytearray)):
        raise MalformedError(what, "must be bytes")
    if len(data) > max_bytes:
        raise MalformedError(what, f"larger than {max_bytes} bytes")
    try:
        # json.loads(bytes) would guess UTF-16 or UTF-32 from the first
        # bytes; decoding first pins UTF-8.
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedError(what, "not valid UTF-8") from None
    if text.startswith("\ufeff"):
        raise MalformedError(what, "byte order mark not allowed")
    config = (what, allow_floats, name_by_key)
    decoder = _DECODERS.get(config)
    if decoder is None:
        decoder = _DECODERS[config] = _StrictDecoder(what, allow_floats=allow_floats, name_by_key=name_by_key)
    try:
        return decoder.decode(text)
    except MalformedError:
        raise
    except (ValueError, RecursionError) as exc:
        raise MalformedError(what, f"not JSON: {exc}") from None


def canonical_dumps(obj: Any) -> bytes:
    """Compact, sorted-key, ASCII-only JSON: the same bytes for the same value."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")
