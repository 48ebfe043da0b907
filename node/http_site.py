"""One aiohttp application served on one address, for the node's HTTP endpoints
(the tlog-witness and tlog-tiles ones), beside its gRPC server."""

from __future__ import annotations

from aiohttp import web

from node.errors import CannotListen, os_reason

__all__ = ["HttpSite"]


class HttpSite:
    """``await start()`` binds ``host:port`` (port 0 picks one: see ``port``);
    ``await stop()``. ``what`` names the endpoint in a bind failure."""

    def __init__(self, app: web.Application, what: str, host: str, port: int) -> None:
        self._runner = web.AppRunner(app, access_log=None)
        self._what = what
        self._host = host
        self._port = port
        self.port = 0

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise CannotListen(self._what, f"{self._host}:{self._port}", os_reason(exc)) from None
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self._port

    async def stop(self) -> None:
        await self._runner.cleanup()
