"""The c2sp.org/tlog-witness HTTP endpoint: ``POST /add-checkpoint``.

Thin: parse the body, call :meth:`node.witness.Witness.add_checkpoint` in a
worker thread, map its answer to the statuses the specification names::

    200  the cosignature line(s), text/plain
    400  malformed request, or old size above the checkpoint size
    403  no valid signature by a known key of the log
    404  unknown log origin
    409  old size is not the latest cosigned size: body "<size>\\n",
         Content-Type text/x.tlog.size (also a same-size fork, without size)
    422  the consistency proof does not verify
    503  (cluster witness) that tree size is not applied here yet; retry

Served with aiohttp on its own port, so that any tlog tooling can ask this
node to witness an outside log's checkpoints.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from ledger.errors import MalformedError
from node.http_site import HttpSite
from node.witness import MAX_ADD_CHECKPOINT_BYTES, Witness, WitnessRefused, parse_add_checkpoint

__all__ = ["WitnessHttpServer", "witness_app"]

_SIZE_TYPE = "text/x.tlog.size"


def witness_app(witness: Witness) -> web.Application:
    async def add_checkpoint(request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_ADD_CHECKPOINT_BYTES:
            return web.Response(status=400, text="request too large\n")
        # Whole, however many TCP segments it came in; the app's
        # client_max_size bounds a body sent without a length (413).
        body = await request.read()
        try:
            old, proof, note = parse_add_checkpoint(body)
            line = await asyncio.to_thread(witness.add_checkpoint, note, old, proof)
        except MalformedError as exc:
            return web.Response(status=400, text=f"{exc}\n")
        except WitnessRefused as exc:
            if exc.kind == "conflict":
                # Exactly this media type, no charset parameter: clients
                # compare the header with text/x.tlog.size before reading the size.
                return web.Response(
                    status=409, body=f"{exc.known_size}\n".encode(), headers={"Content-Type": _SIZE_TYPE}
                )
            return web.Response(status=exc.http_status, text=f"{exc}\n")
        return web.Response(status=200, text=line)

    app = web.Application(client_max_size=MAX_ADD_CHECKPOINT_BYTES + 1024)
    app.router.add_post("/add-checkpoint", add_checkpoint)
    return app


class WitnessHttpServer(HttpSite):
    """The witness endpoint on ``host:port``: see :class:`~node.http_site.HttpSite`."""

    def __init__(self, witness: Witness, host: str, port: int) -> None:
        super().__init__(witness_app(witness), "the witness", host, port)
