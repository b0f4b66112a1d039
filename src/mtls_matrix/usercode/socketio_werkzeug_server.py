"""python-socketio's sync Server as a WSGI app under werkzeug's threaded server with its `ssl_context`:
engine.io's 'threading' mode, whose WebSocket is simple-websocket on the connection's socket. WSGI has
no standard key for the client certificate; werkzeug sets `SSL_CLIENT_CERT` (PEM, as nginx and Apache
name it) in each request's environ (pallets/werkzeug#1469). The connect handler gets the environ of
engine.io's handshake request, whose connection werkzeug has closed by then on polling (it never keeps
one alive): the certificate copied into the environ is still there, the socket is not. The handlers
are usercode/socketio_server.py's."""

from __future__ import annotations

import asyncio
import ssl
import threading

import socketio
from werkzeug.serving import make_server

from mtls_matrix.protocol import ServerHooks
from mtls_matrix.usercode.socketio_server import ServerSyncApp, server_limits


class Server:
    """What a running server is made of: the Socket.IO server and werkzeug's server."""

    def __init__(self, sio: socketio.Server, http):
        self.sio, self.http = sio, http


def server_identity(environ: dict) -> str:
    pem = environ.get("SSL_CLIENT_CERT")
    if pem is None:
        raise LookupError("werkzeug put no SSL_CLIENT_CERT in the WSGI environ")
    return pem


async def start_server(context: ssl.SSLContext | None, hooks: ServerHooks, profile: str, poll_interval: float = 0.5):
    """`poll_interval`: how often serve_forever looks at its stop flag (werkzeug's default: 0.5 s)."""
    sio = socketio.Server(async_mode="threading", **server_limits(profile))
    ServerSyncApp(sio, hooks, server_identity)
    http = make_server("127.0.0.1", 0, socketio.WSGIApp(sio), threaded=True, ssl_context=context)
    threading.Thread(target=http.serve_forever, kwargs={"poll_interval": poll_interval},
                     name="server:socketio-werkzeug", daemon=True).start()
    return Server(sio, http), http.port


async def stop_server(server: Server) -> None:
    server.sio.shutdown()
    # shutdown() waits for the serve loop, which does each TLS handshake itself (in accept): a connection
    # that never sends its ClientHello holds it, and shutdown() with it. A daemon thread waits instead of
    # the event loop (or an executor thread the interpreter would join at exit).
    stopper = threading.Thread(target=server.http.shutdown, name="stop:socketio-werkzeug", daemon=True)
    stopper.start()
    for _ in range(100):
        if not stopper.is_alive():
            break
        await asyncio.sleep(0.02)
    server.http.server_close()
