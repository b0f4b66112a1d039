"""tornado as a server: a WebSocketHandler behind HTTPServer(ssl_options=context), a token check in
prepare() (a response finished there is never upgraded).

Where the handler reads the client certificate is start_server's `identity_in`: "prepare" (before the
upgrade, where tornado's documented HTTPServerRequest.get_ssl_certificate works) or "open" (where
WebSocketHandler code naturally would: after the upgrade the request has lost its stream, tornado#2994).
"""

from __future__ import annotations

import ssl

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application
from tornado.websocket import WebSocketHandler

from mtls_matrix.protocol import TUNED_MAX_MESSAGE, ServerHooks, TokenRefused, parse_close_command


class ServerHandler(WebSocketHandler):
    """The echo handler; the client identity read in prepare()."""

    def initialize(self, hooks: ServerHooks, handlers: set) -> None:
        self.hooks = hooks
        self.handlers = handlers  # the open handlers: detached from HTTPServer at the upgrade, it cannot close them
        self.peer_cert = self.identity = None

    def prepare(self) -> None:
        if self.hooks.tokens_required:
            try:
                self.identity = self.hooks.authorize(self.request.uri, self.request.headers.get("Authorization"))
            except TokenRefused as refused:
                self.set_status(refused.status)
                self.set_header("WWW-Authenticate", refused.www_authenticate)
                self.finish(refused.reason)
        elif self.request.protocol == "https":  # (a plain listener behind a TLS-terminating proxy has none)
            self.peer_cert = self.request.get_ssl_certificate()

    def open(self) -> None:
        self.handlers.add(self)
        self.hooks.opened(self.request.path, self.request.headers, self.peer_cert, identity=self.identity)

    def on_message(self, message):
        command = parse_close_command(message)
        if command:
            self.close(*command)
            return None
        return self.write_message(message, binary=isinstance(message, bytes))  # awaited: flow control

    def on_close(self) -> None:
        self.handlers.discard(self)
        # close_code/close_reason: the close frame received from the client (None if none came)
        self.hooks.closed(self.request.path, self.close_code, self.close_reason)


class ServerHandlerIdentityInOpen(ServerHandler):
    """The client certificate read in open(), where WebSocketHandler code naturally reads it."""

    def prepare(self) -> None:
        pass

    def open(self) -> None:
        try:
            peer_cert, error = self.request.get_ssl_certificate(), None
        except Exception as exc:  # tornado#2994: the request lost its stream at the upgrade
            peer_cert, error = None, f"{type(exc).__name__}: {exc}"
        self.handlers.add(self)
        self.hooks.opened(self.request.path, self.request.headers, peer_cert, error=error)


async def start_server(context: ssl.SSLContext | None, hooks: ServerHooks, profile: str, identity_in: str = "prepare"):
    handler = ServerHandlerIdentityInOpen if identity_in == "open" else ServerHandler
    settings = {"websocket_max_message_size": TUNED_MAX_MESSAGE} if profile == "tuned" else {}
    handlers: set[ServerHandler] = set()
    app = Application([(r"/cell/.*", handler, {"hooks": hooks, "handlers": handlers})], **settings)
    http_server = HTTPServer(app, ssl_options=context)
    sockets = bind_sockets(0, "127.0.0.1")
    http_server.add_sockets(sockets)
    return (http_server, handlers), sockets[0].getsockname()[1]


async def stop_server(server) -> None:
    http_server, handlers = server
    http_server.stop()
    for handler in list(handlers):
        handler.close()
    await http_server.close_all_connections()
