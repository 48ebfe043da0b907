"""Strict standard base64 (RFC 4648 section 4), shared by the text formats.

Every format in this package (signed notes, keys, checkpoints, tlog-proofs,
DSSE envelopes) uses standard base64 with padding. The decoder here accepts
only the one canonical spelling of each byte string, so that a parsed value
re-formats to the same text, and it turns every decoding failure into
:class:`~ledger.errors.MalformedError`.
"""

from __future__ import annotations

import base64
import binascii
import re

from ledger.errors import MalformedError

__all__ = ["b64decode", "b64encode"]

# The standard alphabet with padding only at the end; length is checked apart.
_B64_RE = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def b64encode(data: bytes) -> str:
    """Return the standard, padded base64 text of ``data``."""
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str, *, what: str, max_len: int | None = None, canonical: bool = True) -> bytes:
    """Decode canonical standard base64, or raise :class:`MalformedError`.

    ``what`` names the field for the error message. ``max_len``, if given,
    caps the decoded length; the check runs before decoding so that oversized
    input costs nothing. ``canonical=False`` also accepts non-zero padding
    bits (RFC 4648 section 3.5 lets decoders accept them), for formats whose
    specification accepts them; the alphabet and padding are checked all the same.
    """
    if max_len is not None and len(text) > 4 * ((max_len + 2) // 3):
        raise MalformedError(what, f"base64 longer than {max_len} bytes")
    # fullmatch with an explicit ASCII class: str.isalnum would let other
    # scripts' letters through, and b64decode(validate=True) still accepts
    # padding in the middle in some Python versions.
    if len(text) % 4 != 0 or _B64_RE.fullmatch(text) is None:
        raise MalformedError(what, "not standard padded base64")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedError(what, f"bad base64: {exc}") from None
    # Non-zero padding bits give a second spelling of the same bytes; only the
    # encoder's own output is canonical.
    if canonical and base64.b64encode(raw).decode("ascii") != text:
        raise MalformedError(what, "non-canonical base64")
    return raw
