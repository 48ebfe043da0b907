"""Page sizes and opaque page tokens for every list RPC (AIP-158 style)."""

from __future__ import annotations

import base64

from ledger.errors import MalformedError

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "decode_int_token", "decode_token", "encode_token", "page_size", "token_number"]

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
_PREFIX = "cl1:"


def page_size(requested: int) -> int:
    """0 means the default; larger than the maximum is clamped; negative is an error."""
    if requested < 0:
        raise MalformedError("page_size", "must not be negative")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_token(rpc: str, value: str) -> str:
    """An opaque token for ``rpc`` resuming after ``value``."""
    return base64.urlsafe_b64encode(f"{_PREFIX}{rpc}:{value}".encode()).decode().rstrip("=")


def decode_token(rpc: str, token: str) -> str | None:
    """The value inside a token from :func:`encode_token`; None for an empty token."""
    if not token:
        return None
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise MalformedError("page_token", "not a token this server issued") from None
    head = f"{_PREFIX}{rpc}:"
    if not text.startswith(head):
        raise MalformedError("page_token", "not a token this server issued for this call")
    return text[len(head) :]


def token_number(text: str) -> int:
    """A whole number inside a token: ASCII digits only (``str.isdigit()``
    takes "²", which ``int()`` refuses), below 2**64 like the indexes and
    sizes the store keys; MalformedError otherwise."""
    if not (text.isascii() and text.isdigit()) or len(text) > 20 or int(text) >= 1 << 64:
        raise MalformedError("page_token", "not a token this server issued")
    return int(text)


def decode_int_token(rpc: str, token: str) -> int | None:
    value = decode_token(rpc, token)
    return None if value is None else token_number(value)
