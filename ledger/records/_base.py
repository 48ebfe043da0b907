"""Shared pieces of the payload models: strict JSON loading, limits, field types.

Everything that enters the ledger as JSON is parsed here first. The loader is
stricter than :func:`json.loads`: it refuses duplicate object keys (two parsers
could otherwise read different values out of the same signed bytes), floats
(every decimal in our payloads and in PACT v3 is a string), NaN/Infinity and
oversized input. Pydantic errors are turned into :class:`MalformedError` whose
``what`` is the dotted path of the offending field, so no ``ValidationError``
or ``ValueError`` ever reaches a caller.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from ledger._json import strict_loads
from ledger.errors import MalformedError

__all__ = [
    "FIRST_INSTANT",
    "LAST_INSTANT",
    "MAX_LIST",
    "MAX_PAYLOAD_BYTES",
    "MAX_SERIAL",
    "DateTime",
    "DecimalStr",
    "Id",
    "LongText",
    "Name",
    "NonNegDecimal",
    "NonPosDecimal",
    "PositiveDecimal",
    "PositiveInt",
    "Serial",
    "StrictModel",
    "Text",
    "UnixTime",
    "Urn",
    "Uuid",
    "load_json",
    "parse_datetime",
    "validate_model",
]

#: Largest payload accepted, in bytes. A PACT document with every optional
#: field filled is a few KiB; components and claims add at most ~60 KiB.
MAX_PAYLOAD_BYTES = 256 * 1024
#: Longest list anywhere in a payload.
MAX_LIST = 256
#: Serial numbers and quantities stay below 2**53 so any JSON reader keeps them exact.
MAX_SERIAL = 2**53 - 1

_FORBID = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=False)


class StrictModel(BaseModel):
    """Base of every payload model: unknown fields rejected, no coercion, immutable."""

    model_config = _FORBID


# Identifiers that end up inside state keys: no '/', no spaces, bounded.
Id = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Text = Annotated[str, StringConstraints(max_length=1024)]
LongText = Annotated[str, StringConstraints(max_length=8192)]
# RFC 8141: "urn:" NID ":" NSS. PACT only requires the urn: prefix; we also
# require a namespace id and a non-empty specific string.
Urn = Annotated[
    str,
    StringConstraints(
        pattern=r"^[uU][rR][nN]:[A-Za-z0-9][A-Za-z0-9\-]{0,31}:\S+$", max_length=512
    ),
]
Uuid = Annotated[
    str,
    StringConstraints(
        pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    ),
]
# RFC 3339 date-time with an explicit offset (PACT requires UTC, usually 'Z').
DateTime = Annotated[
    str,
    StringConstraints(
        pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$"
    ),
]
Serial = Annotated[int, Field(ge=0, le=MAX_SERIAL)]
PositiveInt = Annotated[int, Field(ge=1, le=MAX_SERIAL)]
UnixTime = Annotated[int, Field(ge=0, le=253402300799)]  # up to 9999-12-31T23:59:59Z
# PACT v3 decimal types (openapi components/schemas Decimal, PositiveOrZeroDecimal, ...).
DecimalStr = Annotated[str, StringConstraints(pattern=r"^[+-]?\d{1,30}(\.\d{1,30})?$")]
NonNegDecimal = Annotated[str, StringConstraints(pattern=r"^\+?\d{1,30}(\.\d{1,30})?$")]
NonPosDecimal = Annotated[
    str, StringConstraints(pattern=r"^(-\d{1,30}(\.\d{1,30})?|0{1,30}(\.0{1,30})?)$")
]
PositiveDecimal = Annotated[
    str,
    StringConstraints(pattern=r"^\+?(\d{0,30}[1-9]\d{0,30}(\.\d{1,30})?|0{1,30}\.\d{0,30}[1-9]\d{0,30})$"),
]


def load_json(data: bytes, *, what: str = "payload", max_bytes: int = MAX_PAYLOAD_BYTES) -> Any:
    """Parse strict JSON ``data`` (UTF-8, at most ``max_bytes``, integers only:
    decimals travel as strings) or raise MalformedError."""
    return strict_loads(data, what=what, max_bytes=max_bytes, allow_floats=False, name_by_key=True)


M = TypeVar("M", bound=BaseModel)


def _loc_path(prefix: str, loc: tuple[int | str, ...]) -> str:
    parts = [prefix] if prefix else []
    for item in loc:
        parts.append(f"[{item}]" if isinstance(item, int) else str(item))
    return ".".join(parts).replace(".[", "[") or prefix or "payload"


def validate_model(model: type[M], obj: Any, *, where: str = "") -> M:
    """Validate ``obj`` as ``model``; the first error becomes a MalformedError
    whose ``what`` is the dotted field path under ``where``."""
    try:
        return model.model_validate(obj, strict=True)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        path = _loc_path(where, tuple(err.get("loc", ())))
        kind = err.get("type", "")
        if kind == "extra_forbidden":
            raise MalformedError(path, "unknown field") from None
        if kind == "missing":
            raise MalformedError(path, "required field missing") from None
        raise MalformedError(path, str(err.get("msg", "invalid"))) from None
    except MalformedError:
        raise
    except (ValueError, TypeError) as exc:
        raise MalformedError(where or "payload", str(exc)) from None


_OFFSET_RE = re.compile(r"(Z|[+-]\d{2}:\d{2})$")


def parse_datetime(text: str, *, what: str) -> int:
    """Unix seconds (floored) of an RFC 3339 date-time already matched by :data:`DateTime`."""
    # The fraction is dropped before parsing: we floor to seconds anyway, and
    # fromisoformat in 3.11 does not take more than six fractional digits.
    plain = re.sub(r"\.\d+", "", text, count=1)
    try:
        dt = datetime.fromisoformat(plain.replace("Z", "+00:00") if plain.endswith("Z") else plain)
    except ValueError as exc:
        raise MalformedError(what, f"not a valid date-time: {exc}") from None
    if dt.tzinfo is None or _OFFSET_RE.search(text) is None:
        raise MalformedError(what, "date-time needs a UTC offset")
    # Aware datetimes subtract without converting, so an offset that moves
    # the instant past year 1 or 9999 cannot overflow here; it is refused below.
    delta = dt - _EPOCH
    seconds = delta.days * 86400 + delta.seconds
    if not FIRST_INSTANT <= seconds <= LAST_INSTANT:
        raise MalformedError(what, "date-time is outside years 0001 to 9999 in UTC")
    return seconds


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Unix seconds of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the instants
#: Python's datetime (and so every later date computation) can represent.
FIRST_INSTANT = -62_135_596_800
LAST_INSTANT = 253_402_300_799
