"""A gRPC server that answers ``Log.Submit`` at once, with no ledger behind it.

What a ``Submit`` costs before a byte of the envelope is read: the floor
that any node serving gRPC from Python pays on this machine, measured with
the same clients as the real node. :func:`loadtests.bench.measure_grpc_floor`
drives it in-process with the bench's gRPC clients; ``python -m
loadtests.run_locust --bare`` drives it in its own process with Locust.

``python -m loadtests.bare_server --listen 127.0.0.1:PORT`` serves until
SIGTERM or SIGINT, on the event loop the node runs on (node/event_loop.py),
and prints ``listening on ADDRESS`` once bound, as ``carbonledger serve``
does.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from typing import Any

import grpc
from carbonledger.v1 import log_pb2, log_pb2_grpc

__all__ = ["AnsweringLog", "main", "serve"]


class AnsweringLog(log_pb2_grpc.LogServicer):  # type: ignore[misc]
    """``Submit`` answered with the next index, nothing parsed or stored.
    Every other method of the Log service is UNIMPLEMENTED."""

    def __init__(self) -> None:
        self._next = 0

    async def Submit(self, request: Any, context: Any) -> Any:
        index = self._next
        self._next += 1
        return log_pb2.SubmitResponse(index=index)


def bare_grpc_server() -> grpc.aio.Server:
    """A grpc.aio server with only :class:`AnsweringLog`: no interceptors,
    the default options. Call from the loop that will run it."""
    server = grpc.aio.server()
    log_pb2_grpc.add_LogServicer_to_server(AnsweringLog(), server)
    return server


async def serve(address: str) -> None:
    server = bare_grpc_server()
    port = server.add_insecure_port(address)
    if port == 0:
        raise SystemExit(f"cannot listen on {address}")
    await server.start()
    host = address.rsplit(":", 1)[0]
    print(f"listening on {host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1.0)


def main(argv: Sequence[str] | None = None) -> int:
    from node import event_loop

    p = argparse.ArgumentParser(prog="python -m loadtests.bare_server", description=(__doc__ or "").split("\n")[0])
    p.add_argument("--listen", default="127.0.0.1:0", help="address to serve on (default 127.0.0.1:0)")
    args = p.parse_args(argv)
    event_loop.run(serve(args.listen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
