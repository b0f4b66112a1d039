"""tornado: WebSocketHandler behind HTTPServer, and websocket_connect. The library code is in
usercode/tornado_*.py.

Defaults that matter: max message size is 10 MiB on both sides (a larger message closes with
1009), no compression unless asked. The tuned profile raises both limits.

websocket_connect takes TLS settings only through an HTTPRequest, in three documented ways, each
a variant: ssl_options as an SSLContext, ssl_options as a dict (turned into a context by
netutil.ssl_options_to_context, which starts from a bare ssl.SSLContext(PROTOCOL_TLS_CLIENT),
not from create_default_context), or the request's own ca_certs/client_cert/client_key (turned
into create_default_context(cafile=ca_certs) by simple_httpclient._get_ssl_options); and the dict
with cert_reqs=ssl.CERT_REQUIRED spelled out, as tornado.netutil.ssl_options_to_context documents its
keys (docs: tornado.httpclient.HTTPRequest ssl_options, tornado.netutil.ssl_wrap_socket).
"""

from __future__ import annotations

import inspect

from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.iostream import StreamClosedError
from tornado.simple_httpclient import HTTPStreamClosedError, HTTPTimeoutError
from tornado.websocket import WebSocketClosedError, websocket_connect

from mtls_matrix.peers import ClientPeer, Closed, ServerPeer
from mtls_matrix.scenarios import TLS_SETTINGS_SCENARIOS
from mtls_matrix.usercode import tornado_client, tornado_server

# WebSocketProtocol13.close aborts the connection this long after sending its close frame when no close
# frame answers it: a constant in tornado/websocket.py, no argument sets it
CLOSE_ABORT_S = 5.0


class Server(ServerPeer):
    name = library = "tornado"
    usercode = tornado_server  # the client certificate read in prepare(), before the upgrade
    clocks = {"handshake": ("SSLIOStream handshake",)}

    def own_timeouts(self):
        # HTTPServer's idle_connection_timeout starts only once TLS is done
        return {"SSLIOStream handshake": None}


class Client(ClientPeer):
    name = library = "tornado"
    usercode = tornado_client
    variants = ("ssl_options=context", "ssl_options=dict", "request=paths", "ssl_options=dict+cert_reqs")
    variant_scenarios = {"ssl_options=dict+cert_reqs": TLS_SETTINGS_SCENARIOS}

    clocks = {"handshake": ("connect_timeout", "request_timeout"), "upgrade": ("request_timeout",),
              "read": ("ping_interval",), "close": ("close abort",)}

    def own_timeouts(self, variant):
        defaults = HTTPRequest._DEFAULTS  # what simple_httpclient fills in for an unset timeout
        ping = inspect.signature(websocket_connect).parameters["ping_interval"].default
        return {"connect_timeout": defaults["connect_timeout"], "request_timeout": defaults["request_timeout"],
                "ping_interval": ping, "close abort": CLOSE_ABORT_S}

    def canonical(self, exc):
        # simple_httpclient reports failures as HTTPClientError subclasses with a fake code 599
        if isinstance(exc, HTTPTimeoutError):
            return "TIMEOUT"
        if isinstance(exc, HTTPStreamClosedError):  # the stream closed with no underlying error
            return "EOF"
        if isinstance(exc, HTTPClientError):
            return f"HTTP_{exc.code}"
        if isinstance(exc, StreamClosedError) and exc.real_error is None:
            return "EOF"  # with a real_error, simple_httpclient raises that error instead
        if isinstance(exc, Closed) and exc.code is None:
            return "ABNORMAL_CLOSE"  # "closed" with no close frame received: what 1006 stands for
        if isinstance(exc, WebSocketClosedError):
            return "EOF"  # a write on a closed stream: tornado keeps no cause and no close frame
        return None


class ServerIdentityInOpen(Server):
    """Only the question it exists for: can the handler see who connected?"""

    name = "tornado[identity=open]"
    usercode_options = {"identity_in": "open"}  # the client certificate read in open(), after the upgrade
    groups = ("works", "client-rejected")


PEERS = [Server(), ServerIdentityInOpen(), Client()]
