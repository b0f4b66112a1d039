"""python-socketio's AsyncServer on tornado: get_tornado_handler at /socket.io/ in an Application,
under an HTTPServer given the SSLContext as ssl_options. The handlers are usercode/socketio_server.py's."""

from __future__ import annotations

import ssl

import socketio
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application

from mtls_matrix.protocol import TUNED_MAX_MESSAGE, ServerHooks
from mtls_matrix.usercode.socketio_server import ServerAsyncApp, server_limits


class Server:
    """What a running server is made of: the Socket.IO server and tornado's HTTPServer."""

    def __init__(self, sio: socketio.AsyncServer, http: HTTPServer):
        self.sio, self.http = sio, http


def server_identity(environ: dict) -> dict:
    # the documented accessor; on the websocket transport the connect handler runs after the
    # upgrade, where it raises AttributeError (tornadoweb/tornado#2994)
    return environ["tornado.handler"].request.get_ssl_certificate()


async def start_server(context: ssl.SSLContext | None, hooks: ServerHooks, profile: str):
    sio = socketio.AsyncServer(async_mode="tornado", **server_limits(profile))
    ServerAsyncApp(sio, hooks, server_identity)
    settings = {"websocket_max_message_size": TUNED_MAX_MESSAGE} if profile == "tuned" else {}
    app = Application([(r"/socket.io/", socketio.get_tornado_handler(sio))], **settings)
    http = HTTPServer(app, ssl_options=context)
    sockets = bind_sockets(0, "127.0.0.1")
    http.add_sockets(sockets)
    return Server(sio, http), sockets[0].getsockname()[1]


async def stop_server(server: Server) -> None:
    if hasattr(server.sio, "shutdown"):  # not in older 5.x releases
        await server.sio.shutdown()
    server.http.stop()
    await server.http.close_all_connections()
