"""Curated explanations for findings: why a library behaves so, and the upstream record.

A note is shown under a finding only when the run observed a finding it matches; it never
creates or changes a verdict. Patterns are globs over cell ids or the finding's signature text
(`VERDICT blamed phase canonical`, or `CLARITY peer group grade` for clarity findings). Keep
every link one that was read, and say when a statement depends on a version.
"""

from __future__ import annotations

from mtls_matrix.reports.bugs import Note

NOTES = [
    Note(
        "*-server-cn-only*",
        "CPython's `ssl.SSLContext.hostname_checks_common_name` defaults to True: when a certificate has no "
        "subjectAltName, the host is matched against the subject CN. RFC 6125 (section 6.4.4) and RFC 9525 "
        "deprecate that fallback; browsers, Go and urllib3 2.x refuse it. Every Python client here verifies "
        "through a stdlib context, so all of them inherit the default, whatever variant passes the settings. "
        "Workaround: set `ctx.hostname_checks_common_name = False` on the client context (the dict and path "
        "variants build their own context and give no way to set it: pass an SSLContext instead).",
        ("https://docs.python.org/3/library/ssl.html#ssl.SSLContext.hostname_checks_common_name",
         "https://github.com/urllib3/urllib3/pull/2113"),
    ),
    Note(
        "*-io-1mib*",
        "websockets checks `max_size` (default 1 MiB) against the frame as received. With permessage-deflate "
        "on (the default of websockets, accepted by the aiohttp server), 1 MiB of incompressible data becomes a "
        "frame slightly larger than 1 MiB, so a message of exactly the documented limit is refused with 1009. "
        "Workaround: raise `max_size`, or connect with `compression=None` for incompressible payloads.",
        ("https://websockets.readthedocs.io/en/stable/reference/asyncio/client.html",),
    ),
    Note(
        "*-io-16mib",
        "Every server's default message limit is below 16 MiB: websockets `max_size` 1 MiB, aiohttp "
        "`max_msg_size` 4 MiB (server `WebSocketResponse` and client `ws_connect`), tornado "
        "`websocket_max_message_size` 10 MiB (server) and `max_message_size` 10 MiB (client); websocket-client "
        "has none. The server closes with 1009 (message too big). Whether the client's user learns that "
        "depends on the client: websockets and aiohttp report the 1009; tornado's client reports an empty "
        "`WebSocketClosedError` and websocket-client 'socket is already closed' (EOF), because the server "
        "drops the connection right after its close frame while the client is still sending. The `tuned` "
        "profile raises each documented limit to 64 MiB and passes.",
        ("https://websockets.readthedocs.io/en/stable/reference/asyncio/server.html",
         "https://docs.aiohttp.org/en/stable/web_reference.html#websocketresponse",
         "https://www.tornadoweb.org/en/stable/websocket.html"),
    ),
    Note(
        "*tornado?identity=open?-*",
        "In a tornado `WebSocketHandler`, `self.request.get_ssl_certificate()` raises AttributeError in "
        "`open()`: by then the stream has been detached from the request's connection. Known upstream and "
        "still open. Workaround (what `server:tornado` does): read the certificate in `prepare()`, which runs "
        "before the upgrade, and keep it on the handler.",
        ("https://github.com/tornadoweb/tornado/issues/2994",),
    ),
    Note(
        "CLARITY server:websockets *",
        "asyncio's SSL transport force-closes the connection when the server-side handshake fails without "
        "flushing the TLS alert OpenSSL wrote, so the client never learns why (no 'certificate required', "
        "'unknown ca', 'certificate expired'): it sees EOF or a reset, under TLS 1.3 only at its first read. "
        "Every asyncio server inherits it (websockets, aiohttp); tornado's server uses blocking SSL sockets, "
        "which send the alert. Fixed in CPython after this Python (gh-98078, merged 2026-07): rerun the "
        "matrix on a Python with the fix to see the alerts arrive.",
        ("https://github.com/python/cpython/issues/98078", "https://github.com/python/cpython/pull/153620",
         "https://github.com/python-websockets/websockets/issues/1503"),
    ),
    Note(
        "FAIL server:nginx+* upgrade HTTP_400",
        "nginx with `ssl_verify_client on` does not fail the TLS handshake when the client certificate is missing "
        "or invalid: its verify callback keeps OpenSSL's verdict, the handshake completes, and nginx refuses the "
        "first HTTP request with 400 ('No required SSL certificate was sent' / 'The SSL certificate error'; "
        "internally 496 / 495). That is a rejection, not a TLS alert: nothing reached the backend, but the "
        "client's user sees an HTTP 400 (the reason is only in the HTML body and in nginx's info-level log), at "
        "the upgrade instead of the handshake, under TLS 1.2 as under 1.3; code that handles TLS failures does "
        "not fire. By design, documented: `error_page 495 496` can answer differently (for instance 403 with a "
        "body naming the problem), but no setting makes nginx send the alert. HAProxy's `verify required` does "
        "fail the handshake (compare the `server:haproxy+*` cells).",
        ("https://nginx.org/en/docs/http/ngx_http_ssl_module.html#ssl_verify_client",
         "https://nginx.org/en/docs/http/ngx_http_ssl_module.html#errors"),
    ),
    Note(
        "FAIL *server:nginx+tornado* HTTP_403",
        "tornado's WebSocketHandler refuses an upgrade whose Origin header does not match its Host header (403 "
        "'Cross origin websockets not allowed'). websocket-client sends `Origin: https://host:port` by default; "
        "behind nginx with the common `proxy_set_header Host $host` (the reference configuration), the backend "
        "gets a Host without the port, so every websocket-client connection is refused. Other clients send no "
        "Origin and pass; HAProxy forwards Host unchanged and passes. Workarounds: `proxy_set_header Host "
        "$http_host` in nginx, tornado's `check_origin` / trusted origins, or websocket-client's "
        "`suppress_origin=True`.",
        ("https://www.tornadoweb.org/en/stable/websocket.html#tornado.websocket.WebSocketHandler.check_origin",
         "https://nginx.org/en/docs/http/ngx_http_core_module.html#var_host"),
    ),
    Note(
        "haproxy+*-client-not-yet-valid*",
        "HAProxy fails the handshake as it must, but nothing says why the certificate was refused: OpenSSL's alert "
        "for a certificate that is not yet valid is the generic `bad certificate`, and HAProxy 2.6 logs only 'SSL "
        "client certificate not trusted' (in 2.6 the line logged for a failed handshake has a fixed format; the "
        "verify error, `ssl_c_err`, can only be logged for a connection that reached HTTP). A server that records "
        "OpenSSL's verify result (every Python server here) knows it is CERT_NOT_YET_VALID.",
        ("https://docs.haproxy.org/2.6/configuration.html",
         "https://www.haproxy.com/blog/ssl-client-certificate-management-at-application-level"),
    ),
    Note(
        "haproxy+*-client-no-cert-tls12",
        "HAProxy refuses the client that sends no certificate, but under TLS 1.2 nothing says so: the alert is the "
        "generic `handshake failure` (TLS 1.3 has `certificate required`) and HAProxy 2.6 logs only 'SSL handshake "
        "failure', the same line as for any other handshake error.",
        ("https://docs.haproxy.org/2.6/configuration.html",),
    ),
    Note(
        "CLARITY server:aiohttp *",
        "Same cause as for server:websockets: aiohttp serves TLS through asyncio's SSL transport, which drops "
        "the alert when the handshake fails (gh-98078).",
        ("https://github.com/python/cpython/issues/98078",),
    ),
]
