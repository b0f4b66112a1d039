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
        "*-node-ws?*?-server-cn-only*",
        "Node's `tls.checkServerIdentity` (what `ws` and `https` clients use) falls back to the subject CN "
        "when the certificate has no DNS subjectAltName, as CPython does; a maintainer states it there: it "
        "'only consults the Common Name when no SANs are present' (Node 20). Workaround: pass a "
        "`checkServerIdentity` that refuses a certificate without a DNS SAN.",
        ("https://nodejs.org/api/tls.html#tlscheckserveridentityhostname-cert",
         "https://github.com/nodejs/node/issues/11771"),
    ),
    Note(
        "CLARITY server:node-ws *",
        "A Node TLS server with `requestCert` and `rejectUnauthorized` verifies a presented client certificate "
        "only after OpenSSL's handshake (its verify callback accepts everything) and then destroys the socket: "
        "no TLS alert reaches the client, which sees a completed handshake followed by a hang-up, and the "
        "application gets `tlsClientError` 'socket hang up' with the reason only in "
        "`socket.authorizationError`. A missing certificate is refused inside the handshake, with an alert. "
        "The same behaviour, reimplemented and discussed for Bun's node:tls, is described in oven-sh/bun#33630.",
        ("https://nodejs.org/api/tls.html#tlscreateserveroptions-secureconnectionlistener",
         "https://github.com/oven-sh/bun/pull/33630"),
    ),
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
        "CLARITY server:aiohttp *",
        "Same cause as for server:websockets: aiohttp serves TLS through asyncio's SSL transport, which drops "
        "the alert when the handshake fails (gh-98078).",
        ("https://github.com/python/cpython/issues/98078",),
    ),
]
