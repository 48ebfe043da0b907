"""gRPC status codes back to the ledger's typed errors: the client's one mapping.

The node (``node/errors.py``) reports every LedgerError with a status code and
a ``google.rpc.Status`` whose ``ErrorInfo`` names the error class and carries
its attributes. :func:`error_from_rpc` rebuilds the same exception class, so
callers catch ``StateRuleError`` and read ``.rule`` and ``.field`` whether the
ledger is local or remote. Failures of the transport itself (node down,
deadline passed, internal error) become :class:`RpcFailure` subclasses.
"""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from ledger.errors import (
    InvalidSignature,
    LedgerError,
    MalformedError,
    NotFound,
    PermissionDenied,
    Pushback,
    StateRuleError,
    VerificationError,
)

__all__ = [
    "RETRYABLE",
    "DeadlineExceeded",
    "RpcFailure",
    "Unavailable",
    "Unimplemented",
    "error_from_rpc",
]


class RpcFailure(LedgerError):
    """The call failed for a reason that is not the ledger's verdict:
    ``code`` is the gRPC status code, ``message`` the server's text."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


class Unavailable(RpcFailure):
    """The node cannot be reached or is shutting down; retry later."""


class DeadlineExceeded(RpcFailure):
    """The call's deadline passed. A submission may still have been committed:
    resubmit the same bytes to learn its index."""


class Unimplemented(RpcFailure):
    """The node does not offer this call."""


#: Codes worth retrying for an idempotent call.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})


def _details(status: status_pb2.Status | None) -> tuple[dict[str, str], str | None, float | None]:
    """ErrorInfo metadata, ErrorInfo reason and RetryInfo delay of a status."""
    meta: dict[str, str] = {}
    reason = None
    delay = None
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            meta, reason = dict(info.metadata), info.reason
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            delay = retry.retry_delay.ToMilliseconds() / 1000
    return meta, reason, delay


def error_from_status(code: grpc.StatusCode, message: str, status: status_pb2.Status | None) -> LedgerError:
    """The LedgerError that a status reports (see the module doc)."""
    meta, reason, delay = _details(status)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        if reason == "MALFORMED_ERROR" or "what" in meta:
            return MalformedError(meta.get("what", "request"), meta.get("reason", message))
        return VerificationError(message)
    if code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.PERMISSION_DENIED) and "rule" in meta:
        cls = PermissionDenied if code == grpc.StatusCode.PERMISSION_DENIED else StateRuleError
        return cls(meta["rule"], meta.get("detail", message), meta.get("field"))
    if code == grpc.StatusCode.PERMISSION_DENIED:
        keyid = bytes.fromhex(meta["keyid"]) if len(meta.get("keyid", "")) == 8 else None
        return InvalidSignature(meta.get("name", "?"), keyid, meta.get("detail", message))
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(meta.get("kind", "resource"), meta.get("key", message))
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return Pushback(message, delay if delay is not None else 1.0)
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return StateRuleError("failed_precondition", message)
    if code == grpc.StatusCode.UNAVAILABLE:
        return Unavailable(code, message)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded(code, message)
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return Unimplemented(code, message)
    return RpcFailure(code, message)


def error_from_rpc(exc: grpc.RpcError) -> LedgerError:
    """The LedgerError for a failed call of a blocking channel."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    message = exc.details() if hasattr(exc, "details") else str(exc)
    try:
        status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    except ValueError:
        status = None  # details that do not match the code: ignore them
    return error_from_status(code, message or "", status)
