"""python-socketio's AsyncServer on aiohttp: the app attached to an aiohttp Application, served by an
AppRunner and a TCPSite given the SSLContext (aiohttp's "Web Server Advanced": SSL via ssl_context).
The handlers are usercode/socketio_server.py's."""

from __future__ import annotations

import ssl

import socketio
from aiohttp import web

from mtls_matrix.protocol import ServerHooks
from mtls_matrix.usercode.socketio_server import ServerAsyncApp, server_limits


class Server:
    """What a running server is made of: the Socket.IO server and its handlers, the aiohttp runner and its site."""

    def __init__(self, sio: socketio.AsyncServer, handlers: ServerAsyncApp, runner: web.AppRunner, site: web.TCPSite):
        self.sio, self.handlers, self.runner, self.site = sio, handlers, runner, site


def server_identity(environ: dict) -> dict:
    """The client certificate as aiohttp shows it to the application: the request's transport."""
    transport = environ["aiohttp.request"].transport
    if transport is None:
        raise RuntimeError("the request's transport is gone (its connection closed)")
    return transport.get_extra_info("ssl_object").getpeercert()


async def start_server(context: ssl.SSLContext | None, hooks: ServerHooks, profile: str,
                       shutdown_timeout: float = 60.0):
    """`shutdown_timeout`: how long stopping waits for open requests (AppRunner's; 60 s by default)."""
    sio = socketio.AsyncServer(async_mode="aiohttp", **server_limits(profile))
    handlers = ServerAsyncApp(sio, hooks, server_identity)
    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    return Server(sio, handlers, runner, site), runner.addresses[0][1]


async def stop_server(server: Server) -> None:
    if hasattr(server.sio, "shutdown"):  # not in older 5.x releases
        await server.sio.shutdown()
    await server.runner.cleanup()
