"""Domain errors to gRPC status codes: the one place where they are mapped.

:func:`rpc_status_of` turns a :class:`LedgerError` into a ``google.rpc.Status``
with rich details, and :class:`ErrorInterceptor` applies it to every RPC, so
servicers simply raise. The client (``client/errors.py``) maps the codes and
details back to the same classes. Every status carries an ``ErrorInfo`` whose
``reason`` is the error class in UPPER_SNAKE_CASE and whose metadata holds the
error's attributes (``rule``, ``field``, ``what``...), which is what the client
rebuilds the exception from; field errors also get a ``BadRequest`` field
violation, ``NotFound`` a ``ResourceInfo``, ``Pushback`` a ``RetryInfo``.

Anything that is not a LedgerError is a bug: it is logged with its traceback
and answered INTERNAL with a fixed message, so no internals leak.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from ledger.errors import (
    InvalidSignature,
    LedgerError,
    MalformedError,
    NotFound,
    PermissionDenied,
    Pushback,
    StateRuleError,
    StorageWriteFailed,
    TooLarge,
    VerificationError,
)

__all__ = [
    "DOMAIN",
    "CannotListen",
    "ErrorInterceptor",
    "ShuttingDown",
    "Unimplemented",
    "bind_failure",
    "os_reason",
    "rpc_status_of",
]

#: ErrorInfo.domain of every error this node reports.
DOMAIN = "carbonledger.v1"
_INTERNAL_MESSAGE = "internal error"
_log = logging.getLogger("carbonledger.node")


class ShuttingDown(LedgerError):
    """The node is stopping and takes no new submissions (UNAVAILABLE)."""


class Unimplemented(LedgerError):
    """This node does not offer the call (UNIMPLEMENTED)."""


class CannotListen(LedgerError):
    """The node cannot listen on an address it was given (``what``: the
    service, e.g. ``"gRPC"``): the port is taken, the host is not this
    machine's, or the name does not resolve. Raised at start-up only."""

    def __init__(self, what: str, address: str, reason: str) -> None:
        super().__init__(f"cannot listen for {what} on {address}: {reason}")
        self.what = what
        self.address = address
        self.reason = reason


def os_reason(exc: OSError) -> str:
    """What the OS says of ``exc`` ("Address already in use"), without the
    wrapping some libraries add (asyncio names the address again)."""
    return os.strerror(exc.errno) if exc.errno else str(exc)


def bind_failure(address: str) -> str:
    """Why ``host:port`` cannot be bound, as the OS says it, for a server
    library that reports only that it failed (grpc's add_port does).

    Tries a plain bind of each address the host resolves to; the server's
    own attempt has already failed, so this only names the reason.
    """
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        return f"cannot resolve {address!r} ({exc.strerror or exc})"
    for family, kind, proto, _, sockaddr in infos:
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.bind(sockaddr)
        except OSError as exc:
            return os_reason(exc)
    return "the server could not bind it"


def _reason(exc: BaseException) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).upper()


def _pack(*messages: Any) -> list[any_pb2.Any]:
    out = []
    for message in messages:
        packed = any_pb2.Any()
        packed.Pack(message)
        out.append(packed)
    return out


def _info(exc: LedgerError, **metadata: object) -> error_details_pb2.ErrorInfo:
    clean = {k: str(v) for k, v in metadata.items() if v is not None}
    return error_details_pb2.ErrorInfo(reason=_reason(exc), domain=DOMAIN, metadata=clean)


def _field_violation(field: str | None, description: str) -> list[error_details_pb2.BadRequest]:
    if not field:
        return []
    violation = error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
    return [error_details_pb2.BadRequest(field_violations=[violation])]


def rpc_status_of(exc: BaseException) -> status_pb2.Status:
    """The ``google.rpc.Status`` that reports ``exc`` to a client."""
    if isinstance(exc, MalformedError):
        code = code_pb2.INVALID_ARGUMENT
        details = [_info(exc, what=exc.what, reason=exc.reason), *_field_violation(exc.what, exc.reason)]
    elif isinstance(exc, StateRuleError):
        # PermissionDenied is a StateRuleError too; only the code differs.
        code = code_pb2.PERMISSION_DENIED if isinstance(exc, PermissionDenied) else code_pb2.FAILED_PRECONDITION
        details = [
            _info(exc, rule=exc.rule, detail=exc.detail, field=exc.field),
            *_field_violation(exc.field, f"{exc.rule}: {exc.detail}"),
        ]
    elif isinstance(exc, InvalidSignature):
        code = code_pb2.PERMISSION_DENIED
        keyid = exc.keyid.hex() if exc.keyid is not None else None
        details = [_info(exc, name=exc.name, keyid=keyid, detail=exc.detail)]
    elif isinstance(exc, VerificationError):
        code = code_pb2.INVALID_ARGUMENT
        details = [_info(exc)]
    elif isinstance(exc, NotFound):
        code = code_pb2.NOT_FOUND
        details = [
            _info(exc, kind=exc.kind, key=exc.key),
            error_details_pb2.ResourceInfo(resource_type=exc.kind, resource_name=str(exc.key)),
        ]
    elif isinstance(exc, TooLarge):
        # Not RESOURCE_EXHAUSTED: that invites a retry, and this answer will not change.
        code = code_pb2.FAILED_PRECONDITION
        details = [_info(exc, what=exc.what, detail=exc.detail)]
    elif isinstance(exc, Pushback):
        code = code_pb2.RESOURCE_EXHAUSTED
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(max(1, round(exc.retry_after * 1000)))
        details = [_info(exc, retry_after=exc.retry_after), error_details_pb2.RetryInfo(retry_delay=delay)]
    elif isinstance(exc, ShuttingDown):
        code = code_pb2.UNAVAILABLE
        details = [_info(exc)]
    elif isinstance(exc, Unimplemented):
        code = code_pb2.UNIMPLEMENTED
        details = [_info(exc)]
    elif isinstance(exc, StorageWriteFailed):
        # Retryable: the client's entries were not written (the disk is full,
        # say) and the same submission may succeed later. The message leaves
        # out the node's paths; the node's log has the whole error.
        code = code_pb2.UNAVAILABLE
        message = f"the node cannot store entries now ({exc.reason}); nothing was written"
        return status_pb2.Status(code=code, message=message, details=_pack(_info(exc, cause=exc.reason)))
    else:
        return status_pb2.Status(code=code_pb2.INTERNAL, message=_INTERNAL_MESSAGE)
    return status_pb2.Status(code=code, message=str(exc), details=_pack(*details))


async def abort_with(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
    """Abort the RPC with the status of ``exc``; log it if it is a bug."""
    if not isinstance(exc, LedgerError) or rpc_status_of(exc).code == code_pb2.INTERNAL:
        _log.error("unexpected error", exc_info=exc, extra={"event": "rpc_internal_error"})
    await context.abort_with_status(rpc_status.to_status(rpc_status_of(exc)))


def _wrap_unary(behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await behavior(request, context)
        except Exception as exc:
            if _is_abort(exc):
                raise
            await abort_with(context, exc)

    return wrapper


def _wrap_stream(behavior: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            async for item in behavior(request, context):
                yield item
        except Exception as exc:
            if _is_abort(exc):
                raise
            await abort_with(context, exc)

    return wrapper


def _is_abort(exc: Exception) -> bool:
    # context.abort() raises an internal exception that must pass through.
    return type(exc).__name__ == "AbortError" or isinstance(exc, grpc.RpcError)


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps every exception a servicer raises to a status (see module doc)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        # Health and reflection raise nothing of ours; leave them alone.
        if handler is None or not handler_call_details.method.startswith(f"/{DOMAIN}."):
            return handler
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler
