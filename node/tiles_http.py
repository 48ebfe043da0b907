"""The c2sp.org/tlog-tiles read path: the log as static resources over HTTP.

``GET`` (or ``HEAD``)::

    /checkpoint                     the checkpoint, text/plain; charset=utf-8
    /tile/<L>/<N>[.p/<W>]           a hash tile, application/octet-stream
    /tile/entries/<N>[.p/<W>]       an entry bundle, application/octet-stream

Statuses::

    200  the resource
    400  a path that breaks the specification's grammar (the reason, text/plain)
    404  a tile or bundle the tree does not hold (yet), or any other path
    500  a tile or entry below the tree size missing from the store (logged)
    501  an entry bundle holding an entry over 65,535 bytes, which the format's
         uint16 lengths cannot carry (the entry is served by the gRPC
         ``GetEntry``; its hash tile is served as usual)

Tiles and bundles never change once the tree holds them (a partial tile's
path names its width), so they are sent as cacheable for a year; the
checkpoint for two seconds, and a 404 not at all, since the tile may exist a
moment later. Entry bundles are compressed when the client accepts it, and
say ``Vary: Accept-Encoding`` so that a cache keeps both forms apart.
Reads run in worker threads, off the node's event loop. What a reader can
check, and how, is in :mod:`ledger.tlog_tiles`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiohttp import web

from ledger.errors import MalformedError, NotFound, StorageError, TooLarge
from ledger.log import Ledger
from ledger.tlog_tiles import parse_tile_path
from node.http_site import HttpSite

__all__ = ["TilesHttpServer", "tiles_app"]

_log = logging.getLogger("carbonledger.node")

_IMMUTABLE = "public, max-age=31536000, immutable"
_CHECKPOINT_CACHE = "public, max-age=2"
_OCTETS = "application/octet-stream"


def _refusal(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=f"{text}\n", headers={"Cache-Control": "no-store"})


def tiles_app(ledger: Ledger, checkpoint: Callable[[], str] | None = None) -> web.Application:
    """The endpoint's application. ``checkpoint()`` gives the note served at
    ``/checkpoint`` (default: the ledger's latest; a cluster node gives the
    newest its witnesses have cosigned)."""
    latest = checkpoint or ledger.checkpoint

    async def get_checkpoint(request: web.Request) -> web.Response:
        note = await asyncio.to_thread(latest)
        return web.Response(
            text=note,
            content_type="text/plain",
            charset="utf-8",
            headers={"Cache-Control": _CHECKPOINT_CACHE},
        )

    async def get_tile(request: web.Request) -> web.StreamResponse:
        path = "tile/" + request.match_info["rest"]
        try:
            ref = parse_tile_path(path)
            if ref.level is None:
                data = await asyncio.to_thread(ledger.entry_bundle, ref.index, ref.width)
            else:
                data = await asyncio.to_thread(ledger.hash_tile, ref.level, ref.index, ref.width)
        except MalformedError as exc:
            return _refusal(400, str(exc))
        except NotFound:
            return _refusal(404, f"{path}: not in the tree of this log (yet)")
        except TooLarge as exc:
            return _refusal(501, f"{path}: {exc}; fetch the entry with the gRPC GetEntry call")
        except StorageError as exc:
            # Below the tree size every tile and entry is stored: the store
            # itself is damaged, which an operator must see (and audit).
            _log.error("tlog-tiles: %s: %s", path, exc)
            return _refusal(500, f"{path}: this node cannot read it from its store: {exc}")
        response = web.Response(body=data, content_type=_OCTETS, headers={"Cache-Control": _IMMUTABLE})
        if ref.level is None:
            # The encoding follows the request's Accept-Encoding, so a shared
            # cache must keep one copy per value: else, the year the copy is
            # cacheable for, it hands gzip to a client that did not ask for it.
            response.headers["Vary"] = "Accept-Encoding"
            response.enable_compression()
        return response

    app = web.Application()
    app.router.add_get("/checkpoint", get_checkpoint)
    app.router.add_get("/tile/{rest:.+}", get_tile)
    return app


class TilesHttpServer(HttpSite):
    """The tlog-tiles endpoint on ``host:port``: see :class:`~node.http_site.HttpSite`."""

    def __init__(
        self, ledger: Ledger, host: str, port: int, checkpoint: Callable[[], str] | None = None
    ) -> None:
        super().__init__(tiles_app(ledger, checkpoint), "tlog-tiles", host, port)
