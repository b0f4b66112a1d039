"""python-socketio's AsyncServer as an ASGI app (socketio.ASGIApp) under uvicorn, with uvicorn's own TLS
options: files, not a context (uvicorn.Config ssl_certfile, ssl_keyfile, ssl_ca_certs, ssl_cert_reqs).
The ASGI TLS extension is where a server would put the client certificate chain. The handlers are
usercode/socketio_server.py's."""

from __future__ import annotations

import asyncio
import socket
import ssl

import socketio
import uvicorn

from mtls_matrix.protocol import ServerHooks
from mtls_matrix.usercode.socketio_server import ServerAsyncApp, server_limits


class Server:
    """What a running server is made of: the Socket.IO server, uvicorn's server and the task serving it."""

    def __init__(self, sio: socketio.AsyncServer, http: uvicorn.Server, task: asyncio.Future):
        self.sio, self.http, self.task = sio, http, task


def server_identity(environ: dict) -> str | None:
    tls = environ["asgi.scope"].get("extensions", {}).get("tls")
    if tls is None:
        raise LookupError("uvicorn puts no 'tls' extension in the ASGI scope: the app cannot see the client "
                          "certificate")
    chain = tls.get("client_cert_chain") or []
    return chain[0] if chain else None


async def start_server(context: ssl.SSLContext, hooks: ServerHooks, profile: str, *, certfile: str, keyfile: str,
                       ca_certs: str, crlfile: str | None = None):
    """The files are the TLS settings; `context` says what else the listener must do (its verify mode,
    a TLS 1.2 cap or a TLS 1.3 floor), which uvicorn takes its own way or not at all."""
    sio = socketio.AsyncServer(async_mode="asgi", **server_limits(profile))
    ServerAsyncApp(sio, hooks, server_identity)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    tls12 = context.maximum_version == ssl.TLSVersion.TLSv1_2
    config = uvicorn.Config(
        socketio.ASGIApp(sio), log_config=None, log_level="critical", access_log=False,
        lifespan="off", ssl_certfile=certfile, ssl_keyfile=keyfile,
        ssl_ca_certs=ca_certs, ssl_cert_reqs=context.verify_mode,  # CERT_NONE on a token-auth listener
        # uvicorn's only version knob is the deprecated protocol constant
        **({"ssl_version": ssl.PROTOCOL_TLSv1_2} if tls12 else {}),
    )
    config.load()
    # no uvicorn option for a TLS 1.3 floor or a CRL: set them on the context uvicorn built
    if context.minimum_version == ssl.TLSVersion.TLSv1_3:
        config.ssl.minimum_version = ssl.TLSVersion.TLSv1_3
    if crlfile:
        config.ssl.load_verify_locations(crlfile)
        config.ssl.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    http = uvicorn.Server(config)
    task = asyncio.ensure_future(http.serve(sockets=[sock]))  # on this event loop
    while not http.started:
        if task.done():
            task.result()  # raises what stopped it
        await asyncio.sleep(0.01)
    return Server(sio, http, task), sock.getsockname()[1]


async def stop_server(server: Server) -> None:
    if hasattr(server.sio, "shutdown"):  # not in older 5.x releases
        await server.sio.shutdown()
    server.http.should_exit = True
    await asyncio.wait_for(server.task, 5)
