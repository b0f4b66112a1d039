"""python-socketio as a server: the Socket.IO app each server of the family runs (an AsyncServer on
aiohttp, tornado or ASGI; the sync Server under a WSGI server), whose handlers speak the echo protocol
over Socket.IO events. The modules usercode/socketio_*_server.py serve it on their framework.

- connect: refuse a bad token (a token-auth listener: ConnectionRefusedError, which the client gets
  as a connect error with the reason), report the client identity the stack lets the application
  see, the namespace and the transport. The connect auth payload's `cell` names the connection
  (the ws family names it in the URL path, /cell/NAME): the hooks get that as the path, with the
  handshake request's query;
- echo: acknowledged with the data (and a report of the transport when it changed: an upgrade);
- bye {code, reason}: acknowledged; the client disconnects next, and the disconnect handler reports
  that code and reason only when the library says the client disconnected (else the library's own
  reason, e.g. 'transport close' when the websocket closed before the DISCONNECT packet was flushed);
- close: the server disconnects the client.
"""

from __future__ import annotations

import functools
import inspect

import socketio

from mtls_matrix.protocol import TUNED_MAX_MESSAGE, ServerHooks, TokenRefused

SERVER_NAMESPACES = ("/", "/agents")  # the handlers answer in each


def server_limits(profile: str) -> dict:
    # max_http_buffer_size (default 1,000,000 bytes: less than 1 MiB) bounds a polling payload and,
    # on aiohttp, a websocket message
    return {"max_http_buffer_size": TUNED_MAX_MESSAGE} if profile == "tuned" else {}


def server_path(environ: dict, auth) -> str:
    """The connection as the hooks name it: /cell/NAME from the auth payload, with the request's query."""
    cell = auth.get("cell") if isinstance(auth, dict) else None
    return f"/cell/{cell}?{environ.get('QUERY_STRING', '')}"


class ServerApp:
    """The handlers' state: per Socket.IO sid, the path the hooks know it by, its transport, its bye.
    `identity(environ)`: the client certificate as the stack shows it to the application (getpeercert()),
    raising when it cannot."""

    def __init__(self, sio, hooks: ServerHooks, identity):
        self.sio, self.hooks, self.identity = sio, hooks, identity
        self.connections: dict[str, dict] = {}

    def connected(self, sid: str, environ: dict, auth, namespace: str = "/") -> None:
        path = server_path(environ, auth)
        subject = None
        if self.hooks.tokens_required:
            try:
                subject = self.hooks.authorize(path, environ.get("HTTP_AUTHORIZATION"),
                                               auth.get("token") if isinstance(auth, dict) else None)
            except TokenRefused as refused:  # the documented way: the client gets it as a connect error
                raise socketio.exceptions.ConnectionRefusedError(refused.reason) from None
        self.connections[sid] = {"path": path}
        try:
            cert, error = None if subject else self.identity(environ), None
        except Exception as exc:  # the stack cannot show it
            cert, error = None, f"{type(exc).__name__}: {exc}"
        transport = self.transport(sid, namespace)
        self.connections[sid]["transport"] = transport
        self.hooks.opened(path, environ, cert, identity=subject, error=error, transport=transport,
                          namespace=namespace)

    def echoed(self, sid: str, namespace: str = "/") -> None:
        state = self.connections.get(sid, {})
        transport = self.transport(sid, namespace)
        if transport != state.get("transport") or "echoed" not in state:  # first echo, or an upgrade since
            state["transport"], state["echoed"] = transport, True
            self.hooks.transport(state.get("path", "/"), transport)

    def transport(self, sid: str, namespace: str) -> str:
        """transport(sid, namespace); older 5.x releases take engine.io's sid alone (their transport(sid)
        looks the Socket.IO sid up in engine.io's table), which the manager maps the Socket.IO sid to."""
        if "namespace" in inspect.signature(self.sio.transport).parameters:
            return self.sio.transport(sid, namespace)
        return self.sio.transport(self.sio.manager.eio_sid_from_sid(sid, namespace))

    def bye(self, sid: str, data) -> bool:
        self.connections.get(sid, {})["bye"] = (data.get("code"), data.get("reason"))
        return True  # acknowledged: the client disconnects once the server holds code and reason

    def closed(self, sid: str, reason) -> None:
        state = self.connections.pop(sid, {})
        bye = state.get("bye")
        reasons = getattr(socketio.AsyncServer, "reason", None)  # 5.12; before it the handler gets no reason
        if bye and (reason is None or reasons is not None and reason == reasons.CLIENT_DISCONNECT):
            code, text = bye
        else:
            code, text = None, str(reason)
        self.hooks.closed(state.get("path", "/"), code, text)


class ServerAsyncApp(ServerApp):
    """The handlers of an AsyncServer, in every namespace."""

    def __init__(self, sio: socketio.AsyncServer, hooks: ServerHooks, identity):
        super().__init__(sio, hooks, identity)
        for namespace in SERVER_NAMESPACES:
            for event, handler in (("connect", self.on_connect), ("echo", self.on_echo), ("bye", self.on_bye),
                                   ("close", self.on_close), ("disconnect", self.on_disconnect)):
                sio.on(event, functools.partial(handler, namespace=namespace), namespace=namespace)

    async def on_connect(self, sid, environ, auth, namespace="/"):
        self.connected(sid, environ, auth, namespace)

    async def on_echo(self, sid, data, namespace="/"):
        self.echoed(sid, namespace)
        return data

    async def on_bye(self, sid, data, namespace="/"):
        return self.bye(sid, data)

    async def on_close(self, sid, data, namespace="/"):
        await self.sio.disconnect(sid, namespace)

    async def on_disconnect(self, sid, reason=None, namespace="/"):
        self.closed(sid, reason)


class ServerSyncApp(ServerApp):
    """The handlers of the sync Server (plain functions), in every namespace."""

    def __init__(self, sio: socketio.Server, hooks: ServerHooks, identity):
        super().__init__(sio, hooks, identity)
        for namespace in SERVER_NAMESPACES:
            sio.on("connect", functools.partial(self.connected, namespace=namespace), namespace=namespace)
            sio.on("echo", functools.partial(self.on_echo, namespace=namespace), namespace=namespace)
            sio.on("bye", self.bye, namespace=namespace)
            sio.on("close", lambda sid, data, ns=namespace: sio.disconnect(sid, ns), namespace=namespace)
            sio.on("disconnect", self.closed, namespace=namespace)

    def on_echo(self, sid, data, namespace="/"):
        self.echoed(sid, namespace)
        return data
