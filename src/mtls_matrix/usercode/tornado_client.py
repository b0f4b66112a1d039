"""tornado as a client: websocket_connect, which takes TLS settings only through an HTTPRequest, in the
documented ways (tornado.httpclient.HTTPRequest, tornado.netutil.ssl_options_to_context), each a variant:
ssl_options as an SSLContext; ssl_options as a dict (ssl_options_to_context starts from a bare
SSLContext(PROTOCOL_TLS_CLIENT), not from create_default_context), with or without cert_reqs spelled out;
the request's own ca_certs/client_cert/client_key (simple_httpclient makes create_default_context(cafile=...))."""

from __future__ import annotations

import asyncio
import ssl

from tornado.httpclient import HTTPRequest
from tornado.simple_httpclient import HTTPTimeoutError
from tornado.websocket import websocket_connect

from mtls_matrix.protocol import TUNED_MAX_MESSAGE, Closed, Connection

TIMEOUTS = (HTTPTimeoutError,)


class ClientConnection(Connection):
    def __init__(self, ws):
        self.ws = ws
        # The client connection has no pong future or callback argument; it calls its on_pong(data)
        # hook (a no-op, overridable like WebSocketHandler.on_pong). websocket_connect builds the
        # connection itself, so the hook is set on the instance.
        self.pongs: asyncio.Queue[bytes] = asyncio.Queue()
        ws.on_pong = self.pongs.put_nowait
        self.closed = False

    async def send(self, message):
        await self.ws.write_message(message, binary=isinstance(message, bytes))

    async def recv(self):
        message = await self.ws.read_message()
        if message is None:  # tornado's "closed": code/reason of the close frame received, if any
            self.closed = True
            code, reason = self.ws.close_code, self.ws.close_reason
            raise Closed(code, reason, ("tornado.websocket.WebSocketClientConnection.read_message",
                                        f"returned None: close_code {code}, close_reason {reason!r}"))
        return message

    async def ping(self, payload):
        self.ws.ping(payload)
        return await self.pongs.get()

    async def close(self, code, reason):
        if self.closed:
            return  # tornado delivers "closed" (None) once; another read_message() would wait forever
        self.ws.close(code, reason)  # only sends the close frame; wait for the connection to end
        while await self.ws.read_message() is not None:
            pass


async def connect_client(variant: str, url: str, ca: str, cert: str | None, key: str | None, headers: list,
                         timeout: float | None, profile: str) -> Connection:
    options = {"connect_timeout": timeout, "request_timeout": timeout} if timeout else {}
    if headers:
        options["headers"] = dict(headers)
    if variant == "ssl_options=context":
        context = ssl.create_default_context(cafile=ca)
        if cert:
            context.load_cert_chain(cert, key)
        request = HTTPRequest(url, ssl_options=context, **options)
    elif variant.startswith("ssl_options=dict"):
        ssl_options = {"ca_certs": ca}
        if variant.endswith("+cert_reqs"):
            ssl_options["cert_reqs"] = ssl.CERT_REQUIRED
        if cert:
            ssl_options |= {"certfile": cert, "keyfile": key}
        request = HTTPRequest(url, ssl_options=ssl_options, **options)
    else:  # request=paths
        request = HTTPRequest(url, ca_certs=ca, client_cert=cert, client_key=key, **options)
    limits = {"max_message_size": TUNED_MAX_MESSAGE} if profile == "tuned" else {}
    return ClientConnection(await websocket_connect(request, **limits))
